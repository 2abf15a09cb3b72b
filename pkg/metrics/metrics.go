// Package metrics exposes a running bgpgw to Prometheus at /metrics.
//
// Two sources feed it. The state (tunnels, BGP and BFD sessions, prefixes,
// checks, drain) is read at scrape time from a snapshot of the daemon's
// status, the same one `bgpgw status --json` prints, so the two never
// disagree. The events the status cannot show (failovers, withdrawals and
// how long a withdrawal took) are counted by the daemon as they happen.
//
// Every label value is a name from the configuration (tunnel, peer, check,
// scope) or one of a few fixed words (kind, drain state): the number of
// series is bounded by the configuration. Prefixes are never labels.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bgpgw/bgpgw/pkg/api"
)

// Snapshot returns the daemon's status; it is called once per scrape.
type Snapshot func(ctx context.Context) (api.Status, error)

// Options configure New.
type Options struct {
	// Snapshot is read at every scrape. Required.
	Snapshot Snapshot
	// Tunnels and Peers are the configured names. Their counters are
	// exported from the start, at 0, so that rate() and increase() see
	// the first failover or withdrawal. Names that appear later (a
	// reload) get theirs at the first scrape that shows them.
	Tunnels []string
	Peers   []string
	// SnapshotTimeout bounds one snapshot; 0 means 10 s.
	SnapshotTimeout time.Duration
}

// WithdrawalLatencyBuckets are the upper bounds, in seconds, of
// bgpgw_withdrawal_latency_seconds: 100 µs to 1 s in 1-2.5-5 steps, with
// bounds at the goals (5 ms for 100 prefixes, 100 ms for 10k).
var WithdrawalLatencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

// Metrics holds bgpgw's metrics in a registry of its own.
type Metrics struct {
	reg         *prometheus.Registry
	failovers   *prometheus.CounterVec
	withdrawals *prometheus.CounterVec
	latency     prometheus.Histogram
}

// New returns the metrics of one bgpgw instance: the status families read
// through opts.Snapshot, the event counters, and the Go runtime and process
// collectors.
func New(opts Options) *Metrics {
	timeout := opts.SnapshotTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bgpgw_failovers_total",
			Help: "Times a tunnel stopped carrying traffic (its announcements withdrawn) while bgpgw ran.",
		}, []string{"tunnel"}),
		withdrawals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bgpgw_withdrawals_total",
			Help: "Prefixes withdrawn from a BGP peer.",
		}, []string{"peer"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bgpgw_withdrawal_latency_seconds",
			Help: "From the event that made bgpgw withdraw (health result, BFD or BGP change, drain) " +
				"to the withdrawal handed to the BGP speaker.",
			Buckets: WithdrawalLatencyBuckets,
		}),
	}
	for _, t := range opts.Tunnels {
		m.failovers.WithLabelValues(t)
	}
	for _, p := range opts.Peers {
		m.withdrawals.WithLabelValues(p)
	}
	m.reg.MustRegister(
		&statusCollector{snapshot: opts.Snapshot, timeout: timeout, m: m},
		m.failovers, m.withdrawals, m.latency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Gatherer is the registry, for tests and for embedding in another handler.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats. A scrape
// whose status snapshot fails answers 500, so that Prometheus marks the
// target down rather than recording a partial picture.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.HTTPErrorOnError,
		MaxRequestsInFlight: 4,
	}))
}

// Failover counts a tunnel that stopped carrying traffic.
func (m *Metrics) Failover(tunnel string) { m.failovers.WithLabelValues(tunnel).Inc() }

// Withdrawn counts n prefixes withdrawn from peer.
func (m *Metrics) Withdrawn(peer string, n int) {
	if n > 0 {
		m.withdrawals.WithLabelValues(peer).Add(float64(n))
	}
}

// ObserveWithdrawal records how long a withdrawal took from its cause.
func (m *Metrics) ObserveWithdrawal(d time.Duration) { m.latency.Observe(max(d, 0).Seconds()) }

// Server serves /metrics over HTTP.
type Server struct {
	ln    net.Listener
	srv   *http.Server
	close sync.Once
	err   error
}

// Listen binds listen (ADDRESS:PORT, the metrics.listen key) and returns a
// server for m that answers once Serve runs. Binding here, before the
// daemon starts anything, makes a busy or foreign address a startup error.
func (m *Metrics) Listen(listen string) (*Server, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "bgpgw: metrics at /metrics")
	})
	return &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      30 * time.Second,
	}}, nil
}

// Addr is the address the server is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until ctx ends or Close is called, then returns
// once the server has stopped.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		_ = s.Close()
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
		err := s.Close()
		<-errc
		return err
	}
}

