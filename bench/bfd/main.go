// Command bfd benchmarks bgpgw's BFD (pkg/bfd) against FRR bfdd: N sessions
// (default 10) at 50 ms x 3 held for a duration (default 10m) while a busy
// loop burns CPU in another process. It prints the number of false Downs
// seen by either side (the goal is 0) and the CPU the BFD manager process
// used, and writes the figures to bench/out/bfd.json.
//
//	go run ./bench/bfd -duration 10m
//
// It needs root, iproute2 and FRR. The lab (namespaces gw, frr and cpu,
// one veth pair per session) is removed at the end, also on Ctrl-C. The
// manager runs in a child process (this binary with -child) inside the gw
// namespace, so its CPU figure is that process's getrusage and nothing else.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/test/bfd/bfdlab"
)

type params struct {
	Duration   time.Duration `json:"-"`
	Sessions   int           `json:"sessions"`
	Interval   time.Duration `json:"-"`
	DetectMult int           `json:"detect_mult"`
	BusyLoops  int           `json:"busy_loops"`
}

// Result is what bench/out/bfd.json holds.
type Result struct {
	params
	DurationS       float64         `json:"duration_s"`
	IntervalMS      float64         `json:"interval_ms"`
	CPUs            int             `json:"cpus"`
	Kernel          string          `json:"kernel"`
	GoVersion       string          `json:"go_version"`
	Start           time.Time       `json:"start"`
	FalseDowns      int             `json:"false_downs"`
	FalseDownsBgpgw int             `json:"false_downs_bgpgw"`
	FalseDownsFRR   uint64          `json:"false_downs_frr"`
	Manager         ChildResult     `json:"manager"`
	FRRBfddCPUS     float64         `json:"frr_bfdd_cpu_s"`
	FRRBfddCPUPct   float64         `json:"frr_bfdd_cpu_percent_of_one_core"`
	FRRPackets      map[string]any  `json:"frr_counters_delta"`
	FRRDetectMS     map[string]int  `json:"frr_detection_time_ms"`
	Notes           []string        `json:"notes,omitempty"`
	FRRPeersAtEnd   map[string]bool `json:"frr_peers_up_at_end"`
	FRRDownLog      []string        `json:"frr_down_log,omitempty"`
}

func main() {
	var p params
	child := flag.Bool("child", false, "internal: run the BFD manager (inside the gw namespace)")
	resultPath := flag.String("result", "", "internal: where the child writes its result")
	out := flag.String("out", filepath.Join("bench", "out", "bfd.json"), "where to write the figures")
	flag.DurationVar(&p.Duration, "duration", 10*time.Minute, "how long to hold the sessions Up")
	flag.IntVar(&p.Sessions, "sessions", 10, "number of BFD sessions")
	flag.DurationVar(&p.Interval, "interval", 50*time.Millisecond, "desired min TX and required min RX on both sides")
	flag.IntVar(&p.DetectMult, "mult", 3, "detect multiplier on both sides")
	flag.IntVar(&p.BusyLoops, "busy", 1, "busy-loop processes running during the measurement")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *child {
		err = runChild(ctx, p, *resultPath)
	} else {
		err = runParent(ctx, p, *out)
	}
	if err != nil {
		log.Printf("bench/bfd: %v", err)
		stop()
		os.Exit(1)
	}
}

// session i (0-based): bgpgw 10.0.i.1 on f<i> <-> FRR 10.0.i.2 on g<i>.
func ourAddr(i int) string     { return fmt.Sprintf("10.0.%d.1", i) }
func frrAddr(i int) string     { return fmt.Sprintf("10.0.%d.2", i) }
func ourIf(i int) string       { return fmt.Sprintf("f%d", i) }
func frrIf(i int) string       { return fmt.Sprintf("g%d", i) }
func msec(d time.Duration) int { return int(d / time.Millisecond) }

func frrConfig(p params) string {
	var b strings.Builder
	b.WriteString("frr defaults traditional\nhostname frr\ndebug bfd peer\n!\nbfd\n")
	for i := range p.Sessions {
		fmt.Fprintf(&b, " peer %s interface %s\n  detect-multiplier %d\n  receive-interval %d\n  transmit-interval %d\n exit\n !\n",
			ourAddr(i), frrIf(i), p.DetectMult, msec(p.Interval), msec(p.Interval))
	}
	b.WriteString("exit\n!\n")
	return b.String()
}

