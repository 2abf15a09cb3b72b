package daemon

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/health"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// startHealth runs the configured health checks until the loop stops and
// feeds every result to the core; the loop reconciles at once.
func (d *Daemon) startHealth(ctx context.Context, g *errgroup.Group, stop <-chan struct{}) error {
	if len(d.cfg.Health) == 0 {
		return nil
	}
	checks := make([]health.Check, 0, len(d.cfg.Health))
	for _, c := range d.cfg.Health {
		checks = append(checks, healthCheck(c))
	}
	r, err := health.NewRunner(checks, route.NewLinkWatcher(route.LinkOptions{Logger: d.log}), health.RealClock(), d.log)
	if err != nil {
		return fmt.Errorf("%w: health: %w", ErrConfig, err)
	}
	hctx, cancel := context.WithCancel(ctx)
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
		for res := range r.Results() {
			d.checkResult(res)
		}
		return nil
	})
	return nil
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
