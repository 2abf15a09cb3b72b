package daemon

// Loop tests: the daemon's loop runs with the fakes of fake_speaker_test.go
// and fake_routes_clock_test.go; the tests post events (session states,
// health results, BFD changes, API calls, reloads), move the fake clock, and
// assert on the calls the loop made to the speaker and the route installer
// (the call log) and on Status. The tests are in loop_events_test.go and
// loop_api_test.go.

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/health"
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

	logs := &lab.SyncBuffer{} // the daemon's log, written by the loop and read by the test
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

	if cfg.Pair.Enabled { // its channel is not run: the test posts what the partner says
		d.pair, err = d.newPairLink()
		require.NoError(t, err)
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
