// Package route installs the prefixes bgpgw learned over BGP into the kernel routing table,
// toward their next hops, declaratively.
//
// The caller hands [Installer.Set] the whole desired set of routes; the installer compares it
// with the routes the kernel holds in its table tagged with its own rtm_protocol number and
// makes the difference: it adds what is missing, replaces what changed (an atomic replace, so
// there is no moment without a route) and deletes its routes that are no longer wanted. Routes
// tagged with another protocol (the kernel's, static ones, another routing daemon's) are never
// changed or deleted, even when they cover the same prefix.
//
// Where the kernel has nexthop objects (Linux 5.3 and later), routes go through them: one
// object per gateway, on the device through which the gateway is reached, and one group
// object per set of two gateways or more (ECMP); a route names its object by id. The objects
// are tagged with the installer's protocol too, which makes them its own: stale ones go like
// stale routes, and the objects of others are never touched. The routes through a group then
// follow a tunnel going down or coming back without a change of their own. When a gateway
// leaves every desired route (its tunnel failed), the installer takes it out first, before
// it reads the table: the routes through that gateway alone (as the last pass left them), in
// batches, then its object, which the kernel drops from the groups (their routes keep the
// other gateways). When the gateway comes back, its object is made again, a group whose
// routes all want it back gets its members replaced in one operation, and the routes through
// the gateway alone are added again, batched too (many to a netlink message). Where the
// kernel refuses nexthop objects, each route holds its gateways itself, with one netlink call
// per route changed; the installer logs which way it works, once.
//
// Nexthop objects belong to the network namespace, not to a table: one installer per protocol
// and namespace, or each would take the other's objects for stale ones. The kernel itself
// deletes an object, with its routes, when its device goes down or loses its carrier, and
// refuses to make one on a device without carrier: Set reports those gateways' routes as
// failed until they come back or the caller stops wanting them.
//
// It also watches link state ([LinkWatcher]) for the link health checks: events, not polling.
//
// This is the only package of bgpgw that talks to the kernel through netlink; netlink types
// stay inside it. vishvananda/netlink has no nexthop objects: those requests, and the route
// changes through them, go over a netlink socket of the installer's own (nlconn.go,
// nhwire.go).
package route

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netns"

	"github.com/bgpgw/bgpgw/pkg/model"
)

// Route is one prefix and the next hops it is routed to (bgpgw's own type,
// shared with the decision core).
type Route = model.Route

// Options configure an [Installer].
type Options struct {
	// Table is the kernel routing table; 0 means 254 (main).
	Table int
	// Protocol is the rtm_protocol number our routes are tagged with, and by which the
	// installer recognises them. Required: 5..255 (0..4 are reserved for the kernel).
	Protocol int
	// Netns, when set (a handle > 0, as returned by netns.Get, netns.GetFromName...), makes
	// the installer work in that network namespace instead of the current one. The caller
	// keeps ownership of the handle; it may close it once New returns.
	Netns netns.NsHandle
	// Logger receives one line per change; nil discards.
	Logger *slog.Logger

	// perRoute makes the installer route as on kernels without nexthop objects (tests and
	// the scale benchmark compare both ways).
	perRoute bool
}

// DefaultTable is the kernel's main routing table.
const DefaultTable = 254

// ErrClosed is returned by the methods of a closed [Installer].
var ErrClosed = errors.New("route installer closed")

// Installer keeps the kernel's routes of one protocol in one table equal to a desired set.
// Its methods are safe for concurrent use; calls are serialised.
type Installer struct {
	mu     sync.Mutex
	h      handle   // nil once closed
	nh     nhKernel // nil: per-route next hops only
	mode   nhMode   // how nh is used, decided by the first call that needs it
	nextID uint32   // the last object id given, within the installer's block
	// routeHint is the number of routes read last time: the next read's capacity.
	routeHint int
	// via holds the prefixes the last pass left routed through each of our single objects.
	via    map[uint32][]netip.Prefix
	table  int
	proto  int
	logger *slog.Logger
}

