package core

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// Output is the desired state at one moment.
type Output struct {
	Announcements map[string][]model.Announcement // per peer name; every peer has an entry
	Routes        []model.Route                   // kernel routes toward the tunnels
	ShutDown      []string                        // peers whose sessions must be held down (drained)
	// Resets are the BGP session resets decided so far, per peer (BFD
	// Down); apply those whose Gen is above the last one applied.
	Resets     map[string]Reset
	Drain      DrainState
	Role       config.Role
	InstanceOK bool
	Tunnels    []TunnelStatus
	// Self is what this instance tells its partner; Takeovers the devices
	// it takes over from the partner (config.Pair), sorted.
	Self      SelfState
	Takeovers []TakeoverStatus
	NextWake  time.Time // call Tick then Output again at this time; zero: not needed
}

// TunnelStatus explains why a tunnel does or does not carry traffic.
type TunnelStatus struct {
	Name     string
	Carrying bool
	Reason   string // why not, when not carrying
	Flaps    int
	HoldDown time.Time // hold-down end, when in the future
}

// Output computes the desired state at time now. It does not change c.
func (c *Core) Output(now time.Time) Output {
	cfg := c.cfg
	out := Output{Announcements: map[string][]model.Announcement{}, Drain: c.drain, Role: c.role,
		InstanceOK: c.instance.open(now)}

	attrs := model.Announcement{}
	if cfg.Pair.Takeover == config.TakeoverMED {
		attrs.HasMED, attrs.MED = true, config.TakeoverBaseMED // the survivor's MED 0 wins
	}
	if cfg.Instance.Mode == config.ActiveStandby {
		attrs.HasMED = true
		if c.role == config.RoleStandby {
			attrs.Prepend, attrs.MED = cfg.Standby.Prepend, cfg.Standby.MED
		}
	}
	if c.drain == Draining {
		attrs.Prepend = max(attrs.Prepend, cfg.Standby.Prepend)
		attrs.Communities = []uint32{model.CommunityGracefulShutdown}
	}
	with := func(p netip.Prefix) model.Announcement {
		a := attrs
		a.Prefix = p
		a.Communities = slices.Clone(attrs.Communities)
		return a
	}
	announcing := c.drain != Drained && out.InstanceOK

	best := map[netip.Prefix]*bestPath{}
	var taken []netip.Prefix // learned from a device taken over
	for _, tc := range cfg.Tunnels {
		t := c.tunnels[tc.Name]
		st := TunnelStatus{Name: tc.Name, Flaps: t.gate.flaps}
		if now.Before(t.gate.holdUntil) {
			st.HoldDown = t.gate.holdUntil
		}
		st.Carrying = t.gate.open(now)
		st.Reason = c.reason(now, t)
		out.Tunnels = append(out.Tunnels, st)
		anns := []model.Announcement{}
		if st.Carrying && announcing {
			for _, p := range cfg.Announce {
				anns = append(anns, with(p))
			}
			if c.taken(tc.Device) {
				anns = merge(anns, c.winning(cfg.Announce, with))
			}
		}
		out.Announcements[tc.Name] = anns
		if st.Carrying {
			for _, l := range t.learned {
				best[l.Prefix] = best[l.Prefix].add(l, tc.InsideRemote)
			}
			if c.taken(tc.Device) {
				taken = append(taken, model.Prefixes(t.learned)...)
			}
		}
	}
	learned := make([]netip.Prefix, 0, len(best))
	for p := range best {
		learned = append(learned, p)
	}
	slices.SortFunc(learned, comparePrefix)
	for _, p := range learned {
		hops := best[p].hops
		slices.SortFunc(hops, netip.Addr.Compare)
		out.Routes = append(out.Routes, model.Route{Prefix: p, NextHops: slices.Compact(hops)})
	}
	// What goes to the cloud side: the exportable best paths, and the
	// takeover routes of those learned from a device taken over.
	export := learned[:0:0]
	for _, p := range learned {
		if best[p].route.Exportable() {
			export = append(export, p)
		}
	}
	slices.SortFunc(taken, comparePrefix)
	taken = slices.DeleteFunc(slices.Compact(taken), func(p netip.Prefix) bool { return !best[p].route.Exportable() })
	withPath := func(p netip.Prefix) model.Announcement {
		a := with(p)
		a.ASPath = best[p].route.ASPath
		return a
	}
	for _, cp := range cfg.CloudPeers {
		anns := []model.Announcement{}
		if announcing {
			sameFamily := func(p netip.Prefix) bool { return p.Addr().Is4() == cp.Address.Is4() }
			for _, p := range export {
				if sameFamily(p) {
					anns = append(anns, withPath(p))
				}
			}
			mine := slices.DeleteFunc(slices.Clone(taken), func(p netip.Prefix) bool { return !sameFamily(p) })
			anns = merge(anns, c.winning(mine, withPath))
		}
		out.Announcements[cp.Name] = anns
	}
	if c.drain == Drained {
		out.ShutDown = cfg.PeerNames()
	} else {
		// A tunnel's session runs only while its CHILD_SA is installed.
		for _, tc := range cfg.Tunnels {
			if !c.tunnels[tc.Name].ipsecUp {
				out.ShutDown = append(out.ShutDown, tc.Name)
			}
		}
	}
	for peer, p := range c.bfd {
		_, tunnel := c.tunnels[peer]
		if p.reset.Gen > 0 && (tunnel || c.isCloudPeer(peer)) {
			if out.Resets == nil {
				out.Resets = map[string]Reset{}
			}
			out.Resets[peer] = p.reset
		}
	}
	c.pairOutput(&out)
	out.NextWake = c.nextWake(now)
	return out
}

