package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/core"
	"github.com/bgpgw/bgpgw/pkg/pair"
)

// The pair (config.Pair): a BFD session to the partner (in the BFD
// manager, named pairBFDName) says whether it is alive; the state channel
// (pkg/pair) carries what it says of itself. The loop turns both into a
// core.PartnerView; the core decides the takeovers.

// pairBFDName names the partner's BFD session; no configured peer can have
// this name (config names start with a letter or digit).
const pairBFDName = "(partner)"

// pairStaleAfter is how many channel refreshes may go unheard before the
// partner's state counts as lost, even with its BFD session Up.
const pairStaleAfter = 3

// pairRefresh is how often the channel repeats this instance's state
// when it does not change.
const pairRefresh = 500 * time.Millisecond

// maxTakeoverHistory bounds the ended takeovers kept for status.
const maxTakeoverHistory = 16

// pairEvent is a message from the partner, accepted by the channel.
type pairEvent struct {
	msg pair.Message
	at  time.Time
}

func (pairEvent) isEvent() {}

// pairLink is the loop's view of the partner.
type pairLink struct {
	ch       *pair.Channel
	refresh  time.Duration
	stale    Timer
	bfdUp    bool
	bfdWhy   string
	heard    bool
	last     pair.Message
	lastAt   time.Time
	up       bool   // the last view given to the core
	why      string // why not up
	sent     bool   // this instance's state was given to the channel
	totals   struct{ takeovers, falseTakeovers uint64 }
	history  []api.TakeoverRecord
	byDevice map[string]uint64 // takeovers started per device
}

// pairBFDKey derives the pair BFD session's key (meticulous keyed SHA1,
// 20 bytes) from the pair key, so one secret serves both.
func pairBFDKey(key config.Secret) []byte {
	m := hmac.New(sha256.New, []byte(key.Reveal()))
	m.Write([]byte("bgpgw pair bfd"))
	return m.Sum(nil)[:20]
}

// pairBFDSession is the partner's BFD session of cfg, if cfg has a pair.
func pairBFDSession(cfg *config.Config) (bfd.SessionConfig, bool) {
	p := cfg.Pair
	if !p.Enabled {
		return bfd.SessionConfig{}, false
	}
	return bfd.SessionConfig{Peer: p.Partner, Local: p.LocalAddress, Multihop: p.Multihop,
		DesiredMinTx: p.MinTx, RequiredMinRx: p.MinRx, DetectMult: uint8(p.Multiplier),
		Auth: &bfd.AuthConfig{Type: bfd.AuthMeticulousKeyedSHA1, KeyID: 1, Key: pairBFDKey(p.Key)}}, true
}

// startPair starts the state channel of cfg's pair, if any; the BFD
// session starts with the others (wantBFD).
func (d *Daemon) startPair() error {
	if !d.cfg.Pair.Enabled {
		return nil
	}
	pl, err := d.newPairLink()
	if err != nil {
		return err
	}
	d.pair = pl
	// The channel stops when the loop does (stop), like the other
	// components: it outlives the context whose end starts the drain.
	ctx, cancel := context.WithCancel(d.runCtx)
	g, stop, ch := d.runG, d.runStop, pl.ch
	g.Go(func() error {
		defer cancel()
		return ch.Run(ctx)
	})
	g.Go(func() error {
		defer cancel()
		for {
			select {
			case <-stop:
				return nil
			case <-ctx.Done():
				return nil
			case m := <-ch.Received():
				d.mail.post(pairEvent{msg: m, at: d.clock.Now()}, d.clock.Now())
			}
		}
	})
	return nil
}

