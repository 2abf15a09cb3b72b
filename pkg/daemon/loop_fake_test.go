package daemon

// Loop tests: the daemon's loop runs with the fakes of fake_test.go and a
// fake clock; the tests post events (session states, health results, BFD
// changes, API calls, reloads) and assert on the calls the loop made to
// the speaker and the route installer (the call log) and on Status.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/health"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// waitTimeout bounds every wait for the loop: it is only reached when the
// loop is stuck (the test then fails), never in a passing run.
const waitTimeout = 10 * time.Second

var loopEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// activeActiveYAML is two tunnels and a cloud-side peer with an instance
// check; $BFD is replaced with the peers' BFD setting, $DIR with the
// test's directory.
const activeActiveYAML = `
instance: {name: gw1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1}
announce: [10.10.0.0/16, 10.20.0.0/24]
ipsec: {mode: none}
tunnels:
  - {name: t1, inside: {local: 169.254.21.1/30, remote: 169.254.21.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]$BFD}
  - {name: t2, inside: {local: 169.254.22.1/30, remote: 169.254.22.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]$BFD}
$T3cloud_peers:
  - {name: rr, address: 10.10.0.2, peer_asn: 65100$BFD}
health:
  - {name: uplink, kind: link, target: eth1}
drain: {time: 2s, state_file: $DIR/drained}
hold_down: {initial: 1s, max: 8s, decay: 30s}
api: {socket: $DIR/bgpgw.sock}
`

// activeActive is activeActiveYAML without BFD.
func activeActive() string { return yamlWith(activeActiveYAML, "$BFD", "", "$T3", "") }

func yamlWith(y string, kv ...string) string {
	return strings.NewReplacer(kv...).Replace(y)
}

// activeStandbyYAML is the standby of a pair, with one tunnel.
const activeStandbyYAML = `
instance: {name: gw2, mode: active-standby, role: standby}
bgp: {asn: 65515, router_id: 192.0.2.2}
announce: [10.10.0.0/16]
standby: {prepend: 3, med: 200}
ipsec: {mode: none}
tunnels:
  - {name: t1, inside: {local: 169.254.23.1/30, remote: 169.254.23.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]}
cloud_peers:
  - {name: rr, address: 10.10.0.2, peer_asn: 65100}
health:
  - {name: uplink, kind: link, target: eth1}
drain: {time: 2s, state_file: $DIR/drained}
api: {socket: $DIR/bgpgw.sock}
`

// lockedBuffer is the daemon's log, written by the loop and read by the
// test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// loopHarness runs a daemon's loop on the fakes.
type loopHarness struct {
	t        *testing.T
	d        *Daemon
	calls    *callLog
	sp       *fakeSpeaker
	rt       *fakeRoutes
	clock    *fakeClock
	dir      string
	bfdKeys  map[string]bfd.Key // peer name -> its BFD session
	stopping chan struct{}
	exited   chan struct{} // closed when the loop returned, with loopErr
	loopErr  error
	mark     int // start of the calls next returns
}

