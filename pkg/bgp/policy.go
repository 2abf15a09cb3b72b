package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v4/api"

	"github.com/bgpgw/bgpgw/pkg/filter"
)

// Policy layout (RFC 8212: both directions default to reject).
//
// Import, first match wins:
//  1. local routes (our own announcements) are accepted;
//  2. "never": default routes and split defaults, and every range of
//     Global.Never (filter.Rule: the range and its more-specifics, and
//     for a covering rule each covering prefix, one entry per length) are
//     rejected, whichever peer sends them;
//  3. per tunnel peer with max_as_path: from that neighbor AND an AS path
//     longer: rejected;
//  4. per tunnel peer: from that neighbor AND in its accept-list: accepted.
//
// GoBGP itself drops a route whose AS path holds the local AS.
//
// Export, first match wins:
//  1. to a neighbor in the shut set: rejected. The shut set holds the
//     sentinel 0.0.0.0/32, which no peer has, and the address of every
//     peer whose gate is closed: that rejects everything for the peer in
//     one step, which is how a peer that loses all its prefixes is
//     withdrawn from (see park.go), and closing many gates is one change
//     of one set. This statement comes first and tests only the neighbor,
//     so a closed gate costs no prefix lookup. (bgpgw's GoBGP tests a
//     statement's neighbor and route type before its prefix set:
//     third_party/gobgp/BGPGW.md);
//  2. per peer, to that neighbor AND a local route AND in the peer's export
//     set: accepted. The export sets are what SetAnnouncements keeps up to
//     date. GoBGP rejects an empty prefix set, so every set holds a
//     sentinel (0.0.0.0/32 or ::/128) that "never" keeps out of the RIB.

const (
	setNever4 = "never4"
	setNever6 = "never6"
)

var (
	sentinel4 = netip.MustParsePrefix("0.0.0.0/32")
	sentinel6 = netip.MustParsePrefix("::/128")
)

func nbrSet(peer string) string { return "nbr-" + peer }

// setShut is the neighbor set of the closed gates.
const setShut = "shut"

// hostPrefix is the neighbor-set entry of one address.
func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

var shutSentinel = hostPrefix(netip.IPv4Unspecified())

func outSet(peer string, v6 bool) string {
	if v6 {
		return "out6-" + peer
	}
	return "out4-" + peer
}

func inSet(peer string, v6 bool) string {
	if v6 {
		return "in6-" + peer
	}
	return "in4-" + peer
}

func apiPrefix(p netip.Prefix, maxLen int) *api.Prefix {
	return &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(maxLen)}
}

func prefixSet(name string, v6 bool, entries ...*api.Prefix) *api.DefinedSet {
	s := sentinel4
	if v6 {
		s = sentinel6
	}
	return &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX,
		Name:        name,
		Prefixes:    append([]*api.Prefix{apiPrefix(s, s.Bits())}, entries...),
	}
}

func anyOf(name string) *api.MatchSet {
	return &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name}
}

