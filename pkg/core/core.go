// Package core is bgpgw's decision logic: a pure function from what the
// daemon knows (configuration, drain state, what each session has learned)
// to what it wants (the announcements to every peer and the kernel routes).
// It does no I/O and keeps no clock; the daemon calls it on every change and
// hands the result to the BGP speaker and the route installer.
package core

import (
	"net/netip"
	"slices"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// Input is everything the decision depends on.
type Input struct {
	Config  *config.Config
	Drained bool
	// Learned holds, per tunnel whose session is established, the on-prem
	// prefixes accepted from it.
	Learned map[string][]netip.Prefix
}

// Output is the desired state.
type Output struct {
	Announcements map[string][]bgp.Announcement // per peer name
	Routes        []route.Route                 // kernel routes toward the tunnels
}

// Compute decides the announcements and routes.
//
//   - Every tunnel peer gets every configured cloud-side prefix.
//   - Cloud-side peers get the on-prem prefixes learned over the tunnels.
//   - The standby of an active-standby pair announces with an AS-path
//     prepend and a higher MED; the primary with MED 0.
//   - A drained instance announces with the GRACEFUL_SHUTDOWN community
//     (RFC 8326) and the prepend, so peers move away before anything is
//     withdrawn.
//   - Each learned prefix is routed toward every tunnel that carries it
//     (ECMP when several do).
func Compute(in Input) Output {
	c := in.Config
	attrs := bgp.Announcement{}
	if c.Instance.Mode == config.ActiveStandby {
		attrs.HasMED = true
		if c.Instance.Role == config.RoleStandby {
			attrs.Prepend = c.Standby.Prepend
			attrs.MED = c.Standby.MED
		}
	}
	if in.Drained {
		attrs.Prepend = max(attrs.Prepend, c.Standby.Prepend)
		attrs.Communities = []uint32{bgp.CommunityGracefulShutdown}
	}
	with := func(p netip.Prefix) bgp.Announcement {
		a := attrs
		a.Prefix = p
		a.Communities = slices.Clone(attrs.Communities)
		return a
	}

	out := Output{Announcements: map[string][]bgp.Announcement{}}
	for _, t := range c.Tunnels {
		anns := make([]bgp.Announcement, 0, len(c.Announce))
		for _, p := range c.Announce {
			anns = append(anns, with(p))
		}
		out.Announcements[t.Name] = anns
	}

	nextHops := map[netip.Prefix][]netip.Addr{}
	for _, t := range c.Tunnels {
		for _, p := range in.Learned[t.Name] {
			nextHops[p] = append(nextHops[p], t.InsideRemote)
		}
	}
	learned := make([]netip.Prefix, 0, len(nextHops))
	for p := range nextHops {
		learned = append(learned, p)
	}
	slices.SortFunc(learned, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	for _, p := range learned {
		hops := nextHops[p]
		slices.SortFunc(hops, netip.Addr.Compare)
		out.Routes = append(out.Routes, route.Route{Prefix: p, NextHops: slices.Compact(hops)})
	}
	for _, cp := range c.CloudPeers {
		anns := make([]bgp.Announcement, 0, len(learned))
		for _, p := range learned {
			if p.Addr().Is4() == cp.Address.Is4() {
				anns = append(anns, with(p))
			}
		}
		out.Announcements[cp.Name] = anns
	}
	return out
}
