package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/core"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// loop handles events and reconciles until stopping, which starts a drain;
// it returns once the drain is complete (or was already). It is the only
// goroutine that touches the core.
func (d *Daemon) loop(ctx context.Context, stopping <-chan struct{}) error {
	defer d.mail.close()
	d.looping = true
	resync := time.NewTicker(ResyncInterval)
	defer resync.Stop()
	timer := d.clock.NewTimer(time.Hour)
	defer timer.Stop()
	// systemd's watchdog is pinged from this loop, so a wedged loop gets the
	// daemon restarted.
	var watchdog <-chan time.Time
	if iv := d.notify.WatchdogInterval(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		watchdog = t.C
	}
	exiting, ready := false, false
	// BGP state is read only when the speaker says it changed (and on the
	// first pass and the resync): a health, BFD, drain or timer event goes
	// straight to the withdrawal without walking the RIB first.
	observe := true
	var replies []func() // answered once the pass that applies them published
	for {
		out := d.reconcile(ctx, observe || d.observe)
		observe, d.observe = false, false
		for _, r := range replies {
			r()
		}
		replies = nil
		if !ready {
			ready = true
			if err := d.notify.Ready(); err != nil {
				d.log.Warn("sd_notify READY", "err", err)
			}
		}
		if exiting && out.Drain == core.Drained {
			d.log.Info("drain complete, stopping")
			return nil
		}
		if !out.NextWake.IsZero() {
			timer.Reset(max(out.NextWake.Sub(d.clock.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-watchdog:
			_ = d.notify.Watchdog()
		case <-stopping:
			stopping, exiting = nil, true
			_ = d.notify.Stopping()
			d.log.Info("stopping: draining first", "drain_time", d.cfg.Drain.Time)
			d.stopping = true
			d.core.SetDrain(d.clock.Now(), true, false) // not persisted: a restart comes back undrained
		case <-d.speaker.Changed():
			observe = true
			d.metrics.event(d.clock.Now())
		case <-d.mail.ready:
			replies = d.handleEvents(ctx)
		case <-timer.C():
		case <-d.pairStale():
			d.partnerChanged()
		case <-resync.C:
			observe = true
		}
	}
}

// handleEvents feeds every pending event to the core. It returns the
// replies to the requests among them, to send after the next pass: a
// caller that reads status after `bgpgw drain` returned sees the drain.
func (d *Daemon) handleEvents(ctx context.Context) []func() {
	evs, first := d.mail.take()
	if len(evs) > 0 {
		d.metrics.event(first)
	}
	var replies []func()
	for _, ev := range evs {
		switch ev := ev.(type) {
		case bfdEvent:
			d.bfdChange(ev.ev)
		case checkEvent:
			d.checkResult(ev)
		case pairEvent:
			d.pairHeard(ev)
		case request:
			err := ev.fn(ctx)
			replies = append(replies, func() { ev.done <- err })
		case wake:
		}
	}
	return replies
}

// reconcile feeds the observed BGP and tunnel states (BGP only when
// observe) to the core, applies its output (announcements, session holds
// and resets, kernel routes) and publishes the result for status.
func (d *Daemon) reconcile(ctx context.Context, observe bool) core.Output {
	since := d.metrics.take(d.clock.Now()) // the event this pass answers
	var errs []string
	if observe {
		st, err := d.speaker.Sessions(ctx)
		if err != nil {
			d.log.Error("read BGP state", "err", err)
			d.bgpErr = err.Error()
		} else {
			d.bgpErr, d.sessions = "", st
			now := d.clock.Now()
			for _, p := range st {
				if p.Kind == bgp.KindTunnel {
					d.core.SessionState(now, p.Name, p.State == bgp.StateEstablished, p.Received)
				}
			}
		}
	}
	if d.bgpErr != "" {
		errs = append(errs, d.bgpErr)
	}
	d.observeTunnels()
	now := d.clock.Now()
	d.core.Tick(now)
	out := d.core.Output(now)
	prev := d.out
	d.out = out
	// The partner hears first: before a drain starts, and before this
	// instance's withdrawals, it can take over.
	d.sendSelf(prev.Self, out.Self)

	err := d.speaker.SetAnnouncements(ctx, out.Announcements)
	d.metrics.announced(since, d.clock.Now(), out.Announcements, err)
	if err != nil {
		d.log.Error("apply announcements", "err", err)
		errs = append(errs, err.Error())
	} else {
		d.applied = out.Announcements
	}
	errs = append(errs, d.holdSessions(ctx, out)...)
	errs = append(errs, d.applyResets(ctx, out)...)
	installed, err := d.routes.Set(out.Routes)
	if err != nil {
		d.log.Error("install kernel routes", "err", err)
		errs = append(errs, err.Error())
	}
	// Logged once the withdrawals and routes are applied: off their path.
	d.logChanges(prev, out)
	if !slices.EqualFunc(installed, d.installed, routeEqual) {
		d.log.Info("kernel routes changed", "count", len(installed))
	}
	d.installed, d.lastErrs = installed, errs
	d.publish()
	return out
}

// holdSessions gives the speaker the sessions the core holds down (a
// drain, a tunnel whose CHILD_SA is not installed) when that set changed,
// and logs those that changed. The speaker keeps them down across a
// reload's SetPeers, so an unchanged set costs nothing.
func (d *Daemon) holdSessions(ctx context.Context, out core.Output) []string {
	if !d.heldStale && len(out.ShutDown) == len(d.shutDown) &&
		!slices.ContainsFunc(out.ShutDown, func(p string) bool { return !d.shutDown[p] }) {
		return nil
	}
	reason := "tunnel down"
	if out.Drain == core.Drained {
		reason = "drained"
	}
	held := make(map[string]string, len(out.ShutDown))
	for _, p := range out.ShutDown {
		held[p] = core.ShutdownMessage
	}
	if err := d.speaker.SetHeldDown(ctx, held); err != nil {
		d.heldStale = true // the next pass gives the whole set again
		return []string{err.Error()}
	}
	d.heldStale = false
	for _, p := range slices.Sorted(maps.Keys(held)) {
		if !d.shutDown[p] {
			d.log.Info("session shut down", "peer", p, "reason", reason)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(d.shutDown)) {
		if _, ok := held[p]; !ok {
			d.log.Info("session enabled", "peer", p)
		}
	}
	d.shutDown = make(map[string]bool, len(held))
	for p := range held {
		d.shutDown[p] = true
	}
	return nil
}

// applyResets resets the sessions the core decided to reset since the
// last pass (a BFD Down), after the withdrawals went out. A session held
// down is not reset: it is down already.
func (d *Daemon) applyResets(ctx context.Context, out core.Output) []string {
	var errs []string
	for _, peer := range slices.Sorted(maps.Keys(out.Resets)) {
		r := out.Resets[peer]
		if r.Gen <= d.resetGen[peer] {
			continue
		}
		d.resetGen[peer] = r.Gen
		if d.shutDown[peer] {
			continue
		}
		d.log.Warn("resetting the BGP session", "peer", peer, "reason", r.Reason)
		if err := d.speaker.Reset(ctx, peer, r.Reason); err != nil {
			d.log.Error("reset BGP session", "peer", peer, "err", err)
			errs = append(errs, err.Error())
		}
	}
	return errs
}

// logChanges logs, once, every change of what a tunnel carries and of the
// drain state, with the reason.
func (d *Daemon) logChanges(prev, out core.Output) {
	was := map[string]core.TunnelStatus{}
	for _, t := range prev.Tunnels {
		was[t.Name] = t
	}
	for _, t := range out.Tunnels {
		p, seen := was[t.Name]
		if seen && p.Carrying == t.Carrying {
			continue
		}
		if t.Carrying {
			d.log.Info("tunnel carrying traffic: announcing", "tunnel", t.Name)
		} else if seen || t.Reason != "" {
			d.log.Warn("tunnel not carrying traffic: withdrawn", "tunnel", t.Name, "reason", t.Reason)
		}
		if seen && !t.Carrying { // it carried until this pass
			d.metrics.failover(t.Name)
		}
	}
	if prev.InstanceOK != out.InstanceOK && prev.Tunnels != nil {
		if out.InstanceOK {
			d.log.Info("instance healthy: announcing")
		} else {
			d.log.Warn("instance check failing: everything withdrawn")
		}
	}
	if prev.Drain != out.Drain && prev.Tunnels != nil {
		d.log.Info("drain state changed", slog.String("drain", string(out.Drain)))
	}
	d.logAnnouncements(prev, out)
	d.logTakeovers(prev, out)
}

// maxLoggedPrefixes bounds the prefixes listed in one log line.
const maxLoggedPrefixes = 16

// logAnnouncements logs, once per peer and pass, every change of what is
// announced to it: the prefixes announced, withdrawn, or announced again
// with other attributes, and why.
func (d *Daemon) logAnnouncements(prev, out core.Output) {
	takeoverWas, takeoverIs := takeovers(prev), takeovers(out)
	tunnelReason := map[string]string{}
	for _, t := range out.Tunnels {
		tunnelReason[t.Name] = t.Reason
	}
	for _, peer := range slices.Sorted(maps.Keys(out.Announcements)) {
		added, withdrawn, changed := announcementDiff(prev.Announcements[peer], out.Announcements[peer])
		if len(added)+len(withdrawn)+len(changed) == 0 {
			continue
		}
		reason := "learned routes changed"
		_, isTunnel := tunnelReason[peer]
		switch {
		case takeoverWas != takeoverIs:
			reason = "pair takeover: " + takeoverIs
			if takeoverIs == "" {
				reason = "pair takeover ended"
			}
		case out.Drain != core.Normal:
			reason = "drain: " + string(out.Drain)
		case !out.InstanceOK:
			reason = "instance check failing"
		case isTunnel && tunnelReason[peer] != "":
			reason = tunnelReason[peer]
		case isTunnel && len(withdrawn) == 0:
			reason = "tunnel carrying traffic"
		case len(changed) > 0:
			reason = "attributes changed (role or drain)"
		}
		attrs := []any{"peer", peer, "reason", reason}
		for _, l := range []struct {
			key string
			ps  []netip.Prefix
		}{{"announced", added}, {"withdrawn", withdrawn}, {"updated", changed}} {
			if len(l.ps) > 0 {
				attrs = append(attrs, l.key, prefixList(l.ps))
			}
		}
		if n := len(added) + len(withdrawn) + len(changed); n == 1 {
			attrs = append(attrs, "prefix", prefixList(slices.Concat(added, withdrawn, changed)))
		}
		d.log.Info("announcements changed", attrs...)
	}
}

// announcementDiff is what changed from was to now, for the log. A peer
// that lost or got everything (a failover, a drain, a recovery) or whose
// list did not change costs no map: this runs in the pass right after the
// withdrawals were handed to the speaker, beside the UPDATEs going out.
func announcementDiff(was, now []bgp.Announcement) (added, withdrawn, changed []netip.Prefix) {
	prefixes := func(l []bgp.Announcement) []netip.Prefix {
		out := make([]netip.Prefix, len(l))
		for i, a := range l {
			out[i] = a.Prefix
		}
		return out
	}
	switch {
	case len(was) == 0:
		return prefixes(now), nil, nil
	case len(now) == 0:
		return nil, prefixes(was), nil
	case slices.EqualFunc(was, now, bgp.Announcement.Equal):
		return nil, nil, nil
	}
	old := make(map[netip.Prefix]bgp.Announcement, len(was))
	for _, a := range was {
		old[a.Prefix] = a
	}
	kept := make(map[netip.Prefix]bool, len(now))
	for _, a := range now {
		kept[a.Prefix] = true
		switch o, ok := old[a.Prefix]; {
		case !ok:
			added = append(added, a.Prefix)
		case !o.Equal(a):
			changed = append(changed, a.Prefix)
		}
	}
	for _, a := range was {
		if !kept[a.Prefix] {
			withdrawn = append(withdrawn, a.Prefix)
		}
	}
	return added, withdrawn, changed
}

// takeovers lists the devices o takes over, for logs.
func takeovers(o core.Output) string {
	var ds []string
	for _, t := range o.Takeovers {
		ds = append(ds, t.Device)
	}
	return strings.Join(ds, " ")
}

// prefixList renders prefixes sorted, at most maxLoggedPrefixes of them.
func prefixList(ps []netip.Prefix) string {
	slices.SortFunc(ps, comparePrefix)
	var b strings.Builder
	for i, p := range ps {
		if i == maxLoggedPrefixes {
			fmt.Fprintf(&b, " and %d more", len(ps)-i)
			break
		}
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

func routeEqual(a, b route.Route) bool {
	return a.Prefix == b.Prefix && slices.Equal(a.NextHops, b.NextHops)
}