// startLoop builds a daemon for the configuration y (with $DIR replaced
// by a temporary directory, also written there as the file Reload reads),
// sets it up as Run does but with the fakes, runs its loop and waits for
// its first pass.
func startLoop(t *testing.T, y string) *loopHarness {
	t.Helper()
	// Not under systemd, whatever the environment: no READY or watchdog.
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	dir := t.TempDir()
	y = strings.ReplaceAll(y, "$DIR", dir)
	cfg, err := configfile.Parse([]byte(y))
	require.NoError(t, err)
	path := filepath.Join(dir, "bgpgw.yaml")
	require.NoError(t, os.WriteFile(path, []byte(y), 0o644))

	logs := &lockedBuffer{}
	clock := newFakeClock(loopEpoch)
	d := newDaemon(cfg, Options{Clock: clock, ConfigPath: path,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	calls := newCallLog()
	sp, rt := newFakeSpeaker(calls), newFakeRoutes(calls)
	sp.check = cloudPrefixCheck(cfg.Announce)
	d.speaker, d.routes = sp, rt
	h := &loopHarness{t: t, d: d, calls: calls, sp: sp, rt: rt, clock: clock, dir: dir,
		bfdKeys: map[string]bfd.Key{}, stopping: make(chan struct{}), exited: make(chan struct{})}
	// BFD events are posted by the test: the sessions are mapped to their
	// peers as startBFD would, without a manager (and its sockets).
	if _, byKey := wantBFD(cfg); len(byKey) > 0 {
		d.bfd.byKey = byKey
		for k, p := range byKey {
			h.bfdKeys[p.name] = k
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, sp.SetPeers(ctx, peers(cfg)))
	g, gctx := errgroup.WithContext(ctx)
	stop := make(chan struct{})
	d.runCtx, d.runG, d.runStop = gctx, g, stop
	d.out = d.core.Output(clock.Now())
	d.publish()
	go func() {
		defer close(h.exited)
		defer close(stop)
		h.loopErr = d.loop(gctx, h.stopping)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.exited:
		case <-time.After(waitTimeout):
			t.Errorf("the loop did not return after its context ended")
		}
		assert.NoError(t, g.Wait())
		for _, v := range calls.Violations() {
			t.Errorf("contract violation: %s", v)
		}
		if t.Failed() {
			t.Logf("calls:\n%s", strings.Join(calls.Lines(0), "\n"))
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	h.settle()
	return h
}

// barrier returns once the loop has handled every event posted before it
// and run the pass that applies them: requests are handled in the order
// posted, and a request's reply is sent once the pass after its batch of
// events has published.
func (h *loopHarness) barrier() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(h.t, h.d.call(ctx, func(context.Context) error { return nil }))
}

// settle returns once the loop has applied everything the test did before
// it:
//
//   - a Changed the test (or the fake speaker itself, on Shutdown and
//     Enable) signalled is first waited for: the fake records when the
//     loop reads Sessions after it. A barrier alone would not do: the
//     loop's select picks at random between a pending Changed and the
//     barrier's request, so the request may be answered before the
//     observing pass;
//   - then a barrier: its reply comes after the pass that follows its
//     batch, so after the pass that read the sessions (it was running or
//     done when the request was posted) and after every event posted
//     before it was applied. A second barrier is cheap insurance should
//     replies go back to being sent before the pass (then the first one
//     only proves that the events were handled, the second that the pass
//     applying them is done);
//   - those passes may have signalled Changed themselves (Shutdown,
//     Enable): then round again.
//
// The fake clock's time is read by every pass, so after Advance a settle
// also sees the timers' effects; to check that a timer alone wakes the
// loop, wait with waitFor instead, posting nothing.
func (h *loopHarness) settle() {
	h.t.Helper()
	for range 20 {
		h.calls.waitFor(h.t, waitTimeout, "the loop to read the sessions", func() bool { return !h.sp.pendingObserve })
		h.barrier()
		h.barrier()
		if !h.sp.observePending() {
			return
		}
	}
	h.t.Fatal("the loop never settled: every pass signals a change")
}

// next returns the calls since the previous next (or the start).
func (h *loopHarness) next() []string {
	lines := h.calls.Lines(h.mark)
	h.mark += len(lines)
	return lines
}

// skip marks every call so far as seen.
func (h *loopHarness) skip() { h.next() }

// check posts one result of the check name, as the health runner would.
func (h *loopHarness) check(name string, ok bool) {
	h.t.Helper()
	var gen uint64 // the runner generation is the loop's
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(h.t, h.d.call(ctx, func(context.Context) error { gen = h.d.health.gen; return nil }))
	res := health.Result{Check: name, OK: ok, At: h.clock.Now()}
	if !ok {
		res.Detail = "link eth1 down"
	}
	h.d.mail.post(checkEvent{gen: gen, res: res}, h.clock.Now())
}

// bfd posts a state change of peer's BFD session, as the manager would.
func (h *loopHarness) bfd(peer string, from, to, remote bfd.State, diag bfd.Diag) {
	h.t.Helper()
	k, ok := h.bfdKeys[peer]
	require.True(h.t, ok, "no BFD session for %s", peer)
	h.d.mail.post(bfdEvent{bfd.StateChange{Key: k, Old: from, New: to, RemoteState: remote, Diag: diag,
		At: h.clock.Now()}}, h.clock.Now())
}

// status returns Status, failing the test if it does not answer at once.
func (h *loopHarness) status() api.Status {
	h.t.Helper()
	type result struct {
		st  api.Status
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := h.d.Status(context.Background())
		ch <- result{st, err}
	}()
	select {
	case r := <-ch:
		require.NoError(h.t, r.err)
		return r.st
	case <-time.After(waitTimeout):
		h.t.Fatal("Status blocked")
	}
	return api.Status{}
}

func (h *loopHarness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	h.t.Cleanup(cancel)
	return ctx
}

// writeConfig replaces the configuration file Reload reads.
func (h *loopHarness) writeConfig(y string) {
	h.t.Helper()
	y = strings.ReplaceAll(y, "$DIR", h.dir)
	require.NoError(h.t, os.WriteFile(h.d.configPath, []byte(y), 0o644))
}

// bringUp brings the active-active instance up: the instance check
// passes, both tunnels and the cloud-side peer are established, t1 sends
// 10.1.0.0/16 and 10.1.2.0/24, t2 10.1.0.0/16.
func (h *loopHarness) bringUp() {
	h.t.Helper()
	h.check("uplink", true)
	h.settle()
	h.sp.setSessions(map[string]sessionState{
		"t1": sessUp("10.1.0.0/16", "10.1.2.0/24"),
		"t2": sessUp("10.1.0.0/16"),
		"rr": sessUp(),
	})
	h.settle()
}

// bringUpCalls are the calls bringUp makes on a fresh instance.
var bringUpCalls = []string{
	"announce rr 10.1.0.0/16",
	"announce rr 10.1.2.0/24",
	"announce t1 10.10.0.0/16",
	"announce t1 10.20.0.0/24",
	"announce t2 10.10.0.0/16",
	"announce t2 10.20.0.0/24",
	"route add 10.1.0.0/16 via 169.254.21.2,169.254.22.2",
	"route add 10.1.2.0/24 via 169.254.21.2",
}

func tunnelStatus(t *testing.T, st api.Status, name string) api.Tunnel {
	t.Helper()
	i := slices.IndexFunc(st.Tunnels, func(x api.Tunnel) bool { return x.Name == name })
	require.GreaterOrEqual(t, i, 0, "no tunnel %s in status", name)
	return st.Tunnels[i]
}

func peerStatus(t *testing.T, st api.Status, name string) api.Peer {
	t.Helper()
	i := slices.IndexFunc(st.Peers, func(x api.Peer) bool { return x.Name == name })
	require.GreaterOrEqual(t, i, 0, "no peer %s in status", name)
	return st.Peers[i]
}

func routeStrings(st api.Status) []string {
	var out []string
	for _, r := range st.Routes {
		out = append(out, r.Prefix+" via "+strings.Join(r.NextHops, ","))
	}
	return out
}

// TestLoopBringUp: nothing is announced before the instance check passes
// and the sessions are up; then the cloud prefixes go to the tunnels, the
// on-prem prefixes learned from them are routed (ECMP over both) and
// passed on to the cloud-side peer, in one pass.
func TestLoopBringUp(t *testing.T) {
	h := startLoop(t, activeActive())
	assert.Equal(t, []string{"add peer t1", "add peer t2", "add peer rr"}, h.next(), "only SetPeers before anything is up")
	st := h.status()
	assert.False(t, st.InstanceOK)
	assert.Equal(t, "normal", st.DrainState)
	assert.Equal(t, "BGP session not established", tunnelStatus(t, st, "t1").Reason)
	require.Len(t, st.Checks, 1)
	assert.Nil(t, st.Checks[0].OK, "no result yet")

	h.check("uplink", true)
	h.settle()
	assert.Empty(t, h.next(), "no session up: nothing to announce or route")
	assert.True(t, h.status().InstanceOK)

	h.sp.setSessions(map[string]sessionState{
		"t1": sessUp("10.1.0.0/16", "10.1.2.0/24"),
		"t2": sessUp("10.1.0.0/16"),
		"rr": sessUp(),
	})
	h.settle()
	assert.Equal(t, bringUpCalls, h.next())
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, h.sp.prefixesTo("t1"))
	assert.Equal(t, []string{"10.1.0.0/16 via 169.254.21.2,169.254.22.2", "10.1.2.0/24 via 169.254.21.2"}, h.rt.routes())

	st = h.status()
	assert.True(t, st.InstanceOK)
	for _, name := range []string{"t1", "t2"} {
		tu := tunnelStatus(t, st, name)
		assert.True(t, tu.Carrying, name)
		assert.Empty(t, tu.Reason, name)
	}
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, peerStatus(t, st, "t1").Announced)
	assert.Equal(t, "established", peerStatus(t, st, "t1").State)
	assert.Equal(t, []string{"10.1.0.0/16", "10.1.2.0/24"}, peerStatus(t, st, "rr").Announced)
	assert.Equal(t, []string{"10.1.0.0/16 via 169.254.21.2,169.254.22.2", "10.1.2.0/24 via 169.254.21.2"}, routeStrings(st))
	require.NotNil(t, st.Checks[0].OK)
	assert.True(t, *st.Checks[0].OK)
	assert.Empty(t, st.Errors)

	// What a tunnel sends changes: the routes and the cloud side follow.
	h.sp.setSessions(map[string]sessionState{"t2": sessUp("10.1.0.0/16", "10.1.3.0/24")})
	h.settle()
	assert.Equal(t, []string{"announce rr 10.1.3.0/24", "route add 10.1.3.0/24 via 169.254.22.2"}, h.next())

	// A quiet pass (nothing changed) calls the adapters again, changing
	// nothing.
	h.settle()
	assert.Empty(t, h.next())
}

// TestLoopInstanceCheck: a failing instance check withdraws everything
// from every peer at once; when it passes again, the announcements come
// back only after the hold-down, woken by the timer alone.
func TestLoopInstanceCheck(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()

	h.check("uplink", false)
	h.settle()
	assert.Equal(t, []string{
		"withdraw rr 10.1.0.0/16",
		"withdraw rr 10.1.2.0/24",
		"withdraw t1 10.10.0.0/16",
		"withdraw t1 10.20.0.0/24",
		"withdraw t2 10.10.0.0/16",
		"withdraw t2 10.20.0.0/24",
	}, h.next())
	st := h.status()
	assert.False(t, st.InstanceOK)
	assert.Empty(t, peerStatus(t, st, "t1").Announced)
	assert.Empty(t, peerStatus(t, st, "rr").Announced)
	// The core keeps the kernel routes toward the tunnels (they still
	// carry: traffic from the cloud side still in flight is delivered);
	// only the announcements move the traffic to the other instance.
	assert.Equal(t, []string{"10.1.0.0/16 via 169.254.21.2,169.254.22.2", "10.1.2.0/24 via 169.254.21.2"}, h.rt.routes())

	h.check("uplink", true)
	h.settle()
	assert.Empty(t, h.next(), "hold-down after the flap")
	assert.False(t, h.status().InstanceOK)
	h.clock.Advance(999 * time.Millisecond)
	h.settle()
	assert.Empty(t, h.next(), "still in the hold-down")

	// The hold-down ends: nothing is posted, the loop's timer wakes it.
	h.clock.Advance(time.Millisecond)
	h.calls.waitFor(t, waitTimeout, "re-announcement at the end of the hold-down", func() bool {
		return len(h.sp.announced["t1"]) == 2 && len(h.sp.announced["t2"]) == 2 && len(h.sp.announced["rr"]) == 2
	})
	h.settle()
	assert.Equal(t, bringUpCalls[:6], h.next())
	assert.True(t, h.status().InstanceOK)
}

// TestLoopBFD: a tunnel's BFD going Down after Up withdraws from that
// tunnel and resets its session once, after the withdrawal; a Down
// without a prior Up changes nothing; a cloud-side peer's Down only
// resets its session.
func TestLoopBFD(t *testing.T) {
	h := startLoop(t, yamlWith(activeActiveYAML, "$BFD", ", bfd: {enabled: true}", "$T3", ""))
	h.bringUp()
	assert.Equal(t, bringUpCalls, h.calls.Lines(3), "BFD that never reported does not hold anything")
	h.skip()

	h.bfd("t1", bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.settle()
	assert.Empty(t, h.next())

	diag := bfd.DiagControlDetectionExpired
	h.bfd("t1", bfd.StateUp, bfd.StateDown, bfd.StateUp, diag)
	h.settle()
	calls := h.next()
	assert.Equal(t, []string{
		"withdraw rr 10.1.2.0/24", // learned from t1 only
		"withdraw t1 10.10.0.0/16",
		"withdraw t1 10.20.0.0/24",
		"reset t1: BFD down: " + diag.String(),
		"route change 10.1.0.0/16 via 169.254.22.2",
		"route del 10.1.2.0/24",
	}, calls)
	reset := slices.IndexFunc(calls, func(l string) bool { return strings.HasPrefix(l, "reset t1:") })
	for i, l := range calls {
		if strings.HasPrefix(l, "withdraw t1 ") {
			assert.Less(t, i, reset, "the reset goes after the withdrawal")
		}
	}
	assert.Contains(t, calls[reset], "BFD down")
	st := h.status()
	t1 := tunnelStatus(t, st, "t1")
	assert.False(t, t1.Carrying)
	assert.Contains(t, t1.Reason, "BFD down")
	assert.True(t, tunnelStatus(t, st, "t2").Carrying)

	// More passes do not reset again.
	h.sp.setSessions(map[string]sessionState{"t2": sessUp("10.1.0.0/16")})
	h.settle()
	h.settle()
	assert.Empty(t, h.next())
	_, resets := h.sp.counts("t1")
	assert.Equal(t, 1, resets)

	// t2's session never came Up: its Down is no failure (the peer may not
	// run BFD).
	h.bfd("t2", bfd.StateInit, bfd.StateDown, bfd.StateDown, diag)
	h.settle()
	assert.Empty(t, h.next())
	assert.True(t, tunnelStatus(t, h.status(), "t2").Carrying)

	// The cloud-side peer: a reset, nothing withdrawn.
	h.bfd("rr", bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.settle()
	h.bfd("rr", bfd.StateUp, bfd.StateDown, bfd.StateUp, diag)
	h.settle()
	assert.Equal(t, []string{"reset rr: BFD down: " + diag.String()}, h.next())

	// t1's BFD comes back: after the hold-down of its first flap (1s).
	h.bfd("t1", bfd.StateDown, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.settle()
	assert.Empty(t, h.next())
	assert.NotNil(t, tunnelStatus(t, h.status(), "t1").HoldDownUntil)
	h.clock.Advance(time.Second)
	h.calls.waitFor(t, waitTimeout, "t1 announced again", func() bool { return len(h.sp.announced["t1"]) == 2 })
	h.settle()
	assert.Equal(t, []string{
		"announce rr 10.1.2.0/24",
		"announce t1 10.10.0.0/16",
		"announce t1 10.20.0.0/24",
		"route change 10.1.0.0/16 via 169.254.21.2,169.254.22.2",
		"route add 10.1.2.0/24 via 169.254.21.2",
	}, h.next())
}

// TestLoopBFDWhileDrained: a BFD Down of a session the drain holds down
// resets nothing (it is down already), neither then nor after undrain.
func TestLoopBFDWhileDrained(t *testing.T) {
	h := startLoop(t, yamlWith(activeActiveYAML, "$BFD", ", bfd: {enabled: true}", "$T3", ""))
	h.bringUp()
	h.bfd("t1", bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	require.NoError(t, h.d.Drain(h.ctx()))
	h.clock.Advance(2 * time.Second)
	h.settle()
	require.True(t, h.sp.isDown("t1"))
	h.skip()

	h.bfd("t1", bfd.StateUp, bfd.StateDown, bfd.StateUp, bfd.DiagControlDetectionExpired)
	h.settle()
	assert.Empty(t, h.next(), "no reset of a session held down")

	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	for _, l := range h.next() {
		assert.False(t, strings.HasPrefix(l, "reset "), "%s: a reset left over from the drain", l)
	}
	_, resets := h.sp.counts("t1")
	assert.Zero(t, resets)
	// BFD is still down: t1 stays out until it is Up again.
	assert.Empty(t, h.sp.prefixesTo("t1"))
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, h.sp.prefixesTo("t2"))
}

// TestLoopDrain: drain re-announces everything with GRACEFUL_SHUTDOWN and
// the prepend, then after drain.time withdraws it and shuts every session
// down; undrain enables them and announces again once they are back. The
// drain is recorded in the state file until undrain.
func TestLoopDrain(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()
	stateFile := filepath.Join(h.dir, "drained")

	require.NoError(t, h.d.Drain(h.ctx()))
	h.settle()
	assert.Equal(t, []string{
		"update rr 10.1.0.0/16 [prepend 3, gshut]",
		"update rr 10.1.2.0/24 [prepend 3, gshut]",
		"update t1 10.10.0.0/16 [prepend 3, gshut]",
		"update t1 10.20.0.0/24 [prepend 3, gshut]",
		"update t2 10.10.0.0/16 [prepend 3, gshut]",
		"update t2 10.20.0.0/24 [prepend 3, gshut]",
	}, h.next())
	data, err := os.ReadFile(stateFile)
	require.NoError(t, err, "the drain is recorded")
	assert.Contains(t, string(data), "drained at")
	st := h.status()
	assert.Equal(t, "draining", st.DrainState)
	assert.True(t, st.Drained)

	// A second drain does not restart the drain time.
	h.clock.Advance(time.Second)
	require.NoError(t, h.d.Drain(h.ctx()))
	h.settle()
	assert.Empty(t, h.next())

	// The drain time ends: the timer alone wakes the loop.
	h.clock.Advance(time.Second)
	h.calls.waitFor(t, waitTimeout, "the sessions shut down", func() bool { return h.sp.down["rr"] })
	h.settle()
	assert.Equal(t, []string{
		"withdraw rr 10.1.0.0/16",
		"withdraw rr 10.1.2.0/24",
		"withdraw t1 10.10.0.0/16",
		"withdraw t1 10.20.0.0/24",
		"withdraw t2 10.10.0.0/16",
		"withdraw t2 10.20.0.0/24",
		"shutdown t1",
		"shutdown t2",
		"shutdown rr",
		"route del 10.1.0.0/16",
		"route del 10.1.2.0/24",
	}, h.next())
	st = h.status()
	assert.Equal(t, "drained", st.DrainState)
	for _, p := range st.Peers {
		assert.True(t, p.AdminDown, p.Name)
		assert.Empty(t, p.Announced, p.Name)
	}
	assert.Equal(t, "drained", tunnelStatus(t, st, "t1").Reason[:len("drained")])
	assert.Empty(t, st.Routes)

	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	_, err = os.Stat(stateFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "undrain removes the state file")
	calls := h.next()
	require.Len(t, calls, 3+len(bringUpCalls), "%q", calls)
	enables := slices.Sorted(slices.Values(calls[:3]))
	assert.Equal(t, []string{"enable rr", "enable t1", "enable t2"}, enables)
	// Announced as soon as the sessions are back: no hold-down after a drain.
	assert.Equal(t, bringUpCalls, calls[3:])
	st = h.status()
	assert.Equal(t, "normal", st.DrainState)
	assert.False(t, st.Drained)
	assert.True(t, tunnelStatus(t, st, "t1").Carrying)
}

// TestLoopSetRole: in an active-standby pair the role sets the prepend and
// MED; an active-active instance has no role.
func TestLoopSetRole(t *testing.T) {
	h := startLoop(t, activeStandbyYAML)
	h.check("uplink", true)
	h.settle()
	h.sp.setSessions(map[string]sessionState{"t1": sessUp("10.1.0.0/16"), "rr": sessUp()})
	h.settle()
	assert.Equal(t, []string{
		"announce rr 10.1.0.0/16 [prepend 3, med 200]",
		"announce t1 10.10.0.0/16 [prepend 3, med 200]",
		"route add 10.1.0.0/16 via 169.254.23.2",
	}, h.calls.Lines(2))
	h.skip()
	assert.Equal(t, "standby", h.status().Instance.Role)
	assert.Equal(t, []string{"10.10.0.0/16"}, h.sp.prefixesTo("t1"))
	require.NoError(t, h.d.SetRole(h.ctx(), "primary"))
	h.settle()
	assert.Equal(t, []string{
		"update rr 10.1.0.0/16 [med 0]",
		"update t1 10.10.0.0/16 [med 0]",
	}, h.next())
	assert.Equal(t, "primary", h.status().Instance.Role)

	require.NoError(t, h.d.SetRole(h.ctx(), "standby"))
	h.settle()
	assert.Equal(t, []string{
		"update rr 10.1.0.0/16 [prepend 3, med 200]",
		"update t1 10.10.0.0/16 [prepend 3, med 200]",
	}, h.next())
	assert.Equal(t, "standby", h.status().Instance.Role)

	err := h.d.SetRole(h.ctx(), "leader")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "primary or standby")
	h.settle()
	assert.Empty(t, h.next())

	aa := startLoop(t, activeActive())
	aa.bringUp()
	aa.skip()
	err = aa.d.SetRole(aa.ctx(), "standby")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "only in active-standby mode")
	aa.settle()
	assert.Empty(t, aa.next())
}

// t3 is the tunnel the reload test adds.
const t3YAML = `  - {name: t3, inside: {local: 169.254.23.1/30, remote: 169.254.23.2}, peer_asn: 65020, accept: ["10.3.0.0/16 le 24"]}
`

// TestLoopReload: a reload adds a tunnel (the speaker gets it, it carries
// once up), removes one (no call names it again), and a change only a
// restart applies is rejected with nothing applied.
func TestLoopReload(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()

	// Add t3.
	h.writeConfig(yamlWith(activeActiveYAML, "$BFD", "", "$T3", t3YAML))
	_, err := h.d.Reload(h.ctx())
	require.NoError(t, err)
	h.settle()
	assert.Equal(t, []string{"add peer t3"}, h.next(), "the new session is not announced to before it is up")
	assert.Equal(t, []string{"t1", "t2", "t3", "rr"}, h.sp.peerNames())
	st := h.status()
	require.NotNil(t, st.Reload)
	assert.True(t, st.Reload.OK)
	assert.Contains(t, st.Reload.Changes, "tunnel t3 added")
	assert.Equal(t, "BGP session not established", tunnelStatus(t, st, "t3").Reason)
	h.sp.setSessions(map[string]sessionState{"t3": sessUp("10.3.0.0/16")})
	h.settle()
	assert.Equal(t, []string{
		"announce rr 10.3.0.0/16",
		"announce t3 10.10.0.0/16",
		"announce t3 10.20.0.0/24",
		"route add 10.3.0.0/16 via 169.254.23.2",
	}, h.next())

	// Remove t2: its routes go; the rest stays.
	y := yamlWith(activeActiveYAML, "$BFD", "", "$T3", t3YAML)
	y = strings.Replace(y, `  - {name: t2, inside: {local: 169.254.22.1/30, remote: 169.254.22.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]}
`, "", 1)
	require.NotContains(t, y, "t2")
	h.writeConfig(y)
	_, err = h.d.Reload(h.ctx())
	require.NoError(t, err)
	h.settle()
	assert.Equal(t, []string{"remove peer t2", "route change 10.1.0.0/16 via 169.254.21.2"}, h.next())
	assert.Equal(t, []string{"t1", "t3", "rr"}, h.sp.peerNames())
	st = h.status()
	assert.Contains(t, st.Reload.Changes, "tunnel t2 removed")
	assert.False(t, slices.ContainsFunc(st.Tunnels, func(x api.Tunnel) bool { return x.Name == "t2" }), "t2 in status")
	assert.False(t, slices.ContainsFunc(st.Peers, func(x api.Peer) bool { return x.Name == "t2" }), "t2 in status")
	// Nothing names t2 again, whatever happens (the fake also fails the
	// test on any call naming a peer it does not hold).
	h.check("uplink", false)
	h.settle()
	h.check("uplink", true)
	h.clock.Advance(time.Second)
	h.settle()
	require.NoError(t, h.d.Drain(h.ctx()))
	h.clock.Advance(2 * time.Second)
	h.settle()
	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	for _, l := range h.next() {
		assert.NotContains(t, l, "t2")
	}
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, h.sp.prefixesTo("t1"), "back to normal")

	// A change only a restart applies: rejected, nothing applied.
	setPeers, _ := h.sp.counts("")
	h.writeConfig(strings.Replace(y, "asn: 65515", "asn: 65516", 1))
	_, err = h.d.Reload(h.ctx())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bgp.asn")
	h.settle()
	assert.Empty(t, h.next())
	after, _ := h.sp.counts("")
	assert.Equal(t, setPeers, after, "SetPeers after a rejected reload")
	st = h.status()
	require.NotNil(t, st.Reload)
	assert.False(t, st.Reload.OK)
	require.NotEmpty(t, st.Reload.Errors)
	assert.Contains(t, strings.Join(st.Reload.Errors, "\n"), "bgp.asn")
	var asn uint32
	require.NoError(t, h.d.call(h.ctx(), func(context.Context) error { asn = h.d.cfg.BGP.ASN; return nil }))
	assert.Equal(t, uint32(65515), asn, "the running configuration stays")
	assert.Equal(t, []string{"t1", "t3", "rr"}, h.sp.peerNames())
}

// TestLoopReloadWhileDrained: a reload while drained leaves every session
// held down, without shutting down again those the speaker still holds
// down (a session the reload did not change keeps its state): the fake
// speaker fails a second Shutdown of a session already shut down.
func TestLoopReloadWhileDrained(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	require.NoError(t, h.d.Drain(h.ctx()))
	h.clock.Advance(2 * time.Second)
	h.settle()
	h.skip()

	h.writeConfig(yamlWith(activeActiveYAML, "$BFD", "", "$T3", t3YAML))
	_, err := h.d.Reload(h.ctx())
	require.NoError(t, err)
	h.settle()
	assert.Equal(t, []string{"add peer t3", "shutdown t3"}, h.next(), "only the new session is shut down")
	for _, p := range []string{"t1", "t2", "t3", "rr"} {
		assert.True(t, h.sp.isDown(p), p)
	}

	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	enables := slices.Sorted(slices.Values(slices.DeleteFunc(h.next(), func(l string) bool { return !strings.HasPrefix(l, "enable ") })))
	assert.Equal(t, []string{"enable rr", "enable t1", "enable t2", "enable t3"}, enables)
}

// TestStatusWhileLoopBusy: Status answers from the last published
// snapshot at once, while the loop is stuck in the speaker.
func TestStatusWhileLoopBusy(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	before := h.status()
	require.True(t, before.InstanceOK)

	// The check fails, handled on the loop by a request; the pass that
	// follows blocks in SetAnnouncements, before it publishes anything.
	// The block is set on the loop, so that it is that pass that blocks
	// (not one still running from before), and the request is not waited
	// for: its reply comes after that pass.
	type block struct {
		entered <-chan struct{}
		release func()
	}
	armed := make(chan block, 1)
	replied := make(chan error, 1)
	go func() {
		replied <- h.d.call(context.Background(), func(context.Context) error {
			entered, release := h.sp.blockNext()
			armed <- block{entered, release}
			h.d.checkResult(checkEvent{gen: h.d.health.gen, res: health.Result{Check: "uplink", OK: false, At: h.clock.Now()}})
			return nil
		})
	}()
	var b block
	select {
	case b = <-armed:
	case <-time.After(waitTimeout):
		t.Fatal("the loop never handled the request")
	}
	defer b.release()
	select {
	case <-b.entered:
	case <-time.After(waitTimeout):
		t.Fatal("the loop never called SetAnnouncements")
	}
	// The loop is busy: the request is not answered...
	select {
	case err := <-replied:
		t.Fatalf("request answered (%v) before its pass completed", err)
	default:
	}
	// ...but Status answers, with what was last published.
	st := h.status()
	assert.Equal(t, before, st)
	assert.True(t, st.InstanceOK)
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, peerStatus(t, st, "t1").Announced)

	b.release()
	select {
	case err := <-replied:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("the request was never answered")
	}
	st = h.status()
	assert.False(t, st.InstanceOK, "published by the pass the request waited for")
	assert.Empty(t, peerStatus(t, st, "t1").Announced)
	h.settle()
	assert.Empty(t, h.sp.prefixesTo("t1"))
}