// New opens a netlink handle (in opts.Netns if set) and returns an installer using it.
// It does not touch any route: call [Installer.Flush] to remove stale routes of a previous run.
func New(opts Options) (*Installer, error) {
	if err := validate(&opts); err != nil {
		return nil, err
	}
	h, err := newNetlinkHandle(opts.Netns)
	if err != nil {
		return nil, fmt.Errorf("route: open netlink handle: %w", err)
	}
	i := newInstaller(opts, h)
	if !opts.perRoute {
		if i.nh, err = newNLKernel(opts.Netns); err != nil {
			h.close()
			return nil, fmt.Errorf("route: open netlink socket: %w", err)
		}
	}
	return i, nil
}

func validate(opts *Options) error {
	if opts.Table == 0 {
		opts.Table = DefaultTable
	}
	switch {
	case opts.Table < 0 || opts.Table > math.MaxUint32:
		return fmt.Errorf("route: table %d out of range 1..%d", opts.Table, uint32(math.MaxUint32))
	case opts.Table == 255:
		return fmt.Errorf("route: table 255 is the kernel's local table")
	}
	if opts.Protocol < 5 || opts.Protocol > 255 {
		return fmt.Errorf("route: protocol %d out of range 5..255 (0..4 are reserved for the kernel)", opts.Protocol)
	}
	return nil
}

// newInstaller takes already validated options.
func newInstaller(opts Options, h handle) *Installer {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Installer{
		h:      h,
		table:  opts.Table,
		proto:  opts.Protocol,
		logger: logger.With("table", opts.Table, "protocol", opts.Protocol),
	}
}

// Close releases the netlink handle. It leaves the routes in the kernel (call Flush first to
// remove them). Closing twice is harmless; other methods then return [ErrClosed].
func (i *Installer) Close() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.h != nil {
		i.h.close()
		i.h = nil
	}
	if i.nh != nil {
		i.nh.close()
		i.nh = nil
	}
}

// List returns our routes now in the kernel, sorted by prefix.
//
// If the kernel kept changing its table while it was being read, List returns what it read
// together with an error for which errors.Is(err, netlink.ErrDumpInterrupted) holds: the
// result may then be inconsistent.
func (i *Installer) List() ([]Route, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.h == nil {
		return nil, ErrClosed
	}
	if nh, err := i.useNexthops(); err != nil {
		return nil, err
	} else if nh {
		return i.listNH()
	}
	es, err := i.list()
	return routesOf(es), err
}

