// Package daemon runs one bgpgw instance: it wires the configuration, the
// BGP speaker, the route installer and the local API around the decision
// core, and reconciles the whole world on every change (level-triggered:
// bursts of events roll up into one pass).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/core"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// ResyncInterval bounds how long a missed event can leave the world
// unreconciled.
const ResyncInterval = 5 * time.Second

// Options are the daemon's dependencies that tests replace.
type Options struct {
	Logger *slog.Logger
	// RouteNetns, when set, makes the route installer work in that network
	// namespace instead of the daemon's own (tests).
	RouteNetns netns.NsHandle
}

// Daemon is one running instance.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	speaker bgp.Speaker
	routes  *route.Installer

	wake chan struct{}

	mu        sync.Mutex
	drained   bool
	installed []route.Route
	lastErrs  []string
}

// Run runs the daemon until ctx ends, then shuts down in order: the API
// stops answering, BGP sessions close (peers withdraw what we announced),
// and our kernel routes are removed.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.IPsec.Mode != config.IPsecNone {
		return fmt.Errorf("%w: ipsec.mode %q: tunnel management is not available in this version; use ipsec.mode: none with tunnels managed outside bgpgw", ErrConfig, cfg.IPsec.Mode)
	}
	// The API socket is also the instance lock: take it before touching
	// routes or sessions, so a second bgpgw on the same socket never
	// flushes the routes of the one already running.
	d := &Daemon{cfg: cfg, log: log, wake: make(chan struct{}, 1)}
	srv, err := api.Listen(cfg.API.Socket, d)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Close() }()

	routes, err := route.New(route.Options{Table: cfg.Kernel.Table, Protocol: cfg.Kernel.Protocol, Netns: opts.RouteNetns, Logger: log})
	if err != nil {
		return fmt.Errorf("route installer: %w", err)
	}
	defer routes.Close()
	if n, err := routes.Flush(); err != nil {
		return fmt.Errorf("remove stale routes (table %d, protocol %d): %w", cfg.Kernel.Table, cfg.Kernel.Protocol, err)
	} else if n > 0 {
		log.Info("removed stale routes from a previous run", "count", n, "table", cfg.Kernel.Table, "protocol", cfg.Kernel.Protocol)
	}
	defer func() {
		if n, err := routes.Flush(); err != nil {
			log.Error("remove routes at exit", "err", err)
		} else {
			log.Info("removed kernel routes", "count", n)
		}
	}()

	speaker, err := bgp.NewGoBGP(ctx, global(cfg), log)
	if err != nil {
		return err
	}
	defer speaker.Close()
	d.speaker, d.routes = speaker, routes
	if err := speaker.SetPeers(ctx, peers(cfg)); err != nil {
		return fmt.Errorf("configure BGP sessions: %w", err)
	}

	log.Info("bgpgw running", "instance", cfg.Instance.Name, "mode", cfg.Instance.Mode, "role", cfg.Instance.Role,
		"tunnels", len(cfg.Tunnels), "cloud_peers", len(cfg.CloudPeers), "api", cfg.API.Socket)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(srv.Serve)
	g.Go(func() error {
		defer func() { _ = srv.Close() }()
		return d.loop(gctx)
	})
	// Until Serve runs, connections wait in the socket's backlog.
	err = g.Wait()
	log.Info("bgpgw stopping", "instance", cfg.Instance.Name)
	return err
}

func (d *Daemon) loop(ctx context.Context) error {
	tick := time.NewTicker(ResyncInterval)
	defer tick.Stop()
	d.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.speaker.Changed():
		case <-d.wake:
		case <-tick.C:
		}
		d.reconcile(ctx)
	}
}

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// reconcile brings announcements and kernel routes to what the core wants.
func (d *Daemon) reconcile(ctx context.Context) {
	var errs []string
	st, err := d.speaker.Status(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		d.log.Error("read BGP state", "err", err)
		errs = append(errs, err.Error())
	}
	learned := map[string][]netip.Prefix{}
	for _, p := range st {
		if p.Kind == bgp.KindTunnel && p.State == bgp.StateEstablished {
			learned[p.Name] = p.Received
		}
	}
	d.mu.Lock()
	drained := d.drained
	d.mu.Unlock()
	out := core.Compute(core.Input{Config: d.cfg, Drained: drained, Learned: learned})
	if err := d.speaker.SetAnnouncements(ctx, out.Announcements); err != nil {
		d.log.Error("apply announcements", "err", err)
		errs = append(errs, err.Error())
	}
	installed, err := d.routes.Set(out.Routes)
	if err != nil {
		d.log.Error("install kernel routes", "err", err)
		errs = append(errs, err.Error())
	}
	d.mu.Lock()
	if !slices.EqualFunc(installed, d.installed, routeEqual) {
		d.log.Info("kernel routes changed", "count", len(installed))
	}
	d.installed, d.lastErrs = installed, errs
	d.mu.Unlock()
}