// newPairLink makes the pair's channel (not running) and the loop's state.
func (d *Daemon) newPairLink() (*pairLink, error) {
	p := d.cfg.Pair
	ch, err := pair.New(pair.Config{Self: d.cfg.Instance.Name,
		Local: netip.AddrPortFrom(p.LocalAddress, uint16(p.Port)), Remote: netip.AddrPortFrom(p.Partner, uint16(p.Port)),
		Key: []byte(p.Key.Reveal()), Refresh: pairRefresh, Logger: d.log.With("component", "pair")})
	if err != nil {
		return nil, fmt.Errorf("pair: %w", err)
	}
	pl := &pairLink{ch: ch, refresh: pairRefresh, bfdWhy: "BFD not up yet", byDevice: map[string]uint64{}}
	pl.stale = d.clock.NewTimer(time.Hour)
	pl.stale.Stop()
	return pl, nil
}

// pairStale is the channel of the partner's staleness timer (nil without
// a pair).
func (d *Daemon) pairStale() <-chan time.Time {
	if d.pair == nil {
		return nil
	}
	return d.pair.stale.C()
}

// pairHeard takes a message from the partner.
func (d *Daemon) pairHeard(ev pairEvent) {
	pl := d.pair
	if pl == nil {
		return
	}
	if pl.heard && ev.msg.Epoch != pl.last.Epoch {
		d.log.Info("partner restarted", "partner", ev.msg.Instance)
	}
	pl.heard, pl.last, pl.lastAt = true, ev.msg, ev.at
	pl.stale.Reset(pairStaleAfter * pl.refresh)
	d.partnerChanged()
}

// pairBFDChange takes the partner's BFD state.
func (d *Daemon) pairBFDChange(ev bfd.StateChange) {
	pl := d.pair
	if pl == nil {
		return
	}
	pl.bfdUp = ev.New == bfd.StateUp
	switch {
	case pl.bfdUp:
		pl.bfdWhy = ""
	case ev.New == bfd.StateAdminDown || ev.RemoteState == bfd.StateAdminDown:
		pl.bfdWhy = "BFD AdminDown (partner stopping)"
	default:
		pl.bfdWhy = "BFD " + ev.New.String() + ": " + ev.Diag.String()
	}
	d.partnerChanged()
}

// partnerChanged gives the core the partner's view now.
func (d *Daemon) partnerChanged() {
	pl := d.pair
	now := d.clock.Now()
	v := core.PartnerView{Up: pl.bfdUp, Why: pl.bfdWhy, Heard: pl.heard}
	if pl.heard {
		m := pl.last
		v.Epoch, v.Drops, v.Devices, v.Carrying = m.Epoch, m.Drops, m.Devices, m.Carrying
		v.Draining, v.ChecksOK = m.Draining, m.ChecksOK
	}
	switch stale := pairStaleAfter * pl.refresh; {
	case !v.Up:
	case !pl.heard:
		v.Up, v.Why = false, "no state heard on the pair channel"
	case now.Sub(pl.lastAt) >= stale:
		v.Up, v.Why = false, fmt.Sprintf("no state heard on the pair channel for %s", now.Sub(pl.lastAt).Round(time.Millisecond))
	}
	if v.Up != pl.up {
		if v.Up {
			d.log.Info("partner up", "partner", d.cfg.Pair.Partner)
		} else {
			d.log.Warn("partner lost", "partner", d.cfg.Pair.Partner, "reason", v.Why)
		}
		pl.up = v.Up
	}
	pl.why = v.Why
	d.core.Partner(now, v)
}

// sendSelf tells the partner what this instance carries, when it changed
// since the last pass (the channel repeats it on its own).
func (d *Daemon) sendSelf(prev, s core.SelfState) {
	if d.pair == nil || (d.pair.sent && sameSelf(prev, s)) {
		return
	}
	d.pair.sent = true
	d.pair.ch.Send(pair.State{Instance: d.cfg.Instance.Name, Devices: s.Devices, Carrying: s.Carrying,
		Draining: s.Draining, ChecksOK: s.ChecksOK, Drops: s.Drops})
}

func sameSelf(a, b core.SelfState) bool {
	return a.Draining == b.Draining && a.ChecksOK == b.ChecksOK && a.Drops == b.Drops &&
		slices.Equal(a.Devices, b.Devices) && slices.Equal(a.Carrying, b.Carrying)
}