// Set makes the kernel hold exactly routes among our routes (those tagged with our protocol
// in our table): it adds the missing ones, replaces the changed ones and deletes ours that are
// not in routes. Routes of other protocols are never touched; a new route whose place in the
// table is taken by one of them is not installed and reported as an error.
//
// An invalid entry of routes (bad prefix, host bits set, duplicate prefix, no next hop, next
// hop of the wrong family or link-local) is reported as an error and, if its prefix can be
// told, the route the kernel holds for that prefix is left as it is.
//
// Set returns the routes installed after the pass, sorted by prefix, also when some changes
// failed, so that the caller can start the next pass from the truth. They are computed from
// the kernel's table read at the start of the pass and the kernel's answer to each change.
// The error joins every failure, each naming its prefix (or the nexthop object that could
// not be changed). If the table cannot be read, Set changes nothing (but for the fast path
// below) and returns nil and the error.
//
// Through nexthop objects, Set starts with the fast path: before it reads the table, it
// deletes the routes through every gateway that no entry of routes names, valid or not (those
// of invalid entries too), then that gateway's object, which removes it from its groups. A
// route moving from such a gateway to another is therefore absent from that deletion to its
// addition through its new gateway, later in the same pass (its old gateway had gone anyway);
// every other change is an atomic replace. Then it gives
// every wanted gateway its object on the device through which the kernel reaches it now
// (moving an existing object there in one replace if the device changed), every wanted ECMP
// set its group, makes the route changes, and deletes the objects of ours that no route uses.
func (i *Installer) Set(routes []Route) ([]Route, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.h == nil {
		return nil, ErrClosed
	}
	if nh, err := i.useNexthops(); err != nil {
		return nil, err
	} else if nh {
		return i.setNH(routes)
	}
	want, keep, errs := normalize(routes)

	cur, err := i.list()
	if err != nil {
		return nil, fmt.Errorf("route: read table %d: %w", i.table, err)
	}
	byPrefix := make(map[netip.Prefix][]entry)
	for _, e := range cur {
		byPrefix[e.Prefix] = append(byPrefix[e.Prefix], e)
	}

	prefixes := slices.SortedFunc(maps.Keys(want), comparePrefix)
	for _, pfx := range prefixes {
		r := want[pfx]
		es := byPrefix[pfx]
		p := slices.IndexFunc(es, entry.isPrimary)
		switch {
		case p >= 0 && es[p].matches(r):
			// already right
		case p >= 0:
			if err := i.h.routeReplace(i.toKernel(r)); err != nil {
				errs = append(errs, fmt.Errorf("route %s: replace %s with %s: %w", r.Prefix, es[p].Route, r, err))
				continue
			}
			i.logger.Info("route replaced", "prefix", r.Prefix.String(), "old", hopsString(es[p].NextHops), "via", hopsString(r.NextHops))
			es[p] = primaryEntry(r)
		default:
			if err := i.h.routeAdd(i.toKernel(r)); err != nil {
				if isExist(err) {
					err = fmt.Errorf("the table already holds a route for this prefix not tagged with protocol %d: %w", i.proto, err)
				}
				errs = append(errs, fmt.Errorf("route %s: add %s: %w", r.Prefix, r, err))
				continue
			}
			i.logger.Info("route added", "prefix", r.Prefix.String(), "via", hopsString(r.NextHops))
			es = append(es, primaryEntry(r))
			p = len(es) - 1
		}
		// The prefix is now routed as wanted: drop any other route of ours for it (one left
		// by another version with another metric or tos, say).
		es, _, errs = i.deleteAll(es, func(k int) bool { return k != p }, errs)
		byPrefix[pfx] = es
	}

	stale := make([]netip.Prefix, 0)
	for pfx := range byPrefix {
		if _, ok := want[pfx]; !ok && !keep[pfx] {
			stale = append(stale, pfx)
		}
	}
	slices.SortFunc(stale, comparePrefix)
	for _, pfx := range stale {
		byPrefix[pfx], _, errs = i.deleteAll(byPrefix[pfx], func(int) bool { return true }, errs)
	}

	var out []entry
	for _, es := range byPrefix {
		out = append(out, es...)
	}
	return routesOf(out), errors.Join(errs...)
}

// Flush deletes all our routes from the kernel and returns how many it deleted: at start the
// stale ones of a previous run, at exit all of them. Through nexthop objects, it then deletes
// all our objects.
func (i *Installer) Flush() (int, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.h == nil {
		return 0, ErrClosed
	}
	if nh, err := i.useNexthops(); err != nil {
		return 0, err
	} else if nh {
		return i.flushNH()
	}
	es, err := i.list()
	var errs []error
	if err != nil {
		if !isDumpInterrupted(err) {
			return 0, fmt.Errorf("route: read table %d: %w", i.table, err)
		}
		// Delete what could be read; the error tells the caller that some may be left.
		errs = append(errs, fmt.Errorf("route: read table %d: %w", i.table, err))
	}
	slices.SortFunc(es, compareEntry)
	_, n, errs := i.deleteAll(es, func(int) bool { return true }, errs)
	return n, errors.Join(errs...)
}

