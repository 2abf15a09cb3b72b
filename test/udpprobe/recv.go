package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// rcvBuf is each flow socket's receive buffer: about 5,000 probe datagrams,
// seconds of one flow at 1 ms, so a receiver the scheduler keeps waiting
// rarely drops any (socketDrops counts those it does).
const rcvBuf = 4 << 20

// maxSeq bounds the sequence numbers the receiver tracks (about 3 days at
// 1 ms); anything above is counted as invalid.
const maxSeq = 1 << 28

// RecvReport is the receiver's JSON report.
type RecvReport struct {
	Listen    string     `json:"listen"`
	StartedNs int64      `json:"started_ns"`
	StoppedNs int64      `json:"stopped_ns"`
	Flows     []RecvFlow `json:"flows"`
	Totals    RecvTotals `json:"totals"`
}

// RecvTotals sums the flows.
type RecvTotals struct {
	Expected         uint64  `json:"expected"`
	Received         uint64  `json:"received"`
	Lost             uint64  `json:"lost"`
	LongestGap       uint64  `json:"longest_gap"`
	LongestGapMs     float64 `json:"longest_gap_ms"`
	LongestGapMeasMs float64 `json:"longest_gap_measured_ms"`
	SocketDrops      uint64  `json:"socket_drops"`
}

// RecvFlow is one flow's statistics. Sequence numbers start at 1.
type RecvFlow struct {
	Flow       int   `json:"flow"`
	Port       int   `json:"port"`
	IntervalNs int64 `json:"interval_ns"`
	// MaxSeq is the highest seq received; LastSeq the last seq sent, from
	// the sender's fin (Fin false: no fin arrived, LastSeq = MaxSeq).
	MaxSeq       uint64 `json:"max_seq"`
	MaxSeqSendNs int64  `json:"max_seq_send_ns,omitempty"` // send time of MaxSeq
	Fin          bool   `json:"fin"`
	LastSeq      uint64 `json:"last_seq"`
	Expected     uint64 `json:"expected"` // = LastSeq
	Received     uint64 `json:"received"` // distinct seqs in 1..Expected
	Lost         uint64 `json:"lost"`     // Expected - Received
	// Gaps is the number of runs of consecutive missing seqs; the longest
	// starts at LongestGapFirstSeq. LongestGapMs is its length x interval;
	// LongestGapMeasuredMs is measured from the send timestamps around it:
	// from the (estimated) send time of its first missing datagram,
	// LongestGapStartNs, to the send time of the next datagram received.
	Gaps                 int     `json:"gaps"`
	LongestGap           uint64  `json:"longest_gap"`
	LongestGapFirstSeq   uint64  `json:"longest_gap_first_seq,omitempty"`
	LongestGapStartNs    int64   `json:"longest_gap_start_ns,omitempty"`
	LongestGapStart      string  `json:"longest_gap_start,omitempty"`
	LongestGapMs         float64 `json:"longest_gap_ms"`
	LongestGapMeasuredMs float64 `json:"longest_gap_measured_ms"`
	Reordered            uint64  `json:"reordered"`  // arrived after a higher seq
	Duplicates           uint64  `json:"duplicates"` // seq already received
	Invalid              uint64  `json:"invalid"`    // not a probe datagram, wrong flow or bad seq
	// SocketDrops are datagrams that reached the receiver's host and were
	// dropped by its socket (receive buffer full: the receiver was not
	// scheduled in time): data datagrams, which are then among Lost, or
	// the sender's fins. The probe's own loss, not the network's; which
	// datagrams they were is not known.
	SocketDrops uint64 `json:"socket_drops"`
	FirstRecvNs int64  `json:"first_recv_ns,omitempty"`
	LastRecvNs  int64  `json:"last_recv_ns,omitempty"`
	// StartNs is the sender's planned send time of seq 1, from the
	// datagrams: seq n was due at StartNs + (n-1) x IntervalNs (later, by
	// whole intervals, after the sender gave up schedule slots; its report
	// counts them).
	StartNs int64 `json:"start_ns,omitempty"`
	// LossRuns lists the runs of missing seqs in 1..Expected in order, as
	// [first, last]; every other seq in 1..Expected was received. At most
	// maxLossRuns are listed: GapsTruncated says later runs were left out
	// (Gaps and Lost still count them).
	LossRuns      [][2]uint64 `json:"loss_runs,omitempty"`
	GapsTruncated bool        `json:"gaps_truncated,omitempty"`
	// LossRunStartNs holds, for each listed loss run, the estimated send
	// time of its first missing datagram (the send time of the datagram
	// received before it + interval): when the loss began.
	LossRunStartNs []int64 `json:"loss_run_start_ns,omitempty"`
}