// bestPath is where a learned prefix goes: the route with the shortest AS
// path (the first such in the configuration's order is passed on) and the
// tunnels that sent a path that short.
type bestPath struct {
	route model.Learned
	hops  []netip.Addr
}

// add considers route l from the tunnel peer at hop; b may be nil.
func (b *bestPath) add(l model.Learned, hop netip.Addr) *bestPath {
	n := model.PathLen(l.ASPath)
	switch {
	case b == nil:
		return &bestPath{route: l, hops: []netip.Addr{hop}}
	case n < model.PathLen(b.route.ASPath):
		b.route, b.hops = l, append(b.hops[:0], hop)
	case n == model.PathLen(b.route.ASPath):
		b.hops = append(b.hops, hop)
	}
	return b
}

func (c *Core) reason(now time.Time, t *tunnel) string {
	var why []string
	if c.drain == Drained {
		why = append(why, "drained")
	}
	if !t.ipsecUp {
		why = append(why, "tunnel down")
	}
	if !c.bfdUp(t.cfg.Name) {
		why = append(why, "BFD down")
	}
	if !t.established {
		why = append(why, "BGP session not established")
	}
	for _, name := range sortedCheckNames(c.checks) {
		ch := c.checks[name]
		if ch.cfg.Scope == config.ScopeTunnel && ch.cfg.Tunnel == t.cfg.Name && !ch.ok {
			why = append(why, fmt.Sprintf("check %s failing", name))
		}
	}
	if len(why) == 0 && now.Before(t.gate.holdUntil) {
		why = append(why, fmt.Sprintf("hold-down for %s (flap %d)", t.gate.holdUntil.Sub(now).Round(time.Millisecond), t.gate.flaps))
	}
	return strings.Join(why, "; ")
}

func (c *Core) nextWake(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	h := c.cfg.HoldDown
	consider(c.instance.next(now, h))
	for _, t := range c.tunnels {
		consider(t.gate.next(now, h))
	}
	if c.drain == Draining {
		consider(c.drainSince.Add(c.cfg.Drain.Time))
	}
	if t := c.pairNextWake(now); !t.IsZero() {
		consider(t)
	}
	return next
}

func sortedCheckNames(m map[string]*check) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
