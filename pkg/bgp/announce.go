package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// SetAnnouncements implements Speaker.
//
// The order of the steps is what keeps every peer correct at every moment:
// a prefix joins a peer's export set before its path is added (so the first
// UPDATE already reaches it), and a path no peer wants is deleted before it
// leaves the export sets (GoBGP runs withdrawals through the export policy,
// so the other order would leave the prefix stale on the peer).
func (a *GoBGP) SetAnnouncements(ctx context.Context, desired map[string][]Announcement) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for peer := range desired {
		if _, ok := a.peers[peer]; !ok {
			errs = append(errs, fmt.Errorf("announce to %s: no such peer", peer))
			delete(desired, peer)
		}
	}
	want, conflicts := buildRIB(desired)
	for _, c := range conflicts {
		errs = append(errs, fmt.Errorf("announce %s: peers %s and %s want different attributes; one path per prefix", c.prefix, c.peers[0], c.peers[1]))
	}
	p := diff(a.rib, want)

	for _, peer := range sortedKeys(p.listAdd) {
		if err := a.editOutSet(ctx, peer, p.listAdd[peer], true); err != nil {
			errs = append(errs, err)
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
	if len(p.deletes) > 0 {
		paths := make([]*apiutil.Path, 0, len(p.deletes))
		for _, pfx := range p.deletes {
			paths = append(paths, a.path(a.rib[pfx].ann))
		}
		if err := a.s.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d prefixes: %w", len(paths), err))
		}
	}
	for _, peer := range sortedKeys(p.listDel) {
		if err := a.editOutSet(ctx, peer, p.listDel[peer], false); err != nil {
			errs = append(errs, err)
		}
	}
	for _, peer := range p.refresh {
		cfg, ok := a.peers[peer]
		if !ok {
			continue
		}
		err := a.s.ResetPeer(ctx, &api.ResetPeerRequest{Address: cfg.Address.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT})
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: refresh announcements: %w", peer, err))
		}
	}
	a.rib = want
	if len(p.upserts)+len(p.deletes)+len(p.refresh) > 0 {
		a.signal()
	}
	return errors.Join(errs...)
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
	if ann.Prepend > 0 {
		// GoBGP prepends the local AS itself on eBGP; these are the extra copies.
		as := make([]uint32, ann.Prepend)
		for i := range as {
			as[i] = a.global.ASN
		}
		attrs = append(attrs, bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, as)}))
	}
	if ann.HasMED {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(ann.MED))
	}
	if len(ann.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(ann.Communities))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}
}