type flowState struct {
	id, port   int
	conn       *net.UDPConn
	recs       []rec
	seen       []uint64 // bitset by seq
	maxSeq     uint64
	maxSeqSend int64
	intervalNs int64
	startNs    int64
	fin        bool
	finSeq     uint64
	finSendNs  int64
	dups       uint64
	reordered  uint64
	invalid    uint64
	lastRecvNs int64
}

func (f *flowState) mark(seq uint64) (dup bool) {
	i, bit := seq/64, uint64(1)<<(seq%64)
	for uint64(len(f.seen)) <= i {
		f.seen = append(f.seen, 0)
	}
	dup = f.seen[i]&bit != 0
	f.seen[i] |= bit
	return dup
}

func (f *flowState) handle(p packet, recvNs int64) {
	if int(p.flow) != f.id || p.seq > maxSeq || (p.kind == kindData && p.seq == 0) {
		f.invalid++
		return
	}
	if f.startNs == 0 {
		f.intervalNs, f.startNs = p.intervalNs, p.startNs
	}
	if p.kind == kindFin {
		f.fin, f.finSeq, f.finSendNs = true, p.seq, p.sendNs
		return
	}
	f.lastRecvNs = recvNs
	if f.mark(p.seq) {
		f.dups++
		return
	}
	if p.seq < f.maxSeq {
		f.reordered++
	} else {
		f.maxSeq, f.maxSeqSend = p.seq, p.sendNs
	}
	f.recs = append(f.recs, rec{seq: p.seq, sendNs: p.sendNs, recvNs: recvNs})
}

func (f *flowState) report() RecvFlow {
	r := RecvFlow{Flow: f.id, Port: f.port, IntervalNs: f.intervalNs, MaxSeq: f.maxSeq,
		MaxSeqSendNs: f.maxSeqSend,
		Fin:          f.fin, Reordered: f.reordered, Duplicates: f.dups, Invalid: f.invalid,
		LastRecvNs: f.lastRecvNs, StartNs: f.startNs}
	r.LastSeq = max(f.maxSeq, f.finSeq)
	r.Expected = r.LastSeq
	var lastSendNs int64
	if f.fin && f.finSeq >= f.maxSeq {
		lastSendNs = f.finSendNs
	}
	for _, x := range f.recs {
		if r.FirstRecvNs == 0 || x.recvNs < r.FirstRecvNs {
			r.FirstRecvNs = x.recvNs
		}
	}
	g := analyze(f.recs, r.Expected, f.intervalNs, f.startNs, lastSendNs, maxLossRuns)
	r.Received = uint64(len(f.recs))
	r.Lost = g.lost
	r.Gaps = g.gaps
	r.LossRuns, r.GapsTruncated, r.LossRunStartNs = g.runs, g.truncated, g.runStarts
	r.LongestGap = g.longest
	if g.longest > 0 {
		r.LongestGapFirstSeq = g.firstSeq
		r.LongestGapStartNs = g.startNs
		r.LongestGapStart = time.Unix(0, g.startNs).UTC().Format(time.RFC3339Nano)
		r.LongestGapMs = float64(g.longest) * float64(f.intervalNs) / 1e6
		r.LongestGapMeasuredMs = float64(g.endNs-g.startNs) / 1e6
	}
	return r
}

