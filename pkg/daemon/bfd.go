package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/config"
)

// bfdPeer ties a BFD session to the BGP peer it protects.
type bfdPeer struct {
	name   string
	tunnel bool
	wasUp  bool
}

// startBFD runs one BFD session per peer with bfd.enabled. BFD is a
// failure detector: a session that was Up and goes Down takes its peer out
// at once (the core withdraws what depended on it, and the BGP session is
// reset); Up again lets it back in after the hold-down. A session that never
// came Up (the peer may not run BFD) changes nothing. The manager (and its
// UDP sockets) starts with the first configured session, at start or on a
// reload.
func (d *Daemon) startBFD(ctx context.Context, g *errgroup.Group, stop <-chan struct{}) error {
	d.mu.Lock()
	d.bfdCtx, d.bfdGroup, d.bfdStop = ctx, g, stop
	d.mu.Unlock()
	return d.reconfigureBFD(ctx, d.config())
}

// bfdSessions are the BFD sessions cfg asks for, by key.
func bfdSessions(cfg *config.Config) (map[bfd.Key]bfd.SessionConfig, map[bfd.Key]*bfdPeer) {
	cfgs := map[bfd.Key]bfd.SessionConfig{}
	peers := map[bfd.Key]*bfdPeer{}
	for _, t := range cfg.Tunnels {
		if t.BFD.Enabled {
			c := bfd.SessionConfig{Peer: t.InsideRemote, Local: t.InsideLocal.Addr(), Multihop: t.BFD.Multihop,
				DesiredMinTx: t.BFD.MinTx, RequiredMinRx: t.BFD.MinRx, DetectMult: uint8(t.BFD.Multiplier), Auth: bfdAuth(t.BFD)}
			cfgs[c.Key()], peers[c.Key()] = c, &bfdPeer{name: t.Name, tunnel: true}
		}
	}
	for _, p := range cfg.CloudPeers {
		if p.BFD.Enabled {
			c := bfd.SessionConfig{Peer: p.Address, Local: p.LocalAddress, Multihop: p.Multihop > 1 || p.BFD.Multihop,
				DesiredMinTx: p.BFD.MinTx, RequiredMinRx: p.BFD.MinRx, DetectMult: uint8(p.BFD.Multiplier), Auth: bfdAuth(p.BFD)}
			cfgs[c.Key()], peers[c.Key()] = c, &bfdPeer{name: p.Name}
		}
	}
	return cfgs, peers
}

// reconfigureBFD makes the running BFD sessions those of cfg: new ones are
// added, removed ones deleted, changed timers or keys updated in place
// (RFC 5880 poll sequence, no Down); the others are not touched.
func (d *Daemon) reconfigureBFD(ctx context.Context, cfg *config.Config) error {
	want, peers := bfdSessions(cfg)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bfd == nil {
		if len(want) == 0 || d.bfdGroup == nil {
			return nil
		}
		d.bfd = bfd.NewManager(bfd.Options{Logger: d.log})
		d.bfdPeers, d.bfdByKey, d.bfdConfigs = map[string]bfd.Key{}, map[bfd.Key]*bfdPeer{}, map[bfd.Key]bfd.SessionConfig{}
		d.runBFD(d.bfd)
	}
	m := d.bfd
	var errs []error
	for k, p := range d.bfdByKey {
		if _, ok := want[k]; !ok {
			if err := m.Remove(k); err != nil {
				errs = append(errs, fmt.Errorf("remove session of %s: %w", p.name, err))
			}
			delete(d.bfdByKey, k)
			delete(d.bfdPeers, p.name)
			delete(d.bfdConfigs, k)
			if p.tunnel {
				// Nothing reports this session any more: a Down it left
				// behind must not hold the tunnel.
				d.core.BFDState(d.now(), p.name, true)
			}
		}
	}
	for k, c := range want {
		old, running := d.bfdConfigs[k]
		switch {
		case !running:
			if err := m.Add(ctx, c); err != nil {
				errs = append(errs, fmt.Errorf("session of %s: %w", peers[k].name, err))
				continue
			}
			d.bfdByKey[k] = peers[k]
		case !reflect.DeepEqual(old, c):
			if err := m.Update(c); err != nil {
				errs = append(errs, fmt.Errorf("update session of %s: %w", peers[k].name, err))
				continue
			}
		}
		if p := d.bfdByKey[k]; p.name != peers[k].name || p.tunnel != peers[k].tunnel {
			// The same session now protects a renamed peer.
			delete(d.bfdPeers, p.name)
			p.name, p.tunnel = peers[k].name, peers[k].tunnel
		}
		d.bfdConfigs[k] = c
		d.bfdPeers[peers[k].name] = k
	}
	return errors.Join(errs...)
}

