// Command withdraw measures the time from a health event to the withdrawal
// being received by a real BGP peer, for 1, 100 and 10,000 announced
// prefixes: a failing instance check result goes into bgpgw's own loop
// (pkg/daemon's, embedded: its mailbox, the decision core, the pass that
// applies the output) and from it into the GoBGP speaker, and a separate
// GoBGP speaker (the on-prem side) timestamps every prefix of the UPDATEs
// it receives. The latency of
// one run is from the check result to the last withdrawn prefix received
// (the moment the peer read that UPDATE off its socket). The peer runs in a
// process of its own. Everything runs in a private network namespace on
// loopback.
//
// Each run starts from a steady state: after the previous run's
// re-announcement, the run waits -gap (200 ms) before the event, so that
// the re-announcement's aftermath (10,000 UPDATEs through both speakers,
// and both garbage collectors after them) is not measured as part of the
// next withdrawal. With -gap 0, the 10,000-prefix p99 is ~15 ms higher on
// a 2-vCPU VM.
//
// With -scrape, every size is also measured while bgpgw's /metrics is
// scraped every interval, in the same invocation: blocks of -block runs
// without and with scrapes alternate (off, on, on, off, off, on, ...), so
// that a drift of the machine's speed hits both series alike. A scrape
// reads the daemon's own status (the snapshot its loop publishes).
//
// With -peers 1,10,100 and -learn, it is the scale benchmark (make
// bench-scale): the peers run 10 to a process, each announcing -learn
// prefixes bgpgw accepts, and each result also holds the start-up time,
// the RSS and the CPU idle and during the runs; a table sums them up.
//
// It prints p50/p99 per size and writes bench/out/withdraw.json (-out).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/daemon"
	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/metrics"
)

type result struct {
	Prefixes int `json:"prefixes"`
	// Peers is the number of tunnel peers; the latency is to the last
	// withdrawn prefix received by the last of them.
	Peers int `json:"peers"`
	// Learned is how many prefixes each peer announces (bgpgw accepts
	// them: host routes in 44.PEER.0.0/16).
	Learned int `json:"learned_per_peer"`
	// StartupMs is from the speaker given its sessions to every peer
	// established, holding every announced prefix, and bgpgw holding every
	// learned one.
	StartupMs float64 `json:"startup_ms"`
	// RSSMiB is the measured process's resident memory once started up
	// (speaker, core and loop; the peers are other processes).
	RSSMiB float64 `json:"rss_mib"`
	// IdleCPUPercent is its CPU (percent of one core) over -idle with
	// nothing happening; RunsCPUPercent over the runs (withdrawals,
	// re-announcements and the gaps between them).
	IdleCPUPercent float64 `json:"idle_cpu_percent"`
	RunsCPUPercent float64 `json:"runs_cpu_percent"`
	// GapMs is the quiet time before each run.
	GapMs int `json:"gap_ms"`
	// series is without scrapes (with -scrape 0, the only one).
	series
	// Scrape is the series with scrapes (-scrape), absent without.
	Scrape *scrapeSeries `json:"scrape,omitempty"`
}

