package integration

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab/bgppeer"
)

// The battery's addresses and numbers (see battery_test.go for the lab).
const (
	batteryGwAS    = 65515
	batteryPeerAS  = 65010
	batteryCloudAS = 65100
	batteryProto   = 203 // kernel.protocol: bgpgw's routes in gw's kernel
	batteryMaxPfx  = 50  // tunnels[].max_prefixes
	batteryMaxPath = 50  // tunnels[].max_as_path, when this bgpgw has it
	batteryPending = "pending max_as_path"
)

var (
	ip4Local, ip4Remote = netip.MustParseAddr("169.254.21.1"), netip.MustParseAddr("169.254.21.2")
	ip6Local, ip6Remote = netip.MustParseAddr("fd00:21::1"), netip.MustParseAddr("fd00:21::2")
	cloud4Gw, cloud4    = netip.MustParseAddr("10.10.255.1"), netip.MustParseAddr("10.10.255.2")
	cloud6Gw, cloud6    = netip.MustParseAddr("fd10:10:ffff::1"), netip.MustParseAddr("fd10:10:ffff::2")
	announced           = []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("fd10:10::/48")}
)

// want is what must happen to a route of the battery.
type want int

const (
	// refused: not in gw's kernel, not at the cloud router, never sent
	// back to the test peer; status lists it in the tunnel peer's
	// rejected, and rejected_routes gives the case's reason.
	refused want = iota
	// carried: in gw's kernel via the tunnel's inside remote address only
	// (never the received next hop); at the cloud router with bgpgw's own
	// address as next hop and an AS path that is bgpgw's AS, followed by
	// the path sent (kept) or not (re-originated), the same way for every
	// carried route; no LOCAL_PREF of the test peer's; never sent back.
	carried
	// keptHome: in gw's kernel via the inside remote address, never at
	// the cloud router nor sent back (NO_EXPORT, NO_ADVERTISE).
	keptHome
	// either: refused or carried, but consistently: the kernel, the cloud
	// router and status agree, never via the received next hop, never
	// sent back.
	either
)

func (w want) String() string {
	return [...]string{"refused", "carried", "kept home", "refused or carried, consistently"}[w]
}

// batteryCase is one UPDATE of the battery and what must happen to it.
type batteryCase struct {
	Name   string
	Tunnel string // the session it is sent on: onprem (IPv4) or onprem6 (IPv6)
	Route  bgppeer.Route
	Want   want
	Reason string // refused: the reason keyword in rejected_routes
	// CloudPath, for a carried route, is the AS path the cloud router must
	// show exactly.
	CloudPath string
	Note      string
}

