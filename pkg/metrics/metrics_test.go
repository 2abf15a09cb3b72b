package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bgpgw/bgpgw/pkg/api"
)

func ptr[T any](v T) *T { return &v }

// fakeStatus is a snapshot a test can change between scrapes.
type fakeStatus struct {
	mu  sync.Mutex
	st  api.Status
	err error
}

func (f *fakeStatus) snapshot(context.Context) (api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.err
}

func (f *fakeStatus) set(st api.Status, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st, f.err = st, err
}

var checkAt = time.Date(2026, 1, 2, 3, 4, 5, 500_000_000, time.UTC)

// knownState: tunnel "a" up and carrying with BFD Up; tunnel "b" down, BFD
// Down; a cloud peer; one passing check, one failing, one not run yet.
func knownState() api.Status {
	return api.Status{
		Instance:   api.Instance{Name: "gw1", Mode: "active-standby", Role: "primary"},
		DrainState: "normal",
		InstanceOK: true,
		Tunnels: []api.Tunnel{
			{Name: "a", Carrying: true, IPsec: &api.IPsec{State: "up"}},
			{Name: "b", Carrying: false, Reason: "tunnel down", Flaps: 2, IPsec: &api.IPsec{State: "connecting"}},
		},
		Checks: []api.Check{
			{Name: "uplink", Scope: "instance", OK: ptr(true), At: &checkAt},
			{Name: "probe-b", Scope: "tunnel:b", OK: ptr(false), At: &checkAt},
			{Name: "slow", Scope: "instance"},
		},
		Peers: []api.Peer{
			{Name: "a", Kind: "tunnel", State: "established", UptimeSeconds: 42.5,
				BFD:            &api.BFD{State: "Up", StateChanges: 3},
				AnnouncedCount: 2, ReceivedCount: 1, RejectedCount: 3}, // the daemon gives metrics the counts only
			{Name: "b", Kind: "tunnel", State: "active", BFD: &api.BFD{State: "Down"}},
			{Name: "cr", Kind: "cloud", State: "established", UptimeSeconds: 7, AnnouncedCount: 1},
		},
		Routes: []api.Route{{Prefix: "10.1.0.0/16", NextHops: []string{"169.254.21.2"}}},
		Errors: []string{"peer b: something"},
	}
}

