package route

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nhMode is how the installer routes: undecided until its first call.
type nhMode int

const (
	modeUnknown nhMode = iota
	modeNexthops
	modePerRoute
)

const (
	// idAttempts bounds the ids tried when another user takes the chosen one meanwhile.
	idAttempts = 16
	// idBlock is the size of the block of object ids the installer allocates from: the
	// block starts at protocol << 24 (200: 3355443200), so ids are readable and stay clear
	// of other users' small ones. Ids taken by anyone are skipped.
	idBlock = 1 << 24
)

// useNexthops tells whether the installer routes through nexthop objects, deciding it the
// first time: the kernel must list nexthop objects and accept one of ours (a blackhole,
// deleted at once; refused only as long as the loopback device is down). A refusal
// (EOPNOTSUPP, EINVAL: Linux before 5.3, or nexthop objects not built) means per-route next
// hops for the installer's lifetime. Another error is returned, and the question asked again
// at the next call.
func (i *Installer) useNexthops() (bool, error) {
	switch {
	case i.nh == nil || i.mode == modePerRoute:
		return false, nil
	case i.mode == modeNexthops:
		return true, nil
	}
	err := i.probe()
	switch {
	case err == nil:
		i.mode = modeNexthops
		i.logger.Info("routes go through kernel nexthop objects: one per gateway, one group per set of ECMP gateways")
		return true, nil
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL):
		i.mode = modePerRoute
		i.logger.Info("the kernel refuses nexthop objects: each route holds its gateways, one netlink call per route changed", "error", err)
		return false, nil
	}
	return false, fmt.Errorf("route: try nexthop objects: %w", err)
}

func (i *Installer) probe() error {
	objs, err := i.readObjects()
	if err != nil && !isDumpInterrupted(err) {
		return err
	}
	p := i.newPass(objs)
	o, err := p.create(nhObject{family: unix.AF_INET, blackhole: true})
	if errors.Is(err, unix.ENETDOWN) {
		// A blackhole object lives on the loopback device, down in a namespace just made:
		// the kernel has nexthop objects, it only refused this one.
		return nil
	}
	if err != nil {
		return err
	}
	if err := i.nh.delObject(o.id); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete the probe object %d: %w", o.id, err)
	}
	return nil
}

// readObjects reads every nexthop object, retrying a dump interrupted by changes.
func (i *Installer) readObjects() ([]nhObject, error) {
	var (
		objs []nhObject
		err  error
	)
	for range dumpAttempts {
		objs, err = i.nh.objects()
		if !isDumpInterrupted(err) {
			break
		}
	}
	if err != nil {
		err = fmt.Errorf("list nexthop objects: %w", err)
	}
	return objs, err
}

// readRoutes reads our routes of both families, as list does.
func (i *Installer) readRoutes() ([]kroute, error) {
	var errs []error
	out := make([]kroute, 0, i.routeHint+i.routeHint/8+16)
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		start := len(out)
		var err error
		for range dumpAttempts {
			out, err = i.nh.routes(family, i.table, i.proto, out[:start])
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
	}
	i.routeHint = len(out)
	return out, errors.Join(errs...)
}

// listNH is List through objects.
func (i *Installer) listNH() ([]Route, error) {
	objs, err := i.readObjects()
	if err != nil && !isDumpInterrupted(err) {
		return nil, err
	}
	rs, rerr := i.readRoutes()
	p := i.newPass(objs)
	return p.routesOf(rs), errors.Join(err, rerr)
}

// namedGateways returns every next hop that an entry of routes names, valid or not.
func namedGateways(routes []Route) map[netip.Addr]bool {
	named := make(map[netip.Addr]bool)
	var last []netip.Addr
	for _, r := range routes {
		if slices.Equal(r.NextHops, last) {
			continue // the routes of a tunnel come together: one map access for them all
		}
		last = r.NextHops
		for _, nh := range r.NextHops {
			named[nh.Unmap()] = true
		}
	}
	return named
}