func p(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func seq(asns ...uint32) []bgp.AsPathParamInterface { return bgppeer.Seq(asns...) }

func attrs(a ...bgp.PathAttributeInterface) []bgp.PathAttributeInterface { return a }

func mustAggregator() bgp.PathAttributeInterface {
	a, err := bgp.NewPathAttributeAggregator(uint32(4200000001), netip.MustParseAddr("192.0.2.7"))
	if err != nil {
		panic(err)
	}
	return a
}

func longASPath(n int) []uint32 {
	out := []uint32{batteryPeerAS}
	for i := 1; i < n; i++ {
		out = append(out, 64600+uint32(i%300))
	}
	return out
}

// v4 and v6 fill in the defaults: the test peer's own next hop and AS path.
func v4(c batteryCase) batteryCase {
	c.Tunnel = "onprem"
	if !c.Route.NextHop.IsValid() {
		c.Route.NextHop = ip4Remote
	}
	if c.Route.ASPath == nil {
		c.Route.ASPath = seq(batteryPeerAS)
	}
	return c
}

func v6(c batteryCase) batteryCase {
	c = v4(c)
	c.Tunnel = "onprem6"
	if c.Route.NextHop == ip4Remote {
		c.Route.NextHop = ip6Remote
	}
	return c
}

// batteryCases is the battery, in the order it is sent. BATTERY.md is
// generated from it (go test -run TestBatteryDoc ./test/integration/ -update).
func batteryCases() []batteryCase {
	r := func(prefixes ...string) bgppeer.Route { return bgppeer.Route{Prefixes: p(prefixes...)} }
	return []batteryCase{
		v4(batteryCase{Name: "default", Route: r("0.0.0.0/0"), Want: refused, Reason: "default-route"}),
		v4(batteryCase{Name: "split-default", Route: r("0.0.0.0/1", "128.0.0.0/1"), Want: refused, Reason: "default-route"}),
		v4(batteryCase{Name: "cloud-prefix", Route: r("10.10.0.0/16"), Want: refused, Reason: "cloud-prefix",
			Note: "inside the accept-list"}),
		v4(batteryCase{Name: "cloud-more-specific", Route: r("10.10.5.0/24"), Want: refused, Reason: "cloud-prefix"}),
		v4(batteryCase{Name: "cloud-covering-8", Route: r("10.0.0.0/8"), Want: refused, Reason: "cloud-prefix",
			Note: "covers 10.10.0.0/16; inside the accept-list"}),
		v4(batteryCase{Name: "cloud-covering-13", Route: r("10.8.0.0/13"), Want: refused, Reason: "cloud-prefix",
			Note: "covers 10.10.0.0/16; inside the accept-list"}),
		v4(batteryCase{Name: "underlay-remote", Route: r("198.51.100.2/32"), Want: refused, Reason: "underlay",
			Note: "the tunnel's remote_address"}),
		v4(batteryCase{Name: "underlay-local", Route: r("203.0.113.1/32"), Want: refused, Reason: "underlay",
			Note: "the tunnel's local_address"}),
		v4(batteryCase{Name: "underlay-covering", Route: r("198.51.100.0/24"), Want: refused, Reason: "underlay"}),
		v4(batteryCase{Name: "cloud-peer-address", Route: r("10.10.255.2/32"), Want: refused, Reason: "cloud-prefix",
			Note: "the cloud router's address, inside the cloud prefix: that rule comes first"}),
		v4(batteryCase{Name: "inside-subnet", Route: r("169.254.21.0/30"), Want: refused, Reason: "inside"}),
		v4(batteryCase{Name: "inside-hosts", Route: r("169.254.21.1/32", "169.254.21.2/32"), Want: refused, Reason: "inside"}),
		v4(batteryCase{Name: "loopback", Route: r("127.0.0.0/8"), Want: refused, Reason: "martian"}),
		v4(batteryCase{Name: "this-network", Route: r("0.0.0.0/8"), Want: refused, Reason: "martian"}),
		v4(batteryCase{Name: "multicast", Route: r("224.0.0.0/4"), Want: refused, Reason: "martian"}),
		v4(batteryCase{Name: "as-loop", Route: bgppeer.Route{Prefixes: p("10.4.1.0/24"), ASPath: seq(batteryPeerAS, batteryGwAS, 65020)},
			Want: refused, Reason: "as-loop"}),
		v4(batteryCase{Name: "as-path-300", Route: bgppeer.Route{Prefixes: p("10.4.2.0/24"), ASPath: seq(longASPath(300)...)},
			Want: refused, Reason: "as-path-too-long", Note: batteryPending + ": refused only when this bgpgw " +
				"has tunnels[].max_as_path (the test sets it to 50 when `bgpgw validate` takes it); without it: " + either.String()}),
		v4(batteryCase{Name: "outside-accept-list", Route: r("172.16.0.0/16"), Want: refused, Reason: "not-in-accept-list"}),
		v4(batteryCase{Name: "longer-than-le", Route: r("10.1.2.0/25"), Want: refused, Reason: "not-in-accept-list"}),

		v6(batteryCase{Name: "default-v6", Route: r("::/0"), Want: refused, Reason: "default-route"}),
		v6(batteryCase{Name: "loopback-v6", Route: r("::1/128"), Want: refused, Reason: "martian"}),
		v6(batteryCase{Name: "link-local-v6", Route: r("fe80::/64"), Want: refused, Reason: "martian"}),
		v6(batteryCase{Name: "multicast-v6", Route: r("ff02::/16"), Want: refused, Reason: "martian"}),
		v6(batteryCase{Name: "cloud-prefix-v6", Route: r("fd10:10::/48"), Want: refused, Reason: "cloud-prefix"}),
		v6(batteryCase{Name: "cloud-more-specific-v6", Route: r("fd10:10:0:5::/64"), Want: refused, Reason: "cloud-prefix"}),
		v6(batteryCase{Name: "cloud-covering-v6", Route: r("fd10::/16"), Want: refused, Reason: "cloud-prefix",
			Note: "covers fd10:10::/48; inside the accept-list"}),
		v6(batteryCase{Name: "underlay-cloud-peer-v6", Route: r("fd10:10:ffff::2/128"), Want: refused, Reason: "underlay",
			Note: "the cloud router's IPv6 session address (not in fd10:10::/48)"}),
		v6(batteryCase{Name: "inside-v6", Route: r("fd00:21::/126", "fd00:21::2/128"), Want: refused, Reason: "inside"}),
		v6(batteryCase{Name: "outside-accept-list-v6", Route: r("2001:db8:99::/48"), Want: refused, Reason: "not-in-accept-list"}),

		v4(batteryCase{Name: "as-path-kept", Route: bgppeer.Route{Prefixes: p("10.1.0.0/16"), ASPath: seq(batteryPeerAS, 65020)},
			Want: carried, CloudPath: "65515 65010 65020", Note: "the on-prem AS path kept behind bgpgw's"}),
		v4(batteryCase{Name: "nh-off-link", Route: bgppeer.Route{Prefixes: p("10.1.1.0/24"), NextHop: netip.MustParseAddr("192.0.2.99")},
			Want: carried}),
		v4(batteryCase{Name: "nh-cloud-side", Route: bgppeer.Route{Prefixes: p("10.1.3.0/24"), NextHop: cloud4},
			Want: carried, Note: "NEXT_HOP is the cloud router's address"}),
		v4(batteryCase{Name: "nh-gw-inside", Route: bgppeer.Route{Prefixes: p("10.1.4.0/24"), NextHop: ip4Local},
			Want: either, Note: "NEXT_HOP is bgpgw's own inside address"}),
		v4(batteryCase{Name: "nh-loopback", Route: bgppeer.Route{Prefixes: p("10.1.5.0/24"), NextHop: netip.MustParseAddr("127.0.0.1")},
			Want: either, Note: "an invalid NEXT_HOP (RFC 7606: treat-as-withdraw, not a session reset)"}),
		v4(batteryCase{Name: "no-export", Route: bgppeer.Route{Prefixes: p("10.5.1.0/24"),
			Attrs: attrs(bgp.NewPathAttributeCommunities([]uint32{uint32(bgp.COMMUNITY_NO_EXPORT)}))}, Want: keptHome}),
		v4(batteryCase{Name: "no-advertise", Route: bgppeer.Route{Prefixes: p("10.5.2.0/24"),
			Attrs: attrs(bgp.NewPathAttributeCommunities([]uint32{uint32(bgp.COMMUNITY_NO_ADVERTISE)}))}, Want: keptHome}),
		v4(batteryCase{Name: "med-max", Route: bgppeer.Route{Prefixes: p("10.3.1.0/24"),
			Attrs: attrs(bgp.NewPathAttributeMultiExitDisc(0xffffffff))}, Want: carried}),
		v4(batteryCase{Name: "local-pref-ebgp", Route: bgppeer.Route{Prefixes: p("10.3.2.0/24"),
			Attrs: attrs(bgp.NewPathAttributeLocalPref(1000))}, Want: carried, Note: "LOCAL_PREF over eBGP is ignored (RFC 4271 5.1.5)"}),
		v4(batteryCase{Name: "origin-incomplete", Route: bgppeer.Route{Prefixes: p("10.3.3.0/24"), Origin: bgp.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE},
			Want: carried}),
		v4(batteryCase{Name: "as-set", Route: bgppeer.Route{Prefixes: p("10.3.4.0/24"),
			ASPath: append(seq(batteryPeerAS), bgppeer.Set(65020, 65021))}, Want: carried}),
		v4(batteryCase{Name: "as4-path", Route: bgppeer.Route{Prefixes: p("10.3.5.0/24"), ASPath: seq(batteryPeerAS, 4200000001, 4200000002)},
			Want: carried}),
		v4(batteryCase{Name: "unknown-transitive", Route: bgppeer.Route{Prefixes: p("10.3.6.0/24"),
			Attrs: attrs(bgp.NewPathAttributeUnknown(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 0xf0, []byte{0xde, 0xad, 0xbe, 0xef}))},
			Want: carried}),
		v4(batteryCase{Name: "large-ext-communities", Route: bgppeer.Route{Prefixes: p("10.3.7.0/24"), Attrs: attrs(
			bgp.NewPathAttributeLargeCommunities([]*bgp.LargeCommunity{bgp.NewLargeCommunity(batteryPeerAS, 1, 2)}),
			bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
				bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, batteryPeerAS, 7, true)}))},
			Want: carried}),
		v4(batteryCase{Name: "aggregator", Route: bgppeer.Route{Prefixes: p("10.3.8.0/24"),
			Attrs: attrs(bgp.NewPathAttributeAtomicAggregate(), mustAggregator())}, Want: carried}),

		v6(batteryCase{Name: "as-path-kept-v6", Route: bgppeer.Route{Prefixes: p("fd01:1::/48"), ASPath: seq(batteryPeerAS, 65020)},
			Want: carried, CloudPath: "65515 65010 65020"}),
		v6(batteryCase{Name: "nh-off-link-v6", Route: bgppeer.Route{Prefixes: p("fd01:2::/48"), NextHop: netip.MustParseAddr("2001:db8::99")},
			Want: carried}),
	}
}

