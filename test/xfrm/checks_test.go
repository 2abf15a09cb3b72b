//go:build guest

package xfrm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// status reads gateway g's status from its API socket (in process: the
// bgpgw CLI takes over a second to start in the guest).
func (g *gwNode) status(ctx context.Context) (api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return api.NewClient(g.gw.Socket).Status(ctx)
}

// startGateway writes g's configuration and runs bgpgw in g's namespace,
// then waits until its API answers, asking in process: lab.StartGateway
// polls with the bgpgw CLI every 50 ms, and in the guest each call costs
// over a second of CPU, taken from the lab it waits for.
func (x *xlab) startGateway(ctx context.Context, g *gwNode) error {
	gw := &lab.Gateway{Name: g.name, NS: g.ns, Bin: x.bgpgwBin, Config: filepath.Join(x.l.Dir(), g.name+".yaml"),
		Socket: x.l.SocketPath(g.name), LogFile: filepath.Join(x.l.Dir(), g.name+".log")}
	if err := os.WriteFile(gw.Config, []byte(g.config), 0o600); err != nil {
		return err
	}
	p, err := x.l.Start(g.ns, gw.LogFile, gw.Bin, "run", "--config", gw.Config)
	if err != nil {
		return fmt.Errorf("gateway %s: %w", g.name, err)
	}
	gw.Proc, g.gw = p, gw
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = lab.Poll(wctx, 200*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, lab.Fatal(fmt.Errorf("bgpgw exited early; log:\n%s", gw.LogTail(30)))
		}
		_, err := g.status(ctx)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("gateway %s: API did not answer: %w\n%s", g.name, err, gw.LogTail(30))
	}
	return nil
}

// wantRoutes is what gateway g installs while it carries: the on-prem LAN
// of each family toward op's inside address, through the tunnel's XFRM
// interface.
func (g *gwNode) wantRoutes() []string {
	var want []string
	for _, s := range g.tunnels {
		lan := onpremLAN4
		if s.v6 {
			lan = onpremLAN6
		}
		want = append(want, lan+" via "+s.opInsideAddr()+" dev "+s.gwIface)
	}
	slices.Sort(want)
	return want
}

