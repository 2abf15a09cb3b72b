//go:build !nonetns

// The tests of this file need root: a private network namespace with veth pairs as tunnels.
// `make check` leaves them out (-tags nonetns).

package route

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// tunnelLab is a private network namespace with veth pairs standing in for tunnels: tunnel n
// (from 1) is device tn, its gateways 169.254.n.2 and 2001:db8:n::2 on-link.
type tunnelLab struct {
	t  testing.TB
	ns netns.NsHandle
	h  *netlink.Handle
}

func newTunnelLab(t testing.TB, tunnels int) *tunnelLab {
	t.Helper()
	ns := lab.NewNetnsHandle(t)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	l := &tunnelLab{t: t, ns: ns, h: h}
	for n := 1; n <= tunnels; n++ {
		l.addTunnel(n, n)
	}
	return l
}

// addTunnel makes device t<dev> (with its peer) holding tunnel n's addresses.
func (l *tunnelLab) addTunnel(dev, n int) {
	l.t.Helper()
	name := fmt.Sprintf("t%d", dev)
	require.NoError(l.t, l.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}))
	for _, d := range []string{name + "p", name} {
		link, err := l.h.LinkByName(d)
		require.NoError(l.t, err)
		require.NoError(l.t, l.h.LinkSetUp(link))
	}
	l.addAddrs(name, n)
}

func (l *tunnelLab) addAddrs(dev string, n int) {
	l.t.Helper()
	link, err := l.h.LinkByName(dev)
	require.NoError(l.t, err)
	for _, a := range tunnelAddrs(n) {
		p := netip.MustParsePrefix(a)
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
		require.NoError(l.t, l.h.AddrReplace(link, addr), a) // IPv6 addresses go when the link goes down

	}
}

func (l *tunnelLab) delAddrs(dev string, n int) {
	l.t.Helper()
	link, err := l.h.LinkByName(dev)
	require.NoError(l.t, err)
	for _, a := range tunnelAddrs(n) {
		p := netip.MustParsePrefix(a)
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		require.NoError(l.t, l.h.AddrDel(link, addr), a)
	}
}

func tunnelAddrs(n int) []string {
	return []string{fmt.Sprintf("169.254.%d.1/30", n), fmt.Sprintf("2001:db8:%x::1/64", n)}
}

func gw4(n int) string { return fmt.Sprintf("169.254.%d.2", n) }
func gw6(n int) string { return fmt.Sprintf("2001:db8:%x::2", n) }

func (l *tunnelLab) setLink(dev string, up bool) {
	l.t.Helper()
	link, err := l.h.LinkByName(dev)
	require.NoError(l.t, err)
	if up {
		require.NoError(l.t, l.h.LinkSetUp(link))
	} else {
		require.NoError(l.t, l.h.LinkSetDown(link))
	}
}

// ip runs `ip -j ARGS` in the namespace (through nsenter: an independent reader) and decodes
// its output into out.
func (l *tunnelLab) ip(out any, args ...string) {
	l.t.Helper()
	fd, err := unix.Dup(int(l.ns))
	require.NoError(l.t, err)
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "ip", "-j"}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	b, err := cmd.Output()
	require.NoError(l.t, err, "ip %s", strings.Join(args, " "))
	if len(strings.TrimSpace(string(b))) == 0 {
		b = []byte("[]")
	}
	require.NoError(l.t, json.Unmarshal(b, out), string(b))
}

type ipNexthop struct {
	ID       uint32 `json:"id"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Group    []struct {
		ID uint32 `json:"id"`
	} `json:"group"`
	Blackhole bool `json:"blackhole"`
}

// nexthops describes the namespace's objects as `ip nexthop` shows them, ours with their
// gateways (group members resolved), others as they are: "proto 200 via 169.254.1.2 dev t1".
func (l *tunnelLab) nexthops() []string {
	var nhs []ipNexthop
	l.ip(&nhs, "nexthop", "show")
	byID := map[uint32]ipNexthop{}
	for _, n := range nhs {
		byID[n.ID] = n
	}
	var out []string
	for _, n := range nhs {
		s := "proto " + n.Protocol
		switch {
		case n.Group != nil:
			var gws []string
			for _, m := range n.Group {
				gws = append(gws, byID[m.ID].Gateway)
			}
			slices.Sort(gws)
			s += " group " + strings.Join(gws, ",")
		case n.Blackhole:
			s += " blackhole"
		default:
			s += " via " + n.Gateway + " dev " + n.Dev
		}
		if n.Protocol != fmt.Sprint(testProto) {
			s = fmt.Sprintf("id %d %s", n.ID, s)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

type ipRoute struct {
	Dst      string `json:"dst"`
	NHID     uint32 `json:"nhid"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Nexthops []struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
	} `json:"nexthops"`
}

