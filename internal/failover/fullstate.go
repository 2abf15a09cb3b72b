package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// fullStable is how long the routes must stay the same after deploy to
// be taken as the full state: longer than the pair's release_delay (2 s),
// so that a takeover at start (one instance's tunnel up before the
// other's) has ended.
const fullStable = 4 * time.Second

// waitFull waits until every router has its full-state routes (the ones
// seen after deploy, both instances where both carry, no takeover).
func (r *runner) waitFull(ctx context.Context, want routes) error {
	wctx, cancel := context.WithTimeout(ctx, r.opts.Recover)
	defer cancel()
	if want == nil {
		// After deploy: wait until every gateway carries (all its sessions
		// up), then until the routes stop changing, and remember that as
		// the full state.
		if err := lab.Poll(wctx, 500*time.Millisecond, func() (bool, error) { return r.gatewaysUp(wctx) }); err != nil {
			return fmt.Errorf("gateways not up: %w", err)
		}
		var last routes
		stable := 0
		err := lab.Poll(wctx, 500*time.Millisecond, func() (bool, error) {
			hops, err := r.nextHops(ctx, false)
			if err != nil {
				return false, err
			}
			// Every router has a route through the gateways toward the
			// far side's host.
			complete := true
			for _, n := range r.routers {
				found := false
				for k := range hops {
					found = found || strings.HasPrefix(k, n.Name+"->")
				}
				complete = complete && found
			}
			if complete && equalRoutes(hops, last) {
				stable++
			} else {
				stable = 0
			}
			last = hops
			return time.Duration(stable)*500*time.Millisecond >= fullStable, nil
		})
		if err != nil {
			return fmt.Errorf("%w (last: %v)", err, last)
		}
		r.full = last
		r.logf("failover %s (%s): full state %v", r.topology, r.stack, r.full)
		return nil
	}
	var last routes
	err := lab.Poll(wctx, 100*time.Millisecond, func() (bool, error) {
		hops, err := r.nextHops(ctx, false)
		last = hops
		return err == nil && equalRoutes(hops, want), err
	})
	if err != nil {
		return fmt.Errorf("%w (want %v, last %v)", err, want, last)
	}
	return nil
}

// gatewaysUp reports whether every gateway instance of the topology has
// all its BGP sessions established (and, with bgpgw, carries on every
// tunnel).
func (r *runner) gatewaysUp(ctx context.Context) (bool, error) {
	for _, n := range r.d.Nodes() {
		if !strings.HasPrefix(n.Name, "gw") {
			continue
		}
		g, err := r.gateway(n)
		if err != nil {
			return false, err
		}
		if IsBgpgw(r.stack) {
			out, err := g.sh(ctx, bgpgwCmd+`status --json --config "$BGPGW_CONF"`)
			if err != nil {
				return false, err
			}
			var st struct {
				Tunnels []struct {
					Carrying bool `json:"carrying"`
				} `json:"tunnels"`
				Peers []struct {
					State string `json:"state"`
				} `json:"peers"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return false, fmt.Errorf("%s: status: %w", n.Name, err)
			}
			for _, t := range st.Tunnels {
				if !t.Carrying {
					return false, nil
				}
			}
			for _, p := range st.Peers {
				if p.State != "established" {
					return false, nil
				}
			}
			continue
		}
		out, err := n.Exec(ctx, "vtysh", "-c", "show bgp summary json")
		if err != nil {
			return false, err
		}
		up, peers, err := parseSummary([]byte(out))
		if err != nil {
			return false, fmt.Errorf("%s: show bgp summary: %w", n.Name, err)
		}
		if peers == 0 || len(up) != peers {
			return false, nil
		}
	}
	return true, nil
}
