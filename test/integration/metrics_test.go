package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// metricsGateway has two tunnels: "onprem" toward an FRR router that
// answers (BGP and BFD come up), "far" toward an address where nothing runs.
// One instance check always passes; a tunnel check on onprem passes while
// the file %[3]s exists.
const metricsGateway = `
instance: {name: gwm, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1, hold_time: 9s}
announce: [10.10.0.0/16, 10.20.0.0/24]
ipsec: {mode: none}
tunnels:
  - name: onprem
    inside: {local: 169.254.21.1/30, remote: 169.254.21.2}
    peer_asn: 65010
    accept: ["10.1.0.0/16 le 24"]
    bfd: {enabled: true, multihop: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}
  - name: far
    inside: {local: 169.254.22.1/30, remote: 169.254.22.2}
    peer_asn: 65020
    accept: ["10.2.0.0/16"]
    bfd: {enabled: true, multihop: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}
health:
  - {name: always, kind: command, target: "true", interval: 200ms, rise: 1, fall: 1}
  - {name: probe-onprem, kind: command, target: test, args: ["-e", "%[3]s"], scope: tunnel, tunnel: onprem,
     interval: 200ms, rise: 1, fall: 1}
metrics: {listen: "127.0.0.1:9479"}
drain: {time: 300ms, state_file: %[1]s/drained}
api: {socket: %[2]s}
kernel: {protocol: 202}
`

const metricsOnprem = `frr defaults datacenter
hostname op
!
ip route 10.1.0.0/16 blackhole
ip route 10.1.1.0/24 blackhole
!
router bgp 65010
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 neighbor 169.254.21.1 remote-as 65515
 neighbor 169.254.21.1 ttl-security hops 1
 neighbor 169.254.21.1 bfd profile fast
 address-family ipv4 unicast
  redistribute static
 exit-address-family
!
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
 !
!
`

