package route

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// fakeKernel is a routing table that behaves like the kernel's for the calls the installer
// makes, records every change request, and fails the test on a call the installer should
// never make (a request without our table or protocol, a replace or delete of a route it does
// not hold, an add over its own route, a malformed route).
type fakeKernel struct {
	t            *testing.T
	table, proto int // the installer's

	routes []netlink.Route // the whole table set, every protocol
	calls  []string        // change requests, as "add|replace|del PREFIX ..."

	fail      map[string]error // by "op PREFIX": the error to answer instead of doing it
	interrupt int              // the next lists to answer with their routes and ErrDumpInterrupted
	listErr   error            // answer to every list if set
	lists     int              // number of list calls
	closed    bool
}

func newFake(t *testing.T, table, proto int) *fakeKernel {
	return &fakeKernel{t: t, table: table, proto: proto, fail: map[string]error{}}
}

// seed puts routes in the table directly, as another actor (or a previous run) would.
func (f *fakeKernel) seed(table, proto, priority int, routes ...string) {
	f.t.Helper()
	for _, s := range routes {
		r := parseRoute(f.t, s)
		nr := kernelRoute(r, table, proto)
		nr.Priority = priority
		f.store(nr)
	}
}

func kernelRoute(r Route, table, proto int) netlink.Route {
	i := &Installer{table: table, proto: proto}
	return *i.toKernel(r)
}

func (f *fakeKernel) store(r netlink.Route) {
	if r.Family == netlink.FAMILY_V6 && r.Priority == 0 {
		r.Priority = ip6DefaultMetric
	}
	if r.Type == 0 {
		r.Type = rtnUnicast
	}
	if ones, _ := r.Dst.Mask.Size(); ones == 0 {
		r.Dst = nil // the kernel sends no destination for a default route
	}
	f.routes = append(f.routes, r)
}

func (f *fakeKernel) routeList(family, table, protocol int) ([]netlink.Route, error) {
	f.lists++
	if f.closed {
		f.t.Errorf("impossible: list on a closed handle")
	}
	if table != f.table || protocol != f.proto {
		f.t.Errorf("impossible: list of table %d protocol %d, want table %d protocol %d", table, protocol, f.table, f.proto)
	}
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []netlink.Route
	for _, r := range f.routes {
		if r.Family == family && r.Table == table && int(r.Protocol) == protocol {
			out = append(out, r)
		}
	}
	if f.interrupt > 0 {
		f.interrupt--
		return out, netlink.ErrDumpInterrupted
	}
	return out, nil
}

func (f *fakeKernel) routeAdd(r *netlink.Route) error {
	call := "add " + describe(r)
	f.calls = append(f.calls, call)
	if !f.checkNew(call, r) {
		return syscall.EINVAL
	}
	if err := f.fail["add "+dstString(r)]; err != nil {
		return err
	}
	if k := f.find(r); k >= 0 {
		if int(f.routes[k].Protocol) == f.proto {
			f.t.Errorf("impossible: %s: the installer's own route is already there", call)
		}
		return syscall.EEXIST
	}
	f.store(*r)
	return nil
}

func (f *fakeKernel) routeReplace(r *netlink.Route) error {
	call := "replace " + describe(r)
	f.calls = append(f.calls, call)
	if !f.checkNew(call, r) {
		return syscall.EINVAL
	}
	if err := f.fail["replace "+dstString(r)]; err != nil {
		return err
	}
	k := f.find(r)
	if k < 0 || int(f.routes[k].Protocol) != f.proto {
		f.t.Errorf("impossible: %s: no route of the installer's there to replace", call)
		return syscall.EINVAL
	}
	f.routes = slices.Delete(f.routes, k, k+1)
	f.store(*r)
	return nil
}

func (f *fakeKernel) routeDel(r *netlink.Route) error {
	call := "del " + describe(r)
	f.calls = append(f.calls, call)
	if f.closed {
		f.t.Errorf("impossible: %s on a closed handle", call)
	}
	if r.Table != f.table || int(r.Protocol) != f.proto || r.Dst == nil {
		f.t.Errorf("impossible: %s: delete must name our table %d, protocol %d and prefix", call, f.table, f.proto)
		return syscall.EINVAL
	}
	if r.Gw != nil || r.MultiPath != nil {
		f.t.Errorf("impossible: %s: delete names next hops", call)
	}
	if err := f.fail["del "+dstString(r)]; err != nil {
		return err
	}
	k := f.find(r)
	if k < 0 || int(f.routes[k].Protocol) != f.proto || f.routes[k].Type != r.Type {
		f.t.Errorf("impossible: %s: no such route of the installer's", call)
		return syscall.ESRCH
	}
	f.routes = slices.Delete(f.routes, k, k+1)
	return nil
}

func (f *fakeKernel) close() {
	if f.closed {
		f.t.Errorf("impossible: handle closed twice")
	}
	f.closed = true
}

