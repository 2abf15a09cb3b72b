package daemon

import (
	"context"
	"fmt"
	"slices"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/health"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// healthRunner is the running set of health checks; the loop's.
type healthRunner struct {
	gen    uint64 // results of other generations are dropped
	cancel func()
}

// startHealth runs the configured health checks.
func (d *Daemon) startHealth() error {
	r, err := d.newHealthRunner(d.cfg.Health)
	if err != nil {
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

// startHealthRunner stops the running checks, if any, and runs r (when
// not nil) until the loop stops, posting its results to the loop. No
// result of the stopped checks counts once this returns.
func (d *Daemon) startHealthRunner(r *health.Runner) {
	if d.health.cancel != nil {
		d.health.cancel()
	}
	d.health.gen++
	d.health.cancel = nil
	if r == nil {
		return
	}
	gen, g, stop, started := d.health.gen, d.runG, d.runStop, d.looping
	hctx, cancel := context.WithCancel(d.runCtx)
	d.health.cancel = cancel
	g.Go(func() error {
		select {
		case <-stop:
		case <-hctx.Done():
		}
		cancel()
		return nil
	})
	g.Go(func() error {
		err := r.Run(hctx)
		if err != nil && started {
			// Started by a reload: the checks failing to run (a link
			// watcher that cannot subscribe, say) must not stop the
			// daemon without a drain; their results stay failing.
			d.log.Error("health checks stopped", "reason", err.Error())
			return nil
		}
		return err
	})
	g.Go(func() error {
		for res := range r.Results() {
			d.mail.post(checkEvent{gen: gen, res: res}, d.clock.Now())
		}
		return nil
	})
}

// forgetChecks drops the status of checks cfg no longer has.
func (d *Daemon) forgetChecks(cfg *config.Config) {
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

// checkResult feeds one result of the running checks to the core.
func (d *Daemon) checkResult(ev checkEvent) {
	if ev.gen != d.health.gen {
		return
	}
	res := ev.res
	prev, seen := d.checks[res.Check]
	d.core.CheckResult(d.clock.Now(), res.Check, res.OK)
	ok, at := res.OK, res.At.UTC()
	scope := ""
	for _, c := range d.cfg.Health {
		if c.Name == res.Check {
			scope = scopeName(c)
		}
	}
	d.checks[res.Check] = api.Check{Name: res.Check, Scope: scope, OK: &ok, Detail: res.Detail, At: &at}
	if !seen || prev.OK == nil || *prev.OK != res.OK {
		if res.OK {
			d.log.Info("health check passing", "check", res.Check)
		} else {
			d.log.Warn("health check failing", "check", res.Check, "reason", res.Detail)
		}
	}
}
