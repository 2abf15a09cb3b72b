// Command failover runs the failover suite: every topology of
// test/containerlab (through the namespace runner), with and without BFD
// on the on-prem routers (the -nobfd variants) and with BIRD 2 instead of
// FRR on the on-prem router (the -bird variant), with bgpgw, with bgpgw
// without takeover (pair.takeover: off) and with the hand-built
// strongSwan + FRR stack, every fault on one gateway instance, UDP traffic
// both ways at 1 ms per flow. It prints a table, writes
// bench/out/failover.json and an SVG timeline per fault, optionally the
// markdown report, and with -ci exits 1 when bgpgw loses a datagram in a
// fault that must lose nothing (planned, partner-cut, rejoin), has an
// outage over 1 s, or does not come back. Needs root; `make
// bench-failover` runs everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/bgpgw/bgpgw/internal/failover"
	"github.com/bgpgw/bgpgw/internal/lab"
)

func main() {
	topologies := flag.String("topologies",
		"active-active,active-standby,two-onprem,vnet-to-vnet,active-active-nobfd,active-standby-nobfd,two-onprem-nobfd,active-active-bird",
		"topologies, comma-separated (the -nobfd variants: the on-prem routers run no BFD; -bird: the on-prem router runs BIRD 2)")
	stacks := flag.String("stacks", "bgpgw,bgpgw-notakeover,handbuilt",
		"stacks, comma-separated: bgpgw; bgpgw-notakeover, bgpgw with pair.takeover: off; handbuilt, strongSwan + FRR")
	faults := flag.String("faults", strings.Join(failover.AllFaults, ","),
		"faults, comma-separated; FAULT@NODE applies one to another gateway instance")
	flap := flag.Duration("flap", time.Minute, "how long the tunnel flaps")
	cut := flag.Duration("cut", failover.DefaultCutFor, "how long partner-cut keeps the two instances apart")
	out := flag.String("out", "bench/out/failover.json", "JSON report")
	svgDir := flag.String("svg", "bench/out/failover", "directory for the SVG timelines")
	report := flag.String("report", "", "also write the markdown report here (e.g. docs/failover-report.md)")
	ci := flag.Bool("ci", false, "exit 1 when a bgpgw result violates a threshold")
	verbose := flag.Bool("v", false, "log the lab's progress")
	logDir := flag.String("logs", "", "copy the nodes' daemon logs here after each fault")
	merge := flag.String("merge", "", "start from this JSON report: its results for the topologies and stacks run again are replaced")
	interval := flag.Duration("interval", failover.DefaultInterval, "probe traffic: interval between the datagrams of a flow")
	flows := flag.Int("flows", 4, "probe traffic: flows each way")
	tries := flag.Int("tries", failover.DefaultTries, "tries of a fault whose data plane is lossy before it")
	note := flag.String("note", "", "a note on this run, added to the report's notes (with -merge and -topologies '': only re-render)")
	flag.Parse()
	traffic := traffic{interval: *interval, flows: *flows, tries: *tries, note: *note}
	code, err := run(*topologies, *stacks, *faults, *flap, *cut, *out, *svgDir, *report, *ci, *verbose, *logDir, *merge, traffic)
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
	}
	os.Exit(code)
}

// traffic is how the probe loads the lab's data plane, and the run's note.
type traffic struct {
	interval     time.Duration
	flows, tries int
	note         string // on this run, for the report
}