func runRecv(args []string) error {
	fs := flag.NewFlagSet("recv", flag.ContinueOnError)
	listen := fs.String("listen", "", "ADDR:PORT to listen on (ADDR may be empty: all addresses); flows use PORT..PORT+N-1")
	ports := fs.Int("ports", 1, "number of flows (consecutive ports)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until SIGTERM/SIGINT)")
	linger := fs.Duration("linger", 100*time.Millisecond, "on stop, keep reading datagrams already on the way this long")
	out := fs.String("out", "", "write the JSON report to this file (default stdout)")
	ready := fs.String("ready", "", "create this file once all ports are bound")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("recv: unexpected arguments %q", fs.Args())
	}
	host, port, err := splitHostPort(*listen, *ports)
	if err != nil {
		return fmt.Errorf("recv: -listen: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	rep := RecvReport{Listen: *listen, StartedNs: time.Now().UnixNano()}
	flows := make([]*flowState, *ports)
	for i := range flows {
		addr := net.JoinHostPort(host, strconv.Itoa(port+i))
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		c, err := net.ListenUDP("udp", ua)
		if err != nil {
			return fmt.Errorf("recv: %w", err)
		}
		defer c.Close()
		if forced, err := forceReadBuffer(c, rcvBuf); err != nil {
			return fmt.Errorf("recv: receive buffer: %w", err)
		} else if !forced && i == 0 {
			log.Printf("recv: SO_RCVBUFFORCE refused: receive buffers capped by net.core.rmem_max")
		}
		flows[i] = &flowState{id: i, port: port + i, conn: c}
	}
	log.Printf("recv: listening on %s ports %d-%d", cmp.Or(host, "*"), port, port+*ports-1)
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready\n"), 0o644); err != nil {
			return fmt.Errorf("recv: -ready: %w", err)
		}
	}

	var active atomic.Int32
	var wg sync.WaitGroup
	for _, f := range flows {
		wg.Go(func() {
			buf := make([]byte, 65536)
			first := true
			for {
				n, err := f.conn.Read(buf)
				now := time.Now().UnixNano()
				if err != nil {
					var ne net.Error
					if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, net.ErrClosed) {
						return
					}
					log.Printf("recv: flow %d: %v", f.id, err)
					continue
				}
				p, err := unmarshal(buf[:n])
				if err != nil {
					f.invalid++
					continue
				}
				f.handle(p, now)
				if first && p.kind == kindData {
					first = false
					if int(active.Add(1)) == len(flows) {
						log.Printf("recv: receiving on all %d flows", len(flows))
					}
				}
			}
		})
	}
	<-ctx.Done()
	// Datagrams already sent may still be on their way: read for a little
	// longer, then the read deadline ends the readers.
	deadline := time.Now().Add(*linger)
	for _, f := range flows {
		_ = f.conn.SetReadDeadline(deadline)
	}
	wg.Wait()
	rep.StoppedNs = time.Now().UnixNano()
	for _, f := range flows {
		r := f.report()
		drops, err := socketDrops(f.conn)
		if err != nil {
			return fmt.Errorf("recv: flow %d: %w", f.id, err)
		}
		r.SocketDrops = drops
		rep.Flows = append(rep.Flows, r)
		t := &rep.Totals
		t.Expected += r.Expected
		t.Received += r.Received
		t.Lost += r.Lost
		if r.LongestGap > t.LongestGap {
			t.LongestGap, t.LongestGapMs = r.LongestGap, r.LongestGapMs
		}
		t.LongestGapMeasMs = max(t.LongestGapMeasMs, r.LongestGapMeasuredMs)
		t.SocketDrops += r.SocketDrops
	}
	log.Printf("recv: stopped: expected %d, received %d, lost %d (dropped by the probe's own sockets: %d), longest gap %d (%.1f ms)",
		rep.Totals.Expected, rep.Totals.Received, rep.Totals.Lost, rep.Totals.SocketDrops, rep.Totals.LongestGap, rep.Totals.LongestGapMs)
	return writeJSON(*out, rep)
}