// routes describes the routes of a protocol in the main table as `ip route` shows them:
// "PREFIX via GW,GW dev D,D nhid" (nhid when through an object).
func (l *tunnelLab) routes(proto string) []string {
	var out []string
	for _, family := range []string{"-4", "-6"} {
		var rs []ipRoute
		l.ip(&rs, family, "route", "show", "table", "main", "proto", proto)
		for _, r := range rs {
			hops := []string{r.Gateway + " " + r.Dev}
			if r.Gateway == "" {
				hops = nil
				for _, h := range r.Nexthops {
					hops = append(hops, h.Gateway+" "+h.Dev)
				}
			}
			slices.Sort(hops)
			var gws, devs []string
			for _, h := range hops {
				gw, dev, _ := strings.Cut(h, " ")
				gws, devs = append(gws, gw), append(devs, dev)
			}
			dst := r.Dst
			if dst == "default" {
				dst = map[string]string{"-4": "0.0.0.0/0", "-6": "::/0"}[family]
			}
			s := fmt.Sprintf("%s via %s dev %s", dst, strings.Join(gws, ","), strings.Join(devs, ","))
			if r.NHID != 0 {
				s += " nhid"
			}
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// hostObjects describes the nexthop objects of protocol in the machine's own namespace.
func hostObjects(t *testing.T, protocol int) []string {
	t.Helper()
	k, err := newNLKernel(0)
	require.NoError(t, err)
	defer k.close()
	objs, err := k.objects()
	require.NoError(t, err)
	var out []string
	for _, o := range objs {
		if o.proto == protocol {
			out = append(out, fmt.Sprintf("%d %s %v", o.id, o.gw, o.group))
		}
	}
	slices.Sort(out)
	return out
}

func TestKernelNexthops(t *testing.T) {
	hostBefore := hostObjects(t, testProto)
	defer func() { assert.Equal(t, hostBefore, hostObjects(t, testProto), "the machine's namespace was touched") }()
	l := newTunnelLab(t, 4)
	var log strings.Builder
	newInstaller := func() *Installer {
		i, err := New(Options{Protocol: testProto, Netns: l.ns, Logger: slog.New(slog.NewTextHandler(&log, nil))})
		require.NoError(t, err)
		t.Cleanup(i.Close)
		return i
	}
	i := newInstaller()
	n, err := i.Flush()
	require.NoError(t, err)
	require.Zero(t, n)
	assert.Contains(t, log.String(), "routes go through kernel nexthop objects")

	// Others: a static object on tunnel 1 with a static route through it, a static route in
	// the main table, ours by protocol in table 100.
	kn, err := newNLKernel(l.ns)
	require.NoError(t, err)
	defer kn.close()
	require.NoError(t, kn.newObject(nhObject{id: 7, proto: protoStat, family: unix.AF_INET, gw: netip.MustParseAddr(gw4(1)), oif: l.index("t1")}, false))
	require.Equal(t, []error{nil}, kn.apply(testTable, protoStat, []change{{op: opAdd, r: primaryEntry(parseRoute(t, "203.0.113.0/24")), nhid: 7}}))
	static := kernelRoute(parseRoute(t, "198.18.0.0/24 via "+gw4(1)), testTable, protoStat)
	require.NoError(t, l.h.RouteAdd(&static))
	otherTable := kernelRoute(parseRoute(t, "198.18.1.0/24 via "+gw4(1)), 100, testProto)
	require.NoError(t, l.h.RouteAdd(&otherTable))
	othersNH, othersStatic := l.nexthops()[:1], l.routes("static")
	assert.Equal(t, []string{"id 7 proto static via 169.254.1.2 dev t1"}, othersNH)
	assert.Equal(t, []string{"198.18.0.0/24 via 169.254.1.2 dev t1", "203.0.113.0/24 via 169.254.1.2 dev t1 nhid"}, othersStatic)
	checkOthers := func() {
		t.Helper()
		assert.Contains(t, l.nexthops(), othersNH[0])
		assert.Equal(t, othersStatic, l.routes("static"))
		rs, err := l.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 100}, netlink.RT_FILTER_TABLE)
		require.NoError(t, err)
		assert.Len(t, rs, 1)
	}

	all := parseRoutes(t,
		"0.0.0.0/0 via "+gw4(1),
		"198.51.100.0/25 via "+gw4(1),
		"198.51.100.128/25 via "+gw4(1),
		"198.51.101.0/24 via "+gw4(2),
		"203.0.113.0/25 via "+gw4(1)+","+gw4(2),
		"203.0.113.128/25 via "+gw4(3)+","+gw4(2)+","+gw4(1),
		"2001:db8:100::/48 via "+gw6(1),
		"2001:db8:101::/48 via "+gw6(1)+","+gw6(2),
	)
	got, err := i.Set(all)
	require.NoError(t, err)
	sorted, _, _ := normalize(all)
	assert.Equal(t, routesOf(entriesOf(sorted)), got)
	listed, err := i.List()
	require.NoError(t, err)
	assert.Equal(t, got, listed)
	ours := []string{
		"0.0.0.0/0 via 169.254.1.2 dev t1 nhid",
		"198.51.100.0/25 via 169.254.1.2 dev t1 nhid",
		"198.51.100.128/25 via 169.254.1.2 dev t1 nhid",
		"198.51.101.0/24 via 169.254.2.2 dev t2 nhid",
		"2001:db8:100::/48 via 2001:db8:1::2 dev t1 nhid",
		"2001:db8:101::/48 via 2001:db8:1::2,2001:db8:2::2 dev t1,t2 nhid",
		"203.0.113.0/25 via 169.254.1.2,169.254.2.2 dev t1,t2 nhid",
		"203.0.113.128/25 via 169.254.1.2,169.254.2.2,169.254.3.2 dev t1,t2,t3 nhid",
	}
	assert.Equal(t, ours, l.routes(fmt.Sprint(testProto)))
	ourObjects := []string{
		"proto 200 group 169.254.1.2,169.254.2.2",
		"proto 200 group 169.254.1.2,169.254.2.2,169.254.3.2",
		"proto 200 group 2001:db8:1::2,2001:db8:2::2",
		"proto 200 via 169.254.1.2 dev t1",
		"proto 200 via 169.254.2.2 dev t2",
		"proto 200 via 169.254.3.2 dev t3",
		"proto 200 via 2001:db8:1::2 dev t1",
		"proto 200 via 2001:db8:2::2 dev t2",
	}
	assert.Equal(t, append(slices.Clone(othersNH), ourObjects...), l.nexthops())
	checkOthers()

	// Idempotent: a second pass changes nothing.
	rec := &recordingNH{nhKernel: i.nh}
	i.nh = rec
	_, err = i.Set(all)
	require.NoError(t, err)
	assert.Empty(t, rec.take())

	// Tunnel 1 fails: one deletion, before the table is read, takes its routes out and
	// shrinks the groups (the static object on tunnel 1 and its route stay).
	without1 := parseRoutes(t,
		"198.51.101.0/24 via "+gw4(2),
		"203.0.113.0/25 via "+gw4(2),
		"203.0.113.128/25 via "+gw4(3)+","+gw4(2),
		"2001:db8:101::/48 via "+gw6(2),
	)
	rec.calls = nil
	got, err = i.Set(without1)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"route delete", "route delete", "route delete", "object del", // 169.254.1.2
		"route delete", "object del", // 2001:db8:1::2
		"read routes", "read routes",
	}, rec.calls, "the gateways' routes and objects go first, and nothing else changes")
	rec.take()
	sorted, _, _ = normalize(without1)
	assert.Equal(t, routesOf(entriesOf(sorted)), got)
	assert.Equal(t, []string{
		"198.51.101.0/24 via 169.254.2.2 dev t2 nhid",
		"2001:db8:101::/48 via 2001:db8:2::2 dev t2 nhid",
		"203.0.113.0/25 via 169.254.2.2 dev t2 nhid",
		"203.0.113.128/25 via 169.254.2.2,169.254.3.2 dev t2,t3 nhid",
	}, l.routes(fmt.Sprint(testProto)))
	checkOthers()

	// Tunnel 1 comes back: two objects, the groups' members replaced, four routes added.
	got, err = i.Set(all)
	require.NoError(t, err)
	assert.Equal(t, routesOf(entriesOf(normalizeMap(all))), got)
	assert.Equal(t, ours, l.routes(fmt.Sprint(testProto)))
	assert.Equal(t, append(slices.Clone(othersNH), ourObjects...), l.nexthops())
	calls := rec.take()
	assert.Equal(t, 2, count(calls, "object new/replace=false"), calls)
	assert.Equal(t, 3, count(calls, "object new/replace=true"), calls)
	assert.Equal(t, 4, count(calls, "route add"), calls)
	assert.Len(t, calls, 9)

	// ECMP shrink and grow while every tunnel still carries something: one replace each.
	shrunk := slices.Clone(all)
	shrunk[4] = parseRoute(t, "203.0.113.0/25 via "+gw4(2))
	_, err = i.Set(shrunk)
	require.NoError(t, err)
	assert.Equal(t, []string{"object new/replace=true"}, rec.take())
	assert.Contains(t, l.routes(fmt.Sprint(testProto)), "203.0.113.0/25 via 169.254.2.2 dev t2 nhid")
	_, err = i.Set(all)
	require.NoError(t, err)
	assert.Equal(t, []string{"object new/replace=true"}, rec.take())
	assert.Equal(t, ours, l.routes(fmt.Sprint(testProto)))

	// Tunnel 3's addresses move to another device: its object follows, in one replace.
	l.addTunnel(9, 90)
	l.delAddrs("t3", 3)
	l.addAddrs("t9", 3)
	_, err = i.Set(all)
	require.NoError(t, err)
	assert.Equal(t, []string{"object new/replace=true"}, rec.take())
	assert.Contains(t, l.routes(fmt.Sprint(testProto)), "203.0.113.128/25 via 169.254.1.2,169.254.2.2,169.254.3.2 dev t1,t2,t9 nhid")
	assert.Contains(t, l.nexthops(), "proto 200 via 169.254.3.2 dev t9")
	ours[7] = "203.0.113.128/25 via 169.254.1.2,169.254.2.2,169.254.3.2 dev t1,t2,t9 nhid"

	// Tunnel 2's device goes down: the kernel deletes its objects and their routes itself,
	// and refuses new ones on it; the routes through it fail, the others stay.
	l.setLink("t2", false)
	got, err = i.Set(all)
	require.Error(t, err)
	for _, pfx := range []string{"198.51.101.0/24", "203.0.113.0/25", "203.0.113.128/25", "2001:db8:101::/48"} {
		assert.Contains(t, err.Error(), "route "+pfx+": gateway ")
	}
	assert.Len(t, strings.Split(err.Error(), "\n"), 4, err.Error())
	assert.Len(t, got, len(all)-1, "the route through tunnel 2 alone went with its object; the others stay")
	l.setLink("t2", true)
	l.addAddrs("t2", 2)
	got, err = i.Set(all)
	require.NoError(t, err)
	assert.Len(t, got, len(all))
	rec.take()

	// A new route where a static one sits is refused, among many added in batches.
	many := slices.Clone(all)
	many = append(many, parseRoute(t, "198.18.0.0/24 via "+gw4(2)))
	for k := range 300 {
		many = append(many, parseRoute(t, fmt.Sprintf("10.%d.%d.0/24 via %s", k/256, k%256, gw4(1+k%4))))
	}
	got, err = i.Set(many)
	require.ErrorIs(t, err, syscall.EEXIST)
	assert.Contains(t, err.Error(), "route 198.18.0.0/24: add")
	assert.Len(t, strings.Split(err.Error(), "\n"), 1)
	assert.Len(t, got, len(many)-1)
	listed, err = i.List()
	require.NoError(t, err)
	assert.Equal(t, got, listed)
	checkOthers()

	// A restart without Flush: the next installer takes the kernel as it is, cleans what it
	// does not want (objects included) and keeps the rest without changing it.
	i.Close()
	i = newInstaller()
	_, err = i.List() // decides how to route
	require.NoError(t, err)
	rec = &recordingNH{nhKernel: i.nh}
	i.nh = rec
	got, err = i.Set(all)
	require.NoError(t, err)
	assert.Equal(t, routesOf(entriesOf(normalizeMap(all))), got)
	calls = rec.take()
	assert.Equal(t, "object del", calls[0], "tunnel 4's object, named no more, first: with 75 routes")
	assert.Equal(t, 225, count(calls, "route delete"), calls)
	assert.Len(t, calls, 226, "the rest is reused as it is")
	assert.Equal(t, ours, l.routes(fmt.Sprint(testProto)))
	ourObjects[5] = "proto 200 via 169.254.3.2 dev t9"
	assert.Equal(t, append(slices.Clone(othersNH), ourObjects...), l.nexthops())
	checkOthers()

	// Flush removes ours, objects and routes, and only ours.
	n, err = i.Flush()
	require.NoError(t, err)
	assert.Equal(t, len(all), n)
	assert.Empty(t, l.routes(fmt.Sprint(testProto)))
	assert.Equal(t, othersNH, l.nexthops())
	checkOthers()
}

func (l *tunnelLab) index(dev string) int {
	l.t.Helper()
	link, err := l.h.LinkByName(dev)
	require.NoError(l.t, err)
	return link.Attrs().Index
}

func normalizeMap(routes []Route) map[netip.Prefix]Route {
	m, _, _ := normalize(routes)
	return m
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}
