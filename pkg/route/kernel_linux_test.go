package route

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// ownRoutes describes the routes tagged with protocol in every table of the namespace h
// works in.
func ownRoutes(t *testing.T, h *netlink.Handle, protocol int) []string {
	t.Helper()
	var out []string
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: netlink.RouteProtocol(protocol)},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		require.NoError(t, err)
		for _, r := range rs {
			out = append(out, describe(&r))
		}
	}
	slices.Sort(out)
	return out
}

// TestKernel runs both ways of routing: through nexthop objects, and per route as on kernels
// without them.
func TestKernel(t *testing.T) {
	t.Run("nexthop objects", func(t *testing.T) { testKernel(t, false) })
	t.Run("per route", func(t *testing.T) { testKernel(t, true) })
}

func testKernel(t *testing.T, perRoute bool) {
	const proto = 200

	// The machine's own namespace must not see any of this.
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	require.NoError(t, err)
	defer host.Close()
	hostBefore := ownRoutes(t, host, proto)

	ns := lab.NewNetnsHandle(t)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	require.NoError(t, err)
	defer h.Close()

	// A veth pair inside the namespace; 192.0.2.2, 192.0.2.3, 2001:db8::2 and 2001:db8::3
	// are next hops on its link.
	require.NoError(t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"}))
	veth0, err := h.LinkByName("veth0")
	require.NoError(t, err)
	veth1, err := h.LinkByName("veth1")
	require.NoError(t, err)
	require.NoError(t, h.LinkSetUp(veth1))
	require.NoError(t, h.LinkSetUp(veth0))
	for _, a := range []string{"192.0.2.1/24", "2001:db8::1/64"} {
		p := netip.MustParsePrefix(a)
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		require.NoError(t, h.AddrAdd(veth0, addr), a)
	}

	// Others' routes: a static one in the main table, one with our protocol in table 100.
	static := kernelRoute(parseRoute(t, "203.0.113.0/24 via 192.0.2.3"), testTable, protoStat)
	require.NoError(t, h.RouteAdd(&static))
	otherTable := kernelRoute(parseRoute(t, "198.51.100.0/24 via 192.0.2.3"), 100, proto)
	require.NoError(t, h.RouteAdd(&otherTable))
	others := func() []string {
		return append(ownRoutes(t, h, protoStat), ownRoutes(t, h, proto)...)
	}

	i, err := New(Options{Protocol: proto, Netns: ns, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), perRoute: perRoute})
	require.NoError(t, err)
	defer i.Close()

	n, err := i.Flush()
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, perRoute, i.mode != modeNexthops)

	want := parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.128/25 via 192.0.2.3,192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::3,2001:db8::2",
	)
	sorted := parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.128/25 via 192.0.2.2,192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
	)
	got, err := i.Set(want)
	require.NoError(t, err)
	assert.Equal(t, sorted, got)
	listed, err := i.List()
	require.NoError(t, err)
	assert.Equal(t, sorted, listed)

	// Straight from the kernel: our routes carry our protocol, in the main table.
	assert.Equal(t, []string{
		"0.0.0.0/0 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.3", // table 100
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
		"203.0.113.128/25 via 192.0.2.2,192.0.2.3",
	}, ownRoutes(t, h, proto))
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(family, &netlink.Route{Table: testTable, Protocol: proto},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		require.NoError(t, err)
		assert.Len(t, rs, map[int]int{netlink.FAMILY_V4: 3, netlink.FAMILY_V6: 2}[family])
		for _, r := range rs {
			assert.Equal(t, proto, int(r.Protocol), describe(&r))
			assert.Equal(t, testTable, r.Table, describe(&r))
		}
	}
	othersBefore := others()

	// A second identical pass changes nothing: the kernel's form of our routes (default
	// route without destination, IPv6 metric 1024, multipath order) reads back as installed.
	rec, recNH := &recordingHandle{handle: i.h}, &recordingNH{nhKernel: i.nh}
	i.h = rec
	if !perRoute {
		i.nh = recNH
	}
	got, err = i.Set(want)
	require.NoError(t, err)
	assert.Equal(t, sorted, got)
	assert.Zero(t, rec.changes)
	assert.Empty(t, recNH.take())

	// Changes: next hop moved, ECMP to single and single to ECMP, one removed, one where
	// the static route sits (refused, the static route stays).
	got, err = i.Set(parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.3",
		"203.0.113.128/25 via 192.0.2.3",
		"2001:db8:2::/48 via 2001:db8::3",
		"2001:db8:3::/48 via 2001:db8::2,2001:db8::3",
		"203.0.113.0/24 via 192.0.2.2",
	))
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EEXIST)
	assert.Contains(t, err.Error(), "route 203.0.113.0/24:")
	after := parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.3",
		"203.0.113.128/25 via 192.0.2.3",
		"2001:db8:2::/48 via 2001:db8::3",
		"2001:db8:3::/48 via 2001:db8::2,2001:db8::3",
	)
	assert.Equal(t, after, got)
	listed, err = i.List()
	require.NoError(t, err)
	assert.Equal(t, after, listed)
	assert.Equal(t, []string{"203.0.113.0/24 via 192.0.2.3"}, ownRoutes(t, h, protoStat))

	// Flush removes ours, and only ours.
	n, err = i.Flush()
	require.NoError(t, err)
	assert.Equal(t, len(after), n)
	listed, err = i.List()
	require.NoError(t, err)
	assert.Empty(t, listed)
	assert.Equal(t, []string{"203.0.113.0/24 via 192.0.2.3"}, ownRoutes(t, h, protoStat))
	assert.Equal(t, []string{"198.51.100.0/24 via 192.0.2.3"}, ownRoutes(t, h, proto))
	assert.Subset(t, othersBefore, others())

	// Another table, above 255 (passed as an attribute): kept apart from the main table.
	i1000, err := New(Options{Protocol: proto, Table: 1000, Netns: ns, perRoute: perRoute})
	require.NoError(t, err)
	defer i1000.Close()
	got, err = i1000.Set(parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "2001:db8:1::/48 via 2001:db8::2,2001:db8::3"))
	require.NoError(t, err)
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "2001:db8:1::/48 via 2001:db8::2,2001:db8::3"), got)
	listed, err = i.List()
	require.NoError(t, err)
	assert.Empty(t, listed)
	n, err = i1000.Flush()
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	assert.Equal(t, hostBefore, ownRoutes(t, host, proto), "the machine's namespace was touched")
}

// recordingHandle counts the changes made through a handle.
type recordingHandle struct {
	handle
	changes int
}

func (r *recordingHandle) routeAdd(nr *netlink.Route) error {
	r.changes++
	return r.handle.routeAdd(nr)
}

func (r *recordingHandle) routeReplace(nr *netlink.Route) error {
	r.changes++
	return r.handle.routeReplace(nr)
}

func (r *recordingHandle) routeDel(nr *netlink.Route) error {
	r.changes++
	return r.handle.routeDel(nr)
}