// logTakeovers logs every takeover that started or ended, and keeps the
// totals and the ended ones for status.
func (d *Daemon) logTakeovers(prev, out core.Output) {
	pl := d.pair
	if pl == nil {
		return
	}
	was := map[string]core.TakeoverStatus{}
	for _, t := range prev.Takeovers {
		was[t.Device] = t
	}
	is := map[string]bool{}
	for _, t := range out.Takeovers {
		is[t.Device] = true
		if _, ok := was[t.Device]; !ok {
			pl.totals.takeovers++
			pl.byDevice[t.Device]++
			d.log.Warn("takeover: announcing routes that win over the partner's", "device", t.Device, "reason", t.Reason,
				"method", d.cfg.Pair.Takeover)
		}
	}
	now := d.clock.Now()
	for _, t := range prev.Takeovers {
		if is[t.Device] {
			continue
		}
		dur := now.Sub(t.Since)
		if t.False {
			pl.totals.falseTakeovers++
		}
		d.log.Info("takeover ended", "device", t.Device, "reason", t.Reason, "duration", dur.Round(time.Millisecond), "false", t.False)
		pl.history = append(pl.history, api.TakeoverRecord{Device: t.Device, Reason: t.Reason, Start: t.Since.UTC(),
			End: now.UTC(), DurationSeconds: dur.Seconds(), False: t.False})
		if len(pl.history) > maxTakeoverHistory {
			pl.history = slices.Delete(pl.history, 0, len(pl.history)-maxTakeoverHistory)
		}
	}
}

// pairStatus is the pair part of status from a snapshot.
func pairStatus(s *snapshot, now time.Time) *api.Pair {
	if s.pair == nil {
		return nil
	}
	ps := s.pair
	out := s.out
	st := &api.Pair{Partner: s.cfg.Pair.Partner.String(), PartnerUp: ps.up, Why: ps.why,
		Takeover: string(s.cfg.Pair.Takeover), Carrying: nonNil(out.Self.Carrying),
		Takeovers: []api.Takeover{}, History: slices.Clone(ps.history),
		TakeoversTotal: ps.takeovers, FalseTakeoversTotal: ps.falseTakeovers, TakeoversByDevice: ps.byDevice,
		Channel: api.PairChannel(ps.counters)}
	if ps.heard {
		at := ps.lastAt.UTC()
		st.LastHeard = &at
		st.PartnerName, st.PartnerDevices, st.PartnerCarrying = ps.last.Instance, nonNil(ps.last.Devices), nonNil(ps.last.Carrying)
		st.PartnerDraining, st.PartnerChecksOK = ps.last.Draining, ps.last.ChecksOK
	}
	if k, ok := s.bfdKeys[pairBFDName]; ok && s.bfd != nil {
		st.BFD = bfdStatus(s.bfd, k)
	}
	for _, t := range out.Takeovers {
		at := api.Takeover{Device: t.Device, Reason: t.Reason, Since: t.Since.UTC(), False: t.False,
			DurationSeconds: now.Sub(t.Since).Seconds()}
		if !t.ReleaseAt.IsZero() {
			r := t.ReleaseAt.UTC()
			at.ReleaseAt = &r
		}
		st.Takeovers = append(st.Takeovers, at)
	}
	return st
}

// pairSnap is the pair's state as published.
type pairSnap struct {
	up                        bool
	why                       string
	heard                     bool
	last                      pair.Message
	lastAt                    time.Time
	takeovers, falseTakeovers uint64
	byDevice                  map[string]uint64
	history                   []api.TakeoverRecord
	counters                  pair.Counters
}

// snapPair copies the loop's pair state for a snapshot.
func (d *Daemon) snapPair() *pairSnap {
	pl := d.pair
	if pl == nil {
		return nil
	}
	return &pairSnap{up: pl.up, why: pl.why, heard: pl.heard, last: pl.last, lastAt: pl.lastAt,
		takeovers: pl.totals.takeovers, falseTakeovers: pl.totals.falseTakeovers,
		byDevice: maps.Clone(pl.byDevice), history: slices.Clone(pl.history), counters: pl.ch.Counters()}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}