// Close stops the server, giving requests in flight up to 2 s, and
// releases the address. It may be called more than once, with or without
// Serve.
func (s *Server) Close() error {
	s.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.err = s.srv.Shutdown(ctx)
		// Shutdown closes only the listeners Serve took over.
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) && s.err == nil {
			s.err = err
		}
	})
	return s.err
}

// Drain states, always exported (one of them 1): a state missing from a
// scrape would read as "no data", not as "not in this state".
var drainStates = []string{"normal", "draining", "drained"}

var (
	descInstanceInfo = prometheus.NewDesc("bgpgw_instance_info",
		"Always 1; the instance's name, mode and role (primary or standby, empty in active-active).",
		[]string{"instance", "mode", "role"}, nil)
	descInstanceOK = prometheus.NewDesc("bgpgw_instance_ok",
		"1 when every instance-scope health check passes.", nil, nil)
	descDrained = prometheus.NewDesc("bgpgw_drained",
		"1 from a drain (bgpgw drain or SIGTERM) until undrain.", nil, nil)
	descDrainState = prometheus.NewDesc("bgpgw_drain_state",
		"1 for the current drain state: normal, draining (announced with GRACEFUL_SHUTDOWN) or drained (withdrawn).",
		[]string{"state"}, nil)
	descErrors = prometheus.NewDesc("bgpgw_reconcile_errors",
		"Errors of the last reconciliation (announcements, sessions, kernel routes); 0 when it applied everything.",
		nil, nil)
	descKernelRoutes = prometheus.NewDesc("bgpgw_kernel_routes",
		"Kernel routes bgpgw has installed toward the tunnels.", nil, nil)

	descTunnelCarrying = prometheus.NewDesc("bgpgw_tunnel_carrying",
		"1 when the tunnel carries traffic: the cloud-side prefixes are announced over it and its learned routes installed.",
		[]string{"tunnel"}, nil)
	descTunnelIPsecUp = prometheus.NewDesc("bgpgw_tunnel_ipsec_up",
		"1 when the tunnel's CHILD_SA is installed. Only for tunnels whose IPsec bgpgw manages (ipsec.mode xfrm or libipsec).",
		[]string{"tunnel"}, nil)
	descTunnelFlaps = prometheus.NewDesc("bgpgw_tunnel_flaps",
		"Recent failures of the tunnel that the hold-down remembers (it doubles per flap and decays when stable).",
		[]string{"tunnel"}, nil)

	descSessionEstablished = prometheus.NewDesc("bgpgw_bgp_session_established",
		"1 when the BGP session is Established.", []string{"peer", "kind"}, nil)
	descSessionUptime = prometheus.NewDesc("bgpgw_bgp_session_uptime_seconds",
		"Time since the BGP session reached Established; 0 when it is not.", []string{"peer", "kind"}, nil)
	descPrefixesAnnounced = prometheus.NewDesc("bgpgw_prefixes_announced",
		"Prefixes in the peer's Adj-RIB-Out (sent to it).", []string{"peer"}, nil)
	descPrefixesReceived = prometheus.NewDesc("bgpgw_prefixes_received",
		"Prefixes accepted from the peer.", []string{"peer"}, nil)
	descPrefixesRejected = prometheus.NewDesc("bgpgw_prefixes_rejected",
		"Prefixes received from the peer and refused by the import policy.", []string{"peer"}, nil)

	descBFDUp = prometheus.NewDesc("bgpgw_bfd_up",
		"1 when the peer's BFD session is Up. Only for peers with bfd.enabled.", []string{"peer"}, nil)
	descBFDStateChanges = prometheus.NewDesc("bgpgw_bfd_state_changes_total",
		"State changes of the peer's BFD session.", []string{"peer"}, nil)

	descPairPartnerUp = prometheus.NewDesc("bgpgw_pair_partner_up",
		"1 when the partner's BFD session is Up and its state is heard on the pair channel. Only with pair:.", nil, nil)
	descPairTakeover = prometheus.NewDesc("bgpgw_pair_takeover_active",
		"1 while this instance takes the device over from its partner; 0 for the other devices it carries or took over.",
		[]string{"device"}, nil)
	descPairTakeovers = prometheus.NewDesc("bgpgw_pair_takeovers_total",
		"Takeovers started since start.", nil, nil)
	descPairFalseTakeovers = prometheus.NewDesc("bgpgw_pair_false_takeovers_total",
		"Ended takeovers whose partner had never stopped carrying (a cut link between the two, a false BFD Down).", nil, nil)
	descPairMessages = prometheus.NewDesc("bgpgw_pair_messages_total",
		"Pair channel datagrams sent and accepted.", []string{"direction"}, nil)
	descPairDropped = prometheus.NewDesc("bgpgw_pair_dropped_total",
		"Pair channel datagrams dropped, by reason: bad_auth, replayed, malformed, wrong_sender. A dropped datagram changes nothing.",
		[]string{"reason"}, nil)

	descCheckOK = prometheus.NewDesc("bgpgw_check_ok",
		"1 when the health check passes (after rise), 0 when it fails. Absent until its first result.",
		[]string{"check", "scope"}, nil)
	descCheckTimestamp = prometheus.NewDesc("bgpgw_check_last_result_timestamp_seconds",
		"When the health check last reported, in seconds since the Unix epoch.", []string{"check", "scope"}, nil)
)

