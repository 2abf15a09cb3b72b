// Package core is bgpgw's decision logic: a state machine with no I/O, no
// goroutines and no clock of its own. Inputs are events (BGP session, tunnel
// and BFD states, health check results, drain requests, role changes), each
// with the time it happened; the output is the desired state: the
// announcements to every peer, the kernel routes, and which sessions must be
// held down. The daemon feeds it events, asks for the output, applies it,
// and calls again at Output.NextWake.
//
// The rules:
//   - A tunnel carries traffic (its cloud-side prefixes are announced over
//     it, and the on-prem prefixes learned from it are routed to it and
//     re-announced to the cloud side) only while its tunnel is up, its BGP
//     session established, its BFD session up (when configured) and every
//     tunnel-scope health check passes.
//   - A tunnel's BGP session is held down while its IPsec SA is not
//     installed (when bgpgw manages the tunnels), so it starts only once the
//     CHILD_SA is there.
//   - While an instance-scope check fails, nothing is announced to any
//     tunnel peer and on-prem prefixes are withdrawn from cloud-side peers,
//     so the other instance carries the traffic.
//   - A prefix learned from several carrying tunnels is routed to those
//     whose AS path is shortest (ECMP among them), and passed on to the
//     cloud side with the AS path of the first of them in the
//     configuration. A route with NO_EXPORT, NO_ADVERTISE or
//     NO_EXPORT_SUBCONFED (RFC 1997) is routed but not passed on: every
//     cloud-side peer is another AS.
//   - Checks change state after Rise successes or Fall failures in a row;
//     a check that has reported nothing yet counts as failing, so nothing
//     is announced before the checks pass.
//   - After a flap, re-announcement waits a hold-down that doubles with
//     every remembered flap and decays when stable (config.HoldDown).
//   - The standby of an active-standby pair announces with an AS-path
//     prepend and a higher MED; the primary with MED 0.
//   - Drain: everything is announced again with GRACEFUL_SHUTDOWN (RFC 8326)
//     and the prepend; after the drain time it is withdrawn and every
//     session is shut down, until undrain.
package core

