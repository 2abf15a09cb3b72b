package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// LinkWatcher reports the state of the network links of a host (pkg/route implements it over
// netlink).
//
// A link is up when the kernel reports it administratively up (IFF_UP) and operationally up:
// operstate UP, or UNKNOWN with carrier (IFF_LOWER_UP), which is what loopback and most
// tunnel devices (WireGuard, ipip, gre, xfrm) report as they track no operational state. A
// veth is UP only while its peer is up too (LOWERLAYERDOWN otherwise); a tun device only
// while a process holds it open (DOWN, NO-CARRIER otherwise). Every other state (DOWN,
// LOWERLAYERDOWN, DORMANT, TESTING, NOTPRESENT) is down.
type LinkWatcher interface {
	// Watch calls fn with the current state of every link at start, then on every change,
	// until ctx ends. A link that disappears (deleted, renamed, moved to another namespace)
	// is reported down. Once every link that existed at start has been reported, Watch
	// calls fn("", false), once: a link not reported by then did not exist. Calls to fn
	// come from one goroutine; none follows the return of Watch.
	Watch(ctx context.Context, fn func(name string, up bool)) error
}

// Runner runs health checks and sends their results on [Runner.Results].
type Runner struct {
	probes     []probeCheck
	linkChecks []Check             // in configuration order
	byLink     map[string][]string // link name -> names of the checks on it
	watcher    LinkWatcher
	clock      Clock
	log        *slog.Logger
	started    atomic.Bool
	out        chan Result
	wake       chan struct{} // size 1: a result is pending
	mu         sync.Mutex    // guards pending and order
	pending    map[string]pendingResult
	order      []string // checks with a pending result, oldest first
	seq        uint64
}

type probeCheck struct {
	Check
	probe Probe
}

type pendingResult struct {
	Result
	seq uint64
}

// NewRunner checks the checks and prepares their probes. links may be nil if there is no
// link check; a nil clock is [RealClock], a nil log discards.
func NewRunner(checks []Check, links LinkWatcher, clock Clock, log *slog.Logger) (*Runner, error) {
	return newRunner(checks, links, clock, log, NewProbe)
}

// newRunner takes the function making the probes, which tests replace.
func newRunner(checks []Check, links LinkWatcher, clock Clock, log *slog.Logger, newProbe func(Check) (Probe, error)) (*Runner, error) {
	if clock == nil {
		clock = RealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		byLink:  make(map[string][]string),
		watcher: links,
		clock:   clock,
		log:     log,
		out:     make(chan Result, max(len(checks), 1)),
		wake:    make(chan struct{}, 1),
		pending: make(map[string]pendingResult),
	}
	names := make(map[string]bool)
	var errs []error
	for _, c := range checks {
		if err := validate(c); err != nil {
			errs = append(errs, fmt.Errorf("health: %w", err))
			continue
		}
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("health: check %q: duplicate name", c.Name))
			continue
		}
		names[c.Name] = true
		if !c.IsProbe() {
			if links == nil {
				errs = append(errs, fmt.Errorf("health: check %q: link checks need a link watcher", c.Name))
				continue
			}
			r.linkChecks = append(r.linkChecks, c)
			r.byLink[c.Target] = append(r.byLink[c.Target], c.Name)
			continue
		}
		p, err := newProbe(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("health: %w", err))
			continue
		}
		c.Args = append([]string(nil), c.Args...)
		r.probes = append(r.probes, probeCheck{Check: c, probe: p})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Results returns the channel of the checks' results, closed when Run returns.
//
// Results are never dropped silently, but they do not queue without bound either: the channel
// buffers as many results as there are checks, and behind it, while the consumer is slower
// than the checks, the runner keeps only the newest result not yet sent of each check (they
// are coalesced: a newer result replaces an older one, logged at debug level, or at warn
// level if the two differ in OK).
// The consumer thus always gets the latest outcome of every check, but may see fewer results
// than were made, which matters to rise and fall counts only when it falls behind.
func (r *Runner) Results() <-chan Result { return r.out }