func routeEqual(a, b route.Route) bool {
	return a.Prefix == b.Prefix && slices.Equal(a.NextHops, b.NextHops)
}

// Drain implements api.Backend.
func (d *Daemon) Drain(context.Context) error {
	d.setDrained(true)
	return nil
}

// Undrain implements api.Backend.
func (d *Daemon) Undrain(context.Context) error {
	d.setDrained(false)
	return nil
}

func (d *Daemon) setDrained(v bool) {
	d.mu.Lock()
	changed := d.drained != v
	d.drained = v
	d.mu.Unlock()
	if changed {
		d.log.Info("drain state changed", "drained", v)
	}
	d.poke()
}

// Status implements api.Backend.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	peers, err := d.speaker.Status(ctx)
	if err != nil {
		return api.Status{}, err
	}
	d.mu.Lock()
	st := api.Status{
		Instance: api.Instance{Name: d.cfg.Instance.Name, Mode: string(d.cfg.Instance.Mode), Role: string(d.cfg.Instance.Role)},
		Drained:  d.drained,
		Peers:    []api.Peer{},
		Routes:   []api.Route{},
		Errors:   slices.Clone(d.lastErrs),
	}
	for _, r := range d.installed {
		st.Routes = append(st.Routes, api.Route{Prefix: r.Prefix.String(), NextHops: strs(r.NextHops)})
	}
	d.mu.Unlock()
	now := time.Now()
	for _, p := range peers {
		ap := api.Peer{
			Name: p.Name, Kind: string(p.Kind), Address: p.Address.String(), PeerASN: p.PeerASN,
			State: string(p.State), AdminDown: p.AdminDown, LastError: p.LastError,
			Announced: strs(p.Announced), Received: strs(p.Received), Rejected: strs(p.Rejected),
		}
		if !p.Since.IsZero() {
			since := p.Since.UTC()
			ap.EstablishedSince = &since
			ap.UptimeSeconds = now.Sub(p.Since).Round(time.Millisecond).Seconds()
		}
		st.Peers = append(st.Peers, ap)
	}
	return st, nil
}

func strs[T fmt.Stringer](l []T) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = v.String()
	}
	return out
}

func global(c *config.Config) bgp.Global {
	return bgp.Global{
		ASN: c.BGP.ASN, RouterID: c.BGP.RouterID,
		ListenPort: c.BGP.ListenPort, ListenAddresses: c.BGP.ListenAddresses,
		Never: c.Announce,
	}
}

func peers(c *config.Config) []bgp.PeerConfig {
	var out []bgp.PeerConfig
	base := bgp.PeerConfig{HoldTime: c.BGP.HoldTime, Keepalive: c.BGP.Keepalive, ConnectRetry: c.BGP.ConnectRetry}
	for _, t := range c.Tunnels {
		p := base
		p.Name, p.Kind, p.PeerASN = t.Name, bgp.KindTunnel, t.PeerASN
		p.Address, p.LocalAddress = t.InsideRemote, t.InsideLocal.Addr()
		p.Password, p.MaxPrefixes = t.Password.Reveal(), t.MaxPrefixes
		for _, r := range t.Accept {
			p.Accept = append(p.Accept, bgp.PrefixRange{Prefix: r.Prefix, MaxLen: r.MaxLen})
		}
		out = append(out, p)
	}
	for _, cp := range c.CloudPeers {
		p := base
		p.Name, p.Kind, p.PeerASN = cp.Name, bgp.KindCloud, cp.PeerASN
		p.Address, p.LocalAddress = cp.Address, cp.LocalAddress
		p.Password, p.MultihopTTL = cp.Password.Reveal(), cp.Multihop
		// Nothing is accepted from cloud-side peers; the limit only guards memory.
		p.MaxPrefixes = config.DefaultMaxPrefixes
		out = append(out, p)
	}
	return out
}

var _ api.Backend = (*Daemon)(nil)

// ErrConfig marks errors caused by the configuration (exit code 2).
var ErrConfig = errors.New("invalid configuration")