// checkNew checks an add or replace request.
func (f *fakeKernel) checkNew(call string, r *netlink.Route) bool {
	f.t.Helper()
	var problems []string
	if f.closed {
		problems = append(problems, "closed handle")
	}
	if r.Table != f.table || int(r.Protocol) != f.proto {
		problems = append(problems, fmt.Sprintf("table %d protocol %d", r.Table, r.Protocol))
	}
	if r.Dst == nil || r.Type != rtnUnicast || r.Priority != 0 || r.Tos != 0 {
		problems = append(problems, "not a plain unicast route with a destination")
	} else if p := prefixOf(r.Dst); p != p.Masked() || r.Family != familyOf(p) {
		problems = append(problems, "bad destination or family")
	}
	gws := gateways(r)
	switch {
	case r.Gw != nil && r.MultiPath != nil:
		problems = append(problems, "both a gateway and a multipath")
	case r.MultiPath != nil && len(r.MultiPath) < 2:
		problems = append(problems, "multipath with fewer than 2 hops")
	case len(gws) == 0:
		problems = append(problems, "no gateway")
	}
	if !slices.IsSortedFunc(gws, netip.Addr.Compare) || len(slices.Compact(slices.Clone(gws))) != len(gws) {
		problems = append(problems, "gateways not sorted and unique")
	}
	for _, gw := range gws {
		if r.Dst != nil && gw.Is4() != (r.Family == netlink.FAMILY_V4) {
			problems = append(problems, "gateway of another family")
		}
	}
	if len(problems) > 0 {
		f.t.Errorf("impossible: %s: %s", call, strings.Join(problems, ", "))
		return false
	}
	return true
}

// find returns the index of the route with r's key (table, family, prefix, tos, metric), of
// any protocol, or -1.
func (f *fakeKernel) find(r *netlink.Route) int {
	prio := r.Priority
	if r.Family == netlink.FAMILY_V6 && prio == 0 {
		prio = ip6DefaultMetric
	}
	return slices.IndexFunc(f.routes, func(x netlink.Route) bool {
		return x.Table == r.Table && x.Family == r.Family && dstString(&x) == dstString(r) &&
			x.Tos == r.Tos && x.Priority == prio
	})
}

// ours returns the installer's routes in the fake, in the installer's form.
func (f *fakeKernel) ours() []Route {
	out := []Route{}
	for _, r := range f.routes {
		if r.Table == f.table && int(r.Protocol) == f.proto {
			out = append(out, Route{Prefix: prefixOf(r.Dst, r.Family), NextHops: gateways(&r)})
		}
	}
	slices.SortFunc(out, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

// others returns every route of the fake that is not the installer's, described.
func (f *fakeKernel) others() []string {
	var out []string
	for _, r := range f.routes {
		if r.Table != f.table || int(r.Protocol) != f.proto {
			out = append(out, fmt.Sprintf("table %d proto %d %s", r.Table, r.Protocol, describe(&r)))
		}
	}
	return out
}

func (f *fakeKernel) takeCalls() []string {
	c := f.calls
	f.calls = nil
	return c
}

func prefixOf(n *net.IPNet, family ...int) netip.Prefix {
	fam := netlink.FAMILY_V4
	if len(family) > 0 {
		fam = family[0]
	}
	if n == nil {
		p, _ := prefixFromIPNet(fam, nil)
		return p
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func dstString(r *netlink.Route) string { return prefixOf(r.Dst, r.Family).String() }

func gateways(r *netlink.Route) []netip.Addr {
	var out []netip.Addr
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	if r.Gw != nil {
		add(r.Gw)
	}
	for _, nh := range r.MultiPath {
		add(nh.Gw)
	}
	return out
}

// describe formats a netlink route from its fields (never with %v on the struct).
func describe(r *netlink.Route) string {
	var b strings.Builder
	b.WriteString(dstString(r))
	if gws := gateways(r); len(gws) > 0 {
		b.WriteString(" via " + hopsString(gws))
	}
	if r.Priority != 0 && !(r.Family == netlink.FAMILY_V6 && r.Priority == ip6DefaultMetric) {
		fmt.Fprintf(&b, " metric %d", r.Priority)
	}
	if r.Tos != 0 {
		fmt.Fprintf(&b, " tos %d", r.Tos)
	}
	return b.String()
}

// parseRoute reads "PREFIX [via HOP[,HOP...]]".
func parseRoute(t testing.TB, s string) Route {
	t.Helper()
	fields := strings.Fields(s)
	r := Route{Prefix: netip.MustParsePrefix(fields[0])}
	if len(fields) == 3 && fields[1] == "via" {
		for _, h := range strings.Split(fields[2], ",") {
			r.NextHops = append(r.NextHops, netip.MustParseAddr(h))
		}
	} else if len(fields) != 1 {
		t.Fatalf("bad route %q", s)
	}
	return r
}

func parseRoutes(t testing.TB, ss ...string) []Route {
	t.Helper()
	out := []Route{}
	for _, s := range ss {
		out = append(out, parseRoute(t, s))
	}
	return out
}
