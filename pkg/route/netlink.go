package route

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// handle is the part of netlink the installer uses; tests replace it with a fake.
type handle interface {
	// routeList returns the routes of family in table tagged with protocol. Like netlink,
	// it may return routes together with an error wrapping netlink.ErrDumpInterrupted.
	routeList(family, table, protocol int) ([]netlink.Route, error)
	// routeAdd creates a route and fails with EEXIST if the table holds one with the same key.
	routeAdd(r *netlink.Route) error
	// routeReplace creates or atomically replaces the route with the same key.
	routeReplace(r *netlink.Route) error
	// routeDel deletes the route matching r's table, protocol, prefix, tos, metric and type.
	routeDel(r *netlink.Route) error
	close()
}

type netlinkHandle struct{ h *netlink.Handle }

func newNetlinkHandle(ns netns.NsHandle) (*netlinkHandle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if ns > 0 {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, err
	}
	return &netlinkHandle{h: h}, nil
}

func (n *netlinkHandle) routeList(family, table, protocol int) ([]netlink.Route, error) {
	// Not RouteListFiltered: it drops the routes read when the dump was interrupted.
	filter := &netlink.Route{Table: table, Protocol: netlink.RouteProtocol(protocol)}
	var out []netlink.Route
	err := n.h.RouteListFilteredIter(family, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL,
		func(r netlink.Route) bool {
			out = append(out, r)
			return true
		})
	return out, err
}

func (n *netlinkHandle) routeAdd(r *netlink.Route) error     { return n.h.RouteAdd(r) }
func (n *netlinkHandle) routeReplace(r *netlink.Route) error { return n.h.RouteReplace(r) }
func (n *netlinkHandle) routeDel(r *netlink.Route) error     { return n.h.RouteDel(r) }
func (n *netlinkHandle) close()                              { n.h.Close() }

const (
	rtnUnicast = 1 // RTN_UNICAST
	// ip6DefaultMetric is the metric the kernel gives an IPv6 route added without one
	// (IP6_RT_PRIO_USER); IPv4's is 0.
	ip6DefaultMetric = 1024
	// dumpAttempts bounds the reads of a table that keep being interrupted by changes.
	dumpAttempts = 5
)

// entry is one of our routes as the kernel holds it.
type entry struct {
	Route
	family   int
	priority int
	tos      int
	typ      int
	// extra is set when the route has something the installer never sets (a preferred
	// source, an encapsulation, a hop without gateway...): such a route is to be replaced.
	extra bool
}

func defaultPriority(family int) int {
	if family == netlink.FAMILY_V6 {
		return ip6DefaultMetric
	}
	return 0
}

// isPrimary tells whether e sits where the installer puts a route for its prefix: tos 0 and
// the default metric, so that a replace of the installer's route replaces e.
func (e entry) isPrimary() bool {
	return e.tos == 0 && e.priority == defaultPriority(e.family)
}

// matches tells whether e is exactly what the installer installs for r.
func (e entry) matches(r Route) bool {
	return !e.extra && e.typ == rtnUnicast && slices.Equal(e.NextHops, r.NextHops)
}

// primaryEntry is what the kernel holds after the installer added or replaced r.
func primaryEntry(r Route) entry {
	f := familyOf(r.Prefix)
	return entry{Route: r, family: f, priority: defaultPriority(f), typ: rtnUnicast}
}

func familyOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// list reads our routes of both families, retrying a read interrupted by changes. If reads
// keep being interrupted it returns what it read and an error wrapping
// netlink.ErrDumpInterrupted.
func (i *Installer) list() ([]entry, error) {
	var (
		out  []entry
		errs []error
	)
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var (
			rs  []netlink.Route
			err error
		)
		for range dumpAttempts {
			rs, err = i.h.routeList(family, i.table, i.proto)
			if !isDumpInterrupted(err) {
				break
			}
			i.logger.Debug("route dump interrupted, reading again", "family", familyName(family))
		}
		if err != nil {
			err = fmt.Errorf("list %s routes: %w", familyName(family), err)
			if !isDumpInterrupted(err) {
				return nil, err
			}
			errs = append(errs, err)
		}
		for k := range rs {
			e, ours, err := i.fromKernel(&rs[k])
			if err != nil {
				i.logger.Warn("ignoring a route the installer cannot read", "family", familyName(family), "error", err)
				continue
			}
			if ours {
				out = append(out, e)
			}
		}
	}
	return out, errors.Join(errs...)
}

