package daemon

import (
	"context"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/health"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// Embedded is the daemon's loop and status around a speaker the caller
// owns, without the API socket, health runner, BFD, tunnels or kernel
// routes: bench/withdraw uses it to measure the real loop, from a health
// check result to the withdrawal received by a real peer, and the real
// status path while it is scraped.
type Embedded struct{ d *Daemon }

// NewEmbedded returns the loop for cfg around speaker, which must already
// hold cfg's sessions.
func NewEmbedded(cfg *config.Config, speaker bgp.Speaker, opts Options) *Embedded {
	d := newDaemon(cfg, opts)
	d.speaker, d.routes = speaker, noRoutes{}
	return &Embedded{d: d}
}

// Run runs the loop until ctx ends.
func (e *Embedded) Run(ctx context.Context) error {
	d := e.d
	d.out = d.core.Output(d.clock.Now())
	d.publish()
	return d.loop(ctx, nil)
}

// CheckResult feeds a result of the configured check name to the loop, as
// the health runner does, and returns once the pass after it has applied
// the decision (the withdrawals handed to the speaker).
func (e *Embedded) CheckResult(ctx context.Context, name string, ok bool) error {
	d := e.d
	return d.call(ctx, func(context.Context) error {
		d.checkResult(checkEvent{gen: d.health.gen, res: health.Result{Check: name, OK: ok, At: d.clock.Now()}})
		return nil
	})
}

// Status is the daemon's status (what `bgpgw status` reads).
func (e *Embedded) Status(ctx context.Context) (api.Status, error) { return e.d.Status(ctx) }

// MetricsStatus is what a metrics scrape reads.
func (e *Embedded) MetricsStatus(ctx context.Context) (api.Status, error) {
	return e.d.metricsStatus(ctx)
}

// noRoutes installs nothing.
type noRoutes struct{}

func (noRoutes) Set(routes []route.Route) ([]route.Route, error) { return nil, nil }
