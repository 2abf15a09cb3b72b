package filter

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/model"
)

func testConfig() *config.Config {
	return &config.Config{
		BGP:      config.BGP{ASN: 65515},
		Announce: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("fd00:10::/48")},
		Tunnels: []config.Tunnel{{Name: "t1", LocalAddress: netip.MustParseAddr("203.0.113.10"),
			RemoteAddress: netip.MustParseAddr("198.51.100.10"), InsideLocal: netip.MustParsePrefix("169.254.21.1/30"),
			Accept: []config.PrefixRange{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), MaxLen: 32}, {Prefix: netip.MustParsePrefix("::/0"), MaxLen: 128}}}},
		CloudPeers: []config.CloudPeer{{Name: "cr", Address: netip.MustParseAddr("10.0.0.1")}},
		Pair:       config.Pair{Enabled: true, Partner: netip.MustParseAddr("10.10.2.1"), LocalAddress: netip.MustParseAddr("10.10.1.1")},
	}
}

// TestCheck: every rule, in order, with the reason it gives; and routes
// the rules let through.
func TestCheck(t *testing.T) {
	cfg := testConfig()
	im := ForTunnel(cfg, Never(cfg), cfg.Tunnels[0])
	im.MaxASPath = 3
	seq := func(as ...uint32) []model.ASSegment { return []model.ASSegment{{ASNs: as}} }
	for _, c := range []struct {
		prefix string
		path   []model.ASSegment
		want   Reason
	}{
		{"0.0.0.0/0", nil, DefaultRoute},
		{"::/0", nil, DefaultRoute},
		{"128.0.0.0/1", nil, DefaultRoute},
		{"8000::/1", nil, DefaultRoute},
		{"10.10.0.0/16", nil, CloudPrefix},
		{"10.10.5.0/24", nil, CloudPrefix},
		{"10.10.5.5/32", nil, CloudPrefix},
		{"10.8.0.0/13", nil, CloudPrefix},
		{"10.0.0.0/8", nil, CloudPrefix},
		{"fd00:10:0:1::/64", nil, CloudPrefix},
		{"fd00::/16", nil, CloudPrefix},
		{"198.51.100.10/32", nil, Underlay},
		{"198.51.100.0/24", nil, Underlay},
		{"203.0.113.0/25", nil, Underlay},
		{"10.0.0.1/32", nil, Underlay}, // the cloud peer, not covered by a cloud prefix
		{"169.254.21.0/30", nil, Inside},
		{"169.254.21.2/32", nil, Inside},
		{"169.254.0.0/16", nil, Inside}, // covers the inside subnet, then a martian
		{"169.254.99.0/24", nil, Martian},
		{"127.0.0.0/8", nil, Martian},
		{"127.0.0.1/32", nil, Martian},
		{"0.0.0.0/8", nil, Martian},
		{"224.0.0.0/4", nil, Martian},
		{"239.1.1.0/24", nil, Martian},
		{"240.0.0.0/4", nil, Martian},
		{"::1/128", nil, Martian},
		{"fe80::/64", nil, Martian},
		{"ff02::/16", nil, Martian},
		{"10.1.0.0/16", seq(65010, 65515), ASLoop},
		{"10.1.0.0/16", []model.ASSegment{{ASNs: []uint32{65010}}, {Set: true, ASNs: []uint32{65515, 1}}}, ASLoop},
		{"10.1.0.0/16", seq(65010, 1, 2, 3), ASPathTooLong},
		{"10.1.0.0/16", seq(65010, 1, 2), ""},
		{"10.1.0.0/16", []model.ASSegment{{ASNs: []uint32{65010, 1, 2}}, {Set: true, ASNs: []uint32{3, 4, 5}}}, ASPathTooLong},
		{"192.168.0.0/16", nil, ""},
		{"2001:db8::/32", nil, ""},
		{"64.0.0.0/2", nil, ""}, // covers nothing configured
	} {
		got, refused := im.Check(netip.MustParsePrefix(c.prefix), c.path)
		assert.Equal(t, c.want, got.Reason, "%s %v: %s", c.prefix, c.path, got.Detail)
		assert.Equal(t, c.want != "", refused, c.prefix)
		if refused {
			assert.NotEmpty(t, got.Detail, c.prefix)
		}
	}
	im.Accept = []config.PrefixRange{{Prefix: netip.MustParsePrefix("10.1.0.0/16"), MaxLen: 24}}
	for p, want := range map[string]Reason{"10.1.2.0/24": "", "10.1.2.0/25": NotAccepted, "10.2.0.0/16": NotAccepted, "10.0.0.0/8": CloudPrefix} {
		got, _ := im.Check(netip.MustParsePrefix(p), nil)
		assert.Equal(t, want, got.Reason, p)
	}
}

// TestRuleMatchesItsEntries: what Matches refuses is exactly what the
// speaker's prefix-set entries refuse (the prefix up to the full length,
// and one exact entry per covering length), checked on every prefix
// length around a rule.
func TestRuleMatchesItsEntries(t *testing.T) {
	for _, r := range []Rule{
		{Prefix: netip.MustParsePrefix("10.10.0.0/16"), Covering: true},
		{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Covering: true},
		{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("fd00:10::/48"), Covering: true},
	} {
		entries := map[netip.Prefix]bool{}
		for _, l := range r.CoveringLengths() {
			p, err := r.Prefix.Addr().Prefix(l)
			require.NoError(t, err)
			entries[p] = true
		}
		for l := 0; l <= r.Prefix.Addr().BitLen(); l++ {
			for _, addr := range []netip.Addr{r.Prefix.Addr(), r.Prefix.Addr().Next(), netip.MustParseAddr("11.0.0.0")} {
				if addr.Is4() != r.Prefix.Addr().Is4() {
					continue
				}
				p, _ := addr.Prefix(l)
				byEntries := (l >= r.Prefix.Bits() && r.Prefix.Contains(p.Addr())) || entries[p]
				if l <= 1 {
					continue // default routes: refused before any rule
				}
				assert.Equal(t, byEntries, r.Matches(p), "rule %s covering %v, %s", r.Prefix, r.Covering, p)
			}
		}
	}
}

// TestNeverDedup: a rule inside an earlier one that refuses all it would
// is left out; one that refuses more (covering prefixes) is kept.
func TestNeverDedup(t *testing.T) {
	cfg := testConfig()
	never := Never(cfg)
	for _, r := range never {
		assert.NotEqual(t, "pair local address 10.10.1.1", r.What, "inside the cloud prefix: left out")
	}
	assert.Contains(t, never, Rule{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Reason: Underlay, What: "cloud peer cr address 10.0.0.1", Covering: true})
	assert.Contains(t, never, Rule{Prefix: netip.MustParsePrefix("169.254.0.0/16"), Reason: Martian, What: "link-local"},
		"the martian holds more than the inside subnet's rule")
}
