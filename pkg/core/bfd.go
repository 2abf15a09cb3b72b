package core

import (
	"net/netip"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// BFDState is a BFD session state (RFC 5880 section 4.1), without
// importing the BFD implementation.
type BFDState int

// BFD session states, in RFC 5880's numbering.
const (
	BFDAdminDown BFDState = iota
	BFDDown
	BFDInit
	BFDUp
)

func (s BFDState) String() string {
	switch s {
	case BFDAdminDown:
		return "admindown"
	case BFDDown:
		return "down"
	case BFDInit:
		return "init"
	case BFDUp:
		return "up"
	}
	return "unknown"
}

// BFDEvent is a state change of the BFD session that protects a peer
// (tunnel or cloud-side).
type BFDEvent struct {
	Peer   string
	Old    BFDState
	New    BFDState
	Remote BFDState // the peer's state as last received
	Diag   string   // local diagnostic, for the reset reason
}

// Reset asks for a BGP session to be reset. Gen grows with every reset the
// core decides; the daemon resets a session when the Gen it last applied
// for that peer is lower (declarative: a pass that misses one still sees
// it).
type Reset struct {
	Gen    uint64
	Reason string
}

// peerBFD is what the core knows of the BFD session protecting one peer.
type peerBFD struct {
	wasUp bool  // the session has been Up since it was last AdminDown or (re)created
	up    bool  // relied upon and not failed: false only after a counted Down
	reset Reset // the last reset decided for this peer
}

// BFD reports a BFD session state change. The rules (RFC 5882):
//   - a Down counts only after the session was Up (a peer that never
//     answers may not run BFD: it changes nothing);
//   - the peer setting the session AdminDown is not a failure: BFD is no
//     longer relied upon until it is Up again;
//   - a counted Down takes a tunnel out at once and resets its BGP session;
//     for a cloud-side peer it only resets the session.
//
// Events for a peer the configuration runs no BFD session for are ignored:
// they come from a session a reload removed, and nothing would report it
// Up again.
func (c *Core) BFD(now time.Time, ev BFDEvent) {
	p := c.bfdOf(ev.Peer)
	if p == nil {
		return
	}
	switch {
	case ev.New == BFDUp:
		p.wasUp, p.up = true, true
	case ev.Remote == BFDAdminDown || ev.New == BFDAdminDown:
		p.wasUp, p.up = false, true
	case p.wasUp && ev.Old == BFDUp:
		p.up = false
		p.reset = Reset{Gen: p.reset.Gen + 1, Reason: "BFD down: " + ev.Diag}
	}
	c.refresh(now)
}

// bfdOf returns the BFD state of a peer whose BFD session the current
// configuration runs, creating it; nil for any other peer.
func (c *Core) bfdOf(peer string) *peerBFD {
	if _, ok := bfdKeys(c.cfg)[peer]; !ok {
		return nil
	}
	p, ok := c.bfd[peer]
	if !ok {
		p = &peerBFD{up: true}
		c.bfd[peer] = p
	}
	return p
}

func (c *Core) isCloudPeer(name string) bool {
	for _, p := range c.cfg.CloudPeers {
		if p.Name == name {
			return true
		}
	}
	return false
}

// bfdUp reports whether the peer's BFD lets it carry traffic.
func (c *Core) bfdUp(peer string) bool {
	p, ok := c.bfd[peer]
	return !ok || p.up
}

// reconfigureBFD forgets the BFD state of peers whose session the reload
// removes or replaces (BFD turned off, other addresses): nothing reports
// that session any more, so a Down it left behind must not hold the peer.
// A session whose key (peer address, local address, multihop) stays is
// updated in place (timers, authentication) and keeps its state.
func (c *Core) reconfigureBFD(cur, next *config.Config) {
	curKeys, nextKeys := bfdKeys(cur), bfdKeys(next)
	nameOf := map[bfdKey]string{}
	for name, k := range nextKeys {
		nameOf[k] = name
	}
	// A renamed peer whose session is the same (same addresses) keeps what
	// the session reported: the daemon keeps that session running.
	moved := map[string]*peerBFD{}
	for peer, p := range c.bfd {
		k, had := curKeys[peer]
		name, kept := nameOf[k]
		switch {
		case had && kept && name == peer:
			continue // the same session (its timers or keys may change)
		case had && kept:
			moved[name] = p
		}
		// Keep the reset generation: the daemon compares against it.
		c.bfd[peer] = &peerBFD{up: true, reset: p.reset}
	}
	for name, p := range moved {
		var gen Reset // the new name's own generations go on
		if e, ok := c.bfd[name]; ok {
			gen = e.reset
		}
		c.bfd[name] = &peerBFD{wasUp: p.wasUp, up: p.up, reset: gen}
	}
}

// bfdKey identifies a BFD session by what the daemon keys it on.
type bfdKey struct {
	peer, local netip.Addr
	multihop    bool
}

// bfdKeys lists the BFD sessions cfg runs, per peer name.
func bfdKeys(cfg *config.Config) map[string]bfdKey {
	out := map[string]bfdKey{}
	for _, t := range cfg.Tunnels {
		if t.BFD.Enabled {
			out[t.Name] = bfdKey{t.InsideRemote, t.InsideLocal.Addr(), t.BFD.Multihop}
		}
	}
	for _, p := range cfg.CloudPeers {
		if p.BFD.Enabled {
			out[p.Name] = bfdKey{p.Address, p.LocalAddress, p.Multihop > 1 || p.BFD.Multihop}
		}
	}
	return out
}
