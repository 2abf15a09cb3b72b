// Package failover holds the measurement-independent parts of the failover
// suite (issue #6): the result of one fault on one gateway stack in one
// topology, the CI verdicts on it, the mapping of results to the goals
// table of the product brief, and the renderers (JSON for
// bench/out/failover.json, a terminal table, a Markdown report and an SVG
// timeline per fault). Everything here is pure: the topology runner
// measures, this package judges and draws.
package failover

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// Stacks: the gateway software under test.
const (
	StackBgpgw = "bgpgw"
	// StackBgpgwNoTakeover is bgpgw with pair.takeover: off: the pair
	// channel runs, routes never change for the partner. The reference
	// that shows what takeover gains.
	StackBgpgwNoTakeover = "bgpgw-notakeover"
	StackHandBuilt       = "handbuilt" // strongSwan + FRR (BGP, BFD) on each instance, set up by hand
)

// IsBgpgw reports whether stack runs bgpgw on the gateways (with takeover
// or without): drain, status and restarts go through bgpgw.
func IsBgpgw(stack string) bool { return stack == StackBgpgw || stack == StackBgpgwNoTakeover }

// Directions of probe traffic.
const (
	DirOnPremToCloud = "on-prem->cloud"
	DirCloudToOnPrem = "cloud->on-prem"
)

// Faults, each applied to one gateway instance.
const (
	FaultDrain       = "drain"       // planned: bgpgw drain (hand-built: bgp graceful-shutdown, wait, stop)
	FaultSIGTERM     = "sigterm"     // planned: SIGTERM to the daemon
	FaultKillDaemon  = "kill-daemon" // kill -9 of bgpgw (hand-built: of its routing daemons)
	FaultKillCharon  = "kill-charon" // kill -9 of strongSwan's charon
	FaultSilent      = "silent"      // the whole instance silent: nft drops everything
	FaultESPDrop     = "esp-drop"    // ESP dropped while IKE still answers
	FaultUplinkDown  = "uplink-down" // the cloud-side uplink goes down
	FaultTunnelFlaps = "tunnel-flap" // a tunnel goes down and up every few seconds for a minute
	// FaultPartnerCut: the path between the two healthy instances is cut
	// for a few seconds (nft on the instance drops what it sends to and
	// receives from its partner's cloud-side address: the pair's BFD and
	// state channel, nothing else), then restored. Both may take over; it
	// must cost nothing. The hand-built stack has no pair channel: for it
	// the cut is of an unused path.
	FaultPartnerCut = "partner-cut"
	// FaultRejoin: the instance goes silent (as FaultSilent) before the
	// measurement, the pair settles on the survivor, and the measured
	// event is the instance coming back. It must cost nothing.
	FaultRejoin = "rejoin"
)

// Planned reports whether fault is planned maintenance, which must lose
// nothing.
func Planned(fault string) bool { return fault == FaultDrain || fault == FaultSIGTERM }

// PairFault reports whether fault is one of the pair's own events (the
// partner path cut while both are healthy, a failed instance rejoining),
// which must lose nothing, like planned maintenance.
func PairFault(fault string) bool { return fault == FaultPartnerCut || fault == FaultRejoin }

// Lossless reports whether fault must lose nothing: planned maintenance
// and the pair faults. CI fails such a fault on a single lost datagram.
func Lossless(fault string) bool { return Planned(fault) || PairFault(fault) }

// NoBFDSuffix ends the names of the topology variants whose on-prem
// routers run no BFD (active-active-nobfd, ...).
const NoBFDSuffix = "-nobfd"

// NoBFD reports whether topology is a variant whose on-prem routers run no
// BFD.
func NoBFD(topology string) bool { return strings.HasSuffix(topology, NoBFDSuffix) }

// Report is one run of the suite.
type Report struct {
	Machine string    `json:"machine"` // e.g. hostname, kernel, CPUs
	Started time.Time `json:"started"`
	Results []Result  `json:"results"`
	Goals   []Goal    `json:"goals"` // Goals(Results), filled by the caller
	// Notes explain the run (known limits of the lab), rendered as given.
	Notes []string `json:"notes,omitempty"`
}

