package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// SetAnnouncements implements Speaker.
//
// The order of the steps is what keeps every peer correct at every moment:
//  1. a peer that loses everything has its gate closed and one soft reset
//     out, before anything else: the quickest withdrawal GoBGP has. Its
//     gate stays closed, and its export set as it was, until it is wanted
//     again (park.go);
//  2. a prefix joins a peer's export set, and a closed gate opens, before
//     its path is added (so the first UPDATE already reaches the peer);
//  3. a path that a peer keeping other prefixes had is deleted: GoBGP
//     sends the withdrawal to every established peer, whatever its export
//     policy says (a peer ignores a withdrawal of a prefix it never got);
//     a path only emptied peers had is parked instead;
//  4. the export sets shrink, and peers whose set changed for paths that
//     stay get a soft reset out.
func (a *GoBGP) SetAnnouncements(ctx context.Context, desired map[string][]Announcement) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	errs := a.finishDeferred()
	known := desired // the caller's map is never changed
	for peer := range desired {
		if _, ok := a.peers[peer]; !ok {
			errs = append(errs, fmt.Errorf("announce to %s: no such peer", peer))
			if len(known) == len(desired) {
				known = maps.Clone(desired)
			}
			delete(known, peer)
		}
	}
	desired = known
	// Peers that held something and are given nothing lose everything:
	// found from the peer lists alone, their gates close before any
	// per-prefix work, even building the RIB (park.go).
	emptied := emptiedPeers(a.holding, wantedPeers(desired, nil))
	gates, gerrs := a.closeGates(ctx, emptied)
	errs = append(errs, gerrs...)
	want, conflicts := buildRIB(desired)
	for _, c := range conflicts {
		errs = append(errs, fmt.Errorf("announce %s: peers %s and %s want different attributes; one path per prefix", c.prefix, c.peers[0], c.peers[1]))
	}
	wanted := wantedPeers(desired, conflicts)
	if len(emptied) == 0 {
		errs = append(errs, a.apply(ctx, want, wanted, gates)...)
		return errors.Join(errs...)
	}
	// The withdrawal is queued in GoBGP; the rest is bookkeeping that
	// would take the CPU from the UPDATEs going out (~10 ms at 10,000
	// prefixes on 2 vCPUs): it runs after settleFor, or at the next call.
	// So does the signal, which has the daemon read the RIBs back. (What
	// else the call changes, for other peers, waits as long: a failover
	// moves nothing to the surviving tunnels, they announce already.)
	a.deferBookkeeping(func() []error {
		errs := a.apply(context.Background(), want, wanted, gates)
		a.signal()
		return errs
	})
	return errors.Join(errs...)
}

// apply is the part of SetAnnouncements after the emptied peers' gates
// are closed (gates says which closed). Caller holds a.mu.
func (a *GoBGP) apply(ctx context.Context, want map[netip.Prefix]*ribEntry, wanted map[string]bool, gates gateResult) []error {
	var errs []error
	p := diff(a.rib, want)
	// A peer losing everything whose gate is not closed (closing failed, or
	// all its announcements lost a conflict) is withdrawn from the slow
	// way: its paths are not parked (DeletePath withdraws them), its export
	// set shrinks, and a soft reset sends the rest. So is one whose soft
	// reset failed behind a closed gate (a second soft reset).
	closed := func(peer string) bool { return slices.Contains(gates.closed, peer) }
	slow := slices.DeleteFunc(slices.Clone(p.emptied), closed)
	p.emptied = slices.DeleteFunc(p.emptied, func(peer string) bool { return !closed(peer) })
	p.refresh = union(p.refresh, slow, gates.notReset)

	reopen := a.reopening(wanted)
	opened := map[string]bool{}
	for _, peer := range reopen {
		left := a.gateClosed[peer]
		stale, add := splitStale(left, prefixesOf(want, peer), p.listAdd[peer])
		p.listAdd[peer] = add
		if err := a.editOutSet(ctx, peer, stale, false); err != nil {
			errs = append(errs, err)
			continue // the gate stays closed; the next call retries
		}
		a.gateClosed[peer] = nil
		opened[peer] = true
	}
	for _, peer := range sortedKeys(p.listAdd) {
		if err := a.editOutSet(ctx, peer, p.listAdd[peer], true); err != nil {
			errs = append(errs, err)
		}
	}
	if len(opened) > 0 {
		peers := sortedKeys(opened)
		if err := a.setGates(ctx, peers, true); err != nil {
			errs = append(errs, err) // still closed, nothing stale: the next call retries
		} else {
			for _, peer := range peers {
				delete(a.gateClosed, peer)
			}
			// Paths the peers get back unchanged go out with a soft reset.
			p.refresh = union(p.refresh, peers)
		}
	}
	if len(p.upserts) > 0 {
		paths := make([]*apiutil.Path, 0, len(p.upserts))
		for _, ann := range p.upserts {
			paths = append(paths, a.path(ann))
		}
		if _, err := a.s.AddPath(apiutil.AddPathRequest{Paths: paths}); err != nil {
			errs = append(errs, fmt.Errorf("announce %d prefixes: %w", len(paths), err))
		}
	}
	now := a.clock.Now()
	park, del := splitDeletes(a.rib, p, now)
	if len(del) > 0 {
		if err := a.deletePaths(del); err != nil {
			// Park them instead (the sweeper tries again); the peers
			// that had them get a soft reset once their sets shrink.
			errs = append(errs, fmt.Errorf("withdraw %d prefixes: %w", len(del), err))
			for _, pfx := range del {
				e := a.rib[pfx]
				p.refresh = union(p.refresh, sortedKeys(e.peers))
				clear(e.peers)
				e.parked = now
				park[pfx] = e
			}
		}
	}
	for _, peer := range sortedKeys(p.listDel) {
		if _, closed := a.gateClosed[peer]; closed {
			a.gateClosed[peer] = append(a.gateClosed[peer], p.listDel[peer]...)
			continue // left in the set behind the closed gate
		}
		if err := a.editOutSet(ctx, peer, p.listDel[peer], false); err != nil {
			errs = append(errs, err)
		}
	}
	for _, peer := range p.refresh {
		if err := a.refreshOut(ctx, peer); err != nil {
			errs = append(errs, err)
		}
	}
	for pfx, e := range park {
		want[pfx] = e
	}
	a.rib = want
	a.holding = wanted
	if len(park) > 0 {
		a.scheduleSweep()
	}
	if len(p.upserts)+len(del)+len(p.refresh) > 0 {
		a.signal()
	}
	return errs
}

