package failover

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// DefaultCutFor is Options.CutFor when unset: long enough for both
// instances to lose each other (the pair's BFD, 60 ms) and for takeover
// routes to reach the routers, short enough to keep the suite short.
const DefaultCutFor = 3 * time.Second

// settleStable is how long the routers must keep the same routes, none
// through the silenced instance, before a rejoin is measured.
const settleStable = time.Second

func (r *runner) cutFor() time.Duration {
	if r.opts.CutFor > 0 {
		return r.opts.CutFor
	}
	return DefaultCutFor
}

// pairFault runs a pair fault while the traffic flows: partner-cut cuts
// the path between the instances for cutFor and restores it; rejoin
// brings the silenced instance back. Then it waits, at most ConvergeWindow,
// until the routers are back in their full state (ConvergedMs counts from
// the moment the pair was whole again), and lets the traffic run After
// more: whatever the instances do until then (release their takeover
// routes, announce again) is measured.
func (r *runner) pairFault(ctx context.Context, g *gateway, fault string, res *Result, faultAt time.Time) error {
	actx, acancel := context.WithTimeout(ctx, time.Minute)
	defer acancel()
	if _, err := g.apply(actx, fault); err != nil {
		return err
	}
	whole := faultAt
	if fault == FaultPartnerCut {
		if err := sleepCtx(ctx, r.cutFor()); err != nil {
			return err
		}
		whole = time.Now()
		res.ClearedAtNs = whole.UnixNano()
		if _, err := g.sh(actx, "nft delete table inet bgwpair"); err != nil {
			return err
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, ConvergeWindow)
	err := lab.Poll(wctx, convergencePoll, func() (bool, error) {
		rs, err := r.nextHops(wctx, true)
		return err == nil && equalRoutes(rs, r.full), err
	})
	wcancel()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil:
		res.ConvergedMs = ms(time.Since(whole))
	default:
		r.logf("failover %s (%s): %s: not back in full state within %s: %v", r.topology, r.stack, fault, ConvergeWindow, err)
	}
	return sleepCtx(ctx, r.opts.After)
}

// settleWithout silences g (as FaultSilent) and waits until the routers
// have settled on the other instance: every destination reachable, no
// route through g and no BGP session with it established (a router
// without BFD notices only at its hold time), the same routes for
// settleStable.
func (r *runner) settleWithout(ctx context.Context, g *gateway, gwAddrs []string) error {
	if _, err := g.sh(ctx, nftSilent); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, r.opts.Recover)
	defer cancel()
	const every = 250 * time.Millisecond
	var last routes
	var up []string
	stable := time.Duration(0)
	err := lab.Poll(wctx, every, func() (bool, error) {
		rs, err := r.nextHops(wctx, false)
		if err != nil {
			return false, err
		}
		if up, err = r.establishedWith(wctx, gwAddrs); err != nil {
			return false, err
		}
		if len(up) == 0 && r.converged(rs, gwAddrs) && equalRoutes(rs, last) {
			stable += every
		} else {
			stable = 0
		}
		last = rs
		return stable >= settleStable, nil
	})
	if err != nil {
		return fmt.Errorf("the routers did not settle on the other instance: %w (routes %v, sessions still up with %s: %v)",
			err, last, g.node.Name, up)
	}
	r.logf("failover %s (%s): %s silent, the routers settled on the other instance: %v", r.topology, r.stack, g.node.Name, last)
	return nil
}

// pairPartner reads pair.partner, the partner instance's cloud-side
// address, from a gateway's bgpgw.yaml ("" when the file has none). The
// hand-built stack's instances have the file too.
func pairPartner(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var c struct {
		Pair struct {
			Partner string `yaml:"partner"`
		} `yaml:"pair"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if c.Pair.Partner == "" {
		return "", nil
	}
	a, err := netip.ParseAddr(c.Pair.Partner)
	if err != nil {
		return "", fmt.Errorf("%s: pair.partner: %w", path, err)
	}
	return a.String(), nil
}
