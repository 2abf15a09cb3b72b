package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BuildUDPProbe compiles test/udpprobe, the traffic probe, into dir and
// returns the binary's path. It runs from any directory inside the module.
func BuildUDPProbe(ctx context.Context, dir string) (string, error) {
	return buildGo(ctx, dir, "udpprobe", "github.com/bgpgw/bgpgw/test/udpprobe")
}

// Flows is one direction of probe traffic: a udpprobe receiver in To and a
// udpprobe sender in From sending numbered datagrams on N flows (one source
// port and destination port each). Start it with Lab.StartTraffic and end it
// with Stop; both processes are also stopped by Lab.Close.
type Flows struct {
	From, To *Netns
	Dest     string // ADDR:PORT of flow 0; flow i goes to PORT+i
	N        int
	Interval time.Duration
	Duration time.Duration

	Send, Recv       *Process
	SendLog, RecvLog string // the processes' stderr
	sendOut, recvOut string // their JSON reports

	stopOnce sync.Once
	report   TrafficReport
	err      error
}

// TrafficReport is the outcome of one direction of probe traffic.
type TrafficReport struct {
	From, To string // namespace names
	Interval time.Duration
	Flows    []FlowReport
	// Sums over the flows.
	Sent, Received, Lost, SendErrors int
	// ProbeDrops are datagrams that reached the receiver and were dropped
	// by its own sockets (receive buffer full: the receiver was not
	// scheduled in time): data datagrams, then among Lost, or the sender's
	// fins. Which ones is not known, so they are reported, not subtracted.
	ProbeDrops int
	// MaxOutage is the longest run of missing datagrams across the flows,
	// as a duration (run length x interval).
	MaxOutage time.Duration
	// Sender pacing: schedule slots given up because the sender fell
	// behind, and its worst lateness.
	SenderSkipped int
	SenderMaxLate time.Duration
}

// FlowReport is one flow's outcome. Sequence numbers start at 1.
type FlowReport struct {
	Flow             int
	Local            string // sender's address:port
	DstPort          int
	Sent             int // numbered datagrams the sender tried to send
	SendErrors       int // sends that failed locally (e.g. blackhole route); their seqs are lost
	Received         int // distinct datagrams received
	Lost             int // Sent - Received
	Reordered        int // arrived after a higher seq
	Duplicates       int
	Gaps             int // runs of consecutive missing seqs
	LongestGap       int // longest such run, in datagrams
	LongestGapSeq    int // its first missing seq
	LongestGapStart  time.Time
	Outage           time.Duration // LongestGap x interval
	OutageMeasured   time.Duration // the same gap measured from the send timestamps around it
	FinReceived      bool          // the receiver got the sender's last seq
	ReceiverLostOnly int           // lost as counted by the receiver alone
	ProbeDrops       int           // dropped by the receiver's socket (data or fins), see TrafficReport
	// Start is the planned send time of seq 1: seq n was sent at about
	// Start + (n-1) x interval (later by whole intervals after the sender
	// gave up schedule slots, see TrafficReport.SenderSkipped).
	Start time.Time
	// LossRuns are the runs of missing seqs in 1..Sent, in order, as
	// [first, last]; every other seq was delivered. The receiver lists at
	// most 10,000 runs: GapsTruncated says later runs were left out.
	LossRuns      [][2]uint64
	GapsTruncated bool
	// LossRunStarts holds, for each listed loss run, the estimated send
	// time of its first missing datagram: when the loss began.
	LossRunStarts []time.Time
}

// probe report formats, as written by test/udpprobe.
type probeSendReport struct {
	IntervalNs int64 `json:"interval_ns"`
	StartedNs  int64 `json:"started_ns"`
	Skipped    int   `json:"skipped_slots"`
	MaxLateNs  int64 `json:"max_late_ns"`
	Flows      []struct {
		Flow       int    `json:"flow"`
		Local      string `json:"local"`
		Sent       int    `json:"sent"`
		SendErrors int    `json:"send_errors"`
	} `json:"flows"`
}