// setNH is Set through objects.
func (i *Installer) setNH(routes []Route) ([]Route, error) {
	// The fast path: a gateway that no entry names any more (its tunnel failed) goes first,
	// before the table is read.
	objs, err := i.readObjects()
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	p := i.newPass(objs)
	named := namedGateways(routes)
	dropped := 0
	for _, id := range p.ourIDs() {
		if o := p.all[id]; p.isSingle(o) && !named[o.gw] {
			i.dropGateway(p, o)
			dropped++
		}
	}

	want, keep, errs := normalize(routes)
	if dropped > 0 {
		// The groups that lost members changed: read them again.
		if objs, err = i.readObjects(); err != nil {
			return nil, fmt.Errorf("route: %w", err)
		}
		p.reset(objs)
	}
	cur, err := i.readRoutes()
	if err != nil {
		return nil, fmt.Errorf("route: read table %d: %w", i.table, err)
	}
	p.errs = append(errs, p.errs...)

	rows := makeRows(routes, want, keep, cur)
	p.ensureSingles(rows)
	p.ensureGroups(rows)
	p.applyRoutes(rows)
	p.collect(rows)

	out := make([]kroute, 0, len(cur))
	for _, rw := range rows {
		out = append(out, rw.cur...)
	}
	i.rememberVia(p, out)
	return p.routesOf(out), errors.Join(p.errs...)
}

// dropGateway takes out the routes through o, the object of a gateway that no route wants
// any more, and o itself. Deleting the object alone would do (the kernel deletes every route
// through it, and removes it from its groups), but for IPv4 the kernel then walks every route
// of the namespace to find them (fib_flush): 9-11 ms among 100,000 routes. So the routes that
// the last pass left through o go first, in batches, each delete naming o (RTA_NH_ID), so
// that a route that no longer goes through o stays: 900 of them in ~2 ms. The object's
// deletion, then, only leaves its groups, and takes any route the last pass did not know.
func (i *Installer) dropGateway(p *nhPass, o nhObject) {
	if pfxs := i.via[o.id]; len(pfxs) > 0 {
		dels := make([]change, len(pfxs))
		for k, pfx := range pfxs {
			f := familyOf(pfx)
			dels[k] = change{op: opDel, r: entry{Route: Route{Prefix: pfx}, family: f, priority: defaultPriority(f), typ: rtnUnicast}, nhid: o.id}
		}
		n := 0
		for k, err := range i.nh.apply(i.table, i.proto, dels) {
			switch {
			case err == nil:
				n++
			case !isNotFound(err):
				i.logger.Warn("route through a gateway gone: delete", "prefix", pfxs[k].String(), "via", o.gw.String(), "error", err)
			}
		}
		i.logger.Info("gateway gone: routes through it alone deleted", "via", o.gw.String(), "routes", n)
	}
	if err := i.nh.delObject(o.id); err != nil && !errors.Is(err, unix.ENOENT) {
		p.errs = append(p.errs, fmt.Errorf("nexthop object %d via %s: delete: %w", o.id, o.gw, err))
		return
	}
	i.logger.Info("gateway gone: nexthop object deleted", "id", o.id, "via", o.gw.String())
}

// rememberVia keeps, for the fast path of the next pass, the prefixes routed through each of
// our single objects.
func (i *Installer) rememberVia(p *nhPass, rs []kroute) {
	i.via = make(map[uint32][]netip.Prefix, len(i.via))
	for _, r := range rs {
		if r.nhid != 0 && r.isPrimary() && r.typ == rtnUnicast && p.isSingle(p.all[r.nhid]) {
			i.via[r.nhid] = append(i.via[r.nhid], r.Prefix)
		}
	}
}

// row is one prefix of a pass: the route wanted for it, if any, and our routes for it in the
// kernel.
type row struct {
	want   *Route
	keep   bool     // an invalid entry names the prefix: its routes stay as they are
	cur    []kroute // sorted by key; appending copies
	failed bool     // the wanted route could not be made: the routes stay as they are
}