// TestMetrics scrapes /metrics from a running bgpgw, inside its namespace,
// and checks every family against a known state: one tunnel up and
// carrying, one down; then after a failover of the first (its tunnel check
// fails); then drained.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := lab.ForTest(t)
	gwNS, err := l.Netns("gw")
	require.NoError(t, err)
	opNS, err := l.Netns("op")
	require.NoError(t, err)
	farNS, err := l.Netns("far")
	require.NoError(t, err)
	require.NoError(t, l.Link(gwNS, "tun0", "169.254.21.1/30", opNS, "gw0", "169.254.21.2/30"))
	require.NoError(t, l.Link(gwNS, "tun1", "169.254.22.1/30", farNS, "gw0", "169.254.22.2/30"))
	flag := filepath.Join(l.Dir(), "onprem-ok")
	require.NoError(t, os.WriteFile(flag, nil, 0o600))

	frr, err := l.StartFRR(opNS, l.Prefix()+"op", metricsOnprem, "zebra", "bgpd", "staticd", "bfdd")
	require.NoError(t, err)
	cfg := fmt.Sprintf(metricsGateway, l.Dir(), l.SocketPath("gwm"), flag)
	gw, err := l.StartGateway(ctx, gwNS, bgpgwBin, "gwm", cfg)
	require.NoError(t, err)
	scraper := newNetnsScraper(gwNS.Name(), "http://127.0.0.1:9479/metrics")
	var last metricSet
	var scrapeErr error // the first failed scrape of a wait
	diag := func() string {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		st, _ := gw.CLI(dctx, "status")
		bfd, _ := frr.Vtysh(dctx, "show bfd peers brief")
		return fmt.Sprintf("first scrape error: %v\nlast scrape:\n%s\nbgpgw status:\n%s\nbgpgw log:\n%s\nFRR bfd:\n%s",
			scrapeErr, last, st, gw.LogTail(40), bfd)
	}
	// waitFor scrapes until every expectation holds.
	waitFor := func(what string, want []expect) {
		t.Helper()
		var mismatch []string
		scrapeErr = nil
		err := lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
			var err error
			if last, err = scraper.scrape(ctx); err != nil {
				if scrapeErr == nil {
					scrapeErr = err
				}
				return false, err
			}
			mismatch = last.check(want)
			return len(mismatch) == 0, nil
		})
		require.NoError(t, err, "%s:\n%s\n%s", what, strings.Join(mismatch, "\n"), diag())
	}

	// A second bgpgw in the same namespace cannot bind metrics.listen: a
	// startup error that names the key, before it touches anything.
	// (Started with Lab.Start: StartGateway waits for an API that will
	// never answer.)
	cfg2 := filepath.Join(l.Dir(), "gwm2.yaml")
	require.NoError(t, os.WriteFile(cfg2, []byte(strings.Replace(cfg, l.SocketPath("gwm"), l.SocketPath("gwm2"), 1)), 0o600))
	log2 := filepath.Join(l.Dir(), "gwm2.log")
	p2, err := l.Start(gwNS, log2, bgpgwBin, "run", "--config", cfg2)
	require.NoError(t, err)
	wctx2, wcancel2 := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel2()
	err = p2.Wait(wctx2)
	require.True(t, p2.Exited(), "a second bgpgw with the same metrics.listen kept running: %v", err)
	require.Error(t, err, "it exited with status 0")
	out2, err := os.ReadFile(log2)
	require.NoError(t, err)
	assert.Contains(t, string(out2), "metrics.listen 127.0.0.1:9479")
	assert.Contains(t, string(out2), "address already in use")

	// Known state: onprem up (BGP, BFD, checks) and carrying; far down.
	steady := []expect{
		eq("bgpgw_instance_info", 1, "instance", "gwm", "mode", "active-active", "role", ""),
		eq("bgpgw_instance_ok", 1),
		eq("bgpgw_drained", 0),
		eq("bgpgw_drain_state", 1, "state", "normal"),
		eq("bgpgw_drain_state", 0, "state", "draining"),
		eq("bgpgw_drain_state", 0, "state", "drained"),
		eq("bgpgw_reconcile_errors", 0),
		eq("bgpgw_kernel_routes", 2),
		eq("bgpgw_tunnel_carrying", 1, "tunnel", "onprem"),
		eq("bgpgw_tunnel_carrying", 0, "tunnel", "far"),
		eq("bgpgw_tunnel_flaps", 0, "tunnel", "onprem"),
		present("bgpgw_tunnel_flaps", "tunnel", "far"),
		absent("bgpgw_tunnel_ipsec_up"), // ipsec.mode none: bgpgw does not know
		eq("bgpgw_bgp_session_established", 1, "peer", "onprem", "kind", "tunnel"),
		eq("bgpgw_bgp_session_established", 0, "peer", "far", "kind", "tunnel"),
		gt("bgpgw_bgp_session_uptime_seconds", 0, "peer", "onprem", "kind", "tunnel"),
		eq("bgpgw_bgp_session_uptime_seconds", 0, "peer", "far", "kind", "tunnel"),
		eq("bgpgw_bfd_up", 1, "peer", "onprem"),
		eq("bgpgw_bfd_up", 0, "peer", "far"),
		gt("bgpgw_bfd_state_changes_total", 0, "peer", "onprem"),
		eq("bgpgw_prefixes_announced", 2, "peer", "onprem"),
		eq("bgpgw_prefixes_announced", 0, "peer", "far"),
		eq("bgpgw_prefixes_received", 2, "peer", "onprem"),
		eq("bgpgw_prefixes_received", 0, "peer", "far"),
		present("bgpgw_prefixes_rejected", "peer", "onprem"), // FRR echoes our prefixes: AS loops
		eq("bgpgw_check_ok", 1, "check", "always", "scope", "instance"),
		eq("bgpgw_check_ok", 1, "check", "probe-onprem", "scope", "tunnel:onprem"),
		gt("bgpgw_check_last_result_timestamp_seconds", float64(time.Now().Add(-time.Hour).Unix()), "check", "always", "scope", "instance"),
		eq("bgpgw_failovers_total", 0, "tunnel", "onprem"),
		eq("bgpgw_failovers_total", 0, "tunnel", "far"),
		eq("bgpgw_withdrawals_total", 0, "peer", "onprem"),
		eq("bgpgw_withdrawals_total", 0, "peer", "far"),
		eq("bgpgw_withdrawal_latency_seconds_count", 0),
		present("go_goroutines"),
		present("process_resident_memory_bytes"),
	}
	waitFor("steady state", steady)
	// Types and the absence of unbounded labels, on a full scrape.
	assert.Equal(t, dto.MetricType_COUNTER, last.types["bgpgw_failovers_total"])
	assert.Equal(t, dto.MetricType_COUNTER, last.types["bgpgw_withdrawals_total"])
	assert.Equal(t, dto.MetricType_HISTOGRAM, last.types["bgpgw_withdrawal_latency_seconds"])
	assert.Equal(t, dto.MetricType_GAUGE, last.types["bgpgw_tunnel_carrying"])
	for _, s := range last.samples {
		for k, v := range s.labels {
			assert.NotContains(t, []string{"prefix", "address", "nexthop"}, k, "unbounded label on %s", s.name)
			_, err := netip.ParsePrefix(v)
			assert.Error(t, err, "prefix as a label value on %s", s.name)
		}
	}

	// Failover: the onprem tunnel check fails, its 2 prefixes are withdrawn
	// from its peer, and the latency of that withdrawal is observed once.
	require.NoError(t, os.Remove(flag))
	failedOver := []expect{
		eq("bgpgw_check_ok", 0, "check", "probe-onprem", "scope", "tunnel:onprem"),
		eq("bgpgw_check_ok", 1, "check", "always", "scope", "instance"),
		eq("bgpgw_tunnel_carrying", 0, "tunnel", "onprem"),
		eq("bgpgw_tunnel_carrying", 0, "tunnel", "far"),
		eq("bgpgw_instance_ok", 1),
		eq("bgpgw_bgp_session_established", 1, "peer", "onprem", "kind", "tunnel"),
		eq("bgpgw_bfd_up", 1, "peer", "onprem"),
		eq("bgpgw_prefixes_announced", 0, "peer", "onprem"),
		eq("bgpgw_prefixes_received", 2, "peer", "onprem"),
		eq("bgpgw_kernel_routes", 0),
		eq("bgpgw_failovers_total", 1, "tunnel", "onprem"),
		eq("bgpgw_failovers_total", 0, "tunnel", "far"),
		eq("bgpgw_withdrawals_total", 2, "peer", "onprem"),
		eq("bgpgw_withdrawals_total", 0, "peer", "far"),
		eq("bgpgw_withdrawal_latency_seconds_count", 1),
		gt("bgpgw_withdrawal_latency_seconds_sum", 0),
		// The histogram's range: well under its largest bound.
		eq("bgpgw_withdrawal_latency_seconds_bucket", 1, "le", "1"),
		eq("bgpgw_drain_state", 1, "state", "normal"),
	}
	waitFor("after the onprem check failed", failedOver)
	if s, why := one(last, "bgpgw_withdrawal_latency_seconds_sum", nil); why == "" {
		t.Logf("withdrawal latency, check result to withdrawal handed to GoBGP: %v", time.Duration(s.value*float64(time.Second)))
	}
	// FRR agrees: nothing from bgpgw any more.
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		r, err := routesFrom(ctx, frr, "169.254.21.1")
		return len(r) == 0, err
	}), diag())

	// Drain: the one-hot state moves to drained and the sessions are shut
	// down; nothing more is withdrawn (nothing was announced) and a drain
	// is not a failover.
	_, err = gw.CLI(ctx, "drain")
	require.NoError(t, err)
	waitFor("drained", []expect{
		eq("bgpgw_drained", 1),
		eq("bgpgw_drain_state", 0, "state", "normal"),
		eq("bgpgw_drain_state", 0, "state", "draining"),
		eq("bgpgw_drain_state", 1, "state", "drained"),
		eq("bgpgw_bgp_session_established", 0, "peer", "onprem", "kind", "tunnel"),
		eq("bgpgw_failovers_total", 1, "tunnel", "onprem"),
		eq("bgpgw_withdrawals_total", 2, "peer", "onprem"),
		eq("bgpgw_withdrawal_latency_seconds_count", 1),
	})

	// SIGTERM: the daemon exits and the metrics address is released.
	require.NoError(t, gw.Proc.Signal(syscall.SIGTERM))
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	require.NoError(t, gw.Proc.Wait(wctx), diag())
	_, err = scraper.scrape(ctx)
	require.Error(t, err, "metrics still served after exit")
}