func familyName(family int) string {
	if family == netlink.FAMILY_V6 {
		return "IPv6"
	}
	return "IPv4"
}

// fromKernel converts a route read from the kernel. ours is false for a route of another
// table or protocol (the dump filter should have dropped it already).
func (i *Installer) fromKernel(r *netlink.Route) (e entry, ours bool, err error) {
	if r.Table != i.table || int(r.Protocol) != i.proto {
		return entry{}, false, nil
	}
	if r.Family != netlink.FAMILY_V4 && r.Family != netlink.FAMILY_V6 {
		return entry{}, false, fmt.Errorf("unexpected address family %d", r.Family)
	}
	e = entry{family: r.Family, priority: r.Priority, tos: r.Tos, typ: r.Type}
	if e.Prefix, err = prefixFromIPNet(r.Family, r.Dst); err != nil {
		return entry{}, false, err
	}
	addHop := func(ip net.IP) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			e.extra = true
			return
		}
		if r.Family == netlink.FAMILY_V4 {
			a = a.Unmap()
		}
		e.NextHops = append(e.NextHops, a)
	}
	if r.Gw != nil {
		addHop(r.Gw)
	}
	if r.Via != nil {
		e.extra = true
		if v, ok := r.Via.(*netlink.Via); ok && v != nil {
			addHop(v.Addr)
		}
	}
	for _, nh := range r.MultiPath {
		if nh == nil {
			continue
		}
		switch {
		case nh.Gw != nil:
			addHop(nh.Gw)
		case nh.Via != nil:
			e.extra = true
			if v, ok := nh.Via.(*netlink.Via); ok && v != nil {
				addHop(v.Addr)
			}
		default:
			e.extra = true // a hop through a device only
		}
		if nh.Encap != nil || nh.NewDst != nil {
			e.extra = true
		}
	}
	if len(e.NextHops) == 0 || r.Src != nil || r.Encap != nil || r.NewDst != nil {
		e.extra = true
	}
	slices.SortFunc(e.NextHops, netip.Addr.Compare)
	return e, true, nil
}

func prefixFromIPNet(family int, n *net.IPNet) (netip.Prefix, error) {
	if n == nil || n.IP == nil { // the default route has no destination attribute
		if family == netlink.FAMILY_V4 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("bad destination address of %d bytes", len(n.IP))
	}
	if family == netlink.FAMILY_V4 {
		a = a.Unmap()
	}
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("bad destination mask for %s", a)
	}
	return netip.PrefixFrom(a, ones), nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// toKernel is the route the installer adds or replaces for r.
func (i *Installer) toKernel(r Route) *netlink.Route {
	nr := &netlink.Route{
		Dst:      ipNet(r.Prefix),
		Family:   familyOf(r.Prefix),
		Table:    i.table,
		Protocol: netlink.RouteProtocol(i.proto),
		Type:     rtnUnicast,
	}
	if len(r.NextHops) == 1 {
		nr.Gw = r.NextHops[0].AsSlice()
		return nr
	}
	for _, nh := range r.NextHops {
		nr.MultiPath = append(nr.MultiPath, &netlink.NexthopInfo{Gw: nh.AsSlice()})
	}
	return nr
}

// toKernelDel is the request deleting e and nothing else: table and protocol are always set.
func (i *Installer) toKernelDel(e entry) *netlink.Route {
	return &netlink.Route{
		Dst:      ipNet(e.Prefix),
		Family:   e.family,
		Table:    i.table,
		Protocol: netlink.RouteProtocol(i.proto),
		Priority: e.priority,
		Tos:      e.tos,
		Type:     e.typ,
	}
}

func isDumpInterrupted(err error) bool { return errors.Is(err, netlink.ErrDumpInterrupted) }
func isExist(err error) bool           { return errors.Is(err, syscall.EEXIST) }
func isNotFound(err error) bool        { return errors.Is(err, syscall.ESRCH) }
