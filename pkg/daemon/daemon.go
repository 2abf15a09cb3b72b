// Package daemon runs one bgpgw instance: it wires the configuration, the
// BGP speaker, the route installer, health checks and the local API around
// the decision core (pkg/core), and reconciles the whole world on every
// change (level-triggered: bursts of events roll up into one pass).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/core"
	"github.com/bgpgw/bgpgw/pkg/ipsec"
	"github.com/bgpgw/bgpgw/pkg/route"
	"github.com/bgpgw/bgpgw/pkg/sdnotify"
)

// ResyncInterval bounds how long a missed event can leave the world
// unreconciled.
const ResyncInterval = 5 * time.Second

// ErrConfig marks errors caused by the configuration (exit code 2).
var ErrConfig = errors.New("invalid configuration")

// Options are the daemon's dependencies that tests replace.
type Options struct {
	Logger *slog.Logger
	// RouteNetns, when set, makes the route installer work in that network
	// namespace instead of the daemon's own (tests).
	RouteNetns netns.NsHandle
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ConfigPath is the file a reload reads again; empty: no reload.
	ConfigPath string
	// Reload receives a value for every reload request (SIGHUP).
	Reload <-chan struct{}
}

// Daemon is one running instance.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	now     func() time.Time
	speaker bgp.Speaker
	routes  *route.Installer

	wake   chan struct{}
	bgpErr string // last failure to read BGP state; loop goroutine only

	drainMu sync.Mutex // serialises drain and undrain (core and state file together)

	mu         sync.Mutex // guards everything below
	stopping   bool       // SIGTERM received: draining to exit
	core       *core.Core
	out        core.Output
	shutDown   map[string]bool // sessions held down by a drain
	installed  []route.Route
	lastErrs   []string
	checks     map[string]api.Check
	bfd        *bfd.Manager
	bfdPeers   map[string]bfd.Key // peer name -> session
	bfdByKey   map[bfd.Key]*bfdPeer
	bfdConfigs map[bfd.Key]bfd.SessionConfig
	// Where reconfigureBFD starts the BFD manager when a reload adds the
	// first session.
	bfdCtx   context.Context
	bfdGroup *errgroup.Group
	bfdStop  <-chan struct{}
	// Health runner of the current checks; a reload that changes them
	// replaces it.
	healthCancel func()
	healthGroup  *errgroup.Group
	healthCtx    context.Context
	healthStopCh <-chan struct{}
	healthDone   <-chan struct{}

	configPath   string
	reloadMu     sync.Mutex // serialises reloads
	lastReload   *api.Reload
	started      bool           // every component is running: reloads may start
	peersChanged bool           // a reload re-created sessions: shutDown is stale
	ipsec        *ipsec.Manager // nil with ipsec.mode none
	notify       *sdnotify.Notifier
	metrics      *daemonMetrics // nil with metrics.listen off
}

// Run runs the daemon until ctx ends, then drains (GRACEFUL_SHUTDOWN for
// drain.time, then withdrawal) and shuts down in order: BGP sessions close,
// kernel routes are removed, the API stops answering.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	// One instance per socket: the lock is taken before touching routes or
	// sessions and released last, after BGP has stopped and the routes are
	// gone, so a second bgpgw never flushes the first one's routes nor
	// removes its socket.
	unlock, err := lockInstance(cfg.API.Socket + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	d := &Daemon{cfg: cfg, log: log, now: now, wake: make(chan struct{}, 1),
		core: core.New(cfg, now()), shutDown: map[string]bool{}, checks: map[string]api.Check{},
		notify: sdnotify.New(), configPath: opts.ConfigPath}
	srv, err := api.Listen(cfg.API.Socket, d)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Close() }()
	if err := d.listenMetrics(); err != nil {
		return err
	}
	defer d.closeMetrics()

	drained, err := readDrainState(cfg.Drain.StateFile)
	if err != nil {
		return err
	}
	if drained {
		log.Warn("starting drained: `bgpgw undrain` to announce again", "state_file", cfg.Drain.StateFile)
		d.core.SetDrain(now(), true, true)
	}

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

	speaker, err := bgp.NewGoBGP(context.WithoutCancel(ctx), global(cfg), log)
	if err != nil {
		return err
	}
	defer speaker.Close()
	d.speaker, d.routes = speaker, routes
	if err := speaker.SetPeers(ctx, peers(cfg)); err != nil {
		return fmt.Errorf("configure BGP sessions: %w", err)
	}

	log.Info("bgpgw running", "instance", cfg.Instance.Name, "mode", cfg.Instance.Mode, "role", cfg.Instance.Role,
		"tunnels", len(cfg.Tunnels), "cloud_peers", len(cfg.CloudPeers), "checks", len(cfg.Health), "api", cfg.API.Socket)

	// The components outlive ctx: its end starts the drain, and they stop
	// when the loop returns (stop is closed) or at once on abort.
	runCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	g, gctx := errgroup.WithContext(runCtx)
	stop := make(chan struct{})
	g.Go(srv.Serve)
	g.Go(func() error {
		for {
			select {
			case <-stop:
				return nil
			case <-gctx.Done():
				return nil
			case <-opts.Reload:
				_ = d.Reload(gctx) // logged and recorded in status
			}
		}
	})
	d.serveMetrics(gctx, g, stop)
	g.Go(func() error {
		defer func() { _ = srv.Close() }()
		return d.loop(gctx, ctx.Done(), stop)
	})
	err = d.startIPsec(gctx, g, stop, opts)
	if err == nil {
		err = d.startHealth(gctx, g, stop)
	}
	if err == nil {
		err = d.startBFD(gctx, g, stop)
	}
	if err != nil {
		abort() // nothing was announced yet: the loop waits for sessions and checks
		return errors.Join(err, g.Wait())
	}
	d.mu.Lock()
	d.started = true
	d.mu.Unlock()
	err = g.Wait()
	log.Info("bgpgw stopped", "instance", cfg.Instance.Name)
	return err
}

func (d *Daemon) poke() {
	d.metrics.event(d.now())
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// lockInstance takes an exclusive, non-blocking flock on path and returns
// its release.
func lockInstance(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another bgpgw is running (it holds %s)", path)
		}
		return nil, fmt.Errorf("instance lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}