// netnsScraper fetches a URL over connections opened inside a network
// namespace, so the test reaches the gateway's loopback.
type netnsScraper struct {
	url string
	hc  *http.Client
}

func newNetnsScraper(ns, url string) *netnsScraper {
	return &netnsScraper{url: url, hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialInNetns(ctx, ns, network, addr)
		},
	}}}
}

// dialInNetns opens a connection from an OS thread moved into the named
// namespace; the socket stays in that namespace after the thread returns.
func dialInNetns(ctx context.Context, name, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("netns %s: %w", name, err)}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter netns %s: %w", name, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: it exits with this goroutine
			// rather than run others in the wrong namespace.
			if c != nil {
				_ = c.Close()
			}
			ch <- result{err: fmt.Errorf("back from netns %s: %w", name, serr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func (s *netnsScraper) scrape(ctx context.Context) (metricSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return metricSet{}, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return metricSet{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return metricSet{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return metricSet{}, fmt.Errorf("GET %s: %s: %s", s.url, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return metricSet{}, fmt.Errorf("parse /metrics: %w", err)
	}
	return flatten(mfs), nil
}

// sample is one series of a scrape: histograms become _bucket, _sum and
// _count samples, as in the text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type metricSet struct {
	samples []sample
	types   map[string]dto.MetricType
}

func flatten(mfs map[string]*dto.MetricFamily) metricSet {
	ms := metricSet{types: map[string]dto.MetricType{}}
	for name, mf := range mfs {
		ms.types[name] = mf.GetType()
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			add := func(n string, v float64, extra ...string) {
				l := labels
				if len(extra) > 0 {
					l = map[string]string{}
					for k, v := range labels {
						l[k] = v
					}
					l[extra[0]] = extra[1]
				}
				ms.samples = append(ms.samples, sample{name: n, labels: l, value: v})
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				add(name+"_count", float64(h.GetSampleCount()))
				add(name+"_sum", h.GetSampleSum())
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), "le", model.FloatString(b.GetUpperBound()).String())
				}
			case dto.MetricType_SUMMARY:
				add(name+"_count", float64(m.GetSummary().GetSampleCount()))
				add(name+"_sum", m.GetSummary().GetSampleSum())
			}
		}
	}
	sort.Slice(ms.samples, func(i, j int) bool { return ms.samples[i].String() < ms.samples[j].String() })
	return ms
}