// policyRequest builds the whole policy for the current peers and RIB.
// Caller holds a.mu.
func (a *GoBGP) policyRequest() *api.SetPoliciesRequest {
	never := neverPrefixes(a.global.Never)
	req := &api.SetPoliciesRequest{DefinedSets: []*api.DefinedSet{
		prefixSet(setNever4, false, never[false]...),
		prefixSet(setNever6, true, never[true]...),
	}}
	accept := func(action api.RouteAction) *api.Actions { return &api.Actions{RouteAction: action} }
	imp := &api.Policy{Name: "bgpgw-import", Statements: []*api.Statement{
		{Name: "local", Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL}, Actions: accept(api.RouteAction_ROUTE_ACTION_ACCEPT)},
		{Name: "never4", Conditions: &api.Conditions{PrefixSet: anyOf(setNever4)}, Actions: accept(api.RouteAction_ROUTE_ACTION_REJECT)},
		{Name: "never6", Conditions: &api.Conditions{PrefixSet: anyOf(setNever6)}, Actions: accept(api.RouteAction_ROUTE_ACTION_REJECT)},
	}}
	exp := &api.Policy{Name: "bgpgw-export"}

	out := map[string]map[bool][]*api.Prefix{}
	for pfx, e := range a.rib {
		for peer := range e.peers {
			if out[peer] == nil {
				out[peer] = map[bool][]*api.Prefix{}
			}
			v6 := pfx.Addr().Is6()
			out[peer][v6] = append(out[peer][v6], apiPrefix(pfx, pfx.Bits()))
		}
	}
	req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR,
		Name:        setShut,
		List:        []string{shutSentinel},
	})
	shut := []*api.Statement{{
		Name:       "shut",
		Conditions: &api.Conditions{NeighborSet: anyOf(setShut)},
		Actions:    accept(api.RouteAction_ROUTE_ACTION_REJECT),
	}}
	for _, name := range sortedKeys(a.peers) {
		p := a.peers[name]
		req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR,
			Name:        nbrSet(name),
			List:        []string{hostPrefix(p.Address)},
		})
		if p.Kind == KindTunnel && p.MaxASPath > 0 {
			imp.Statements = append(imp.Statements, &api.Statement{
				Name: "aspath-" + name,
				Conditions: &api.Conditions{
					NeighborSet:  anyOf(nbrSet(name)),
					AsPathLength: &api.AsPathLength{Type: api.Comparison_COMPARISON_GE, Length: uint32(p.MaxASPath) + 1},
				},
				Actions: accept(api.RouteAction_ROUTE_ACTION_REJECT),
			})
		}
		for _, v6 := range []bool{false, true} {
			var in []*api.Prefix
			for _, r := range p.Accept {
				if r.Prefix.Addr().Is6() == v6 {
					in = append(in, apiPrefix(r.Prefix, r.MaxLen))
				}
			}
			req.DefinedSets = append(req.DefinedSets,
				prefixSet(inSet(name, v6), v6, in...),
				prefixSet(outSet(name, v6), v6, out[name][v6]...))
			fam := "4"
			if v6 {
				fam = "6"
			}
			if p.Kind == KindTunnel && len(in) > 0 {
				imp.Statements = append(imp.Statements, &api.Statement{
					Name:       fmt.Sprintf("in%s-%s", fam, name),
					Conditions: &api.Conditions{NeighborSet: anyOf(nbrSet(name)), PrefixSet: anyOf(inSet(name, v6))},
					Actions:    accept(api.RouteAction_ROUTE_ACTION_ACCEPT),
				})
			}
			exp.Statements = append(exp.Statements, &api.Statement{
				Name: fmt.Sprintf("out%s-%s", fam, name),
				Conditions: &api.Conditions{
					NeighborSet: anyOf(nbrSet(name)),
					PrefixSet:   anyOf(outSet(name, v6)),
					RouteType:   api.Conditions_ROUTE_TYPE_LOCAL,
				},
				Actions: accept(api.RouteAction_ROUTE_ACTION_ACCEPT),
			})
		}
	}
	exp.Statements = append(shut, exp.Statements...)
	req.Policies = []*api.Policy{imp}
	exportPolicies := []*api.Policy{}
	if len(exp.Statements) > 0 {
		req.Policies = append(req.Policies, exp)
		exportPolicies = []*api.Policy{{Name: exp.Name}}
	}
	req.Assignments = []*api.PolicyAssignment{
		{Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT, Policies: []*api.Policy{{Name: imp.Name}}, DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT},
		{Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT, Policies: exportPolicies, DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT},
	}
	return req
}

// neverPrefixes are the entries of the never sets, per family (true: IPv6):
// the default routes, split defaults and the sets' sentinels, then the rules.
func neverPrefixes(rules []filter.Rule) map[bool][]*api.Prefix {
	never := map[bool][]*api.Prefix{}
	for _, d := range []string{"0.0.0.0/0", "0.0.0.0/1", "128.0.0.0/1", "0.0.0.0/32", "::/0", "::/1", "8000::/1", "::/128"} {
		p := netip.MustParsePrefix(d)
		never[p.Addr().Is6()] = append(never[p.Addr().Is6()], apiPrefix(p, p.Bits()))
	}
	for _, r := range rules {
		v6 := r.Prefix.Addr().Is6()
		never[v6] = append(never[v6], apiPrefix(r.Prefix, r.Prefix.Addr().BitLen()))
		for _, l := range r.CoveringLengths() {
			c, _ := r.Prefix.Addr().Prefix(l)
			never[v6] = append(never[v6], apiPrefix(c, l))
		}
	}
	return never
}

// applyPolicies installs the policy for the current peers, then makes the
// established sessions re-evaluate what they hold and sent. Caller holds a.mu.
func (a *GoBGP) applyPolicies(ctx context.Context) error {
	req := a.policyRequest()
	if err := a.s.SetPolicies(ctx, req); err != nil {
		return fmt.Errorf("install BGP policy: %w", err)
	}
	// SetPolicies keeps the assignments it finds and ignores the ones in
	// the request: assign explicitly, or the default stays accept.
	for _, as := range req.Assignments {
		if err := a.s.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: as}); err != nil {
			return fmt.Errorf("assign BGP %s policy: %w", as.Direction, err)
		}
	}
	// Every gate is open and every export set exact again.
	clear(a.gateClosed)
	if len(a.peers) == 0 {
		return nil
	}
	if err := a.s.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_DIRECTION_BOTH}); err != nil {
		return fmt.Errorf("re-apply BGP policy to sessions: %w", err)
	}
	return nil
}

// SetNever implements Speaker: the prefixes never accepted from any peer
// change (a reload changed the announced prefixes); the sessions re-run
// their import policy (soft reset in), none is reset.
func (a *GoBGP) SetNever(ctx context.Context, never []filter.Rule) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runDeferred() // the policy is rebuilt from the applied state
	if slices.Equal(a.global.Never, never) {
		return nil
	}
	prev := a.global.Never
	a.global.Never = slices.Clone(never)
	if err := a.applyPolicies(ctx); err != nil {
		a.global.Never = prev
		return err
	}
	return nil
}