const wantKnown = `
# HELP bgpgw_bfd_state_changes_total State changes of the peer's BFD session.
# TYPE bgpgw_bfd_state_changes_total counter
bgpgw_bfd_state_changes_total{peer="a"} 3
bgpgw_bfd_state_changes_total{peer="b"} 0
# HELP bgpgw_bfd_up 1 when the peer's BFD session is Up. Only for peers with bfd.enabled.
# TYPE bgpgw_bfd_up gauge
bgpgw_bfd_up{peer="a"} 1
bgpgw_bfd_up{peer="b"} 0
# HELP bgpgw_bgp_session_established 1 when the BGP session is Established.
# TYPE bgpgw_bgp_session_established gauge
bgpgw_bgp_session_established{kind="cloud",peer="cr"} 1
bgpgw_bgp_session_established{kind="tunnel",peer="a"} 1
bgpgw_bgp_session_established{kind="tunnel",peer="b"} 0
# HELP bgpgw_bgp_session_uptime_seconds Time since the BGP session reached Established; 0 when it is not.
# TYPE bgpgw_bgp_session_uptime_seconds gauge
bgpgw_bgp_session_uptime_seconds{kind="cloud",peer="cr"} 7
bgpgw_bgp_session_uptime_seconds{kind="tunnel",peer="a"} 42.5
bgpgw_bgp_session_uptime_seconds{kind="tunnel",peer="b"} 0
# HELP bgpgw_check_last_result_timestamp_seconds When the health check last reported, in seconds since the Unix epoch.
# TYPE bgpgw_check_last_result_timestamp_seconds gauge
bgpgw_check_last_result_timestamp_seconds{check="probe-b",scope="tunnel:b"} 1.7673230455e+09
bgpgw_check_last_result_timestamp_seconds{check="uplink",scope="instance"} 1.7673230455e+09
# HELP bgpgw_check_ok 1 when the health check passes (after rise), 0 when it fails. Absent until its first result.
# TYPE bgpgw_check_ok gauge
bgpgw_check_ok{check="probe-b",scope="tunnel:b"} 0
bgpgw_check_ok{check="uplink",scope="instance"} 1
# HELP bgpgw_drain_state 1 for the current drain state: normal, draining (announced with GRACEFUL_SHUTDOWN) or drained (withdrawn).
# TYPE bgpgw_drain_state gauge
bgpgw_drain_state{state="drained"} 0
bgpgw_drain_state{state="draining"} 0
bgpgw_drain_state{state="normal"} 1
# HELP bgpgw_drained 1 from a drain (bgpgw drain or SIGTERM) until undrain.
# TYPE bgpgw_drained gauge
bgpgw_drained 0
# HELP bgpgw_instance_info Always 1; the instance's name, mode and role (primary or standby, empty in active-active).
# TYPE bgpgw_instance_info gauge
bgpgw_instance_info{instance="gw1",mode="active-standby",role="primary"} 1
# HELP bgpgw_instance_ok 1 when every instance-scope health check passes.
# TYPE bgpgw_instance_ok gauge
bgpgw_instance_ok 1
# HELP bgpgw_kernel_routes Kernel routes bgpgw has installed toward the tunnels.
# TYPE bgpgw_kernel_routes gauge
bgpgw_kernel_routes 1
# HELP bgpgw_prefixes_announced Prefixes in the peer's Adj-RIB-Out (sent to it).
# TYPE bgpgw_prefixes_announced gauge
bgpgw_prefixes_announced{peer="a"} 2
bgpgw_prefixes_announced{peer="b"} 0
bgpgw_prefixes_announced{peer="cr"} 1
# HELP bgpgw_prefixes_received Prefixes accepted from the peer.
# TYPE bgpgw_prefixes_received gauge
bgpgw_prefixes_received{peer="a"} 1
bgpgw_prefixes_received{peer="b"} 0
bgpgw_prefixes_received{peer="cr"} 0
# HELP bgpgw_prefixes_rejected Prefixes received from the peer and refused by the import policy.
# TYPE bgpgw_prefixes_rejected gauge
bgpgw_prefixes_rejected{peer="a"} 3
bgpgw_prefixes_rejected{peer="b"} 0
bgpgw_prefixes_rejected{peer="cr"} 0
# HELP bgpgw_reconcile_errors Errors of the last reconciliation (announcements, sessions, kernel routes); 0 when it applied everything.
# TYPE bgpgw_reconcile_errors gauge
bgpgw_reconcile_errors 1
# HELP bgpgw_tunnel_carrying 1 when the tunnel carries traffic: the cloud-side prefixes are announced over it and its learned routes installed.
# TYPE bgpgw_tunnel_carrying gauge
bgpgw_tunnel_carrying{tunnel="a"} 1
bgpgw_tunnel_carrying{tunnel="b"} 0
# HELP bgpgw_tunnel_flaps Recent failures of the tunnel that the hold-down remembers (it doubles per flap and decays when stable).
# TYPE bgpgw_tunnel_flaps gauge
bgpgw_tunnel_flaps{tunnel="a"} 0
bgpgw_tunnel_flaps{tunnel="b"} 2
# HELP bgpgw_tunnel_ipsec_up 1 when the tunnel's CHILD_SA is installed. Only for tunnels whose IPsec bgpgw manages (ipsec.mode xfrm or libipsec).
# TYPE bgpgw_tunnel_ipsec_up gauge
bgpgw_tunnel_ipsec_up{tunnel="a"} 1
bgpgw_tunnel_ipsec_up{tunnel="b"} 0
`

// statusFamilies are the families read from the snapshot.
var statusFamilies = []string{
	"bgpgw_bfd_state_changes_total", "bgpgw_bfd_up", "bgpgw_bgp_session_established",
	"bgpgw_bgp_session_uptime_seconds", "bgpgw_check_last_result_timestamp_seconds", "bgpgw_check_ok",
	"bgpgw_drain_state", "bgpgw_drained", "bgpgw_instance_info", "bgpgw_instance_ok", "bgpgw_kernel_routes",
	"bgpgw_prefixes_announced", "bgpgw_prefixes_received", "bgpgw_prefixes_rejected", "bgpgw_reconcile_errors",
	"bgpgw_tunnel_carrying", "bgpgw_tunnel_flaps", "bgpgw_tunnel_ipsec_up",
}

