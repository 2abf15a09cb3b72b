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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
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
	// Clock is the loop's clock; nil means the time package's.
	Clock Clock
	// ConfigPath is the file a reload reads again; empty: no reload.
	ConfigPath string
	// Reload receives a value for every reload request (SIGHUP).
	Reload <-chan struct{}
}

// routeSetter is the route installer as the loop uses it.
type routeSetter interface {
	// Set makes the installed routes exactly routes and returns what is
	// installed afterwards (also after an error).
	Set(routes []route.Route) ([]route.Route, error)
}

// Daemon is one running instance. One goroutine, the loop, owns the core
// and all the state below the line; everything else reaches it through the
// mailbox (events.go) and reads what the loop publishes (snapshot.go).
type Daemon struct {
	log        *slog.Logger
	clock      Clock
	speaker    bgp.Speaker
	routes     routeSetter
	mail       *mailbox
	snap       atomic.Pointer[snapshot]
	notify     *sdnotify.Notifier
	metrics    *daemonMetrics // nil with metrics.listen off
	configPath string
	// drainMu keeps a drain's state file in step with the core: a drain
	// writes it after the loop applied the drain, an undrain removes it
	// on the loop; two calls must not interleave.
	drainMu sync.Mutex
	// reloadMu serialises reloads: the file read and its application.
	reloadMu sync.Mutex

	// Owned by the loop goroutine.
	cfg        *config.Config
	core       *core.Core
	out        core.Output
	shutDown   map[string]bool   // sessions held down, as last given to the speaker (for the log)
	heldStale  bool              // the last SetHeldDown failed: give the set again
	resetGen   map[string]uint64 // the last core.Reset applied, per peer
	installed  []route.Route
	bgpErr     string           // last failure to read BGP state
	sessions   []bgp.PeerStatus // last read from the speaker
	applied    map[string][]bgp.Announcement
	lastErrs   []string
	checks     map[string]api.Check
	lastReload *api.Reload
	stopping   bool // SIGTERM received: draining to exit
	looping    bool // the loop runs (components start at a reload)
	observe    bool // read the sessions in the next pass (after a reload)
	ipsec      *ipsec.Manager
	bfd        bfdSessions
	pair       *pairLink // nil without pair:
	health     healthRunner
	// Where components started at runtime (a reload's health runner or
	// first BFD session) run.
	runCtx  context.Context
	runG    *errgroup.Group
	runStop <-chan struct{}
}

// newDaemon returns a daemon for cfg with the loop's state initialised.
func newDaemon(cfg *config.Config, opts Options) *Daemon {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := opts.Clock
	if clock == nil {
		clock = realClock{}
	}
	return &Daemon{cfg: cfg, log: log, clock: clock, mail: newMailbox(),
		core: core.New(cfg, clock.Now()), shutDown: map[string]bool{}, resetGen: map[string]uint64{},
		checks: map[string]api.Check{}, notify: sdnotify.New(), configPath: opts.ConfigPath}
}

// Run runs the daemon until ctx ends, then drains (GRACEFUL_SHUTDOWN for
// drain.time, then withdrawal) and shuts down in order: BGP sessions close,
// kernel routes are removed, the API stops answering.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	// One instance per socket: the lock is taken before touching routes or
	// sessions and released last, after BGP has stopped and the routes are
	// gone, so a second bgpgw never flushes the first one's routes nor
	// removes its socket.
	unlock, err := lockInstance(cfg.API.Socket + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	d := newDaemon(cfg, opts)
	log := d.log
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
		d.core.SetDrain(d.clock.Now(), true, true)
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
	d.runCtx, d.runG, d.runStop = gctx, g, stop
	// The components start before the loop, which owns them from then on.
	err = d.startIPsec(gctx, g, stop, opts)
	if err == nil {
		err = d.startPair()
	}
	if err == nil {
		err = d.startHealth()
	}
	if err == nil {
		err = d.startBFD()
	}
	if err != nil {
		abort() // nothing was announced yet
		close(stop)
		return errors.Join(err, g.Wait())
	}
	// Status answers from the start, before the loop's first pass.
	if st, err := speaker.Sessions(ctx); err == nil {
		d.sessions = st
	}
	d.out = d.core.Output(d.clock.Now())
	d.publish()
	g.Go(srv.Serve)
	g.Go(func() error {
		for {
			select {
			case <-stop:
				return nil
			case <-gctx.Done():
				return nil
			case <-opts.Reload:
				_, _ = d.Reload(gctx) // logged and recorded in status
			}
		}
	})
	d.serveMetrics(gctx, g, stop)
	g.Go(func() error {
		defer func() { _ = srv.Close() }()
		defer close(stop)
		return d.loop(gctx, ctx.Done())
	})
	err = g.Wait()
	log.Info("bgpgw stopped", "instance", cfg.Instance.Name)
	return err
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