// maxPrefixRoute is the last step: 40 more prefixes on onprem, which
// already holds 36 (22 to refuse, 14 to accept), over max_prefixes (50)
// whether GoBGP counts what it refuses or not.
func maxPrefixRoute() bgppeer.Route {
	r := bgppeer.Route{NextHop: ip4Remote, ASPath: seq(batteryPeerAS)}
	for i := range 40 {
		r.Prefixes = append(r.Prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 6, byte(i), 0}), 24))
	}
	return r
}

// describe is what a route sends, for BATTERY.md.
func describe(r bgppeer.Route) string {
	var ps []string
	for _, x := range r.Prefixes {
		ps = append(ps, x.String())
	}
	path := bgp.AsPathString(bgp.NewPathAttributeAsPath(r.ASPath))
	if f := strings.Fields(path); len(f) > 6 {
		path = fmt.Sprintf("%s ... %s (%d AS numbers)", strings.Join(f[:3], " "), f[len(f)-1], len(f))
	}
	out := fmt.Sprintf("%s, next hop %s, path %s", strings.Join(ps, " "), r.NextHop, path)
	if r.Origin == bgp.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE {
		out += ", ORIGIN INCOMPLETE"
	}
	for _, a := range r.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeCommunities:
			out += ", " + strings.Trim(strings.TrimPrefix(a.String(), "{Communities: "), "}")
		case *bgp.PathAttributeMultiExitDisc:
			out += fmt.Sprintf(", MED %d", a.Value)
		case *bgp.PathAttributeLocalPref:
			out += fmt.Sprintf(", LOCAL_PREF %d", a.Value)
		case *bgp.PathAttributeUnknown:
			out += fmt.Sprintf(", unknown optional transitive attribute type %d", a.GetType())
		case *bgp.PathAttributeLargeCommunities:
			out += ", large community " + a.Values[0].String()
		case *bgp.PathAttributeExtendedCommunities:
			out += ", extended community RT " + a.Value[0].String()
		case *bgp.PathAttributeAtomicAggregate:
			out += ", ATOMIC_AGGREGATE"
		case *bgp.PathAttributeAggregator:
			out += fmt.Sprintf(", AGGREGATOR %d %s", a.Value.AS, a.Value.Address)
		}
	}
	return out
}