// TestLoopStopping: SIGTERM drains (not persisted) and the loop returns
// once drained; undrain is refused meanwhile.
func TestLoopStopping(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()

	close(h.stopping)
	h.calls.waitFor(t, waitTimeout, "the drain", func() bool {
		a := h.sp.announcedLocked("t1")
		return len(a) > 0 && len(a[0].Communities) > 0
	})
	h.settle()
	assert.Len(t, h.next(), 6, "everything re-announced with GRACEFUL_SHUTDOWN")
	err := h.d.Undrain(h.ctx())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stopping")
	_, err = os.Stat(filepath.Join(h.dir, "drained"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a SIGTERM drain is not persisted")

	h.clock.Advance(2 * time.Second)
	select {
	case <-h.exited:
	case <-time.After(waitTimeout):
		t.Fatal("the loop did not return after the drain")
	}
	require.NoError(t, h.loopErr)
	calls := h.next()
	assert.Contains(t, calls, "withdraw t1 10.10.0.0/16")
	assert.Contains(t, calls, "shutdown rr")
	assert.Equal(t, "drained", h.status().DrainState)
	// The loop is gone: requests fail at once.
	assert.True(t, errors.Is(h.d.call(h.ctx(), func(context.Context) error { return nil }), errStopped))
}

// TestFakesEnforceContracts: the fakes record the calls a real adapter
// could not take, so that the loop tests fail on them.
func TestFakesEnforceContracts(t *testing.T) {
	ctx := context.Background()
	calls := newCallLog()
	sp := newFakeSpeaker(calls)
	sp.check = cloudPrefixCheck([]netip.Prefix{netip.MustParsePrefix("10.10.0.0/16")})
	require.NoError(t, sp.SetPeers(ctx, []bgp.PeerConfig{{Name: "t1", Kind: bgp.KindTunnel}, {Name: "rr", Kind: bgp.KindCloud}}))
	ann := func(p string, attrs ...uint32) bgp.Announcement {
		return bgp.Announcement{Prefix: netip.MustParsePrefix(p), Communities: attrs}
	}
	require.NoError(t, sp.SetAnnouncements(ctx, map[string][]bgp.Announcement{"t1": {ann("10.10.0.0/16")}}))
	require.NoError(t, sp.SetAnnouncements(ctx, map[string][]bgp.Announcement{"t1": {}, "rr": {ann("10.1.0.0/16")}}))
	assert.Equal(t, []string{"add peer t1", "add peer rr", "announce t1 10.10.0.0/16", "announce rr 10.1.0.0/16", "withdraw t1 10.10.0.0/16"}, calls.Lines(0), "per call: peers by name")
	require.Empty(t, calls.Violations())

	_ = sp.SetAnnouncements(ctx, map[string][]bgp.Announcement{
		"t2": nil,                                                                 // no such peer
		"t1": {ann("10.1.0.0/16")},                                                // not a cloud prefix
		"rr": {ann("10.10.0.0/16"), ann("10.1.0.0/16", 1), ann("10.1.0.0/16", 1)}, // a cloud prefix; twice; other attributes than t1's
	})
	_ = sp.Enable(ctx, "t1") // not shut down
	_ = sp.Shutdown(ctx, "t1", "bye")
	_ = sp.Shutdown(ctx, "t1", "bye")   // twice
	_ = sp.Reset(ctx, "t1", "BFD down") // held down
	_ = sp.Reset(ctx, "t3", "BFD down") // no such peer
	rt := newFakeRoutes(calls)
	_, err := rt.Set([]route.Route{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), NextHops: []netip.Addr{netip.MustParseAddr("169.254.21.2")}},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), NextHops: []netip.Addr{netip.MustParseAddr("169.254.22.2")}},
		{Prefix: netip.MustParsePrefix("10.2.0.0/16"), NextHops: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
		{Prefix: netip.MustParsePrefix("10.3.0.0/16")},
	})
	assert.Error(t, err)
	v := strings.Join(calls.Violations(), "\n")
	for _, want := range []string{
		"SetAnnouncements t2: no such peer",
		"10.1.0.0/16 to tunnel t1: not a cloud prefix",
		"10.10.0.0/16 to cloud rr: a cloud prefix",
		"10.1.0.0/16 announced twice to rr",
		"10.1.0.0/16 with other attributes",
		"Enable t1: not shut down",
		"Shutdown t1: already shut down",
		"Reset t1: held down",
		"Reset t3: no such peer",
		"prefix twice",
		"invalid next hop 2001:db8::1",
		"no next hop",
	} {
		assert.Contains(t, v, want)
	}

	// The fake clock fires a timer when due, once; Reset re-arms it and
	// drops a value not received.
	clock := newFakeClock(loopEpoch)
	tm := clock.NewTimer(time.Second)
	clock.Advance(999 * time.Millisecond)
	select {
	case <-tm.C():
		t.Fatal("fired early")
	default:
	}
	clock.Advance(time.Millisecond)
	assert.Equal(t, loopEpoch.Add(time.Second), <-tm.C())
	tm.Reset(time.Second)
	clock.Advance(time.Second)
	tm.Reset(time.Second)
	select {
	case <-tm.C():
		t.Fatal("stale value after Reset")
	default:
	}
	tm.Stop()
	clock.Advance(time.Hour)
	assert.Zero(t, clock.pending())
}