// refreshOut makes GoBGP re-run the export policy for one peer (soft reset
// out): what the policy now rejects is withdrawn, what it accepts is sent.
func (a *GoBGP) refreshOut(ctx context.Context, peer string) error {
	cfg, ok := a.peers[peer]
	if !ok {
		return nil
	}
	err := a.s.ResetPeer(ctx, &api.ResetPeerRequest{Address: cfg.Address.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT})
	if err != nil {
		return fmt.Errorf("peer %s: refresh announcements: %w", peer, err)
	}
	return nil
}

// setGates opens the gates of peers (takes their addresses out of the shut
// set) or closes them (puts them in: the export policy rejects everything
// for them), in one change of the set.
func (a *GoBGP) setGates(ctx context.Context, peers []string, open bool) error {
	var addrs []string
	for _, peer := range peers {
		if cfg, ok := a.peers[peer]; ok {
			addrs = append(addrs, hostPrefix(cfg.Address))
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	set := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: setShut, List: addrs}
	var err error
	if open {
		err = a.s.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set})
	} else {
		err = a.s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set})
	}
	if err != nil {
		return fmt.Errorf("peers %s: export gate: %w", strings.Join(peers, ", "), err)
	}
	return nil
}

func (a *GoBGP) editOutSet(ctx context.Context, peer string, prefixes []netip.Prefix, add bool) error {
	byFam := map[bool][]*api.Prefix{}
	for _, p := range prefixes {
		byFam[p.Addr().Is6()] = append(byFam[p.Addr().Is6()], apiPrefix(p, p.Bits()))
	}
	var errs []error
	for v6, list := range byFam {
		set := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: outSet(peer, v6), Prefixes: list}
		var err error
		if add {
			err = a.s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set})
		} else {
			err = a.s.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: update export set: %w", peer, err))
		}
	}
	return errors.Join(errs...)
}

// path builds the GoBGP path of a local announcement. Next hop "self":
// GoBGP puts the session's local address on eBGP.
func (a *GoBGP) path(ann Announcement) *apiutil.Path {
	nlri, _ := bgp.NewIPAddrPrefix(ann.Prefix)
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgp.RF_IPv4_UC
	if ann.Prefix.Addr().Is4() {
		nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		attrs = append(attrs, nh)
	} else {
		fam = bgp.RF_IPv6_UC
		mp, _ := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		attrs = append(attrs, mp)
	}
	// GoBGP prepends the local AS itself on eBGP; the prepends are the
	// extra copies, then comes the path a learned route arrived with.
	var segs []bgp.AsPathParamInterface
	if ann.Prepend > 0 {
		as := make([]uint32, ann.Prepend)
		for i := range as {
			as[i] = a.global.ASN
		}
		segs = append(segs, bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, as))
	}
	for _, seg := range ann.ASPath {
		t := uint8(bgp.BGP_ASPATH_ATTR_TYPE_SEQ)
		if seg.Set {
			t = bgp.BGP_ASPATH_ATTR_TYPE_SET
		}
		segs = append(segs, bgp.NewAs4PathParam(t, slices.Clone(seg.ASNs)))
	}
	if len(segs) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeAsPath(segs))
	}
	if ann.HasMED {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(ann.MED))
	}
	if len(ann.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(ann.Communities))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}
}