func (c batteryCase) mustHappen() string {
	s := c.Want.String()
	switch {
	case c.Want == refused:
		s += ", reason `" + c.Reason + "`"
	case c.CloudPath != "":
		s += ", cloud AS path `" + c.CloudPath + "`"
	}
	return s
}

var update = flag.Bool("update", false, "rewrite BATTERY.md from the battery's cases")

// TestBatteryDoc keeps BATTERY.md, the list the issue asks for, the same
// as the cases TestBattery sends.
func TestBatteryDoc(t *testing.T) {
	var b strings.Builder
	b.WriteString(batteryDocHead)
	for i, c := range batteryCases() {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", i+1, c.Name, c.Tunnel, describe(c.Route), c.mustHappen(), c.Note)
	}
	fmt.Fprintf(&b, "| %d | max-prefix | onprem | %d more prefixes (%s ... %s) | %s |  |\n", len(batteryCases())+1,
		len(maxPrefixRoute().Prefixes), maxPrefixRoute().Prefixes[0], maxPrefixRoute().Prefixes[39], maxPrefixMust)
	const path = "BATTERY.md"
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, b.String(), string(got), "BATTERY.md is stale: go test -run TestBatteryDoc ./test/integration/ -update")
}

const maxPrefixMust = "the session is held down with `maximum prefix` in status's last_error and a Cease/1 NOTIFICATION; " +
	"onprem's routes leave gw's kernel and the cloud router; onprem6 and the cloud sessions stay up, not reset, their routes kept"