func TestStatusFamilies(t *testing.T) {
	f := &fakeStatus{st: knownState()}
	m := New(Options{Snapshot: f.snapshot})
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(wantKnown), statusFamilies...))

	// Draining, no IPsec management, nothing established: the one-hot
	// drain state moves, the IPsec and BFD families disappear rather than
	// guess, and an unknown drain state still gets its own series.
	f.set(api.Status{
		Instance:   api.Instance{Name: "gw1", Mode: "active-active"},
		Drained:    true,
		DrainState: "draining",
		Tunnels:    []api.Tunnel{{Name: "a", Reason: "BGP session not established"}},
		Checks:     []api.Check{{Name: "slow", Scope: "instance"}},
		Peers:      []api.Peer{{Name: "a", Kind: "tunnel", State: "idle"}},
	}, nil)
	want := `
# HELP bgpgw_drain_state 1 for the current drain state: normal, draining (announced with GRACEFUL_SHUTDOWN) or drained (withdrawn).
# TYPE bgpgw_drain_state gauge
bgpgw_drain_state{state="drained"} 0
bgpgw_drain_state{state="draining"} 1
bgpgw_drain_state{state="normal"} 0
# HELP bgpgw_drained 1 from a drain (bgpgw drain or SIGTERM) until undrain.
# TYPE bgpgw_drained gauge
bgpgw_drained 1
# HELP bgpgw_instance_info Always 1; the instance's name, mode and role (primary or standby, empty in active-active).
# TYPE bgpgw_instance_info gauge
bgpgw_instance_info{instance="gw1",mode="active-active",role=""} 1
# HELP bgpgw_tunnel_carrying 1 when the tunnel carries traffic: the cloud-side prefixes are announced over it and its learned routes installed.
# TYPE bgpgw_tunnel_carrying gauge
bgpgw_tunnel_carrying{tunnel="a"} 0
`
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"bgpgw_drain_state", "bgpgw_drained", "bgpgw_instance_info", "bgpgw_tunnel_carrying",
		"bgpgw_tunnel_ipsec_up", "bgpgw_bfd_up", "bgpgw_check_ok", "bgpgw_check_last_result_timestamp_seconds"))

	f.set(api.Status{DrainState: "paused"}, nil)
	n, err := testutil.GatherAndCount(m.Gatherer(), "bgpgw_drain_state")
	require.NoError(t, err)
	assert.Equal(t, 4, n)
}

