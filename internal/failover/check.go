package failover

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MaxUnplannedOutageMs is the longest outage, in either direction, that an
// unplanned fault may cause before Check fails it.
const MaxUnplannedOutageMs = 1000

// Check returns the violations of r that fail CI (none: nil): the run
// failed or measured no traffic; a fault that must lose nothing (planned
// maintenance, the pair faults: Lossless) lost a datagram (the suite runs
// such a fault again when the probe's own sockets dropped datagrams, see
// ProbeLoss, so that none is held against the gateway and no real loss
// hides behind them); another fault's outage exceeded MaxUnplannedOutageMs
// in either direction; kernel routes were left stale; the pair did not
// recover.
func Check(r Result) []string {
	if r.Error != "" {
		return []string{"not measured: " + r.Error}
	}
	var v []string
	if len(r.Directions) == 0 {
		v = append(v, "no traffic measured")
	}
	for _, d := range r.Directions {
		switch {
		case d.Sent == 0:
			v = append(v, fmt.Sprintf("%s: no datagrams sent", d.Name))
		case r.MustLoseNothing() && d.Lost > 0:
			msg := fmt.Sprintf("%s: planned fault lost %d datagrams", d.Name, d.Lost)
			if !r.Planned {
				msg = fmt.Sprintf("%s: %s lost %d datagrams (it must lose none)", d.Name, r.Fault, d.Lost)
			}
			if d.ProbeDrops > 0 {
				msg += fmt.Sprintf(" (the probe's own sockets dropped %d datagrams meanwhile)", d.ProbeDrops)
			}
			if len(r.LabDrops) > 0 {
				msg += " (the lab's data plane dropped meanwhile: " + FormatDrops(r.LabDrops) + ")"
			}
			v = append(v, msg)
		case !r.MustLoseNothing() && d.OutageMs > MaxUnplannedOutageMs:
			v = append(v, fmt.Sprintf("%s: outage %s > %s", d.Name, FormatMs(d.OutageMs), FormatMs(MaxUnplannedOutageMs)))
		}
	}
	if r.StaleRoutes > 0 {
		v = append(v, fmt.Sprintf("%d stale kernel routes left", r.StaleRoutes))
	}
	if !r.Recovered {
		v = append(v, "did not recover to full state after the fault was cleared")
	}
	return v
}

// Failures lists the violations of the report's bgpgw results, each
// prefixed with "topology fault stack: ". Hand-built and bgpgw-notakeover
// results are the references and do not fail CI.
func Failures(rep Report) []string {
	var out []string
	for _, r := range rep.Results {
		if r.Stack != StackBgpgw {
			continue
		}
		for _, v := range Check(r) {
			out = append(out, fmt.Sprintf("%s %s %s: %s", r.Topology, r.Fault, r.Stack, v))
		}
	}
	return out
}

// Goal is one row of the product brief's goals table, with the figure
// measured for bgpgw (the worst across its topologies) and the figures of
// bgpgw without takeover and of the hand-built stack beside it. Outage
// figures read "on-prem->cloud / cloud->on-prem".
type Goal struct {
	Name       string `json:"name"`   // the event
	Target     string `json:"target"` // bgpgw's goal
	Figure     string `json:"figure"` // bgpgw, measured
	Met        bool   `json:"met"`
	NoTakeover string `json:"notakeover,omitempty"` // bgpgw with pair.takeover: off, measured
	HandBuilt  string `json:"handbuilt"`            // the hand-built stack, measured
	Azure      string `json:"azure"`                // Azure VPN Gateway, published
}

// goalSpec is a row of the goals table and how to judge it.
type goalSpec struct {
	name, target, azure string
	faults              []string
	// topologies selects the topologies whose results count (nil: all).
	topologies func(topology string) bool
	// eval returns the figure for the results of one stack (at least one,
	// none failed) and whether it meets the target.
	eval func(rs []Result) (string, bool)
}

func withBFD(topology string) bool { return !NoBFD(topology) }

var goalSpecs = []goalSpec{
	{"planned maintenance / drain / SIGTERM", "0 lost, drain finished in < 3 s", "10-15 s",
		[]string{FaultDrain, FaultSIGTERM}, nil, evalPlanned},
	{"instance goes silent (power loss)", "<= 0.1 s both directions (the pair's takeover)", "60-90 s",
		[]string{FaultSilent}, withBFD, evalOutage(100, true, false)},
	{"instance goes silent, on-prem device without BFD", "<= 0.1 s both directions, as with BFD", "60-90 s",
		[]string{FaultSilent}, NoBFD, evalOutage(100, true, false)},
	{"charon killed", "<= 0.1 s both directions", "n/a",
		[]string{FaultKillCharon}, nil, evalOutage(100, true, false)},
	{"bgpgw process killed", "< 0.1 s, and no stale kernel routes left", "n/a",
		[]string{FaultKillDaemon}, nil, evalOutage(100, false, true)},
	{"tunnel data plane blackholed, IKE still up", "<= 0.32 s (BFD 3 x 100 ms + 20 ms)", "n/a",
		[]string{FaultESPDrop}, withBFD, evalOutage(320, true, false)},
	{"tunnel data plane blackholed, IKE still up, on-prem device without BFD",
		"<= 0.32 s (the tunnel's icmp check, 3 x 100 ms, + 20 ms)", "n/a",
		[]string{FaultESPDrop}, NoBFD, evalOutage(320, true, false)},
	{"instance loses its cloud-side uplink", "< 0.05 s", "n/a",
		[]string{FaultUplinkDown}, nil, evalOutage(50, false, false)},
	{"partner link cut, both instances healthy", "0 lost", "n/a",
		[]string{FaultPartnerCut}, nil, evalLossless},
	{"failed instance rejoins", "0 lost", "n/a",
		[]string{FaultRejoin}, nil, evalLossless},
}

