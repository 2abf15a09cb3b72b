//go:build !nonetns

package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bgpgw/bgpgw/pkg/bgp/bgptest"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// TestImportRulesAndASPathWithRealPeers: a tunnel peer sends routes that
// the import rules refuse, each for its own reason (but an AS loop: GoBGP
// does not send a route to an AS on its path; the battery test in
// test/integration sends one), and routes they accept; the speaker reports the accepted ones with their AS paths and
// communities, explains each refused one, and passes a learned route on to
// a cloud-side peer with its AS path after bgpgw's own AS.
func TestImportRulesAndASPathWithRealPeers(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx := context.Background()
	port := freePort(t)
	cfg := &config.Config{Announce: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16")},
		Tunnels: []config.Tunnel{{Name: "onprem", RemoteAddress: netip.MustParseAddr("198.51.100.10"),
			InsideLocal: netip.MustParsePrefix("169.254.21.1/30")}}}
	a, err := NewGoBGP(ctx, Global{ASN: 65515, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: port,
		ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Never: filter.Never(cfg)}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	onprem := startPeer(t, "127.0.0.2", 65010, port, "127.0.0.1")
	cloud := startPeer(t, "127.0.0.3", 65100, port, "127.0.0.1")
	tp := tunnelPeer("onprem", onprem, port, 65010)
	tp.Accept = []PrefixRange{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MaxLen: 24}}
	tp.MaxASPath = 4
	cp := tunnelPeer("cr", cloud, port, 65100)
	cp.Kind = KindCloud
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{tp, cp}))
	waitEstablished(t, a, 2)

	r := func(p string, path []uint32, comms ...uint32) bgptest.Route {
		return bgptest.Route{Prefix: netip.MustParsePrefix(p), ASPath: path, Communities: comms}
	}
	require.NoError(t, onprem.Announce(
		r("10.1.0.0/16", []uint32{65001}),
		r("10.4.0.0/16", nil, model.CommunityNoExport),
		r("0.0.0.0/1", nil),
		r("10.0.0.0/8", nil),
		r("10.10.5.0/24", nil),
		r("10.3.0.0/16", []uint32{1, 2, 3, 4}),
		r("10.5.0.0/25", nil),
		r("198.51.100.0/24", nil),
		r("127.0.0.0/8", nil),
	))
	want := map[string]filter.Reason{
		"0.0.0.0/1": filter.DefaultRoute, "10.0.0.0/8": filter.CloudPrefix, "10.10.5.0/24": filter.CloudPrefix,
		"10.3.0.0/16": filter.ASPathTooLong, "10.5.0.0/25": filter.NotAccepted,
		"198.51.100.0/24": filter.Underlay, "127.0.0.0/8": filter.Martian,
	}
	var st PeerStatus
	waitFor(t, "every route received", func() bool {
		all, err := a.Sessions(ctx)
		require.NoError(t, err)
		st = all[slices.IndexFunc(all, func(p PeerStatus) bool { return p.Name == "onprem" })]
		return len(st.Received) == 2 && len(st.Rejected) == len(want)
	})
	assert.Equal(t, []model.Learned{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), ASPath: []model.ASSegment{{ASNs: []uint32{65010, 65001}}}},
		{Prefix: netip.MustParsePrefix("10.4.0.0/16"), ASPath: []model.ASSegment{{ASNs: []uint32{65010}}}, Communities: []uint32{model.CommunityNoExport}},
	}, st.Received)
	for _, rj := range st.Rejected {
		assert.Equal(t, want[rj.Prefix.String()], rj.Reason, "%s: %s", rj.Prefix, rj.Detail)
		assert.NotEmpty(t, rj.Detail)
	}

	// Passed on with its AS path, after two prepends and bgpgw's own AS.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"cr": {
		{Prefix: st.Received[0].Prefix, Prepend: 2, ASPath: st.Received[0].ASPath},
	}}))
	waitFor(t, "the cloud peer has the route", func() bool {
		p, err := cloud.ASPaths()
		require.NoError(t, err)
		return slices.Equal(p[st.Received[0].Prefix], []uint32{65515, 65515, 65515, 65010, 65001})
	})
}