type probeRecvReport struct {
	Flows []struct {
		Flow                 int     `json:"flow"`
		Port                 int     `json:"port"`
		MaxSeq               int     `json:"max_seq"`
		MaxSeqSendNs         int64   `json:"max_seq_send_ns"`
		Fin                  bool    `json:"fin"`
		Received             int     `json:"received"`
		Lost                 int     `json:"lost"`
		Gaps                 int     `json:"gaps"`
		LongestGap           int     `json:"longest_gap"`
		LongestGapFirstSeq   int     `json:"longest_gap_first_seq"`
		LongestGapStartNs    int64   `json:"longest_gap_start_ns"`
		LongestGapMeasuredMs float64 `json:"longest_gap_measured_ms"`
		Reordered            int     `json:"reordered"`
		Duplicates           int     `json:"duplicates"`

		// For timelines.
		StartNs        int64       `json:"start_ns"`
		LossRuns       [][2]uint64 `json:"loss_runs"`
		GapsTruncated  bool        `json:"gaps_truncated"`
		LossRunStartNs []int64     `json:"loss_run_start_ns"`
		SocketDrops    int         `json:"socket_drops"`
	} `json:"flows"`
}

// StartTraffic starts a udpprobe receiver (bin, see BuildUDPProbe) in to,
// listening on all its addresses on ports port..port+flows-1, waits until
// it is bound, then starts a sender in from that sends one datagram per flow
// to toAddr every interval for duration, each flow from its own source port.
func (l *Lab) StartTraffic(ctx context.Context, bin string, from *Netns, to *Netns, toAddr string, port, flows int, interval, duration time.Duration) (*Flows, error) {
	switch {
	case flows < 1 || port < 1 || port+flows-1 > 65535:
		return nil, fmt.Errorf("lab: traffic: bad ports %d + %d flows", port, flows)
	case interval <= 0 || duration <= 0:
		return nil, fmt.Errorf("lab: traffic: interval %v and duration %v must be positive", interval, duration)
	case net.ParseIP(toAddr) == nil:
		return nil, fmt.Errorf("lab: traffic: bad address %q", toAddr)
	}
	dir, err := os.MkdirTemp(l.dir, fmt.Sprintf("traffic-%s-%s-", l.short(from), l.short(to)))
	if err != nil {
		return nil, fmt.Errorf("lab: traffic: %w", err)
	}
	_ = os.Chmod(dir, 0o755)
	f := &Flows{From: from, To: to, Dest: net.JoinHostPort(toAddr, strconv.Itoa(port)), N: flows,
		Interval: interval, Duration: duration,
		SendLog: filepath.Join(dir, "send.log"), RecvLog: filepath.Join(dir, "recv.log"),
		sendOut: filepath.Join(dir, "send.json"), recvOut: filepath.Join(dir, "recv.json")}
	ready := filepath.Join(dir, "recv.ready")
	n := strconv.Itoa(flows)

	f.Recv, err = l.Start(to, f.RecvLog, bin, "recv", "-listen", net.JoinHostPort("", strconv.Itoa(port)),
		"-ports", n, "-out", f.recvOut, "-ready", ready)
	if err != nil {
		return nil, fmt.Errorf("lab: traffic: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, CmdTimeout)
	defer cancel()
	err = Poll(rctx, 10*time.Millisecond, func() (bool, error) {
		if f.Recv.Exited() {
			return false, fmt.Errorf("receiver exited; log:\n%s", tailFile(f.RecvLog, 20))
		}
		_, err := os.Stat(ready)
		return err == nil, nil
	})
	if err != nil {
		_ = f.Recv.stop()
		return nil, fmt.Errorf("lab: traffic %s -> %s: receiver not ready: %w", from.name, to.name, err)
	}
	f.Send, err = l.Start(from, f.SendLog, bin, "send", "-to", f.Dest, "-ports", n,
		"-interval", interval.String(), "-duration", duration.String(), "-out", f.sendOut)
	if err != nil {
		_ = f.Recv.stop()
		return nil, fmt.Errorf("lab: traffic: %w", err)
	}
	return f, nil
}

// short is a namespace's name without the lab prefix.
func (l *Lab) short(n *Netns) string { return strings.TrimPrefix(n.name, l.prefix+"-") }

// WaitReceiving waits until the receiver has got datagrams on every flow.
func (f *Flows) WaitReceiving(ctx context.Context) error {
	err := Poll(ctx, 10*time.Millisecond, func() (bool, error) {
		if f.Recv.Exited() {
			return false, errors.New("receiver exited")
		}
		data, err := os.ReadFile(f.RecvLog)
		return err == nil && strings.Contains(string(data), "recv: receiving on all"), err
	})
	if err != nil {
		return fmt.Errorf("traffic %s -> %s: not receiving on all flows: %w\nreceiver log:\n%s\nsender log:\n%s",
			f.From.name, f.To.name, err, tailFile(f.RecvLog, 10), tailFile(f.SendLog, 10))
	}
	return nil
}

// Stop waits until the sender has finished (it stops by itself after the
// duration; if ctx ends first, or after duration + CmdTimeout, it is stopped
// with SIGTERM and still reports), then stops the receiver and returns the
// combined report. Calling it again returns the same result.
func (f *Flows) Stop(ctx context.Context) (TrafficReport, error) {
	f.stopOnce.Do(func() { f.report, f.err = f.stop(ctx) })
	return f.report, f.err
}

// Finish ends the traffic now: the sender stops at once, as at the end of
// its duration (it sends its fins and writes its report), then Finish does
// what Stop does. For traffic whose end is decided while it runs.
func (f *Flows) Finish(ctx context.Context) (TrafficReport, error) {
	if !f.Send.Exited() {
		// An error here is the sender having exited meanwhile.
		_ = f.Send.Signal(syscall.SIGTERM)
	}
	return f.Stop(ctx)
}

func (f *Flows) stop(ctx context.Context) (TrafficReport, error) {
	ctx, cancel := context.WithTimeout(ctx, f.Duration+CmdTimeout)
	defer cancel()
	var errs []error
	select {
	case <-f.Send.done:
	case <-ctx.Done():
	}
	if err := f.Send.stop(); err != nil {
		errs = append(errs, err)
	}
	// The receiver reads for a moment longer after SIGTERM, for datagrams
	// still on their way.
	if err := f.Recv.stop(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range []*Process{f.Send, f.Recv} {
		if p.Exited() && p.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, p.err))
		}
	}
	var sr probeSendReport
	var rr probeRecvReport
	if err := readJSON(f.sendOut, &sr); err != nil {
		errs = append(errs, fmt.Errorf("sender report: %w", err))
	}
	if err := readJSON(f.recvOut, &rr); err != nil {
		errs = append(errs, fmt.Errorf("receiver report: %w", err))
	}
	if len(errs) > 0 {
		return TrafficReport{}, fmt.Errorf("traffic %s -> %s: %w\nsender log:\n%s\nreceiver log:\n%s",
			f.From.name, f.To.name, errors.Join(errs...), tailFile(f.SendLog, 10), tailFile(f.RecvLog, 10))
	}
	rep, err := merge(f.From.name, f.To.name, f.Interval, sr, rr)
	if err != nil {
		return rep, fmt.Errorf("traffic %s -> %s: %w", f.From.name, f.To.name, err)
	}
	return rep, nil
}

