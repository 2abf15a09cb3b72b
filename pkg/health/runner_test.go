package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// wait bounds every wait for something the runner's goroutines do; time itself is fake.
const wait = 5 * time.Second

type fakeProbes map[string]Probe

func (f fakeProbes) newProbe(c Check) (Probe, error) {
	if p, ok := f[c.Name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("no fake probe for %q", c.Name)
}

func probe(name string, interval, timeout time.Duration) Check {
	return Check{Name: name, Kind: KindTCP, Target: "192.0.2.1:80", Interval: interval, Timeout: timeout}
}

func link(name, target string) Check { return Check{Name: name, Kind: KindLink, Target: target} }

// start runs r and returns a function that stops it and checks that it stopped cleanly:
// Run returned nil and closed the results channel.
func start(t *testing.T, r *Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(wait):
			t.Fatal("Run did not return after its context ended")
		}
		for range r.Results() { // closed by Run: this ends
		}
		require.Error(t, r.Run(context.Background()), "second Run")
	}
}

func next(t *testing.T, r *Runner) Result {
	t.Helper()
	select {
	case res, ok := <-r.Results():
		require.True(t, ok, "results closed")
		return res
	case <-time.After(wait):
		t.Fatal("no result")
		return Result{}
	}
}

// collect reads n results and returns them by check.
func collect(t *testing.T, r *Runner, n int) map[string]Result {
	t.Helper()
	out := make(map[string]Result)
	for range n {
		res := next(t, r)
		require.NotContains(t, out, res.Check, "two results of one check")
		out[res.Check] = res
	}
	return out
}

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestRunnerTicks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var aCalls, bCalls atomic.Int32
	probes := fakeProbes{
		"a": func(context.Context) error {
			if aCalls.Add(1)%2 == 0 {
				return errors.New("connect: connection refused")
			}
			return nil
		},
		"b": func(context.Context) error { bCalls.Add(1); return nil },
	}
	clk := newFakeClock()
	r, err := newRunner([]Check{probe("a", time.Second, 500*time.Millisecond), probe("b", 2*time.Second, time.Second)},
		nil, clk, nil, probes.newProbe)
	require.NoError(t, err)
	stop := start(t, r)

	// First probes at once.
	assert.Equal(t, map[string]Result{
		"a": {Check: "a", OK: true, At: at(0)},
		"b": {Check: "b", OK: true, At: at(0)},
	}, collect(t, r, 2))
	clk.Advance(time.Second)
	assert.Equal(t, Result{Check: "a", Detail: "connect: connection refused", At: at(time.Second)}, next(t, r))
	clk.Advance(time.Second)
	assert.Equal(t, map[string]Result{
		"a": {Check: "a", OK: true, At: at(2 * time.Second)},
		"b": {Check: "b", OK: true, At: at(2 * time.Second)},
	}, collect(t, r, 2))

	stop()
	assert.EqualValues(t, 3, aCalls.Load())
	assert.EqualValues(t, 2, bCalls.Load())
	assert.Zero(t, clk.running(), "tickers left running")
}

func TestRunnerTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	hangStarted := make(chan struct{}, 10)
	hangCause := make(chan error, 10)
	stuckStarted := make(chan struct{}, 10)
	release := make(chan struct{})
	var stuckCalls atomic.Int32
	probes := fakeProbes{
		"hang": func(ctx context.Context) error { // honours ctx
			hangStarted <- struct{}{}
			<-ctx.Done()
			hangCause <- context.Cause(ctx)
			return ctx.Err()
		},
		"stuck": func(context.Context) error { // ignores ctx until released
			stuckCalls.Add(1)
			stuckStarted <- struct{}{}
			<-release
			return nil
		},
		"ok": func(context.Context) error { return nil },
	}
	clk := newFakeClock()
	r, err := newRunner([]Check{
		probe("hang", time.Second, 500*time.Millisecond),
		probe("stuck", time.Second, 300*time.Millisecond),
		probe("ok", time.Second, 500*time.Millisecond),
	}, nil, clk, nil, probes.newProbe)
	require.NoError(t, err)
	stop := start(t, r)
	defer stop()

	assert.Equal(t, Result{Check: "ok", OK: true, At: at(0)}, next(t, r))
	<-hangStarted
	<-stuckStarted // the timeout tickers exist now
	clk.Advance(300 * time.Millisecond)
	assert.Equal(t, Result{Check: "stuck", Detail: "timeout after 300ms", At: at(300 * time.Millisecond)}, next(t, r))
	clk.Advance(200 * time.Millisecond)
	assert.Equal(t, Result{Check: "hang", Detail: "timeout after 500ms", At: at(500 * time.Millisecond)}, next(t, r))
	assert.ErrorIs(t, <-hangCause, errTimeout, "the probe's context is cancelled at the timeout")

	// The other checks go on while stuck's probe still runs; stuck starts no second probe.
	clk.Advance(500 * time.Millisecond)
	assert.Equal(t, Result{Check: "ok", OK: true, At: at(time.Second)}, next(t, r))
	<-hangStarted
	assert.EqualValues(t, 1, stuckCalls.Load())

	// Released, stuck takes its pending tick at once.
	close(release)
	assert.Equal(t, Result{Check: "stuck", OK: true, At: at(time.Second)}, next(t, r))
	assert.EqualValues(t, 2, stuckCalls.Load())
}

