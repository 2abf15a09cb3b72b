package core

import (
	"maps"
	"slices"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// Preview returns the output the core would reach after Reconfigure(now,
// cfg), without changing c, assuming that every session of cfg is up (a
// new tunnel's SA installed and its session established, a session that a
// changed setting resets established again) and that every peer sends
// the routes it sends now (sent, per tunnel peer: what it sent, accepted or
// not; a tunnel missing from sent keeps what it has learned), filtered by
// cfg's import rules (pkg/filter). Tunnels that
// are down now stay down, and hold-downs and checks keep their state, as
// Reconfigure keeps them. It is what `bgpgw plan` shows.
func (c *Core) Preview(now time.Time, cfg *config.Config, sent map[string][]model.Learned) Output {
	p := c.clone()
	p.Reconfigure(now, cfg)
	never := filter.Never(cfg)
	for _, tc := range cfg.Tunnels {
		t := p.tunnels[tc.Name]
		if _, existed := c.tunnels[tc.Name]; !existed {
			t.ipsecUp, t.established = true, true
			continue
		}
		if s, ok := sent[tc.Name]; ok && t.established {
			t.learned = slices.Clone(s)
		}
		im := filter.ForTunnel(cfg, never, tc)
		t.learned = slices.DeleteFunc(t.learned, func(l model.Learned) bool {
			_, refused := im.Check(l.Prefix, l.ASPath)
			return refused
		})
	}
	p.refresh(now)
	return p.Output(now)
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
