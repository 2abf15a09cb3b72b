package bgp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	api "github.com/osrg/gobgp/v4/api"
)

// SetHeldDown implements Speaker.
func (a *GoBGP) SetHeldDown(ctx context.Context, held map[string]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	a.held = map[string]string{}
	for name, msg := range held {
		if _, ok := a.peers[name]; !ok {
			errs = append(errs, fmt.Errorf("hold %s down: no such peer", name))
			continue
		}
		a.held[name] = msg
	}
	for _, name := range sortedKeys(a.peers) {
		msg, want := a.held[name]
		switch {
		case want && !a.down[name]:
			// DisablePeer sends the Cease with the RFC 8203 text and keeps
			// the peer administratively down; ShutdownPeer would only send
			// the Cease and let the FSM reconnect.
			err := a.s.DisablePeer(ctx, &api.DisablePeerRequest{Address: a.peers[name].Address.String(), Communication: msg})
			if err != nil {
				errs = append(errs, fmt.Errorf("peer %s: shut down: %w", name, err))
				continue
			}
			a.down[name] = true
		case !want && a.down[name]:
			if err := a.enable(ctx, a.peers[name]); err != nil {
				errs = append(errs, err)
				continue
			}
			delete(a.down, name)
		}
	}
	return errors.Join(errs...)
}

// enable lets a peer held down run again. GoBGP holds a re-enabled peer
// in Idle for a fixed 5 s (holdtimeIdle) before it connects or accepts a
// connection; a peer added afresh starts at once. The peer is down, so it
// is re-created: the session comes up as soon as the far end answers. A
// peer a failed earlier attempt already deleted is simply added: the next
// call retries. Caller holds a.mu.
func (a *GoBGP) enable(ctx context.Context, p PeerConfig) error {
	if err := a.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil &&
		!strings.Contains(err.Error(), "can't delete a peer") {
		return fmt.Errorf("peer %s: enable: %w", p.Name, err)
	}
	if err := a.s.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, false)}); err != nil {
		return fmt.Errorf("peer %s: enable: %w", p.Name, err)
	}
	return nil
}