// TestPairFamilies: the partner's state, each device's takeover (0 for
// the others carried), the totals and the channel's counters by reason;
// none without a pair.
func TestPairFamilies(t *testing.T) {
	st := knownState()
	st.Pair = &api.Pair{Partner: "10.10.2.1", PartnerUp: false, Carrying: []string{"site-a", "site-b"},
		Takeovers:      []api.Takeover{{Device: "site-a", Reason: "partner lost"}},
		TakeoversTotal: 3, FalseTakeoversTotal: 1, TakeoversByDevice: map[string]uint64{"site-a": 2, "site-c": 1},
		Channel: api.PairChannel{Sent: 40, Received: 30, BadAuth: 2, Replayed: 1, Malformed: 4, WrongSender: 5}}
	f := &fakeStatus{st: st}
	m := New(Options{Snapshot: f.snapshot})
	want := `
# HELP bgpgw_pair_dropped_total Pair channel datagrams dropped, by reason: bad_auth, replayed, malformed, wrong_sender. A dropped datagram changes nothing.
# TYPE bgpgw_pair_dropped_total counter
bgpgw_pair_dropped_total{reason="bad_auth"} 2
bgpgw_pair_dropped_total{reason="malformed"} 4
bgpgw_pair_dropped_total{reason="replayed"} 1
bgpgw_pair_dropped_total{reason="wrong_sender"} 5
# HELP bgpgw_pair_false_takeovers_total Ended takeovers whose partner had never stopped carrying (a cut link between the two, a false BFD Down).
# TYPE bgpgw_pair_false_takeovers_total counter
bgpgw_pair_false_takeovers_total 1
# HELP bgpgw_pair_messages_total Pair channel datagrams sent and accepted.
# TYPE bgpgw_pair_messages_total counter
bgpgw_pair_messages_total{direction="received"} 30
bgpgw_pair_messages_total{direction="sent"} 40
# HELP bgpgw_pair_partner_up 1 when the partner's BFD session is Up and its state is heard on the pair channel. Only with pair:.
# TYPE bgpgw_pair_partner_up gauge
bgpgw_pair_partner_up 0
# HELP bgpgw_pair_takeover_active 1 while this instance takes the device over from its partner; 0 for the other devices it carries or took over.
# TYPE bgpgw_pair_takeover_active gauge
bgpgw_pair_takeover_active{device="site-a"} 1
bgpgw_pair_takeover_active{device="site-b"} 0
bgpgw_pair_takeover_active{device="site-c"} 0
# HELP bgpgw_pair_takeovers_total Takeovers started since start.
# TYPE bgpgw_pair_takeovers_total counter
bgpgw_pair_takeovers_total 3
`
	pairFamilies := []string{"bgpgw_pair_dropped_total", "bgpgw_pair_false_takeovers_total", "bgpgw_pair_messages_total",
		"bgpgw_pair_partner_up", "bgpgw_pair_takeover_active", "bgpgw_pair_takeovers_total"}
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), pairFamilies...))

	f.set(knownState(), nil)
	n, err := testutil.GatherAndCount(m.Gatherer(), pairFamilies...)
	require.NoError(t, err)
	assert.Zero(t, n, "no pair: no pair families")
}

func TestEventFamilies(t *testing.T) {
	m := New(Options{Snapshot: (&fakeStatus{}).snapshot, Tunnels: []string{"a", "b"}, Peers: []string{"a", "b", "cr"}})
	// Configured names start at 0.
	want := `
# HELP bgpgw_failovers_total Times a tunnel stopped carrying traffic (its announcements withdrawn) while bgpgw ran.
# TYPE bgpgw_failovers_total counter
bgpgw_failovers_total{tunnel="a"} 0
bgpgw_failovers_total{tunnel="b"} 0
# HELP bgpgw_withdrawals_total Prefixes withdrawn from a BGP peer.
# TYPE bgpgw_withdrawals_total counter
bgpgw_withdrawals_total{peer="a"} 0
bgpgw_withdrawals_total{peer="b"} 0
bgpgw_withdrawals_total{peer="cr"} 0
`
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"bgpgw_failovers_total", "bgpgw_withdrawals_total"))

	m.Failover("a")
	m.Failover("a")
	m.Withdrawn("a", 2)
	m.Withdrawn("cr", 0)
	m.Withdrawn("cr", 1)
	m.ObserveWithdrawal(300 * time.Microsecond)
	m.ObserveWithdrawal(4 * time.Millisecond)
	m.ObserveWithdrawal(3 * time.Second)
	m.ObserveWithdrawal(-time.Millisecond) // a clock step never makes a negative observation
	want = `
# HELP bgpgw_failovers_total Times a tunnel stopped carrying traffic (its announcements withdrawn) while bgpgw ran.
# TYPE bgpgw_failovers_total counter
bgpgw_failovers_total{tunnel="a"} 2
bgpgw_failovers_total{tunnel="b"} 0
# HELP bgpgw_withdrawals_total Prefixes withdrawn from a BGP peer.
# TYPE bgpgw_withdrawals_total counter
bgpgw_withdrawals_total{peer="a"} 2
bgpgw_withdrawals_total{peer="b"} 0
bgpgw_withdrawals_total{peer="cr"} 1
# HELP bgpgw_withdrawal_latency_seconds From the event that made bgpgw withdraw (health result, BFD or BGP change, drain) to the withdrawal handed to the BGP speaker.
# TYPE bgpgw_withdrawal_latency_seconds histogram
bgpgw_withdrawal_latency_seconds_bucket{le="0.0001"} 1
bgpgw_withdrawal_latency_seconds_bucket{le="0.00025"} 1
bgpgw_withdrawal_latency_seconds_bucket{le="0.0005"} 2
bgpgw_withdrawal_latency_seconds_bucket{le="0.001"} 2
bgpgw_withdrawal_latency_seconds_bucket{le="0.0025"} 2
bgpgw_withdrawal_latency_seconds_bucket{le="0.005"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="0.01"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="0.025"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="0.05"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="0.1"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="0.25"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="0.5"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="1"} 3
bgpgw_withdrawal_latency_seconds_bucket{le="+Inf"} 4
bgpgw_withdrawal_latency_seconds_sum 3.0043
bgpgw_withdrawal_latency_seconds_count 4
`
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"bgpgw_failovers_total", "bgpgw_withdrawals_total", "bgpgw_withdrawal_latency_seconds"))
}