// makeRows merges the wanted routes and ours in the kernel into rows sorted by prefix (sorted
// slices rather than maps: a pass over 100,000 routes spends its time there). The wanted
// routes are taken in the order of routes, which the caller usually sorts already.
func makeRows(routes []Route, want map[netip.Prefix]Route, keep map[netip.Prefix]bool, cur []kroute) []row {
	wanted := make([]Route, 0, len(want))
	for _, r := range routes {
		if w, ok := want[r.Prefix]; ok && r.Prefix.IsValid() {
			wanted = append(wanted, w) // each wanted prefix is given once, masked
		}
	}
	slices.SortFunc(wanted, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	slices.SortFunc(cur, func(a, b kroute) int { return compareEntry(a.entry, b.entry) })
	rows := make([]row, 0, max(len(wanted), len(cur)))
	w, c := 0, 0
	for w < len(wanted) || c < len(cur) {
		var pfx netip.Prefix
		switch {
		case c == len(cur):
			pfx = wanted[w].Prefix
		case w == len(wanted) || comparePrefix(cur[c].Prefix, wanted[w].Prefix) < 0:
			pfx = cur[c].Prefix
		default:
			pfx = wanted[w].Prefix
		}
		rw := row{keep: keep[pfx]}
		if w < len(wanted) && wanted[w].Prefix == pfx {
			rw.want = &wanted[w]
			w++
		}
		start := c
		for c < len(cur) && cur[c].Prefix == pfx {
			c++
		}
		rw.cur = cur[start:c:c]
		rows = append(rows, rw)
	}
	return rows
}

// flushNH is Flush through objects: our routes go first, in batches, then our objects (an
// IPv4 object deleted with routes through it makes the kernel walk every route of the
// namespace; one walk per object would take seconds among 100,000 routes).
func (i *Installer) flushNH() (int, error) {
	var errs []error
	rs, err := i.readRoutes()
	if err != nil {
		if !isDumpInterrupted(err) {
			return 0, fmt.Errorf("route: read table %d: %w", i.table, err)
		}
		// Delete what could be read; the error tells the caller that some may be left.
		errs = append(errs, fmt.Errorf("route: read table %d: %w", i.table, err))
	}
	slices.SortFunc(rs, func(a, b kroute) int { return compareEntry(a.entry, b.entry) })
	changes := make([]change, len(rs))
	for k, r := range rs {
		changes[k] = change{op: opDel, r: r.entry}
	}
	n := 0
	for k, err := range i.nh.apply(i.table, i.proto, changes) {
		switch {
		case err == nil:
			n++
			i.logger.Info("route deleted", "prefix", rs[k].Prefix.String())
		case !isNotFound(err):
			errs = append(errs, fmt.Errorf("route %s: delete: %w", rs[k].Prefix, err))
		}
	}
	i.via = nil
	objs, err := i.readObjects()
	if err != nil {
		if !isDumpInterrupted(err) {
			return n, errors.Join(append(errs, fmt.Errorf("route: %w", err))...)
		}
		errs = append(errs, fmt.Errorf("route: %w", err))
	}
	p := i.newPass(objs)
	ids := p.ourIDs()
	// Groups first: deleting their members first would rewrite them on the way.
	slices.SortStableFunc(ids, func(a, b uint32) int {
		return boolInt(!p.all[a].isGroup()) - boolInt(!p.all[b].isGroup())
	})
	for _, id := range ids {
		if err := i.nh.delObject(id); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("route: nexthop object %d: delete: %w", id, err))
			continue
		}
		i.logger.Info("nexthop object deleted", "id", id, "via", hopsString(p.hopsOf(id)))
	}
	return n, errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nhPass is the installer's view of the nexthop objects during one call.
type nhPass struct {
	i   *Installer
	all map[uint32]nhObject // every object of the namespace, as changed by the pass
	// single is the object of each wanted gateway; bad the reason a gateway has none.
	single map[netip.Addr]uint32
	bad    map[netip.Addr]error
	// group is the object of each wanted set of gateways (by setKey); badSet the reason a
	// set has none.
	group  map[string]uint32
	badSet map[string]error
	// stale marks our objects left on a device that is no longer their gateway's.
	stale map[uint32]bool
	hops  map[uint32][]netip.Addr // cache of hopsOf
	key   []byte
	errs  []error
}

func (i *Installer) newPass(objs []nhObject) *nhPass {
	p := &nhPass{i: i, single: map[netip.Addr]uint32{}, bad: map[netip.Addr]error{},
		group: map[string]uint32{}, badSet: map[string]error{}, stale: map[uint32]bool{}}
	p.reset(objs)
	return p
}

func (p *nhPass) reset(objs []nhObject) {
	p.all = make(map[uint32]nhObject, len(objs))
	for _, o := range objs {
		p.all[o.id] = o
	}
	p.hops = map[uint32][]netip.Addr{}
}

func (p *nhPass) ours(o nhObject) bool { return o.proto == p.i.proto }

// isSingle tells whether o is one of ours of the kind the installer makes per gateway.
func (p *nhPass) isSingle(o nhObject) bool {
	return p.ours(o) && !o.isGroup() && !o.blackhole && !o.odd && o.gw.IsValid()
}