const batteryDocHead = `# The battery: a BGP peer that misbehaves on purpose

` + "`TestBattery`" + ` (battery_test.go) runs a real bgpgw in network namespace gw with
two tunnel sessions (ipsec.mode none, veth, GTSM) to a raw BGP speaker
(internal/lab/bgppeer) in namespace op, onprem over IPv4 with TCP-MD5 and
onprem6 over IPv6, and real FRR as the cloud router (AS 65100, one IPv4 and
one IPv6 session). bgpgw (AS 65515) announces 10.10.0.0/16 and fd10:10::/48;
both tunnels accept ` + "`10.0.0.0/8 le 24`" + ` and ` + "`fd00::/8 le 64`" + `, max_prefixes 50;
onprem's outer addresses are 203.0.113.1 (local) and 198.51.100.2 (remote),
its inside subnet 169.254.21.0/30 (onprem6: fd00:21::/126). The test peer is
AS 65010; its own next hop is the inside remote address (169.254.21.2,
fd00:21::2) unless a case says otherwise.

The test sends every case below, one UPDATE each, then waits until bgpgw's
view (status) has reached gw's kernel (routes of protocol 203, every table)
and the cloud router, and checks each case in gw's kernel, the cloud router's
RIB, what bgpgw sent the test peer, and ` + "`bgpgw status --json`" + ` (the tunnel
peer's received, rejected and rejected_routes). Throughout, no session may
be reset and bgpgw must not exit. Then the last step.

What must happen:
- **refused**: not in gw's kernel, not at the cloud router, never sent back
  to the test peer; in the tunnel peer's rejected list, and its
  rejected_routes entry gives the reason keyword.
- **carried**: in gw's kernel via the tunnel's inside remote address only,
  never the received next hop; at the cloud router with bgpgw's own address
  as next hop, no LOCAL_PREF of the test peer's, and an AS path of 65515
  followed by the path sent (kept) or by nothing (re-originated), the same
  way for every carried route; never sent back.
- **kept home**: in gw's kernel via the inside remote address; never at the
  cloud router, never sent back.
- **refused or carried, consistently**: one or the other, with the kernel,
  the cloud router and status agreeing, and never via the received next hop.

| # | case | session | sent | must happen | notes |
| --- | --- | --- | --- | --- | --- |
`