func (s sample) String() string {
	keys := make([]string, 0, len(s.labels))
	for k := range s.labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(s.name)
	for i, k := range keys {
		if i == 0 {
			b.WriteString("{")
		} else {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=%q", k, s.labels[k])
	}
	if len(keys) > 0 {
		b.WriteString("}")
	}
	return b.String()
}

func (ms metricSet) String() string {
	var b strings.Builder
	for _, s := range ms.samples {
		if strings.HasPrefix(s.name, "bgpgw_") {
			fmt.Fprintf(&b, "%s %g\n", s, s.value)
		}
	}
	return b.String()
}

// expect is one check on a scrape: it returns "" when it holds, else why not.
type expect func(ms metricSet) string

// find returns the samples of name whose labels include the given pairs.
func (ms metricSet) find(name string, kv []string) []sample {
	var out []sample
	for _, s := range ms.samples {
		if s.name != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if v, has := s.labels[kv[i]]; !has || v != kv[i+1] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

func one(ms metricSet, name string, kv []string) (sample, string) {
	got := ms.find(name, kv)
	if len(got) != 1 {
		return sample{}, fmt.Sprintf("%s %v: want one series, got %d", name, kv, len(got))
	}
	return got[0], ""
}

func eq(name string, want float64, kv ...string) expect {
	return func(ms metricSet) string {
		s, why := one(ms, name, kv)
		if why == "" && s.value != want {
			why = fmt.Sprintf("%s = %g, want %g", s, s.value, want)
		}
		return why
	}
}

func gt(name string, than float64, kv ...string) expect {
	return func(ms metricSet) string {
		s, why := one(ms, name, kv)
		if why == "" && !(s.value > than) {
			why = fmt.Sprintf("%s = %g, want > %g", s, s.value, than)
		}
		return why
	}
}

func present(name string, kv ...string) expect {
	return func(ms metricSet) string {
		_, why := one(ms, name, kv)
		return why
	}
}

func absent(name string) expect {
	return func(ms metricSet) string {
		if got := ms.find(name, nil); len(got) > 0 {
			return fmt.Sprintf("%s: want no series, got %d", name, len(got))
		}
		return ""
	}
}

func (ms metricSet) check(want []expect) []string {
	var out []string
	for _, e := range want {
		if why := e(ms); why != "" {
			out = append(out, why)
		}
	}
	return out
}