// merge combines the two reports: the sender knows what was sent, the
// receiver what arrived and where the gaps are.
func merge(from, to string, interval time.Duration, sr probeSendReport, rr probeRecvReport) (TrafficReport, error) {
	if len(sr.Flows) != len(rr.Flows) {
		return TrafficReport{}, fmt.Errorf("sender reports %d flows, receiver %d", len(sr.Flows), len(rr.Flows))
	}
	rep := TrafficReport{From: from, To: to, Interval: interval,
		SenderSkipped: sr.Skipped, SenderMaxLate: time.Duration(sr.MaxLateNs)}
	for i, s := range sr.Flows {
		r := rr.Flows[i]
		fr := FlowReport{Flow: i, Local: s.Local, DstPort: r.Port, Sent: s.Sent, SendErrors: s.SendErrors,
			Received: r.Received, Reordered: r.Reordered, Duplicates: r.Duplicates, Gaps: r.Gaps,
			LongestGap: r.LongestGap, LongestGapSeq: r.LongestGapFirstSeq,
			OutageMeasured: time.Duration(r.LongestGapMeasuredMs * float64(time.Millisecond)),
			FinReceived:    r.Fin, ReceiverLostOnly: r.Lost, ProbeDrops: r.SocketDrops,
			LossRuns: r.LossRuns, GapsTruncated: r.GapsTruncated}
		for _, ns := range r.LossRunStartNs {
			fr.LossRunStarts = append(fr.LossRunStarts, time.Unix(0, ns))
		}
		// The sender's start is the planned send time of seq 1 (the
		// datagrams carry it too).
		if start := cmp.Or(sr.StartedNs, r.StartNs); start != 0 {
			fr.Start = time.Unix(0, start)
		}
		if r.LongestGap > 0 {
			fr.LongestGapStart = time.Unix(0, r.LongestGapStartNs)
		}
		fr.Lost = max(s.Sent-r.Received, r.Lost)
		// Without a fin the receiver cannot see a lost tail; the sender's
		// count shows it.
		if tail := s.Sent - r.MaxSeq; !r.Fin && tail > 0 {
			fr.Gaps++
			if !fr.GapsTruncated {
				fr.LossRuns = append(fr.LossRuns, [2]uint64{uint64(r.MaxSeq) + 1, uint64(s.Sent)})
				if len(fr.LossRunStarts) == len(fr.LossRuns)-1 {
					var at time.Time
					if r.MaxSeqSendNs != 0 {
						at = time.Unix(0, r.MaxSeqSendNs).Add(interval)
					}
					fr.LossRunStarts = append(fr.LossRunStarts, at)
				}
			}
			if tail > fr.LongestGap {
				fr.LongestGap, fr.LongestGapSeq = tail, r.MaxSeq+1
				fr.OutageMeasured = time.Duration(tail) * interval
				if r.MaxSeqSendNs != 0 {
					fr.LongestGapStart = time.Unix(0, r.MaxSeqSendNs).Add(interval)
				} else {
					fr.LongestGapStart = time.Time{}
				}
			}
		}
		fr.Outage = time.Duration(fr.LongestGap) * interval
		rep.Flows = append(rep.Flows, fr)
		rep.Sent += fr.Sent
		rep.Received += fr.Received
		rep.Lost += fr.Lost
		rep.SendErrors += fr.SendErrors
		rep.ProbeDrops += fr.ProbeDrops
		rep.MaxOutage = max(rep.MaxOutage, fr.Outage)
	}
	return rep, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// String summarises the report, one line per flow.
func (r TrafficReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s: sent %d, received %d, lost %d (the probe's own socket drops %d), send errors %d, max outage %v (sender max late %v, skipped %d)",
		r.From, r.To, r.Sent, r.Received, r.Lost, r.ProbeDrops, r.SendErrors, r.MaxOutage, r.SenderMaxLate.Round(time.Microsecond), r.SenderSkipped)
	for _, f := range r.Flows {
		fmt.Fprintf(&b, "\n  flow %d (%s -> :%d): sent %d received %d lost %d (socket drops %d) reordered %d dup %d gaps %d longest %d (%v, measured %v)",
			f.Flow, f.Local, f.DstPort, f.Sent, f.Received, f.Lost, f.ProbeDrops, f.Reordered, f.Duplicates, f.Gaps,
			f.LongestGap, f.Outage, f.OutageMeasured.Round(10*time.Microsecond))
	}
	return b.String()
}