// statusCollector turns a status snapshot into metrics at scrape time.
type statusCollector struct {
	snapshot Snapshot
	timeout  time.Duration
	m        *Metrics // to start the counters of names first seen here
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descInstanceInfo, descInstanceOK, descDrained, descDrainState, descErrors, descKernelRoutes,
		descTunnelCarrying, descTunnelIPsecUp, descTunnelFlaps,
		descSessionEstablished, descSessionUptime, descPrefixesAnnounced, descPrefixesReceived, descPrefixesRejected,
		descBFDUp, descBFDStateChanges, descCheckOK, descCheckTimestamp,
		descPairPartnerUp, descPairTakeover, descPairTakeovers, descPairFalseTakeovers, descPairMessages, descPairDropped,
	} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.snapshot(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descInstanceOK, fmt.Errorf("read bgpgw status: %w", err))
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(descInstanceInfo, 1, st.Instance.Name, st.Instance.Mode, st.Instance.Role)
	gauge(descInstanceOK, b2f(st.InstanceOK))
	gauge(descDrained, b2f(st.Drained))
	states := drainStates
	if !slices.Contains(states, st.DrainState) {
		states = append(slices.Clone(states), st.DrainState)
	}
	for _, s := range states {
		gauge(descDrainState, b2f(s == st.DrainState), s)
	}
	gauge(descErrors, float64(len(st.Errors)))
	gauge(descKernelRoutes, float64(len(st.Routes)))

	for _, t := range st.Tunnels {
		c.m.failovers.WithLabelValues(t.Name)
		gauge(descTunnelCarrying, b2f(t.Carrying), t.Name)
		gauge(descTunnelFlaps, float64(t.Flaps), t.Name)
		// Without IPsec management bgpgw knows nothing of the tunnel
		// below BGP: no sample rather than a guess.
		if t.IPsec != nil {
			gauge(descTunnelIPsecUp, b2f(t.IPsec.State == "up"), t.Name)
		}
	}
	for _, p := range st.Peers {
		c.m.withdrawals.WithLabelValues(p.Name)
		gauge(descSessionEstablished, b2f(p.State == "established"), p.Name, p.Kind)
		gauge(descSessionUptime, p.UptimeSeconds, p.Name, p.Kind)
		gauge(descPrefixesAnnounced, float64(p.AnnouncedCount), p.Name)
		gauge(descPrefixesReceived, float64(p.ReceivedCount), p.Name)
		gauge(descPrefixesRejected, float64(p.RejectedCount), p.Name)
		if p.BFD != nil {
			gauge(descBFDUp, b2f(p.BFD.State == "Up"), p.Name)
			ch <- prometheus.MustNewConstMetric(descBFDStateChanges, prometheus.CounterValue, float64(p.BFD.StateChanges), p.Name)
		}
	}
	if p := st.Pair; p != nil {
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		gauge(descPairPartnerUp, b2f(p.PartnerUp))
		// Every device this instance carries or has taken over, 1 while
		// taken over: 0 rather than absent, for alerts on changes.
		active := map[string]float64{}
		for _, d := range p.Carrying {
			active[d] = 0
		}
		for d := range p.TakeoversByDevice {
			active[d] = 0
		}
		for _, t := range p.Takeovers {
			active[t.Device] = 1
		}
		for d, v := range active {
			gauge(descPairTakeover, v, d)
		}
		counter(descPairTakeovers, p.TakeoversTotal)
		counter(descPairFalseTakeovers, p.FalseTakeoversTotal)
		counter(descPairMessages, p.Channel.Sent, "sent")
		counter(descPairMessages, p.Channel.Received, "received")
		for reason, v := range map[string]uint64{"bad_auth": p.Channel.BadAuth, "replayed": p.Channel.Replayed,
			"malformed": p.Channel.Malformed, "wrong_sender": p.Channel.WrongSender} {
			counter(descPairDropped, v, reason)
		}
	}
	for _, c := range st.Checks {
		// Before its first result a check is neither passing nor
		// failing: no sample (alert on absent() if that matters).
		if c.OK != nil {
			gauge(descCheckOK, b2f(*c.OK), c.Name, c.Scope)
		}
		if c.At != nil {
			gauge(descCheckTimestamp, float64(c.At.UnixNano())/1e9, c.Name, c.Scope)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
