package daemon

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/metrics"
)

// daemonMetrics is the daemon's side of the Prometheus metrics: the HTTP
// server and what only the loop sees (failovers, withdrawals and their
// latency). A nil *daemonMetrics (metrics.listen off) does nothing.
type daemonMetrics struct {
	m   *metrics.Metrics
	srv *metrics.Server

	mu      sync.Mutex
	eventAt time.Time // the first event not yet taken by a pass; zero: none

	// applied is what the last successful SetAnnouncements gave each
	// peer; loop goroutine only.
	applied map[string][]bgp.Announcement
}

// listenMetrics binds metrics.listen, so that an address in use stops the
// daemon before it touches routes or sessions. Nothing listens when the
// key is off.
func (d *Daemon) listenMetrics() error {
	if d.cfg.Metrics.Listen == "" {
		return nil
	}
	var tunnels, peers []string
	for _, t := range d.cfg.Tunnels {
		tunnels = append(tunnels, t.Name)
		peers = append(peers, t.Name)
	}
	for _, p := range d.cfg.CloudPeers {
		peers = append(peers, p.Name)
	}
	m := metrics.New(metrics.Options{Snapshot: d.metricsStatus, Tunnels: tunnels, Peers: peers})
	srv, err := m.Listen(d.cfg.Metrics.Listen)
	if err != nil {
		return err
	}
	d.metrics = &daemonMetrics{m: m, srv: srv}
	return nil
}

// closeMetrics releases the metrics address (when serveMetrics never ran).
func (d *Daemon) closeMetrics() {
	if d.metrics != nil {
		_ = d.metrics.srv.Close()
	}
}

// serveMetrics answers scrapes until the loop has stopped (through the
// drain, which stays observable) or ctx ends. A scrape reads Status, so
// this starts only once the speaker exists. A failure to serve is logged:
// it never takes the gateway down.
func (d *Daemon) serveMetrics(ctx context.Context, g *errgroup.Group, stop <-chan struct{}) {
	if d.metrics == nil {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	g.Go(func() error {
		select {
		case <-stop:
		case <-sctx.Done():
		}
		cancel()
		return nil
	})
	g.Go(func() error {
		defer cancel()
		d.log.Info("serving metrics", "listen", d.metrics.srv.Addr().String())
		if err := d.metrics.srv.Serve(sctx); err != nil {
			d.log.Error("metrics server stopped", "err", err)
		}
		return nil
	})
}

// event records when something that may change the announcements
// happened (a health result, BFD, a BGP change, drain): the start of the
// withdrawal latency. The first event wins until a pass takes it.
func (dm *daemonMetrics) event(at time.Time) {
	if dm == nil {
		return
	}
	dm.mu.Lock()
	if dm.eventAt.IsZero() {
		dm.eventAt = at
	}
	dm.mu.Unlock()
}

// take returns the pending event's time and clears it; a pass without one
// (a timer, the resync) counts from now.
func (dm *daemonMetrics) take(now time.Time) time.Time {
	if dm == nil {
		return now
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	at := dm.eventAt
	dm.eventAt = time.Time{}
	if at.IsZero() || at.After(now) {
		return now
	}
	return at
}

// announced counts, after SetAnnouncements returned at done, the prefixes
// each peer lost compared with the last successful call, and observes the
// latency from since when any were. A failed call counts nothing: the next
// successful one does.
func (dm *daemonMetrics) announced(since, done time.Time, desired map[string][]bgp.Announcement, err error) {
	if dm == nil || err != nil {
		return
	}
	total := 0
	for peer, prev := range dm.applied {
		n := withdrawn(prev, desired[peer])
		dm.m.Withdrawn(peer, n)
		total += n
	}
	if total > 0 {
		dm.m.ObserveWithdrawal(done.Sub(since))
	}
	dm.applied = desired
}

// withdrawn counts the prefixes of prev that next no longer has.
func withdrawn(prev, next []bgp.Announcement) int {
	if len(prev) == 0 {
		return 0
	}
	samePrefix := func(a, b bgp.Announcement) bool { return a.Prefix == b.Prefix }
	if slices.EqualFunc(prev, next, samePrefix) {
		return 0 // the steady state: no set to build
	}
	if len(next) == 0 {
		return len(prev)
	}
	keep := make(map[netip.Prefix]struct{}, len(next))
	for _, a := range next {
		keep[a.Prefix] = struct{}{}
	}
	n := 0
	for _, a := range prev {
		if _, ok := keep[a.Prefix]; !ok {
			n++
		}
	}
	return n
}

// failover counts a tunnel that stopped carrying traffic.
func (dm *daemonMetrics) failover(tunnel string) {
	if dm != nil {
		dm.m.Failover(tunnel)
	}
}
