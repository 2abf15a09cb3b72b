package core

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// Preview returns the output the core would reach after Reconfigure(now,
// cfg), without changing c, assuming that every session of cfg is up (a
// new tunnel's SA installed and its session established, a session that a
// changed setting resets established again) and that every peer sends
// the routes it sends now (sent, per tunnel peer: what it sent, accepted or
// not; a tunnel missing from sent keeps what it has learned), filtered by
// cfg's accept-lists. Tunnels that
// are down now stay down, and hold-downs and checks keep their state, as
// Reconfigure keeps them. It is what `bgpgw plan` shows.
func (c *Core) Preview(now time.Time, cfg *config.Config, sent map[string][]netip.Prefix) Output {
	p := c.clone()
	p.Reconfigure(now, cfg)
	for _, tc := range cfg.Tunnels {
		t := p.tunnels[tc.Name]
		if _, existed := c.tunnels[tc.Name]; !existed {
			t.ipsecUp, t.established = true, true
			continue
		}
		if s, ok := sent[tc.Name]; ok && t.established {
			t.learned = slices.Clone(s)
		}
		t.learned = slices.DeleteFunc(t.learned, func(pfx netip.Prefix) bool { return !accepts(tc, cfg.Announce, pfx) })
	}
	p.refresh(now)
	return p.Output(now)
}

// accepts reports whether tunnel t's import policy accepts p (the
// accept-list, and never a default route nor a cloud prefix or a
// more-specific of one), as the speaker applies it.
func accepts(t config.Tunnel, announce []netip.Prefix, p netip.Prefix) bool {
	if p.Bits() == 0 {
		return false
	}
	for _, a := range announce {
		if a.Addr().Is4() == p.Addr().Is4() && p.Bits() >= a.Bits() && a.Contains(p.Addr()) {
			return false
		}
	}
	return slices.ContainsFunc(t.Accept, func(r config.PrefixRange) bool { return r.Contains(p) })
}

// clone returns a deep copy of c.
func (c *Core) clone() *Core {
	n := *c
	n.tunnels = make(map[string]*tunnel, len(c.tunnels))
	for k, t := range c.tunnels {
		ct := *t
		ct.learned = slices.Clone(t.learned)
		n.tunnels[k] = &ct
	}
	n.checks = make(map[string]*check, len(c.checks))
	for k, ch := range c.checks {
		cc := *ch
		n.checks[k] = &cc
	}
	n.bfd = make(map[string]*peerBFD, len(c.bfd))
	for k, b := range maps.All(c.bfd) {
		cb := *b
		n.bfd[k] = &cb
	}
	n.pair.view.Devices, n.pair.view.Carrying = slices.Clone(c.pair.view.Devices), slices.Clone(c.pair.view.Carrying)
	n.pair.carrying, n.pair.seen = maps.Clone(c.pair.carrying), maps.Clone(c.pair.seen)
	n.pair.takeovers = make(map[string]*takeover, len(c.pair.takeovers))
	for k, t := range c.pair.takeovers {
		ct := *t
		n.pair.takeovers[k] = &ct
	}
	return &n
}