// Goals judges the results against the brief's goals table: each goal from
// the bgpgw results of its faults, the worst across its topologies, with
// bgpgw without takeover and the hand-built stack judged the same way
// beside it. A goal with no result, or with a failed run, is not met.
func Goals(results []Result) []Goal {
	var goals []Goal
	for _, s := range goalSpecs {
		g := Goal{Name: s.name, Target: s.target, Azure: s.azure}
		g.Figure, g.Met = judge(s, results, StackBgpgw)
		g.NoTakeover, _ = judge(s, results, StackBgpgwNoTakeover)
		g.HandBuilt, _ = judge(s, results, StackHandBuilt)
		goals = append(goals, g)
	}
	return goals
}

func judge(s goalSpec, results []Result, stack string) (string, bool) {
	var rs []Result
	failed := 0
	for _, r := range results {
		if r.Stack != stack || !contains(s.faults, r.Fault) || s.topologies != nil && !s.topologies(r.Topology) {
			continue
		}
		if r.Error != "" {
			failed++
			continue
		}
		rs = append(rs, r)
	}
	switch {
	case len(rs) == 0 && failed == 0:
		return "not measured", false
	case len(rs) == 0:
		return plural(failed, "failed run"), false
	}
	fig, met := s.eval(rs)
	if failed > 0 {
		return fig + "; " + plural(failed, "failed run"), false
	}
	return fig, met
}

// plural is "1 run", "2 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func evalPlanned(rs []Result) (string, bool) {
	lost, worstLost := 0, ""
	drain, worstDrain, drainKnown := -1.0, "", true
	for _, r := range rs {
		if n := r.Lost(); n > 0 {
			lost += n
			worstLost = r.Topology + " " + r.Fault
		}
		if r.DrainMs < 0 {
			drainKnown = false
		} else if r.DrainMs > drain {
			drain, worstDrain = r.DrainMs, r.Topology+" "+r.Fault
		}
	}
	fig := fmt.Sprintf("%d lost", lost)
	if lost > 0 {
		fig += " (" + worstLost + ")"
	}
	switch {
	case !drainKnown:
		fig += ", drain time not measured"
	default:
		fig += fmt.Sprintf(", drain %s (%s)", FormatMs(drain), worstDrain)
	}
	return fig + runs(len(rs)), lost == 0 && drainKnown && drain < 3000
}

// evalLossless judges faults that must lose nothing: the datagrams lost
// in all runs, and the worst run's topology and fault.
func evalLossless(rs []Result) (string, bool) {
	lost, worst, worstLost := 0, "", 0
	for _, r := range rs {
		n := r.Lost()
		lost += n
		if n > worstLost {
			worst, worstLost = r.Topology+" "+r.Fault, n
		}
	}
	fig := fmt.Sprintf("%d lost", lost)
	if lost > 0 {
		fig += " (worst: " + worst + ")"
	}
	return fig + runs(len(rs)), lost == 0
}

// evalOutage judges the worst outage in each direction against limitMs
// (inclusive: <=, else <) and, with stale, the kernel routes left behind.
func evalOutage(limitMs float64, inclusive, stale bool) func([]Result) (string, bool) {
	return func(rs []Result) (string, bool) {
		worst := [2]float64{-1, -1}
		known := true
		worstTopo, worstMax := "", -1.0
		staleN, staleKnown := 0, true
		for _, r := range rs {
			m := -1.0
			for i, name := range []string{DirOnPremToCloud, DirCloudToOnPrem} {
				d := r.Direction(name)
				if d == nil || d.Sent == 0 {
					known = false
					continue
				}
				worst[i] = max(worst[i], d.OutageMs)
				m = max(m, d.OutageMs)
			}
			if m > worstMax {
				worstMax, worstTopo = m, r.Topology
			}
			if r.StaleRoutes < 0 {
				staleKnown = false
			} else {
				staleN += r.StaleRoutes
			}
		}
		fig := FormatMs(worst[0]) + " / " + FormatMs(worst[1])
		if worstTopo != "" {
			fig += " (" + worstTopo + ")"
		}
		met := known
		for _, w := range worst {
			met = met && (w < limitMs || inclusive && w == limitMs)
		}
		if stale {
			switch {
			case !staleKnown:
				fig += ", stale routes not checked"
			default:
				fig += ", " + plural(staleN, "stale route")
			}
			met = met && staleKnown && staleN == 0
		}
		return fig + runs(len(rs)), met
	}
}

func runs(n int) string { return ", " + plural(n, "run") }

// FormatMs formats a duration in milliseconds for reports: "-" when
// unknown (negative), "12.5 ms" below a second, "1.25 s" above.
func FormatMs(ms float64) string {
	switch {
	case ms < 0:
		return "-"
	case ms < 1000:
		return strconv.FormatFloat(math.Round(ms*10)/10, 'f', -1, 64) + " ms"
	default:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
	}
}

// verdict is a result's one-word verdict for tables.
func verdict(r Result) string {
	switch {
	case r.Error != "":
		return "ERROR"
	case len(Check(r)) > 0:
		return "FAIL"
	}
	return "ok"
}

// mdEscape makes s safe in a Markdown table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
