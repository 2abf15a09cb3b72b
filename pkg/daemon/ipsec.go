package daemon

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/ipsec"
)

// startIPsec has charon build the tunnels (ipsec.mode xfrm or libipsec)
// until the loop stops, then terminates them. Every tunnel state change
// wakes the loop, which feeds the states to the core.
func (d *Daemon) startIPsec(ctx context.Context, g *errgroup.Group, stop <-chan struct{}, opts Options) error {
	cfg := d.cfg
	if cfg.IPsec.Mode == config.IPsecNone {
		return nil
	}
	nl, err := ipsec.NewNetlink(opts.RouteNetns)
	if err != nil {
		return fmt.Errorf("tunnel interfaces: %w", err)
	}
	closeHandle := func() {
		if h, ok := nl.(interface{ Close() }); ok {
			h.Close()
		}
	}
	dp, err := ipsec.NewDataPlane(cfg.IPsec.Mode, nl, d.log)
	if err != nil {
		closeHandle()
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	m := ipsec.New(ipsec.Options{Mode: cfg.IPsec.Mode, Socket: cfg.IPsec.ViciSocket, Tunnels: cfg.Tunnels,
		Announce: cfg.Announce, DataPlane: dp, Logger: d.log, OnChange: d.poke})
	d.ipsec = m
	ictx, cancel := context.WithCancel(ctx)
	g.Go(func() error {
		select {
		case <-stop:
		case <-ictx.Done():
		}
		cancel()
		return nil
	})
	g.Go(func() error {
		defer closeHandle() // after Run, which removes the interfaces through it
		return m.Run(ictx)
	})
	return nil
}

// observeTunnels feeds the tunnels' IPsec states to the core.
func (d *Daemon) observeTunnels() {
	if d.ipsec == nil {
		return
	}
	now := d.clock.Now()
	for _, s := range d.ipsec.Status() {
		d.core.TunnelState(now, s.Name, s.Up())
	}
}

// ipsecStatus is every tunnel's IPsec state for the API; nil when bgpgw
// does not manage the tunnels (m is nil).
func ipsecStatus(m *ipsec.Manager) map[string]*api.IPsec {
	if m == nil {
		return nil
	}
	out := map[string]*api.IPsec{}
	for _, s := range m.Status() {
		a := &api.IPsec{State: s.State, IKEState: s.IKEState, ChildSPIs: s.ChildSPIs, Error: s.Error,
			Interface: s.Interface, Rekeys: s.Rekeys}
		if !s.Since.IsZero() {
			since := s.Since.UTC()
			a.Since = &since
		}
		out[s.Name] = a
	}
	return out
}