// converged says whether the traffic goes through exactly the gateways
// named: their tunnels carry (bgpgw's status), they route the on-prem LAN
// into their XFRM interfaces and the others do not, op routes the cloud
// prefixes into those gateways' tunnels and cr the on-prem LAN toward those
// gateways, in both families. The reason it is not is in the error.
func (x *xlab) converged(ctx context.Context, carriers ...string) error {
	var wantOp4, wantOp6, wantCr []string
	for _, g := range x.gws {
		carries := slices.Contains(carriers, g.name)
		if !carries && g.gw.Proc.Exited() {
			continue // its routes stay until it starts again: the routers' view counts
		}
		routes, err := x.kern(g.ns).ownRoutes()
		if err != nil {
			return err
		}
		want := []string(nil)
		if carries {
			want = g.wantRoutes()
			st, err := g.status(ctx)
			if err != nil {
				return err
			}
			for _, tn := range st.Tunnels {
				if !tn.Carrying {
					return fmt.Errorf("%s: tunnel %s not carrying: %s", g.name, tn.Name, tn.Reason)
				}
			}
			wantOp4 = append(wantOp4, g.tunnels[0].opIface)
			wantOp6 = append(wantOp6, g.tunnels[1].opIface)
			wantCr = append(wantCr, g.name)
		}
		if !slices.Equal(routes, want) {
			return fmt.Errorf("%s: bgpgw's kernel routes %q, want %q", g.name, routes, want)
		}
	}
	slices.Sort(wantOp4)
	slices.Sort(wantOp6)
	for _, c := range []struct {
		n      *lab.Netns
		prefix string
		want   []string
	}{{x.op, cloud4, wantOp4}, {x.op, cloud6, wantOp6}, {x.cr, onpremLAN4, wantCr}, {x.cr, onpremLAN6, wantCr}} {
		devs, err := x.kern(c.n).routeDevs(c.prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(devs, c.want) {
			return fmt.Errorf("%s routes %s through %q, want %q", c.n.Name(), c.prefix, devs, c.want)
		}
	}
	return nil
}

// waitConverged waits until the traffic goes through exactly carriers.
func (x *xlab) waitConverged(ctx context.Context, what string, carriers ...string) {
	x.t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	err := lab.Poll(wctx, 100*time.Millisecond, func() (bool, error) {
		last = x.converged(ctx, carriers...)
		return last == nil, nil
	})
	require.NoError(x.t, err, "%s: not converged on %v: %v\n%s", what, carriers, last, x.diag())
	x.t.Logf("%s: traffic through %v after %v", what, carriers, time.Since(start).Round(10*time.Millisecond))
}

// wantPolicies is the policies of gateway g's route-based CHILD_SAs, each
// bound to its tunnel's if_id: in, out and fwd for selectors 0.0.0.0/0 and
// ::/0 both ways, or only for its own family's when the device narrows the
// selectors (libreswan).
func (x *xlab) wantPolicies(g *gwNode) []string {
	var ps []string
	for _, s := range g.tunnels {
		sels := []string{"0.0.0.0/0>0.0.0.0/0", "::/0>::/0"}
		if x.opts.device == libreswan {
			sels = sels[:1]
			if s.v6 {
				sels = []string{"::/0>::/0"}
			}
		}
		for _, dir := range []string{"in", "out", "fwd"} {
			for _, sel := range sels {
				ps = append(ps, fmt.Sprintf("%s %s if_id 0x%x", dir, sel, s.gwIfID))
			}
		}
	}
	slices.Sort(ps)
	return ps
}

// stale returns what gateway g's kernel holds beyond what its tunnels need
// now: an XFRM interface that is not one of its tunnels', an ESP state
// whose SPI its charon does not know, a policy that is not a tunnel's, a
// route of bgpgw's that is not wanted (when carrying is false: none at
// all), or a route in table 220.
func (x *xlab) stale(ctx context.Context, g *gwNode, carrying bool) error {
	k := x.kern(g.ns)
	var errs []error
	var wantLinks []string
	for _, s := range g.tunnels {
		wantLinks = append(wantLinks, fmt.Sprintf("%s if_id %d", s.gwIface, s.gwIfID))
	}
	slices.Sort(wantLinks)
	links, err := k.xfrmLinks()
	errs = append(errs, err)
	if err == nil && !slices.Equal(links, wantLinks) {
		errs = append(errs, fmt.Errorf("XFRM interfaces %q, want %q", links, wantLinks))
	}
	errs = append(errs, sameSPIs(ctx, k, func(ctx context.Context) ([]string, error) { return charonSPIs(ctx, g.charon) }))
	pols, err := k.policies(ctx)
	errs = append(errs, err)
	if want := x.wantPolicies(g); err == nil && !slices.Equal(pols, want) {
		errs = append(errs, fmt.Errorf("XFRM policies %q, want %q", pols, want))
	}
	routes, err := k.ownRoutes()
	errs = append(errs, err)
	var want []string
	if carrying {
		want = g.wantRoutes()
	}
	if err == nil && !slices.Equal(routes, want) {
		errs = append(errs, fmt.Errorf("bgpgw's routes %q, want %q", routes, want))
	}
	t220, err := k.routes(220, 0)
	errs = append(errs, err)
	if len(t220) > 0 {
		errs = append(errs, fmt.Errorf("routes in table 220: %q", t220))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", g.name, err)
	}
	return nil
}

// sameSPIs fails unless the ESP states are exactly the SPIs the IKE daemon
// reports.
func sameSPIs(ctx context.Context, k *kernel, daemon func(context.Context) ([]string, error)) error {
	kernel, err := k.spis()
	if err != nil {
		return err
	}
	known, err := daemon(ctx)
	if err != nil {
		return err
	}
	if !slices.Equal(kernel, known) {
		return fmt.Errorf("%s: ESP states with SPIs %q, the IKE daemon's CHILD_SAs %q", k.name, kernel, known)
	}
	return nil
}

// waitNoStale waits until no gateway, nor op, holds anything stale.
func (x *xlab) waitNoStale(ctx context.Context, what string, carrying ...string) {
	x.t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	err := lab.Poll(wctx, 200*time.Millisecond, func() (bool, error) {
		var errs []error
		for _, g := range x.gws {
			errs = append(errs, x.stale(ctx, g, slices.Contains(carrying, g.name)))
		}
		errs = append(errs, sameSPIs(ctx, x.kern(x.op), x.dev.spis))
		last = errors.Join(errs...)
		return last == nil, nil
	})
	require.NoError(x.t, err, "%s: stale kernel state: %v\n%s", what, last, x.diag())
	x.t.Logf("%s: nothing stale (checked in %v)", what, time.Since(start).Round(10*time.Millisecond))
}