// Run runs the checks until ctx ends, then stops them all and returns nil; it can be called
// once. Each probe check runs in a goroutine of its own: a first probe at once, then one at
// every tick of its interval (a probe still running at a tick delays the next one), each
// bounded by the check's timeout, after which it fails with "timeout after ..." (and its
// context is cancelled). All link checks share one [LinkWatcher]: each gets a result at start
// and one at each change of its link; a link that does not exist is down, "no such link".
// If the link watcher fails, Run stops the other checks and returns its error.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("health: runner already run")
	}
	defer close(r.out)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() { r.dispatch(ctx) })
	for i := range r.probes {
		pc := &r.probes[i]
		wg.Go(func() { r.runProbe(ctx, pc) })
	}
	var watchErr error
	if len(r.linkChecks) > 0 {
		wg.Go(func() {
			err := r.watcher.Watch(ctx, r.linkHandler())
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("stopped")
				}
				watchErr = fmt.Errorf("health: link watcher: %w", err)
				cancel()
			}
		})
	}
	wg.Wait()
	return watchErr
}

func (r *Runner) runProbe(ctx context.Context, pc *probeCheck) {
	t := r.clock.NewTicker(pc.Interval)
	defer t.Stop()
	for r.probeOnce(ctx, pc) {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

var errTimeout = errors.New("probe timed out")

// probeOnce runs one probe and emits its result; it returns false once ctx has ended.
func (r *Runner) probeOnce(ctx context.Context, pc *probeCheck) bool {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := r.clock.NewTicker(pc.Timeout) // made before the probe starts, so tests can rely on it
	defer timeout.Stop()                     // after the result is emitted: tests wait for it
	done := make(chan error, 1)
	go func() { done <- pc.probe(pctx) }()
	select {
	case err := <-done:
		if ctx.Err() != nil {
			return false
		}
		r.emit(r.result(pc, err))
		return true
	case <-timeout.C():
		cancel(errTimeout)
		r.emit(r.result(pc, errTimeout))
		<-done // probes honour ctx: never two probes of one check at once
		return ctx.Err() == nil
	case <-ctx.Done():
		<-done
		return false
	}
}

func (r *Runner) result(pc *probeCheck, err error) Result {
	res := Result{Check: pc.Name, OK: err == nil, At: r.clock.Now()}
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, errTimeout) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		res.Detail = fmt.Sprintf("timeout after %s", pc.Timeout)
	default:
		res.Detail = truncate(err.Error(), maxDetail)
	}
	r.log.Debug("health probe", "check", pc.Name, "ok", res.OK, "detail", res.Detail)
	return res
}

// linkHandler returns the function the link watcher calls. It emits a result for each check
// on a link when the link's state changes, and "no such link" for the links not reported at
// start.
func (r *Runner) linkHandler() func(name string, up bool) {
	state := make(map[string]string) // link name -> "up", "down" or "missing"
	synced := false
	set := func(link, st, detail string) {
		if state[link] == st {
			return
		}
		state[link] = st
		for _, check := range r.byLink[link] {
			r.emit(Result{Check: check, OK: st == "up", Detail: detail, At: r.clock.Now()})
		}
		r.log.Debug("health link", "link", link, "state", st)
	}
	return func(name string, up bool) {
		switch {
		case name == "":
			if synced {
				return
			}
			synced = true
			for _, c := range r.linkChecks {
				if state[c.Target] == "" {
					set(c.Target, "missing", "no such link")
				}
			}
		case len(r.byLink[name]) == 0:
		case up:
			set(name, "up", "")
		default:
			set(name, "down", fmt.Sprintf("link %s down", name))
		}
	}
}

// emit queues res for the consumer, replacing a result of the same check not yet sent.
func (r *Runner) emit(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.pending[res.Check]; ok {
		level := slog.LevelDebug
		if old.OK != res.OK {
			level = slog.LevelWarn
		}
		r.log.Log(context.Background(), level, "health result replaced by a newer one before it was read",
			"check", res.Check, "ok", old.OK, "detail", old.Detail, "newer_ok", res.OK)
	} else {
		r.order = append(r.order, res.Check)
	}
	r.seq++
	r.pending[res.Check] = pendingResult{Result: res, seq: r.seq}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// dispatch sends the pending results, oldest check first, until ctx ends.
func (r *Runner) dispatch(ctx context.Context) {
	for {
		r.mu.Lock()
		var p pendingResult
		ok := len(r.order) > 0
		if ok {
			p = r.pending[r.order[0]]
		}
		r.mu.Unlock()
		if !ok {
			select {
			case <-r.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case r.out <- p.Result:
			r.mu.Lock()
			if r.pending[p.Check].seq == p.seq { // else a newer one came meanwhile: send it next
				delete(r.pending, p.Check)
				r.order = r.order[1:]
			}
			r.mu.Unlock()
		case <-r.wake: // a newer result may have replaced p: look again
		case <-ctx.Done():
			return
		}
	}
}