func runParent(ctx context.Context, p params, outPath string) (err error) {
	if p.Sessions < 1 || p.Sessions > 250 {
		return fmt.Errorf("-sessions %d: want 1-250", p.Sessions)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	l, err := lab.New(log.Printf)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l.Close()) }()

	gw, err := l.Netns("gw")
	if err != nil {
		return err
	}
	fns, err := l.Netns("frr")
	if err != nil {
		return err
	}
	cpu, err := l.Netns("cpu")
	if err != nil {
		return err
	}
	for i := range p.Sessions {
		if err := l.Link(gw, ourIf(i), ourAddr(i)+"/30", fns, frrIf(i), frrAddr(i)+"/30"); err != nil {
			return err
		}
	}
	frr, err := l.StartFRR(fns, "frr", frrConfig(p), "zebra", "bfdd")
	if err != nil {
		return err
	}

	// The busy loops, bounded by the run's length; Close kills them too.
	limit := strconv.Itoa(int((p.Duration + 5*time.Minute).Seconds()))
	for i := range p.BusyLoops {
		if _, err := l.Start(cpu, fmt.Sprintf("busy%d.log", i), "timeout", limit, "sh", "-c", "while :; do :; done"); err != nil {
			return err
		}
	}

	resultPath := filepath.Join(l.Dir(), "child.json")
	childLog := filepath.Join(l.Dir(), "manager.log")
	mgr, err := l.Start(gw, childLog, exe, "-child", "-result", resultPath,
		"-duration", p.Duration.String(), "-sessions", strconv.Itoa(p.Sessions),
		"-interval", p.Interval.String(), "-mult", strconv.Itoa(p.DetectMult))
	if err != nil {
		return err
	}

	// Baseline once FRR has every session Up.
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var peers map[string]bfdlab.FRRPeer
	err = lab.Poll(upCtx, 200*time.Millisecond, func() (bool, error) {
		if mgr.Exited() {
			return false, errors.New("manager exited early:\n" + tail(childLog))
		}
		peers, err = bfdlab.Peers(upCtx, frr)
		if err != nil {
			return false, err
		}
		for i := range p.Sessions {
			if ps := peers[ourAddr(i)]; ps.Status != "up" || ps.RemoteTransmitInterval != msec(p.Interval) {
				return false, fmt.Errorf("FRR peer %s: %s, remote tx %d ms", ourAddr(i), ps.Status, ps.RemoteTransmitInterval)
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("sessions up: %w", err)
	}
	before, err := bfdlab.Counters(ctx, frr)
	if err != nil {
		return err
	}
	bfddPid := pidOf(frr.Pids(), "bfdd")
	bfddCPU0 := procCPU(bfddPid)
	start := time.Now()
	log.Printf("all %d sessions Up on FRR; measuring for %v with %d busy loop(s) on %d CPUs",
		p.Sessions, p.Duration, p.BusyLoops, runtime.NumCPU())

	// Wait for the child's result, reporting progress.
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		if _, err := os.Stat(resultPath); err == nil {
			break
		}
		if mgr.Exited() {
			return errors.New("manager exited before writing its result:\n" + tail(childLog))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			cs, err := bfdlab.Counters(ctx, frr)
			if err == nil {
				log.Printf("%v: FRR session-down events so far: %d", time.Since(start).Round(time.Second), downs(before, cs))
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	// FRR's view before the manager stops (its stop would be a Down).
	after, err := bfdlab.Counters(ctx, frr)
	if err != nil {
		return err
	}
	wall := time.Since(start)
	bfddCPU := procCPU(bfddPid) - bfddCPU0
	peers, err = bfdlab.Peers(ctx, frr)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(resultPath)
	if err != nil {
		return err
	}
	var cr ChildResult
	if err := json.Unmarshal(data, &cr); err != nil {
		return fmt.Errorf("child result: %w", err)
	}

	r := Result{params: p, DurationS: p.Duration.Seconds(), IntervalMS: float64(p.Interval) / float64(time.Millisecond),
		CPUs: runtime.NumCPU(), Kernel: kernel(), GoVersion: runtime.Version(), Start: start,
		FalseDownsBgpgw: cr.Downs, FalseDownsFRR: downs(before, after), Manager: cr,
		FRRBfddCPUS: bfddCPU, FRRBfddCPUPct: 100 * bfddCPU / wall.Seconds(),
		FRRPackets: map[string]any{}, FRRDetectMS: map[string]int{}, FRRPeersAtEnd: map[string]bool{}}
	r.FalseDowns = r.FalseDownsBgpgw + int(r.FalseDownsFRR)
	var in, out uint64
	for i := range p.Sessions {
		a := ourAddr(i)
		in += after[a].ControlIn - before[a].ControlIn
		out += after[a].ControlOut - before[a].ControlOut
		r.FRRDetectMS[a] = msec(peers[a].DetectionTime())
		r.FRRPeersAtEnd[a] = peers[a].Status == "up"
	}
	r.FRRPackets["control_in"], r.FRRPackets["control_out"] = in, out
	r.FRRDownLog = downLines(filepath.Join(frr.Dir(), "bfdd.log"))
	if bfddPid == 0 {
		r.Notes = append(r.Notes, "bfdd pid not found: no FRR CPU figure")
	}

	fmt.Printf("BFD benchmark: %d sessions at %v x %d against FRR bfdd for %v, %d busy loop(s), %d CPUs\n",
		p.Sessions, p.Interval, p.DetectMult, p.Duration, p.BusyLoops, r.CPUs)
	fmt.Printf("  false Downs: %d (bgpgw saw %d, FRR saw %d)\n", r.FalseDowns, r.FalseDownsBgpgw, r.FalseDownsFRR)
	for _, l := range r.FRRDownLog {
		fmt.Printf("    FRR: %s\n", l)
	}
	for _, c := range cr.DownEvents {
		fmt.Printf("    bgpgw: %s %v: %v -> %v (%v)\n", c.At.Format(time.TimeOnly+".000"), c.Key, c.Old, c.New, c.Diag)
	}
	fmt.Printf("  bgpgw BFD manager CPU: %.2f s user + %.2f s sys = %.2f s over %.0f s = %.2f%% of one core\n",
		cr.CPUUserS, cr.CPUSysS, cr.CPUUserS+cr.CPUSysS, cr.WallS, cr.CPUPercent)
	fmt.Printf("  FRR bfdd CPU for comparison: %.2f s = %.2f%% of one core\n", r.FRRBfddCPUS, r.FRRBfddCPUPct)
	fmt.Printf("  packets: bgpgw sent %d, received %d; FRR sent %d, received %d\n", cr.Sent, cr.Received, out, in)
	fmt.Printf("  closest call: %.1f ms left before a detection timer (bgpgw side, detection time %v)\n",
		cr.MinDetectMarginMS, time.Duration(p.DetectMult)*p.Interval)
	if err := os.MkdirAll(filepath.Dir(outPath), 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(outPath, append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("  written to %s\n", outPath)
	return nil
}

func downs(before, after map[string]bfdlab.FRRCounters) uint64 {
	var n uint64
	for k, a := range after {
		n += a.SessionDown - before[k].SessionDown
	}
	return n
}

// pidOf picks the pid whose command name is name.
func pidOf(pids []int, name string) int {
	for _, pid := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == name {
			return pid
		}
	}
	return 0
}

// procCPU is a process's user+system CPU seconds from /proc/PID/stat.
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14 utime
	st, _ := strconv.ParseFloat(f[12], 64) // field 15 stime
	return (ut + st) / 100                 // USER_HZ
}

// downLines returns bfdd's "up -> down" state changes from its log (with
// `debug bfd peer`): when, which peer, and why (control-expired: FRR heard
// nothing; neighbor-down: we said Down).
func downLines(path string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "state-change") && strings.Contains(l, "up -> down") {
			if i := strings.Index(l, "state-change: "); i >= 0 && len(l) >= 19 {
				l = l[:19] + " " + l[i+len("state-change: "):]
			}
			out = append(out, l)
		}
	}
	return out
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
