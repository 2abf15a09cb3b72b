package daemon

import (
	"context"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/health"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// startHealth runs the configured health checks until the loop stops and
// feeds every result to the core; the loop reconciles at once.
func (d *Daemon) startHealth(ctx context.Context, g *errgroup.Group, stop <-chan struct{}) error {
	d.mu.Lock()
	d.healthCtx, d.healthGroup, d.healthStopCh = ctx, g, stop
	d.mu.Unlock()
	return d.runHealth(d.config().Health)
}

// runHealth starts a runner for checks.
func (d *Daemon) runHealth(cfgChecks []config.Check) error {
	r, err := d.newHealthRunner(cfgChecks)
	if err != nil || r == nil {
		return err
	}
	d.startHealthRunner(r)
	return nil
}

// newHealthRunner builds, without starting it, the runner of checks; nil
// when there are none. It holds no resource until it runs.
func (d *Daemon) newHealthRunner(cfgChecks []config.Check) (*health.Runner, error) {
	if len(cfgChecks) == 0 {
		return nil, nil
	}
	checks := make([]health.Check, 0, len(cfgChecks))
	for _, c := range cfgChecks {
		checks = append(checks, healthCheck(c))
	}
	r, err := health.NewRunner(checks, route.NewLinkWatcher(route.LinkOptions{Logger: d.log}), health.RealClock(), d.log)
	if err != nil {
		return nil, fmt.Errorf("%w: health: %w", ErrConfig, err)
	}
	return r, nil
}

func (d *Daemon) startHealthRunner(r *health.Runner) {
	d.mu.Lock()
	ctx, g, stop := d.healthCtx, d.healthGroup, d.healthStopCh
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.healthCancel, d.healthDone = cancel, done
	d.mu.Unlock()
	g.Go(func() error {
		select {
		case <-stop:
		case <-hctx.Done():
		}
		cancel()
		return nil
	})
	g.Go(func() error { return r.Run(hctx) })
	g.Go(func() error {
		defer close(done)
		for res := range r.Results() {
			d.checkResult(res)
		}
		return nil
	})
}

// stopHealth stops the running checks and waits until their last result
// has been fed to the core.
func (d *Daemon) stopHealth() {
	d.mu.Lock()
	cancel, done := d.healthCancel, d.healthDone
	d.healthCancel, d.healthDone = nil, nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// forgetChecks drops the status of checks cfg no longer has.
func (d *Daemon) forgetChecks(cfg *config.Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name := range d.checks {
		if !slices.ContainsFunc(cfg.Health, func(c config.Check) bool { return c.Name == name }) {
			delete(d.checks, name)
		}
	}
}

func healthCheck(c config.Check) health.Check {
	return health.Check{Name: c.Name, Kind: health.Kind(c.Kind), Target: c.Target, Args: c.Args,
		Interval: c.Interval, Timeout: c.Timeout}
}

func (d *Daemon) checkResult(res health.Result) {
	now := d.now()
	d.mu.Lock()
	prev, seen := d.checks[res.Check]
	d.core.CheckResult(now, res.Check, res.OK)
	ok, at := res.OK, res.At.UTC()
	scope := ""
	for _, c := range d.cfg.Health {
		if c.Name == res.Check {
			scope = scopeName(c)
		}
	}
	d.checks[res.Check] = api.Check{Name: res.Check, Scope: scope, OK: &ok, Detail: res.Detail, At: &at}
	d.mu.Unlock()
	if !seen || prev.OK == nil || *prev.OK != res.OK {
		if res.OK {
			d.log.Info("health check passing", "check", res.Check)
		} else {
			d.log.Warn("health check failing", "check", res.Check, "reason", res.Detail)
		}
	}
	d.poke()
}
