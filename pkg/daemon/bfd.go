package daemon

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/core"
)

// bfdSessions are the running BFD sessions; the loop's.
type bfdSessions struct {
	m       *bfd.Manager // nil until the first session is configured
	byKey   map[bfd.Key]*bfdPeer
	configs map[bfd.Key]bfd.SessionConfig
}

// bfdPeer ties a BFD session to the BGP peer it protects.
type bfdPeer struct {
	name string
}

// startBFD runs one BFD session per peer with bfd.enabled. BFD is a
// failure detector; what its state changes mean is the core's to decide
// (core.Core.BFD). The manager (and its UDP sockets) starts with the first
// configured session, at start or on a reload.
func (d *Daemon) startBFD() error { return d.reconfigureBFD(d.runCtx, d.cfg) }

// wantBFD lists the BFD sessions cfg asks for, by key.
func wantBFD(cfg *config.Config) (map[bfd.Key]bfd.SessionConfig, map[bfd.Key]*bfdPeer) {
	cfgs := map[bfd.Key]bfd.SessionConfig{}
	peers := map[bfd.Key]*bfdPeer{}
	for _, t := range cfg.Tunnels {
		if t.BFD.Enabled {
			c := bfd.SessionConfig{Peer: t.InsideRemote, Local: t.InsideLocal.Addr(), Multihop: t.BFD.Multihop, MinTTL: t.BFD.MinTTL,
				DesiredMinTx: t.BFD.MinTx, RequiredMinRx: t.BFD.MinRx, DetectMult: uint8(t.BFD.Multiplier), Auth: bfdAuth(t.BFD)}
			cfgs[c.Key()], peers[c.Key()] = c, &bfdPeer{name: t.Name}
		}
	}
	for _, p := range cfg.CloudPeers {
		if p.BFD.Enabled {
			c := bfd.SessionConfig{Peer: p.Address, Local: p.LocalAddress, Multihop: p.Multihop > 1 || p.BFD.Multihop, MinTTL: p.BFD.MinTTL,
				DesiredMinTx: p.BFD.MinTx, RequiredMinRx: p.BFD.MinRx, DetectMult: uint8(p.BFD.Multiplier), Auth: bfdAuth(p.BFD)}
			cfgs[c.Key()], peers[c.Key()] = c, &bfdPeer{name: p.Name}
		}
	}
	if c, ok := pairBFDSession(cfg); ok {
		cfgs[c.Key()], peers[c.Key()] = c, &bfdPeer{name: pairBFDName}
	}
	return cfgs, peers
}

// reconfigureBFD makes the running BFD sessions those of cfg: new ones are
// added, removed ones deleted, changed timers or keys updated in place
// (RFC 5880 poll sequence, no Down); the others are not touched. The core
// forgets what a removed session reported (core.Core.Reconfigure).
func (d *Daemon) reconfigureBFD(ctx context.Context, cfg *config.Config) error {
	want, peers := wantBFD(cfg)
	b := &d.bfd
	if b.m == nil {
		if len(want) == 0 {
			return nil
		}
		b.m = bfd.NewManager(bfd.Options{Logger: d.log})
		b.byKey, b.configs = map[bfd.Key]*bfdPeer{}, map[bfd.Key]bfd.SessionConfig{}
		d.runBFD(b.m)
	}
	var errs []error
	for k, p := range b.byKey {
		if _, ok := want[k]; !ok {
			if err := b.m.Remove(k); err != nil {
				errs = append(errs, fmt.Errorf("remove session of %s: %w", p.name, err))
			}
			delete(b.byKey, k)
			delete(b.configs, k)
		}
	}
	for k, c := range want {
		old, running := b.configs[k]
		switch {
		case !running:
			if err := b.m.Add(ctx, c); err != nil {
				errs = append(errs, fmt.Errorf("session of %s: %w", peers[k].name, err))
				continue
			}
		case !reflect.DeepEqual(old, c):
			if err := b.m.Update(c); err != nil {
				errs = append(errs, fmt.Errorf("update session of %s: %w", peers[k].name, err))
				continue
			}
		}
		b.byKey[k], b.configs[k] = peers[k], c // the same session may protect a renamed peer
	}
	return errors.Join(errs...)
}

// runBFD runs manager m until the loop stops, posting its state changes to
// the loop.
func (d *Daemon) runBFD(m *bfd.Manager) {
	g, stop := d.runG, d.runStop
	bctx, cancel := context.WithCancel(d.runCtx)
	started := d.looping // a reload started BFD
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
				d.mail.post(bfdEvent{ev}, d.clock.Now())
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

// bfdChange feeds a BFD state change to the core, which decides what it
// means (and asks for the session reset through its output).
func (d *Daemon) bfdChange(ev bfd.StateChange) {
	p, ok := d.bfd.byKey[ev.Key]
	if !ok {
		return // a session a reload removed
	}
	if p.name == pairBFDName {
		d.pairBFDChange(ev)
		return
	}
	switch {
	case ev.New == bfd.StateUp:
		d.log.Info("bfd up", "peer", p.name)
	case ev.RemoteState == bfd.StateAdminDown:
		d.log.Info("bfd: peer set the session AdminDown; not treated as a failure", "peer", p.name)
	case ev.Old == bfd.StateUp:
		d.log.Warn("bfd down", "peer", p.name, "diag", ev.Diag.String())
	}
	d.core.BFD(d.clock.Now(), core.BFDEvent{Peer: p.name, Old: coreBFDState(ev.Old), New: coreBFDState(ev.New),
		Remote: coreBFDState(ev.RemoteState), Diag: ev.Diag.String()})
}

func coreBFDState(s bfd.State) core.BFDState {
	switch s {
	case bfd.StateAdminDown:
		return core.BFDAdminDown
	case bfd.StateInit:
		return core.BFDInit
	case bfd.StateUp:
		return core.BFDUp
	}
	return core.BFDDown
}

// bfdStatus is the BFD part of a peer's status, or nil.
func bfdStatus(m *bfd.Manager, key bfd.Key) *api.BFD {
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