func TestRunnerCoalesce(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const n = 10
	calls := make(chan int, n+1)
	release := make(chan struct{})
	var count atomic.Int32
	// Probes 1..n-1 fail with "k", probe n succeeds, probe n+1 waits for release, then fails.
	probes := fakeProbes{"a": func(ctx context.Context) error {
		k := int(count.Add(1))
		calls <- k
		switch {
		case k == n:
			return nil
		case k == n+1:
			<-release
		}
		return fmt.Errorf("%d", k)
	}}
	clk := newFakeClock()
	clk.stops = make(chan time.Duration, 100)
	var logs lab.SyncBuffer
	r, err := newRunner([]Check{probe("a", time.Second, 500*time.Millisecond)}, nil, clk,
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), probes.newProbe)
	require.NoError(t, err)
	stop := start(t, r)
	defer stop()

	// n results made while nobody reads. The runner stops a probe's timeout ticker after it
	// emitted its result: only then may the time move on.
	for k := 1; k <= n; k++ {
		require.Equal(t, k, <-calls)
		require.Equal(t, 500*time.Millisecond, <-clk.stops)
		clk.Advance(time.Second)
	}
	require.Equal(t, n+1, <-calls) // blocked until released

	// The consumer gets at most: the one in the channel's buffer, one the dispatcher held
	// when the consumer came, and the newest; always the newest, in order.
	var got []string
	for len(got) == 0 || got[len(got)-1] != "ok" {
		res := next(t, r)
		if res.OK {
			got = append(got, "ok")
			continue
		}
		if len(got) > 0 {
			require.Less(t, got[len(got)-1], res.Detail, "results out of order: %v then %s", got, res.Detail)
		}
		got = append(got, res.Detail)
	}
	assert.LessOrEqual(t, len(got), 3, "results not coalesced: %v", got)
	assert.Contains(t, logs.String(), `level=WARN msg="health result replaced by a newer one before it was read" check=a ok=false`)

	close(release)
	assert.Equal(t, Result{Check: "a", Detail: fmt.Sprint(n + 1), At: at(n * time.Second)}, next(t, r))
}

type linkEvent struct {
	name string
	up   bool
}

type fakeWatcher struct {
	initial []linkEvent
	events  chan linkEvent
	err     error
}

func (w *fakeWatcher) Watch(ctx context.Context, fn func(name string, up bool)) error {
	if w.err != nil {
		return w.err
	}
	for _, e := range w.initial {
		fn(e.name, e.up)
	}
	fn("", false)
	for {
		select {
		case e := <-w.events:
			fn(e.name, e.up)
		case <-ctx.Done():
			return nil
		}
	}
}

