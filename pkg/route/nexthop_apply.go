package route

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// ensureGroups gives every wanted set of two gateways or more a group of their objects: one
// of ours with exactly these members if there is one, else a new one. Before that, a group of
// ours whose routes all want one set (a group that lost a member when its gateway went, now
// wanted whole again; or ECMP routes that now want fewer gateways, one or more) gets its
// members replaced by that set's in one operation, which moves all its routes at once.
func (p *nhPass) ensureGroups(rows []row) {
	var groups []uint32
	byMembers := map[string][]uint32{}
	for _, id := range p.ourIDs() {
		if o := p.all[id]; o.isGroup() && !o.odd {
			groups = append(groups, id)
			k := membersKey(o.group)
			byMembers[k] = append(byMembers[k], id)
		}
	}
	// The wanted sets: of one gateway too while there are groups to reshape.
	sets := map[string][]netip.Addr{}
	var last []netip.Addr
	for _, rw := range rows {
		if rw.want == nil || len(rw.want.NextHops) < 2 && len(groups) == 0 || slices.Equal(rw.want.NextHops, last) {
			continue
		}
		last = rw.want.NextHops
		if _, ok := sets[string(p.setKey(last))]; !ok {
			sets[string(p.key)] = last
		}
	}
	if len(sets) == 0 {
		return
	}
	// What the routes through each of our groups want: one set for all, or mixed.
	type use struct {
		n     int
		key   string
		mixed bool
	}
	uses := map[uint32]*use{}
	for _, rw := range rows {
		for _, r := range rw.cur {
			o, ok := p.all[r.nhid]
			if r.nhid == 0 || !ok || !p.ours(o) || !o.isGroup() {
				continue
			}
			u := uses[r.nhid]
			if u == nil {
				u = &use{}
				uses[r.nhid] = u
			}
			u.n++
			if rw.want == nil || !r.isPrimary() {
				u.mixed = true
				continue
			}
			if k := p.setKey(rw.want.NextHops); u.n == 1 {
				u.key = string(k)
			} else if u.key != string(k) {
				u.mixed = true
			}
		}
	}
	keys := slices.Sorted(maps.Keys(sets))
	members := map[string][]uint32{}
	for _, k := range keys {
		ids, err := p.membersOf(sets[k])
		if err != nil {
			if len(sets[k]) >= 2 {
				p.badSet[k] = err
			}
			continue
		}
		members[k] = ids
	}
	for _, id := range groups {
		u := uses[id]
		if u == nil || u.mixed {
			continue
		}
		ids, ok := members[u.key]
		if !ok || membersKey(p.all[id].group) == membersKey(ids) {
			continue
		}
		old, g := p.all[id], p.all[id]
		g.group = ids
		if err := p.i.nh.newObject(g, true); err != nil {
			p.errs = append(p.errs, fmt.Errorf("nexthop group %d: replace its members with %s: %w", id, hopsString(sets[u.key]), err))
			continue
		}
		p.all[id] = g
		delete(p.hops, id)
		p.i.logger.Info("nexthop group members replaced", "id", id, "old", idsString(old.group), "via", hopsString(sets[u.key]), "routes", u.n)
		k := membersKey(ids)
		byMembers[k] = append(byMembers[k], id)
	}
	for _, k := range keys {
		ids, ok := members[k]
		if !ok || len(ids) < 2 {
			continue
		}
		// Of the groups with these members, the one with the most routes.
		best := uint32(0)
		for _, id := range byMembers[membersKey(ids)] {
			if membersKey(p.all[id].group) != membersKey(ids) {
				continue // reshaped since
			}
			if best == 0 || uses[id] != nil && (uses[best] == nil || uses[id].n > uses[best].n) {
				best = id
			}
		}
		if best != 0 {
			p.group[k] = best
			continue
		}
		o, err := p.create(nhObject{group: ids})
		if err != nil {
			p.badSet[k] = fmt.Errorf("gateways %s: create their nexthop group: %w", hopsString(sets[k]), err)
			continue
		}
		p.group[k] = o.id
		p.i.logger.Info("nexthop group created", "id", o.id, "via", hopsString(sets[k]), "members", idsString(ids))
	}
}

func idsString(ids []uint32) string {
	b := make([]byte, 0, 11*len(ids))
	for k, id := range ids {
		if k > 0 {
			b = append(b, '/')
		}
		b = fmt.Appendf(b, "%d", id)
	}
	return string(b)
}