// runBFD runs manager m until the loop stops. Called with mu held.
func (d *Daemon) runBFD(m *bfd.Manager) {
	ctx, g, stop, started := d.bfdCtx, d.bfdGroup, d.bfdStop, d.started
	bctx, cancel := context.WithCancel(ctx)
	g.Go(func() error {
		select {
		case <-stop:
		case <-bctx.Done():
		}
		cancel()
		return nil
	})
	g.Go(func() error {
		err := m.Run(bctx)
		if err != nil && started {
			// Started by a reload: BFD failing (its port taken, say) must
			// not stop the daemon; the sessions stay down and say why.
			d.log.Error("bfd stopped", "reason", err.Error())
			return nil
		}
		return err
	})
	g.Go(func() error {
		for {
			select {
			case <-bctx.Done():
				return nil
			case ev, ok := <-m.Events():
				if !ok {
					return nil
				}
				d.mu.Lock()
				p, found := d.bfdByKey[ev.Key]
				var peer bfdPeer
				if found {
					peer = *p // name and tunnel may change on reload
				}
				d.mu.Unlock()
				if found {
					d.bfdChange(bctx, &peer, ev)
					d.mu.Lock()
					if p, ok := d.bfdByKey[ev.Key]; ok {
						p.wasUp = peer.wasUp
					}
					d.mu.Unlock()
				}
			}
		}
	})
}

func bfdAuth(b config.BFD) *bfd.AuthConfig {
	switch b.AuthType {
	case "keyed-sha1":
		return &bfd.AuthConfig{Type: bfd.AuthKeyedSHA1, KeyID: b.AuthKeyID, Key: []byte(b.AuthKey.Reveal())}
	case "meticulous-keyed-sha1":
		return &bfd.AuthConfig{Type: bfd.AuthMeticulousKeyedSHA1, KeyID: b.AuthKeyID, Key: []byte(b.AuthKey.Reveal())}
	}
	return nil
}

func (d *Daemon) bfdChange(ctx context.Context, p *bfdPeer, ev bfd.StateChange) {
	up := ev.New == bfd.StateUp
	if !up && ev.RemoteState == bfd.StateAdminDown {
		// The peer turned BFD off (RFC 5882 section 3.2): not a failure.
		// Stop relying on BFD until it is Up again.
		d.log.Info("bfd: peer set the session AdminDown; not treated as a failure", "peer", p.name)
		if p.wasUp && p.tunnel {
			d.mu.Lock()
			d.core.BFDState(ev.At, p.name, true)
			d.mu.Unlock()
			d.poke()
		}
		p.wasUp = false
		return
	}
	switch {
	case up:
		p.wasUp = true
		d.log.Info("bfd up", "peer", p.name)
	case p.wasUp && ev.Old == bfd.StateUp:
		d.log.Warn("bfd down: withdrawing and resetting the BGP session", "peer", p.name, "diag", ev.Diag.String())
	default:
		return
	}
	if p.tunnel {
		d.mu.Lock()
		d.core.BFDState(ev.At, p.name, up)
		d.mu.Unlock()
	}
	d.poke()
	if !up {
		if err := d.speaker.Reset(ctx, p.name, "BFD down: "+ev.Diag.String()); err != nil {
			d.log.Error("reset BGP session after BFD down", "peer", p.name, "err", err)
		}
	}
}

// bfdStatus is the BFD part of a peer's status, or nil.
func (d *Daemon) bfdStatus(peer string) *api.BFD {
	d.mu.Lock()
	m, key, ok := d.bfd, d.bfdPeers[peer], d.bfdPeers != nil
	d.mu.Unlock()
	if m == nil || !ok {
		return nil
	}
	st, found := m.SessionStatus(key)
	if !found {
		return nil
	}
	return &api.BFD{
		State: st.State.String(), RemoteState: st.RemoteState.String(), Diag: st.LocalDiag.String(),
		TxIntervalMs: ms(st.TxInterval), RxIntervalMs: ms(st.RxInterval), DetectionTimeMs: ms(st.DetectionTime),
		Sent: st.Counters.Sent, Received: st.Counters.Received, StateChanges: st.Counters.StateChanges,
		AuthFailures: st.Counters.AuthFailures,
	}
}