// deleteAll deletes the entries of es selected by del and returns those left and how many
// it deleted. A route found already gone is dropped from es without an error.
func (i *Installer) deleteAll(es []entry, del func(k int) bool, errs []error) (left []entry, n int, _ []error) {
	for k, e := range es {
		if !del(k) {
			left = append(left, e)
			continue
		}
		err := i.h.routeDel(i.toKernelDel(e))
		switch {
		case err == nil:
			n++
			i.logger.Info("route deleted", "prefix", e.Prefix.String(), "via", hopsString(e.NextHops))
		case isNotFound(err):
			i.logger.Debug("route to delete already gone", "prefix", e.Prefix.String())
		default:
			errs = append(errs, fmt.Errorf("route %s: delete %s: %w", e.Prefix, e.Route, err))
			left = append(left, e)
		}
	}
	return left, n, errs
}

// normalize checks the desired routes and returns them by prefix with sorted, deduplicated
// next hops, the prefixes of invalid entries (whose kernel route is to be kept as it is), and
// an error per invalid entry.
func normalize(routes []Route) (map[netip.Prefix]Route, map[netip.Prefix]bool, []error) {
	want := make(map[netip.Prefix]Route, len(routes))
	keep := make(map[netip.Prefix]bool)
	var errs []error
	for k, r := range routes {
		if !r.Prefix.IsValid() {
			errs = append(errs, fmt.Errorf("route #%d: invalid prefix", k))
			continue
		}
		pfx := r.Prefix.Masked()
		if keep[pfx] {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Prefix, errDuplicate))
			continue
		}
		if _, dup := want[pfx]; dup {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Prefix, errDuplicate))
			delete(want, pfx)
			keep[pfx] = true
			continue
		}
		nr, err := normalizeRoute(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r.Prefix, err))
			keep[pfx] = true
			continue
		}
		want[pfx] = nr
	}
	return want, keep, errs
}

var errDuplicate = errors.New("prefix given more than once")

func normalizeRoute(r Route) (Route, error) {
	if r.Prefix != r.Prefix.Masked() {
		return Route{}, fmt.Errorf("host bits set (the prefix is %s)", r.Prefix.Masked())
	}
	if len(r.NextHops) == 0 {
		return Route{}, errors.New("no next hop")
	}
	is4 := r.Prefix.Addr().Is4()
	hops := make([]netip.Addr, 0, len(r.NextHops))
	for _, nh := range r.NextHops {
		if is4 {
			nh = nh.Unmap()
		}
		switch {
		case !nh.IsValid():
			return Route{}, errors.New("invalid next hop")
		case nh.Is4() != is4:
			return Route{}, fmt.Errorf("next hop %s is not of the prefix's address family", nh)
		case nh.Zone() != "" || (nh.Is6() && nh.IsLinkLocalUnicast()):
			// IPv4 link-local (169.254/16, the usual tunnel inside
			// addresses) resolves through the connected route of the
			// tunnel's subnet; IPv6 link-local needs a device.
			return Route{}, fmt.Errorf("IPv6 link-local next hop %s needs a device, which is not supported", nh)
		case nh.IsUnspecified() || nh.IsMulticast() || nh.IsLoopback():
			return Route{}, fmt.Errorf("next hop %s is not a unicast gateway address", nh)
		}
		hops = append(hops, nh)
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return Route{Prefix: r.Prefix, NextHops: slices.Compact(hops)}, nil
}

// routesOf returns the routes of es sorted by prefix then next hops.
func routesOf(es []entry) []Route {
	slices.SortFunc(es, compareEntry)
	out := make([]Route, 0, len(es))
	for _, e := range es {
		out = append(out, e.Route)
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func compareEntry(a, b entry) int {
	if c := comparePrefix(a.Prefix, b.Prefix); c != 0 {
		return c
	}
	if c := a.priority - b.priority; c != 0 {
		return c
	}
	if c := a.tos - b.tos; c != 0 {
		return c
	}
	return slices.CompareFunc(a.NextHops, b.NextHops, netip.Addr.Compare)
}

func hopsString(hops []netip.Addr) string {
	s := make([]string, len(hops))
	for k, h := range hops {
		s[k] = h.String()
	}
	return strings.Join(s, ",")
}