func TestRunnerLinks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := &fakeWatcher{
		initial: []linkEvent{{"lo", true}, {"eth0", true}, {"eth1", false}},
		events:  make(chan linkEvent),
	}
	r, err := NewRunner([]Check{link("l0", "eth0"), link("l1", "eth1"), link("l2", "eth9"), link("l3", "eth0")},
		w, newFakeClock(), nil)
	require.NoError(t, err)
	stop := start(t, r)
	defer stop()

	// In the order of the events; l2 once the start is complete.
	assert.Equal(t, Result{Check: "l0", OK: true, At: t0}, next(t, r))
	assert.Equal(t, Result{Check: "l3", OK: true, At: t0}, next(t, r))
	assert.Equal(t, Result{Check: "l1", Detail: "link eth1 down", At: t0}, next(t, r))
	assert.Equal(t, Result{Check: "l2", Detail: "no such link", At: t0}, next(t, r))

	w.events <- linkEvent{"eth0", true} // no change: no result
	w.events <- linkEvent{"eth1", true}
	assert.Equal(t, Result{Check: "l1", OK: true, At: t0}, next(t, r))
	w.events <- linkEvent{"eth9", false} // created, down
	assert.Equal(t, Result{Check: "l2", Detail: "link eth9 down", At: t0}, next(t, r))
	w.events <- linkEvent{"eth0", false}
	assert.Equal(t, Result{Check: "l0", Detail: "link eth0 down", At: t0}, next(t, r))
	assert.Equal(t, Result{Check: "l3", Detail: "link eth0 down", At: t0}, next(t, r))
}

func TestRunnerLinkWatcherFails(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	clk := newFakeClock()
	probes := fakeProbes{"p": func(ctx context.Context) error { return nil }}
	r, err := newRunner([]Check{link("l", "eth0"), probe("p", time.Second, 100*time.Millisecond)},
		&fakeWatcher{err: errors.New("netlink: permission denied")}, clk, nil, probes.newProbe)
	require.NoError(t, err)
	err = r.Run(context.Background())
	require.ErrorContains(t, err, "health: link watcher: netlink: permission denied")
	for range r.Results() {
	}
	assert.Zero(t, clk.running())
}

func TestNewRunnerErrors(t *testing.T) {
	ok := probe("ok", time.Second, 500*time.Millisecond)
	w := &fakeWatcher{}
	for _, tc := range []struct {
		name   string
		checks []Check
		links  LinkWatcher
		want   string
	}{
		{"no name", []Check{{Kind: KindTCP, Target: "a:1", Interval: time.Second, Timeout: time.Millisecond}}, nil, "check without a name"},
		{"unknown kind", []Check{{Name: "x", Kind: "udp", Target: "a:1"}}, nil, `check "x": unknown kind "udp"`},
		{"empty target", []Check{{Name: "x", Kind: KindHTTP, Interval: time.Second, Timeout: time.Millisecond}}, nil, `check "x": empty target`},
		{"duplicate", []Check{ok, ok}, nil, `check "ok": duplicate name`},
		{"timeout = interval", []Check{probe("x", time.Second, time.Second)}, nil, "timeout 1s must be below the interval 1s"},
		{"no interval", []Check{probe("x", 0, time.Second)}, nil, "interval 0s must be positive"},
		{"no timeout", []Check{probe("x", time.Second, 0)}, nil, "timeout 0s must be positive"},
		{"args", []Check{{Name: "x", Kind: KindTCP, Target: "a:1", Args: []string{"-v"}, Interval: time.Second, Timeout: time.Millisecond}}, nil, "args are for command checks only"},
		{"link without watcher", []Check{link("x", "eth0")}, nil, "link checks need a link watcher"},
		{"bad link name", []Check{link("x", "eth0/1")}, w, `"eth0/1" is not an interface name`},
		{"long link name", []Check{link("x", "abcdefghijklmnop")}, w, "is not an interface name"},
		{"tcp without port", []Check{{Name: "x", Kind: KindTCP, Target: "host", Interval: time.Second, Timeout: time.Millisecond}}, nil, "want host:port"},
		{"icmp not an IP", []Check{{Name: "x", Kind: KindICMP, Target: "gw.example", Interval: time.Second, Timeout: time.Millisecond}}, nil, "icmp target"},
		{"http scheme", []Check{{Name: "x", Kind: KindHTTP, Target: "ftp://a/", Interval: time.Second, Timeout: time.Millisecond}}, nil, "want an http:// or https:// URL"},
		{"command not found", []Check{{Name: "x", Kind: KindCommand, Target: "no-such-command-bgpgw", Interval: time.Second, Timeout: time.Millisecond}}, nil, "executable file not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRunner(tc.checks, tc.links, nil, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
	// Link checks ignore interval and timeout (the configuration sets them for every check).
	_, err := NewRunner([]Check{ok, link("l", "eth0"), {Name: "l2", Kind: KindLink, Target: "eth1", Interval: time.Second, Timeout: 2 * time.Second}}, w, nil, nil)
	require.NoError(t, err)
}