// target returns the object a route to hops goes through, or why there is none.
func (p *nhPass) target(hops []netip.Addr) (uint32, error) {
	for _, g := range hops {
		if err := p.bad[g]; err != nil {
			return 0, err
		}
	}
	if len(hops) == 1 {
		return p.single[hops[0]], nil
	}
	k := p.setKey(hops)
	if err := p.badSet[string(k)]; err != nil {
		return 0, err
	}
	if id := p.group[string(k)]; id != 0 {
		return id, nil
	}
	return 0, errors.New("no nexthop group for its gateways") // not reached: ensureGroups gives one
}

// current tells whether a route through object id may stay: the object is ours and of the
// installer's kind, and so are its members, none left on a device no longer its gateway's.
func (p *nhPass) current(id uint32) bool {
	o, ok := p.all[id]
	if !ok || p.stale[id] {
		return false
	}
	if !o.isGroup() {
		return p.isSingle(o)
	}
	for _, m := range o.group {
		if mo, ok := p.all[m]; !ok || !p.isSingle(mo) || p.stale[m] {
			return false
		}
	}
	return p.ours(o) && !o.odd && len(o.group) > 0
}

// matches tells whether r is what the installer wants for a route to hops: through one of
// our current objects whose gateways are hops. It need not be the object the installer would
// pick: a group left with one member serves the routes that want that one gateway.
func (p *nhPass) matches(r kroute, hops []netip.Addr) bool {
	return r.nhid != 0 && !r.extra && r.typ == rtnUnicast && p.current(r.nhid) && slices.Equal(p.hopsOf(r.nhid), hops)
}

// hopsOf returns the gateways of object id, sorted (of any protocol: for reading).
func (p *nhPass) hopsOf(id uint32) []netip.Addr {
	if h, ok := p.hops[id]; ok {
		return h
	}
	o := p.all[id]
	var h []netip.Addr
	if o.isGroup() {
		for _, m := range o.group {
			if g := p.all[m].gw; g.IsValid() {
				h = append(h, g)
			}
		}
		slices.SortFunc(h, netip.Addr.Compare)
	} else if o.gw.IsValid() {
		h = []netip.Addr{o.gw}
	}
	p.hops[id] = h
	return h
}

// routesOf returns rs as routes, sorted, with the gateways of their objects (copied: the
// routes returned share nothing with the pass).
func (p *nhPass) routesOf(rs []kroute) []Route {
	es := make([]entry, len(rs))
	n := 0
	for k, r := range rs {
		es[k] = r.entry
		if r.nhid != 0 {
			es[k].NextHops = p.hopsOf(r.nhid)
		}
		n += len(es[k].NextHops)
	}
	hops := make([]netip.Addr, 0, n)
	for k := range es {
		start := len(hops)
		hops = append(hops, es[k].NextHops...)
		es[k].NextHops = hops[start:len(hops):len(hops)]
	}
	return routesOf(es)
}

func primaryIndex(rs []kroute) int {
	return slices.IndexFunc(rs, func(r kroute) bool { return r.isPrimary() })
}