// Result is one fault on one stack in one topology. Times are Unix
// nanoseconds on the lab host's clock (the probe's clock too); durations are
// milliseconds, -1 where unknown. Use NewResult to get the unknowns right.
type Result struct {
	Topology   string      `json:"topology"`
	Stack      string      `json:"stack"` // StackBgpgw, StackBgpgwNoTakeover or StackHandBuilt
	Fault      string      `json:"fault"`
	Planned    bool        `json:"planned"`
	Directions []Direction `json:"directions"`
	// ConvergedMs: from the fault until the FRR routers' tables had
	// settled on the surviving path; for the pair faults, from the moment
	// the pair was whole again (the cut path restored, the failed instance
	// back) until the routers were back in their full state.
	ConvergedMs float64 `json:"converged_ms"`
	// DrainMs (planned faults): from the drain command or SIGTERM until
	// the instance had withdrawn everything (drain returned, process exited).
	DrainMs float64 `json:"drain_ms"`
	// StaleRoutes: kernel routes left pointing at the failed instance's
	// tunnels after the fault, -1 when not checked.
	StaleRoutes int `json:"stale_routes"`
	// Recovered: after the fault was cleared the pair came back to full
	// state (every tunnel and session up, every route back).
	Recovered bool   `json:"recovered"`
	Notes     string `json:"notes,omitempty"`
	FaultAtNs int64  `json:"fault_at_ns"`
	// ClearedAtNs: when the fault was undone (0: unknown or never); for
	// partner-cut, when the path was restored, within the traffic.
	ClearedAtNs int64 `json:"cleared_at_ns,omitempty"`
	// Error: the run could not be measured; the figures are not valid.
	Error string `json:"error,omitempty"`
	// Retried lists, for every earlier try of this fault that was thrown
	// away, why: its data plane was lossy before the fault
	// (LossBeforeFault), or the probe of a fault that must lose nothing
	// dropped datagrams (ProbeLoss). The figures are the last try's.
	Retried []string `json:"retried,omitempty"`
	// LabDrops are the lab's drop counters that grew during the (last)
	// try, by node: "gw2 udp-rcvbuf" (charon's ESP-in-UDP socket, or a
	// probe's), "gw2 ipsec0 tx-drop" (charon's TUN queue), "host
	// backlog-drop" (the host's per-CPU backlog). Packets the lab's data
	// plane dropped on a busy machine, not the gateways' routing; they
	// explain a loss, they do not excuse one.
	LabDrops map[string]int64 `json:"lab_drops,omitempty"`
}

// NewResult returns a Result with nothing measured yet: the durations and
// StaleRoutes unknown (-1), Planned set from the fault.
func NewResult(topology, stack, fault string) Result {
	return Result{Topology: topology, Stack: stack, Fault: fault, Planned: Planned(fault),
		ConvergedMs: -1, DrainMs: -1, StaleRoutes: -1}
}

// Direction is the probe traffic one way across the gateway pair.
type Direction struct {
	Name string `json:"name"` // DirOnPremToCloud or DirCloudToOnPrem
	Sent int    `json:"sent"`
	Lost int    `json:"lost"`
	// OutageMs: the longest run of missing datagrams on any flow, times
	// the interval.
	OutageMs float64 `json:"outage_ms"`
	// ProbeDrops: datagrams the receiver's own sockets dropped (receive
	// buffer full: the probe was not scheduled in time), data or the
	// sender's fins; the data ones are among Lost.
	ProbeDrops int `json:"probe_drops,omitempty"`
	// SenderSkipped: schedule slots the sender gave up; when non-zero the
	// send times of later datagrams, and so the timeline, are approximate.
	SenderSkipped int    `json:"sender_skipped,omitempty"`
	Flows         []Flow `json:"flows"`
}

// Flow is a trimmed lab.FlowReport: what a timeline needs.
type Flow struct {
	Flow int `json:"flow"`
	// StartNs and IntervalNs place seq n at StartNs + (n-1) x IntervalNs.
	StartNs    int64   `json:"start_ns"`
	IntervalNs int64   `json:"interval_ns"`
	Sent       int     `json:"sent"`
	Lost       int     `json:"lost"`
	OutageMs   float64 `json:"outage_ms"` // longest loss run x interval
	// LossRuns are the runs of missing seqs, [first, last], in order;
	// every other seq in 1..Sent was delivered, up to the end of the last
	// run when GapsTruncated.
	LossRuns      [][2]uint64 `json:"loss_runs,omitempty"`
	GapsTruncated bool        `json:"gaps_truncated,omitempty"`
	// LossRunStartNs: for each loss run, when its first missing datagram
	// was sent (estimated from the one received before it; 0: unknown).
	// Unlike StartNs + (n-1) x IntervalNs it stays right after the sender
	// gave up schedule slots.
	LossRunStartNs []int64 `json:"loss_run_start_ns,omitempty"`
}