func run(topologies, stacks, faults string, flap, cut time.Duration, out, svgDir, report string, ci, verbose bool, logDir, merge string, tr traffic) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "bgpgw-failover-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	// The nodes run the binaries from their own mount namespace, where
	// this directory is visible (it is not below /run).
	if err := os.Chmod(dir, 0o755); err != nil {
		return 1, err
	}
	// Nothing to run (-merge with -topologies ''): only re-render, with
	// neither the lab's binaries nor the scheduler setting.
	var bgpgw, probe string
	if len(split(topologies)) > 0 {
		restore, err := lab.AutogroupOff()
		if err != nil {
			return 1, err
		}
		defer func() {
			if err := restore(); err != nil {
				fmt.Fprintln(os.Stderr, "failover:", err)
			}
		}()
		if bgpgw, err = lab.BuildBgpgw(ctx, dir); err != nil {
			return 1, err
		}
		if probe, err = lab.BuildUDPProbe(ctx, dir); err != nil {
			return 1, err
		}
	}
	logf := func(string, ...any) {}
	if verbose {
		logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	opts := failover.Options{Dir: "test/containerlab", BgpgwBin: bgpgw, ProbeBin: probe,
		Flows: tr.flows, Interval: tr.interval, Tries: tr.tries, Before: 2 * time.Second, After: 4 * time.Second,
		FlapFor: flap, CutFor: cut, Recover: 60 * time.Second, Logf: logf, LogDir: logDir,
		OnResult: func(r failover.Result) {
			fmt.Fprintf(os.Stderr, "%-20s %-12s %-16s lost %6d (probe dropped %d)  converged %s  recovered %v  tries %d %s\n",
				r.Topology, r.Fault, r.Stack, r.Lost(), r.ProbeDrops(), failover.FormatMs(r.ConvergedMs), r.Recovered,
				len(r.Retried)+1, r.Error)
		}}
	rep := failover.Report{Machine: machine(), Started: time.Now().UTC()}
	if merge != "" {
		prev, err := failover.ReadJSON(merge)
		if err != nil {
			return 1, err
		}
		rep.Started = prev.Started
		for _, r := range prev.Results {
			if !(slices.Contains(split(topologies), r.Topology) && slices.Contains(split(stacks), r.Stack)) {
				rep.Results = append(rep.Results, r)
			}
		}
	}
	var errs []string
	for _, topo := range split(topologies) {
		for _, stack := range split(stacks) {
			start := time.Now()
			res, err := failover.Run(ctx, opts, topo, stack, split(faults))
			rep.Results = append(rep.Results, res...)
			if err != nil {
				errs = append(errs, err.Error())
				fmt.Fprintf(os.Stderr, "failover: %s (%s): %v\n", topo, stack, err)
				if ctx.Err() != nil {
					return 1, ctx.Err()
				}
				for _, f := range split(faults) {
					if !hasResult(res, f) {
						r := failover.NewResult(topo, stack, f)
						r.Error = err.Error()
						rep.Results = append(rep.Results, r)
					}
				}
			}
			fmt.Fprintf(os.Stderr, "failover: %s (%s) done in %s\n", topo, stack, time.Since(start).Round(time.Second))
		}
	}
	rep.Goals = failover.Goals(rep.Results)
	rep.Notes = nil
	for _, n := range labNotes {
		if strings.Contains(n, "%[") {
			n = fmt.Sprintf(n, tr.tries, cut)
		}
		rep.Notes = append(rep.Notes, n)
	}
	if tr.note != "" {
		rep.Notes = append(rep.Notes, tr.note)
	}
	if err := failover.WriteJSON(out, rep); err != nil {
		return 1, err
	}
	if err := failover.WriteSVGs(svgDir, rep); err != nil {
		return 1, err
	}
	if err := failover.Table(os.Stdout, rep); err != nil {
		return 1, err
	}
	fmt.Printf("\nJSON: %s\nSVG timelines: %s/\n", out, svgDir)
	if report != "" {
		rel, err := filepath.Rel(filepath.Dir(report), svgDir)
		if err != nil {
			rel = svgDir
		}
		f, err := os.Create(report)
		if err != nil {
			return 1, err
		}
		if err := failover.Markdown(f, rep, rel); err != nil {
			_ = f.Close()
			return 1, err
		}
		if err := f.Close(); err != nil {
			return 1, err
		}
		fmt.Printf("report: %s\n", report)
	}
	if fails := failover.Failures(rep); ci && len(fails) > 0 {
		return 1, fmt.Errorf("%d violation(s):\n  %s", len(fails), strings.Join(fails, "\n  "))
	}
	return 0, nil
}