// series is the latency of one set of runs.
type series struct {
	Runs  int     `json:"runs"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// LocalP50ms is the median time bgpgw itself took: from the event to
	// SetAnnouncements returning (the withdrawals handed to GoBGP).
	LocalP50ms float64 `json:"local_p50_ms"`
	// SeenP50ms and SeenP99ms are to the moment the peer's own route
	// processing handed the last withdrawal to its watcher: they add the
	// peer's work (a GoBGP speaker, ~5-10 us per prefix) and the watcher's
	// queue to the received figures.
	SeenP50ms float64 `json:"seen_p50_ms"`
	SeenP99ms float64 `json:"seen_p99_ms"`
}

// scrapeSeries is the series measured while /metrics was scraped.
type scrapeSeries struct {
	IntervalMs float64 `json:"interval_ms"`
	// BlockRuns is the length of the alternating blocks.
	BlockRuns int `json:"block_runs"`
	series
	// Scrapes and Failures count the scrapes that succeeded and failed
	// over the whole time of the series' blocks (runs, gaps and
	// re-announcements).
	Scrapes  int `json:"scrapes"`
	Failures int `json:"failures"`
	// GetP50ms, GetP99ms and GetMaxMs are a successful scrape's time, from
	// the request to the body read.
	GetP50ms float64 `json:"get_p50_ms"`
	GetP99ms float64 `json:"get_p99_ms"`
	GetMaxMs float64 `json:"get_max_ms"`
	// OverlappedRuns are the runs during which (event to the last
	// withdrawal received) a scrape was in flight.
	OverlappedRuns int `json:"overlapped_runs"`
}

func main() {
	runs := flag.Int("runs", 200, "runs per size")
	sizes := flag.String("sizes", "1,100,10000", "numbers of prefixes, comma-separated")
	out := flag.String("out", "bench/out/withdraw.json", "JSON output")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	gap := flag.Duration("gap", 200*time.Millisecond, "quiet time before each run (steady state)")
	peers := flag.String("peers", "1", "numbers of tunnel peers (1 to 200), comma-separated; the peers run in processes of their own, 10 per process")
	learn := flag.Int("learn", 0, "prefixes each peer announces (and bgpgw learns)")
	idle := flag.Duration("idle", 0, "measure bgpgw's idle CPU over this long before the runs (0: not measured)")
	peerCount := flag.Int("peer-count", 1, "internal: how many stand-in peers this process runs")
	scrape := flag.Duration("scrape", 0, "also measure each size while /metrics is scraped at this interval (0: off)")
	block := flag.Int("block", 10, "with -scrape: runs per block of the alternating series")
	peerPort := flag.Int("peer-mode", 0, "internal: run the stand-in peer on this port")
	peerN := flag.Int("peer-n", 0, "internal: prefixes the stand-in peer expects")
	peerIdx := flag.Int("peer-index", 0, "internal: which stand-in peer this is")
	flag.Parse()
	var peerCounts []int
	for _, f := range strings.Split(*peers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 200 {
			fmt.Fprintf(os.Stderr, "-peers: bad number %q (1 to 200)\n", f)
			os.Exit(2)
		}
		peerCounts = append(peerCounts, n)
	}
	if *learn < 0 || *learn > 60000 {
		fmt.Fprintln(os.Stderr, "-learn: 0 to 60000")
		os.Exit(2)
	}
	if *scrape < 0 || *block < 1 {
		fmt.Fprintln(os.Stderr, "-scrape: 0 or an interval; -block: 1 or more")
		os.Exit(2)
	}
	if *peerPort != 0 {
		if err := runPeers(*peerPort, *peerIdx, *peerCount, *peerN, *learn); err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		return
	}
	lab.EnterPrivateNetns()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var results []result
	for _, npeers := range peerCounts {
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 60000 {
				fmt.Fprintf(os.Stderr, "-sizes: bad size %q\n", f)
				os.Exit(2)
			}
			r, err := measure(n, *runs, npeers, *learn, *gap, *idle, *scrape, *block)
			if err != nil {
				fmt.Fprintf(os.Stderr, "withdraw bench (%d prefixes, %d peers): %v\n", n, npeers, err)
				os.Exit(1)
			}
			report(r, *scrape)
			results = append(results, r)
		}
	}
	if len(results) > 1 {
		printTable(os.Stdout, results)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	data, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		// The stand-in peers run in child processes: this is bgpgw's speaker and core.
		fmt.Printf("peak RSS of the measured process (speaker + core): %.1f MiB\n", float64(ru.Maxrss)/1024)
	}
}

// report prints one result.
func report(r result, scrape time.Duration) {
	{
		fmt.Printf("%6d prefixes, %d peer(s), %d learned each: received p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms  (%d runs; event to SetAnnouncements returning: p50 %.3f ms; seen by the peer's watcher: p50 %.3f ms, p99 %.3f ms)\n",
			r.Prefixes, r.Peers, r.Learned, r.P50ms, r.P99ms, r.MaxMs, r.Runs, r.LocalP50ms, r.SeenP50ms, r.SeenP99ms)
		if s := r.Scrape; s != nil {
			fmt.Printf("%6d prefixes, /metrics every %v: received p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms  (without: p50 %.3f ms, p99 %.3f ms; %d runs each, alternating blocks of %d; event to SetAnnouncements returning: p50 %.3f ms; seen: p50 %.3f ms, p99 %.3f ms; a scrape in flight during %d runs)\n",
				r.Prefixes, scrape, s.P50ms, s.P99ms, s.MaxMs, r.P50ms, r.P99ms, s.Runs, s.BlockRuns, s.LocalP50ms, s.SeenP50ms, s.SeenP99ms, s.OverlappedRuns)
			fmt.Printf("%6d prefixes, /metrics: %d scrapes, %d failed; a scrape took p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
				r.Prefixes, s.Scrapes, s.Failures, s.GetP50ms, s.GetP99ms, s.GetMaxMs)
		}
		fmt.Printf("%6d prefixes, %d peer(s): start-up %.0f ms, RSS %.1f MiB, CPU idle %.1f%%, during the runs %.1f%% of one core\n",
			r.Prefixes, r.Peers, r.StartupMs, r.RSSMiB, r.IdleCPUPercent, r.RunsCPUPercent)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sample is one run: when the event happened, and the latencies from it.
type sample struct {
	at               time.Time
	lat, seen, local time.Duration
}

// summary returns the percentiles of samples.
func summary(samples []sample) series {
	pick := func(f func(sample) time.Duration) []time.Duration {
		var l []time.Duration
		for _, s := range samples {
			l = append(l, f(s))
		}
		slices.Sort(l)
		return l
	}
	lat := pick(func(s sample) time.Duration { return s.lat })
	seen := pick(func(s sample) time.Duration { return s.seen })
	local := pick(func(s sample) time.Duration { return s.local })
	return series{Runs: len(samples), P50ms: ms(p50(lat)), P99ms: ms(p99(lat)), MaxMs: ms(lat[len(lat)-1]),
		LocalP50ms: ms(p50(local)), SeenP50ms: ms(p50(seen)), SeenP99ms: ms(p99(seen))}
}

func p50(sorted []time.Duration) time.Duration { return sorted[len(sorted)/2] }
func p99(sorted []time.Duration) time.Duration { return sorted[len(sorted)*99/100] }
func ms(d time.Duration) float64               { return float64(d.Microseconds()) / 1000 }

func measure(n, runs, npeers, learn int, gap, idle, scrape time.Duration, block int) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	metricsListen := "off"
	if scrape > 0 {
		mport, err := freePort()
		if err != nil {
			return result{}, err
		}
		metricsListen = fmt.Sprintf("127.0.0.1:%d", mport) // loopback of the private namespace
	}
	// The core needs distinct inside subnets; the sessions themselves run
	// on 127.0.0.1 <-> peerAddr(i) (the speaker's peer configs below).
	var tunnels []map[string]any
	for i := range npeers {
		tunnels = append(tunnels, map[string]any{"name": fmt.Sprintf("t%d", i+1), "peer_asn": peerASN(i),
			"inside":       map[string]string{"local": fmt.Sprintf("169.254.%d.1/30", i), "remote": fmt.Sprintf("169.254.%d.2", i)},
			"accept":       []string{fmt.Sprintf("44.%d.0.0/16 le 32", i)},
			"max_prefixes": learn + 100})
	}
	var announce []string
	for i := range n {
		announce = append(announce, fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))
	}
	yaml := fmt.Sprintf(`
instance: {name: bench, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1, listen_port: %d, listen_addresses: [127.0.0.1]}
announce: %s
ipsec: {mode: none}
tunnels: %s
health:
  - {name: uplink, kind: link, target: eth1}
hold_down: {initial: 1ms, max: 1ms, decay: 1ms}
metrics: {listen: %q}
`, port, must(json.Marshal(announce)), must(json.Marshal(tunnels)), metricsListen)
	cfg, err := configfile.Parse([]byte(yaml))
	if err != nil {
		return result{}, err
	}
	speaker, err := bgp.NewGoBGP(ctx, bgp.Global{ASN: 65515, RouterID: cfg.BGP.RouterID, ListenPort: port,
		ListenAddresses: cfg.BGP.ListenAddresses, Never: filter.Never(cfg)}, slog.New(slog.DiscardHandler))
	if err != nil {
		return result{}, err
	}
	defer speaker.Close()
	peers, err := startPeers(port, npeers, n, learn)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, p := range peers {
			p.stop()
		}
	}()
	var pcs []bgp.PeerConfig
	for i, t := range cfg.Tunnels {
		pcs = append(pcs, bgp.PeerConfig{Name: t.Name, Kind: bgp.KindTunnel, Address: peerAddr(i),
			LocalAddress: netip.MustParseAddr("127.0.0.1"), Port: port, PeerASN: t.PeerASN, MaxPrefixes: t.MaxPrefixes,
			Accept: t.Accept, HoldTime: 9 * time.Second, Keepalive: 3 * time.Second, ConnectRetry: time.Second})
	}
	started := time.Now()
	if err := speaker.SetPeers(ctx, pcs); err != nil {
		return result{}, err
	}
	// bgpgw's own loop (pkg/daemon) around the speaker: a check result goes
	// through its mailbox, the core and the pass that applies the output,
	// as in the daemon; a scrape reads the daemon's own status.
	e := daemon.NewEmbedded(cfg, speaker, daemon.Options{Logger: slog.New(slog.DiscardHandler)})
	loopCtx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan error, 1)
	go func() { loopDone <- e.Run(loopCtx) }()
	defer func() { stopLoop(); <-loopDone }()
	if err := e.CheckResult(ctx, "uplink", true); err != nil {
		return result{}, err
	}
	if err := waitEstablished(ctx, speaker, npeers, learn); err != nil {
		return result{}, err
	}
	if _, _, err := waitAll(peers, n, 2*time.Minute); err != nil {
		return result{}, fmt.Errorf("initial announcement: %w", err)
	}
	r := result{Prefixes: n, Peers: npeers, Learned: learn, GapMs: int(gap.Milliseconds()),
		StartupMs: ms(time.Since(started)), RSSMiB: rssMiB()}
	if idle > 0 {
		c0, t0 := cpuTime(), time.Now()
		<-time.After(idle)
		r.IdleCPUPercent = percent(cpuTime()-c0, time.Since(t0))
	}

	var sc *scraper
	if scrape > 0 {
		var names []string
		for _, pc := range pcs {
			names = append(names, pc.Name)
		}
		m := metrics.New(metrics.Options{Snapshot: e.MetricsStatus, Tunnels: names, Peers: names})
		srv, err := m.Listen(cfg.Metrics.Listen)
		if err != nil {
			return result{}, err
		}
		defer srv.Close()
		go func() { _ = srv.Serve(ctx) }()
		sc = startScraper(ctx, "http://"+cfg.Metrics.Listen+"/metrics", scrape)
	}

	// local is until the loop's pass handed the withdrawals to the
	// speaker; the re-announcement waits the (1 ms) hold-down on the
	// loop's own timer.
	run := func() (sample, error) {
		<-time.After(gap)
		t0 := time.Now()
		if err := e.CheckResult(ctx, "uplink", false); err != nil {
			return sample{}, err
		}
		local := time.Since(t0)
		last, seen, err := waitAll(peers, 0, time.Minute)
		if err != nil {
			return sample{}, fmt.Errorf("withdrawal: %w", err)
		}
		if err := e.CheckResult(ctx, "uplink", true); err != nil {
			return sample{}, err
		}
		if _, _, err := waitAll(peers, n, time.Minute); err != nil {
			return sample{}, fmt.Errorf("re-announcement: %w", err)
		}
		return sample{at: t0, lat: last.Sub(t0), seen: seen.Sub(t0), local: local}, nil
	}
	// Blocks alternate off, on, on, off, off, on, ... (without a
	// scraper, every block is off) until both series have their runs.
	var off, on []sample
	c0, t0 := cpuTime(), time.Now()
	for b := 0; len(off) < runs || (sc != nil && len(on) < runs); b++ {
		scraping := sc != nil && (b+1)/2%2 == 1
		sc.set(scraping)
		dst := &off
		if scraping {
			dst = &on
		}
		for k := 0; k < block && len(*dst) < runs; k++ {
			s, err := run()
			if err != nil {
				return result{}, err
			}
			*dst = append(*dst, s)
		}
	}
	r.RunsCPUPercent = percent(cpuTime()-c0, time.Since(t0))
	r.series = summary(off)
	if sc == nil {
		return r, nil
	}
	gets, fails, err := sc.stats()
	if len(gets) == 0 {
		return result{}, fmt.Errorf("no successful scrape of /metrics (%d failed): %v", fails, err)
	}
	r.Scrape = &scrapeSeries{IntervalMs: float64(scrape.Microseconds()) / 1000, BlockRuns: block, series: summary(on),
		Scrapes: len(gets), Failures: fails, GetP50ms: ms(p50(gets)), GetP99ms: ms(p99(gets)), GetMaxMs: ms(gets[len(gets)-1])}
	for _, s := range on {
		if sc.overlaps(s.at, s.at.Add(s.lat)) {
			r.Scrape.OverlappedRuns++
		}
	}
	return r, nil
}

// waitEstablished polls until the speaker's n sessions are established,
// each with learn prefixes accepted: the loop, not this function, takes the
// speaker's Changed signals.
func waitEstablished(ctx context.Context, s bgp.Speaker, n, learn int) error {
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := s.Sessions(ctx)
		up := 0
		for _, p := range st {
			if p.State == bgp.StateEstablished && len(p.Received) == learn {
				up++
			}
		}
		if err == nil && len(st) == n && up == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessions not established with %d prefixes learned each: %d of %d (%v)", learn, up, n, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