import (
	"slices"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// DrainState is where an instance is in a planned maintenance.
type DrainState string

// Drain states.
const (
	Normal   DrainState = "normal"
	Draining DrainState = "draining" // announced with GRACEFUL_SHUTDOWN, waiting the drain time
	Drained  DrainState = "drained"  // withdrawn, sessions shut down
)

// ShutdownMessage is the RFC 8203 text sent when a drain closes the sessions.
const ShutdownMessage = "bgpgw: drained for maintenance"

type tunnel struct {
	cfg         config.Tunnel
	ipsecUp     bool
	established bool
	learned     []model.Learned
	gate        gate
	resuming    bool // its session was held down by a drain and is not back yet
}

type check struct {
	cfg            config.Check
	ok             bool
	okRun, failRun int
}

// Core is the decision state machine of one instance.
type Core struct {
	cfg        *config.Config
	tunnels    map[string]*tunnel
	checks     map[string]*check
	instance   gate
	role       config.Role
	drain      DrainState
	drainSince time.Time
	bfd        map[string]*peerBFD // per peer with a BFD session that reported
	pair       pairState
}

// New returns a core for cfg at time now: tunnels are down until their
// sessions are reported established; checks fail until they pass.
func New(cfg *config.Config, now time.Time) *Core {
	c := &Core{cfg: cfg, tunnels: map[string]*tunnel{}, checks: map[string]*check{},
		role: cfg.Instance.Role, drain: Normal, bfd: map[string]*peerBFD{}, pair: pairState{started: now}}
	for _, t := range cfg.Tunnels {
		c.tunnels[t.Name] = &tunnel{cfg: t,
			ipsecUp: cfg.IPsec.Mode == config.IPsecNone, // no IPsec events to wait for
		}
	}
	for _, ch := range cfg.Health {
		c.checks[ch.Name] = &check{cfg: ch}
	}
	c.refresh(now)
	return c
}

// Reconfigure switches to cfg (a reload), keeping what the core knows of
// every tunnel and check that is still configured under the same name:
// session, IPsec and BFD states, check results and runs, flaps and
// hold-downs; a tunnel whose configuration changed keeps them too (its
// session is recreated by the speaker and reported again). New tunnels
// start as in New, new or changed checks start failing. The role follows
// the file only when the file's role changed, so a role set at runtime
// (bgpgw role) survives a reload that does not touch it.
func (c *Core) Reconfigure(now time.Time, cfg *config.Config) {
	tunnels := map[string]*tunnel{}
	for _, t := range cfg.Tunnels {
		if old, ok := c.tunnels[t.Name]; ok {
			old.cfg = t
			tunnels[t.Name] = old
			continue
		}
		tunnels[t.Name] = &tunnel{cfg: t, ipsecUp: cfg.IPsec.Mode == config.IPsecNone}
	}
	checks := map[string]*check{}
	for _, ch := range cfg.Health {
		if old, ok := c.checks[ch.Name]; ok && SameCheck(old.cfg, ch) {
			old.cfg = ch
			checks[ch.Name] = old
			continue
		}
		checks[ch.Name] = &check{cfg: ch}
	}
	if cfg.Instance.Role != c.cfg.Instance.Role {
		c.role = cfg.Instance.Role
	}
	c.reconfigureBFD(c.cfg, cfg)
	c.cfg, c.tunnels, c.checks = cfg, tunnels, checks
	c.refresh(now)
}

// SameCheck reports whether a check's result still means the same thing
// (a reload keeps its state).
func SameCheck(a, b config.Check) bool {
	return a.Kind == b.Kind && a.Target == b.Target && a.Scope == b.Scope && a.Tunnel == b.Tunnel &&
		slices.Equal(a.Args, b.Args)
}

// SessionState reports a BGP session's state and, when established, the
// routes accepted from it.
func (c *Core) SessionState(now time.Time, peer string, established bool, learned []model.Learned) {
	t, ok := c.tunnels[peer]
	if !ok {
		return
	}
	t.established = established
	t.learned = nil
	if established {
		t.learned = slices.Clone(learned)
	}
	c.refresh(now)
}

// TunnelState reports whether a tunnel's IPsec SA is installed.
func (c *Core) TunnelState(now time.Time, name string, up bool) {
	if t, ok := c.tunnels[name]; ok {
		t.ipsecUp = up
		c.refresh(now)
	}
}

// CheckResult reports one result of a health check.
func (c *Core) CheckResult(now time.Time, name string, ok bool) {
	ch, found := c.checks[name]
	if !found {
		return
	}
	if ok {
		ch.okRun, ch.failRun = ch.okRun+1, 0
		if !ch.ok && ch.okRun >= ch.cfg.Rise {
			ch.ok = true
		}
	} else {
		ch.okRun, ch.failRun = 0, ch.failRun+1
		if ch.ok && ch.failRun >= ch.cfg.Fall {
			ch.ok = false
		}
	}
	c.refresh(now)
}

// SetDrain starts (on) or ends a drain. Restored drains (a drained instance
// that restarted) skip the GRACEFUL_SHUTDOWN period: nothing is announced.
func (c *Core) SetDrain(now time.Time, on, restored bool) {
	switch {
	case !on:
		c.drain = Normal
	case restored:
		c.drain, c.drainSince = Drained, now
	case c.drain == Normal:
		c.drain, c.drainSince = Draining, now
	}
	c.refresh(now)
}

// SetRole changes the instance's role in an active-standby pair.
func (c *Core) SetRole(now time.Time, r config.Role) {
	c.role = r
	c.refresh(now)
}

// Tick advances timers: the end of the drain period and the hold-downs.
func (c *Core) Tick(now time.Time) { c.refresh(now) }

// refresh recomputes the gates from the inputs, at time now.
func (c *Core) refresh(now time.Time) {
	h := c.cfg.HoldDown
	instOK := true
	tunnelOK := map[string]bool{}
	for _, ch := range c.checks {
		switch ch.cfg.Scope {
		case config.ScopeInstance:
			instOK = instOK && ch.ok
		case config.ScopeTunnel:
			if !ch.ok {
				tunnelOK[ch.cfg.Tunnel] = false
			}
		}
	}
	c.instance.set(now, instOK, h)
	if c.drain == Draining && !now.Before(c.drainSince.Add(c.cfg.Drain.Time)) {
		c.drain = Drained
	}
	for name, t := range c.tunnels {
		_, failing := tunnelOK[name]
		switch {
		case c.drain == Drained:
			// The drain holds the sessions down: not a flap, and after
			// undrain the tunnel opens as soon as its session is back.
			t.resuming = true
			t.gate.pause()
		case t.resuming && !t.established:
			t.gate.pause()
		default:
			ok := t.ipsecUp && t.established && c.bfdUp(name) && !failing
			if t.resuming && ok {
				t.gate.resume(now) // back from a drain: no hold-down
			} else {
				t.gate.set(now, ok, h)
			}
			t.resuming = false
		}
	}
	c.refreshPair(now)
}