// NewDirection converts one direction of lab probe traffic.
func NewDirection(name string, t lab.TrafficReport) Direction {
	d := Direction{Name: name, Sent: t.Sent, Lost: t.Lost, OutageMs: ms(t.MaxOutage),
		ProbeDrops: t.ProbeDrops, SenderSkipped: t.SenderSkipped}
	for _, f := range t.Flows {
		var start int64
		if !f.Start.IsZero() {
			start = f.Start.UnixNano()
		}
		fl := Flow{Flow: f.Flow, StartNs: start, IntervalNs: int64(t.Interval),
			Sent: f.Sent, Lost: f.Lost, OutageMs: ms(f.Outage),
			LossRuns: f.LossRuns, GapsTruncated: f.GapsTruncated}
		for _, at := range f.LossRunStarts {
			var ns int64
			if !at.IsZero() {
				ns = at.UnixNano()
			}
			fl.LossRunStartNs = append(fl.LossRunStartNs, ns)
		}
		d.Flows = append(d.Flows, fl)
	}
	return d
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Direction returns the direction named name, or nil.
func (r *Result) Direction(name string) *Direction {
	for i := range r.Directions {
		if r.Directions[i].Name == name {
			return &r.Directions[i]
		}
	}
	return nil
}

// Lost is the number of datagrams lost in all directions.
func (r *Result) Lost() int {
	n := 0
	for _, d := range r.Directions {
		n += d.Lost
	}
	return n
}

// ProbeDrops is the number of datagrams the probe's own sockets dropped in
// all directions (see Direction.ProbeDrops).
func (r *Result) ProbeDrops() int {
	n := 0
	for _, d := range r.Directions {
		n += d.ProbeDrops
	}
	return n
}

// MustLoseNothing reports whether r's fault must lose nothing (Lossless;
// Planned for reports written before the pair faults).
func (r *Result) MustLoseNothing() bool { return r.Planned || Lossless(r.Fault) }

// ProbeLoss says why the try of a fault that must lose nothing cannot be
// judged when the probe's own sockets dropped datagrams while datagrams
// went missing ("": it can). Which datagrams a socket dropped is not known
// (its counter also counts the sender's fins), so the loss can be neither
// held against the gateway nor excused: the suite runs the fault again.
func (r *Result) ProbeLoss() string {
	if !r.MustLoseNothing() || r.Lost() == 0 || r.ProbeDrops() == 0 {
		return ""
	}
	return fmt.Sprintf("%d datagrams missing while the probe's own sockets dropped %d", r.Lost(), r.ProbeDrops())
}

// CleanGuard is how long before the fault a loss may begin and still be
// the fault's: datagrams sent just before it may be on their way (queued
// in charon's userspace ESP) when the fault hits.
const CleanGuard = 50 * time.Millisecond

// LossBeforeFault says how the data plane lost datagrams before the fault
// (a loss run that began more than CleanGuard before FaultAtNs), "" when it
// was clean. A run lossy before the fault measures the lab's load, not the
// fault: the suite throws it away and tries again.
func (r *Result) LossBeforeFault() string {
	if r.FaultAtNs == 0 {
		return ""
	}
	limit := r.FaultAtNs - int64(CleanGuard)
	var parts []string
	for _, d := range r.Directions {
		lost, first := 0, int64(0)
		for _, f := range d.Flows {
			for i, run := range f.LossRuns {
				at := int64(0)
				if i < len(f.LossRunStartNs) {
					at = f.LossRunStartNs[i]
				}
				if at == 0 && f.StartNs != 0 { // older reports: the planned time
					at = f.StartNs + int64(run[0]-1)*f.IntervalNs
				}
				if at == 0 || at >= limit {
					continue
				}
				lost += int(run[1] - run[0] + 1)
				if first == 0 || at < first {
					first = at
				}
			}
		}
		if lost > 0 {
			parts = append(parts, fmt.Sprintf("%s lost %d datagrams before the fault (from %s before it)",
				d.Name, lost, FormatMs(float64(r.FaultAtNs-first)/1e6)))
		}
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the report to path (atomically, creating the directory).
func WriteJSON(path string, rep Report) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "on-prem->cloud", not "on-prem-\u003ecloud"
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("failover report: %w", err)
	}
	return writeFile(path, b.Bytes())
}

// ReadJSON reads a report written by WriteJSON, e.g. to render it again.
func ReadJSON(path string) (Report, error) {
	var rep Report
	data, err := os.ReadFile(path)
	if err != nil {
		return rep, fmt.Errorf("failover report: %w", err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		return rep, fmt.Errorf("failover report %s: %w", path, err)
	}
	return rep, nil
}

// writeFile replaces path with data through a temporary file.
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