// ourIDs returns the ids of our objects, sorted.
func (p *nhPass) ourIDs() []uint32 {
	var ids []uint32
	for id, o := range p.all {
		if p.ours(o) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// create allocates an id for o and creates it, trying the next free id if another user
// takes the chosen one meanwhile.
func (p *nhPass) create(o nhObject) (nhObject, error) {
	o.proto = p.i.proto
	for range idAttempts {
		o.id = p.freeID()
		err := p.i.nh.newObject(o, false)
		if err == nil {
			p.all[o.id] = o
			return o, nil
		}
		if !isExist(err) {
			return nhObject{}, err
		}
		p.all[o.id] = nhObject{id: o.id, proto: -1} // someone else's now
	}
	return nhObject{}, fmt.Errorf("no free nexthop id after %d attempts", idAttempts)
}

// freeID returns the next id of our block that no object holds, after the last one given.
func (p *nhPass) freeID() uint32 {
	base := uint32(p.i.proto) << 24
	for range idBlock {
		p.i.nextID = (p.i.nextID + 1) % idBlock
		id := base + p.i.nextID
		if _, taken := p.all[id]; !taken && id != 0 {
			return id
		}
	}
	return 0 // the kernel refuses id 0 for a create: reported as its error
}

// ensureSingles gives every wanted gateway an object on the device it is reached through.
func (p *nhPass) ensureSingles(rows []row) {
	gws := map[netip.Addr]bool{}
	var last netip.Addr
	for _, rw := range rows {
		if rw.want == nil {
			continue
		}
		for _, g := range rw.want.NextHops {
			if g != last {
				gws[g], last = true, g
			}
		}
	}
	byGW := map[netip.Addr][]uint32{}
	for _, id := range p.ourIDs() {
		if o := p.all[id]; p.isSingle(o) {
			byGW[o.gw] = append(byGW[o.gw], id)
		}
	}
	for _, g := range slices.SortedFunc(maps.Keys(gws), netip.Addr.Compare) {
		dev, err := p.i.nh.device(g)
		if err != nil {
			p.bad[g] = fmt.Errorf("gateway %s: %w", g, err)
			continue
		}
		for _, id := range byGW[g] {
			o := p.all[id]
			if o.oif != dev {
				// The gateway is now reached through another device (its address moved,
				// its interface was made again): the object, and every route and group
				// through it, follows in one replace.
				moved := o
				moved.oif = dev
				if err := p.i.nh.newObject(moved, true); err != nil {
					p.stale[id] = true
					p.errs = append(p.errs, fmt.Errorf("nexthop object %d via %s: move from device %d to %d: %w", id, g, o.oif, dev, err))
					continue
				}
				p.all[id] = moved
				p.i.logger.Info("nexthop object moved to the gateway's device", "id", id, "via", g.String(), "old_dev", o.oif, "dev", dev)
			}
			if p.single[g] == 0 {
				p.single[g] = id
			}
		}
		if p.single[g] != 0 {
			continue
		}
		o, err := p.create(nhObject{family: familyOfAddr(g), gw: g, oif: dev})
		if err != nil {
			p.bad[g] = fmt.Errorf("gateway %s: create its nexthop object: %w", g, err)
			continue
		}
		p.single[g] = o.id
		p.i.logger.Info("nexthop object created", "id", o.id, "via", g.String(), "dev", dev)
	}
}

func familyOfAddr(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// setKey returns the key of a set of gateways, in a buffer reused until the next call (a
// map lookup with string(key) does not allocate).
func (p *nhPass) setKey(gws []netip.Addr) []byte {
	p.key = p.key[:0]
	for _, g := range gws {
		b := g.As16()
		p.key = append(p.key, b[:]...)
	}
	return p.key
}

// membersOf returns the objects of gws' gateways, in the gateways' order (a group's members
// are listed in that order, as the multipath routes of old), or the reason one has none.
func (p *nhPass) membersOf(gws []netip.Addr) ([]uint32, error) {
	ids := make([]uint32, 0, len(gws))
	for _, g := range gws {
		if err := p.bad[g]; err != nil {
			return nil, err
		}
		ids = append(ids, p.single[g])
	}
	return ids, nil
}

// membersKey identifies a set of members, whatever their order.
func membersKey(ids []uint32) string { return idsString(slices.Sorted(slices.Values(ids))) }