// applyRoutes adds or replaces the wanted routes that are not right, then deletes our other
// routes of their prefixes and the routes of prefixes no longer wanted (and not kept), and
// updates the rows with the kernel's answers.
func (p *nhPass) applyRoutes(rows []row) {
	i := p.i
	var (
		changes  []change
		at       []int // the row of each change
		lastHops []netip.Addr
		lastID   uint32
		lastErr  error
	)
	for k := range rows {
		rw := &rows[k]
		if rw.want == nil {
			continue
		}
		hops := rw.want.NextHops
		if lastHops == nil || !slices.Equal(hops, lastHops) {
			lastHops = hops
			lastID, lastErr = p.target(hops)
		}
		if lastErr != nil {
			p.errs = append(p.errs, fmt.Errorf("route %s: %w", rw.want.Prefix, lastErr))
			rw.failed = true
			continue
		}
		j := primaryIndex(rw.cur)
		if j >= 0 && p.matches(rw.cur[j], hops) {
			continue
		}
		op := opAdd
		if j >= 0 {
			op = opReplace
		}
		changes, at = append(changes, change{op: op, r: primaryEntry(*rw.want), nhid: lastID}), append(at, k)
	}
	for n, err := range i.nh.apply(i.table, i.proto, changes) {
		c, rw := changes[n], &rows[at[n]]
		r := *rw.want
		j := primaryIndex(rw.cur)
		if err != nil {
			rw.failed = true
			if c.op == opReplace {
				old := Route{Prefix: r.Prefix, NextHops: p.routesOf(rw.cur[j : j+1])[0].NextHops}
				p.errs = append(p.errs, fmt.Errorf("route %s: replace %s with %s: %w", r.Prefix, old, r, err))
				continue
			}
			if isExist(err) {
				err = fmt.Errorf("the table already holds a route for this prefix not tagged with protocol %d: %w", i.proto, err)
			}
			p.errs = append(p.errs, fmt.Errorf("route %s: add %s: %w", r.Prefix, r, err))
			continue
		}
		nr := kroute{entry: c.r, table: i.table, proto: i.proto, nhid: c.nhid}
		if j >= 0 {
			i.logger.Info("route replaced", "prefix", r.Prefix.String(), "old", hopsString(p.routesOf(rw.cur[j : j+1])[0].NextHops), "via", hopsString(r.NextHops), "nhid", c.nhid)
			rw.cur = slices.Clone(rw.cur)
			rw.cur[j] = nr
		} else {
			i.logger.Info("route added", "prefix", r.Prefix.String(), "via", hopsString(r.NextHops), "nhid", c.nhid)
			rw.cur = append(rw.cur, nr) // a copy: the rows' slices have no room
		}
	}

	// Deletions: our other routes of a prefix now routed as wanted (left by another version
	// with another metric or tos, say), then the prefixes no longer wanted.
	type where struct{ row, k int }
	var (
		dels []change
		wh   []where
	)
	del := func(k int, sel func(j int) bool) {
		for j, r := range rows[k].cur {
			if sel(j) {
				dels, wh = append(dels, change{op: opDel, r: r.entry}), append(wh, where{k, j})
			}
		}
	}
	for k := range rows {
		rw := &rows[k]
		switch {
		case rw.want != nil && !rw.failed && len(rw.cur) > 1:
			j := primaryIndex(rw.cur)
			del(k, func(jj int) bool { return jj != j })
		case rw.want == nil && !rw.keep:
			del(k, func(int) bool { return true })
		}
	}
	gone := map[int][]int{}
	for n, err := range i.nh.apply(i.table, i.proto, dels) {
		w := wh[n]
		r := rows[w.row].cur[w.k]
		switch {
		case err == nil:
			gone[w.row] = append(gone[w.row], w.k)
			i.logger.Info("route deleted", "prefix", r.Prefix.String(), "via", hopsString(p.routesOf([]kroute{r})[0].NextHops))
		case isNotFound(err):
			gone[w.row] = append(gone[w.row], w.k)
			i.logger.Debug("route to delete already gone", "prefix", r.Prefix.String())
		default:
			p.errs = append(p.errs, fmt.Errorf("route %s: delete %s: %w", r.Prefix, p.routesOf([]kroute{r})[0], err))
		}
	}
	for k, js := range gone {
		var left []kroute
		for j, r := range rows[k].cur {
			if !slices.Contains(js, j) {
				left = append(left, r)
			}
		}
		rows[k].cur = left
	}
}

// collect deletes our objects that no route of ours goes through any more, groups first, and
// keeps the objects of the wanted gateways.
func (p *nhPass) collect(rows []row) {
	used := map[uint32]bool{}
	for _, rw := range rows {
		for _, r := range rw.cur {
			if r.nhid == 0 {
				continue
			}
			used[r.nhid] = true
			for _, m := range p.all[r.nhid].group {
				used[m] = true
			}
		}
	}
	for _, id := range p.single {
		used[id] = true
	}
	ids := p.ourIDs()
	slices.SortStableFunc(ids, func(a, b uint32) int {
		return boolInt(!p.all[a].isGroup()) - boolInt(!p.all[b].isGroup())
	})
	for _, id := range ids {
		if used[id] {
			continue
		}
		if err := p.i.nh.delObject(id); err != nil && !errors.Is(err, unix.ENOENT) {
			p.errs = append(p.errs, fmt.Errorf("nexthop object %d: delete: %w", id, err))
			continue
		}
		p.i.logger.Info("unused nexthop object deleted", "id", id, "via", hopsString(p.hopsOf(id)))
		delete(p.all, id)
	}
}