// labNotes are the limits of the namespace lab that the figures carry.
var labNotes = []string{
	"The tunnels run charon's userspace ESP (kernel-libipsec): this VM has no kernel ESP. libipsec picks an SA by the packet's addresses, not by route. In VNet-to-VNet each gateway has two tunnels whose selectors differ only in the inside /30, so data between the VNets takes one fixed tunnel whatever BGP chose; when that tunnel's far end fails, traffic stays blackholed until IKE gives up (~4 s). The same happens to both stacks: it is the lab's data plane, not the routing decision (with kernel ESP and XFRM interfaces, routes pick the tunnel).",
	"Converged is measured by polling every router's `show ip route ... json` through vtysh (a BIRD router's `show route for ... export kernel4` through birdc: the route BIRD gives the kernel, ECMP paths merged); one round takes 100-200 ms here, which bounds its resolution.",
	"Topologies ending in -bird run the same nodes with BIRD 2 (2.0.12) instead of FRR on the on-prem router (test/containerlab/nodes/active-active/op/bird.conf: the same sessions, GTSM, BFD 100 ms x 3 and timers as its frr.conf, ECMP with merge paths, GRACEFUL_SHUTDOWN honoured by an import filter, and BIRD's reconnect delays shortened: error wait time 1, 10 s instead of 60, 300 s, error forget time 60 s, connect delay time 1 s). BIRD runs the BFD of a directly connected neighbor single-hop, so there the gateways' tunnels run single-hop BFD too (bgpgw with tunnels' bfd.multihop off; the hand-built FRR with ttl-security through a peer-group); the cloud router stays FRR.",
	"Outage is the longest run of lost datagrams in a flow (1 ms apart); the SVG timelines place them by sequence number, approximate when the sender fell behind (noted on the timeline). The traffic runs 4 s after the fault and on until 2 s after the routers have converged, at most 30 s: an outage that outlasts 4 s (a router without BFD waits for its BGP hold time) is measured whole, not cut short by the end of the traffic.",
	"Topologies ending in -nobfd run the same nodes with the on-prem routers (FRR) without BFD, as most VPN appliances: the gateways' tunnels run none either; bgpgw watches each tunnel's data plane with an icmp check through it (every 100 ms, down after 3 misses), the hand-built stack has only the BGP hold time. The cloud router keeps its BFD. Stack bgpgw-notakeover is bgpgw with pair.takeover: off (the pair channel runs, routes never change for the partner): what takeover gains is the difference to bgpgw.",
	"partner-cut: nft on the instance drops what it exchanges with its partner's cloud-side address (the pair's BFD and state channel, nothing else) for %[2]s, then the path is restored. rejoin: the instance goes silent, the routers settle on the other instance (no route and no BGP session through the silent one), then the instance comes back: that is the measured event. For both the traffic runs until the routers are back in their full state, then 4 s more, and both must lose nothing. The hand-built stack has no pair channel: its partner-cut cuts a path it does not use.",
	"BFD: every BGP session's runs 100 ms x 3, both stacks, as the hand-built reference of LAB-FACTS does (the pair's own BFD between the two bgpgw instances runs its default, 20 ms x 3). bgpgw at 50 ms x 3 was tried (a silent instance then cost 0.20-0.22 s) and reverted: a CPU burst on this 2-vCPU VM once delayed BFD through the userspace ESP path past 150 ms during a drain and took the surviving gateway's session down.",
	"The fault time is taken before the command that causes it runs in the node (nsenter, ~10-20 ms here), so outages include that.",
	"The suite turns the kernel's autogroup scheduling off while it runs (and restores it): with it, each lab daemon is a scheduling group of its own, and a CPU-bound process elsewhere on the machine kept them waiting for hundreds of milliseconds (BFD falsely Down on both gateways at once with two spinning shells on the two cores; nothing lost with it off).",
	"Every charon runs at real-time priority (SCHED_RR 1): its userspace ESP stands in for the kernel's, which no process delays. At normal priority a compile on the two cores made charon's ESP-in-UDP sockets overflow (12 to 1,217 datagrams per fault, Udp RcvbufErrors in the gateways' and tunnel ends' namespaces), losses no gateway made.",
	"Lost counts the missing datagrams; the probe's own receiving sockets' drops are shown beside it (probe dropped N). A try whose data plane lost datagrams more than 50 ms before the fault measures the machine's load, not the fault, and a planned fault's try whose probe dropped datagrams cannot be judged: either is thrown away and the fault run again, up to -tries times (%[1]d in this run); Notes list the retries and the lab's drop counters (charon's sockets, ipsec0 queues, the host's backlog) that moved during a try.",
}

func hasResult(res []failover.Result, fault string) bool {
	for _, r := range res {
		if r.Fault == fault {
			return true
		}
	}
	return false
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// machine describes where the suite ran.
func machine() string {
	host, _ := os.Hostname()
	kernel, _ := exec.Command("uname", "-r").Output()
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, Linux %s, %d CPUs (%s)", host, strings.TrimSpace(string(kernel)), runtime.NumCPU(), cpu)
}