// TestLint runs promlint (the checks of `promtool check metrics`) over
// everything bgpgw exports: names, units, HELP, counters ending in _total.
func TestLint(t *testing.T) {
	m := New(Options{Snapshot: (&fakeStatus{st: knownState()}).snapshot, Tunnels: []string{"a"}, Peers: []string{"a"}})
	m.ObserveWithdrawal(time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Gatherer())
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := &fakeStatus{st: knownState()}
	m := New(Options{Snapshot: f.snapshot, Tunnels: []string{"a", "b"}})
	s, err := m.Listen("127.0.0.1:0")
	require.NoError(t, err)
	addr := s.Addr().String()

	// A second server on the same address: the error names the key.
	_, err = m.Listen(addr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "metrics.listen "+addr)
	assert.Contains(t, err.Error(), "address already in use")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := hc.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `bgpgw_tunnel_carrying{tunnel="a"} 1`)
	assert.Contains(t, body, `bgpgw_failovers_total{tunnel="b"} 0`)
	assert.Contains(t, body, "go_goroutines ")
	assert.Contains(t, body, "process_start_time_seconds ")
	code, _ = get("/nothing")
	assert.Equal(t, http.StatusNotFound, code)

	// A failing snapshot fails the scrape (Prometheus marks the target
	// down) and says why.
	f.set(api.Status{}, errors.New("speaker busy"))
	code, body = get("/metrics")
	assert.Equal(t, http.StatusInternalServerError, code)
	assert.Contains(t, body, "speaker busy")

	// The end of ctx stops the server and frees the address.
	cancel()
	require.NoError(t, <-done)
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "still listening after Serve returned")
	require.NoError(t, s.Close(), "Close after Serve")
}

func TestCloseWithoutServe(t *testing.T) {
	m := New(Options{Snapshot: (&fakeStatus{}).snapshot})
	s, err := m.Listen("127.0.0.1:0")
	require.NoError(t, err)
	addr := s.Addr().String()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	// The address is free again at once.
	s2, err := m.Listen(addr)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
}

// TestNamesFromReload: a tunnel or peer first seen in a snapshot (added by
// a reload) gets its counters at 0 from the next scrape on.
func TestNamesFromReload(t *testing.T) {
	f := &fakeStatus{st: api.Status{DrainState: "normal"}}
	m := New(Options{Snapshot: f.snapshot, Tunnels: []string{"a"}, Peers: []string{"a"}})
	f.set(api.Status{DrainState: "normal",
		Tunnels: []api.Tunnel{{Name: "a"}, {Name: "new"}},
		Peers:   []api.Peer{{Name: "a", Kind: "tunnel"}, {Name: "new", Kind: "tunnel"}, {Name: "rr", Kind: "cloud"}}}, nil)
	_, err := m.Gatherer().Gather()
	require.NoError(t, err)
	want := `
# HELP bgpgw_failovers_total Times a tunnel stopped carrying traffic (its announcements withdrawn) while bgpgw ran.
# TYPE bgpgw_failovers_total counter
bgpgw_failovers_total{tunnel="a"} 0
bgpgw_failovers_total{tunnel="new"} 0
# HELP bgpgw_withdrawals_total Prefixes withdrawn from a BGP peer.
# TYPE bgpgw_withdrawals_total counter
bgpgw_withdrawals_total{peer="a"} 0
bgpgw_withdrawals_total{peer="new"} 0
bgpgw_withdrawals_total{peer="rr"} 0
`
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"bgpgw_failovers_total", "bgpgw_withdrawals_total"))
}
