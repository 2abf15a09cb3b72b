package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// maxBurst is the most datagrams per flow sent back to back to catch up
// with the schedule; a sender further behind gives up the missed slots (it
// shifts its schedule; sequence numbers stay consecutive, and the send
// timestamps show the delay).
const maxBurst = 4

// finCount fins are sent per flow at the end, one interval apart.
const finCount = 5

// SendReport is the sender's JSON summary.
type SendReport struct {
	To         string     `json:"to"`
	IntervalNs int64      `json:"interval_ns"`
	StartedNs  int64      `json:"started_ns"`
	StoppedNs  int64      `json:"stopped_ns"`
	Slots      uint64     `json:"slots"`         // send rounds (one datagram per flow each)
	Skipped    uint64     `json:"skipped_slots"` // schedule slots given up to catch up
	MaxLateNs  int64      `json:"max_late_ns"`   // worst lateness of a round vs its schedule
	Sent       uint64     `json:"sent"`
	SendErrors uint64     `json:"send_errors"`
	Flows      []SendFlow `json:"flows"`
}

// SendFlow is one flow of the sender. Sent counts every numbered datagram,
// including those whose send failed (their seqs are missing at the
// receiver); LastSeq = Sent.
type SendFlow struct {
	Flow       int    `json:"flow"`
	Local      string `json:"local"`
	Remote     string `json:"remote"`
	Sent       uint64 `json:"sent"`
	LastSeq    uint64 `json:"last_seq"`
	SendErrors uint64 `json:"send_errors"`
	LastError  string `json:"last_error,omitempty"`
	Fins       int    `json:"fins"`
}

func runSend(args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	to := fs.String("to", "", "ADDR:PORT of the receiver; flows go to PORT..PORT+N-1")
	ports := fs.Int("ports", 1, "number of flows (consecutive destination ports), each from its own source port")
	sport := fs.Int("sport", 0, "first source port (flows use SPORT..SPORT+N-1); 0: ephemeral")
	interval := fs.Duration("interval", time.Millisecond, "interval between datagrams of a flow")
	duration := fs.Duration("duration", 30*time.Second, "stop after this long (0: no limit, -count must be set)")
	count := fs.Uint64("count", 0, "stop after this many datagrams per flow (0: no limit)")
	size := fs.Int("size", 64, fmt.Sprintf("datagram payload size, %d-65000", headerSize))
	out := fs.String("out", "", "write the JSON summary to this file (default stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("send: unexpected arguments %q", fs.Args())
	case *interval <= 0:
		return fmt.Errorf("send: -interval must be positive")
	case *duration <= 0 && *count == 0:
		return fmt.Errorf("send: set -duration or -count: the sender must stop by itself")
	case *duration < 0:
		return fmt.Errorf("send: negative -duration")
	case *size < headerSize || *size > 65000:
		return fmt.Errorf("send: -size must be %d-65000", headerSize)
	case *sport < 0 || *sport > 0 && *sport+*ports-1 > 65535:
		return fmt.Errorf("send: bad -sport %d", *sport)
	}
	host, port, err := splitHostPort(*to, *ports)
	if err != nil {
		return fmt.Errorf("send: -to: %w", err)
	}
	if host == "" {
		return fmt.Errorf("send: -to needs an address")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	rep := SendReport{To: *to, IntervalNs: int64(*interval)}
	conns := make([]*net.UDPConn, *ports)
	for i := range conns {
		ra, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port+i)))
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		var la *net.UDPAddr
		if *sport > 0 {
			la = &net.UDPAddr{Port: *sport + i}
		}
		c, err := net.DialUDP("udp", la, ra)
		if err != nil {
			return fmt.Errorf("send: flow %d: %w", i, err)
		}
		defer c.Close()
		conns[i] = c
		rep.Flows = append(rep.Flows, SendFlow{Flow: i, Local: c.LocalAddr().String(), Remote: ra.String()})
	}
	log.Printf("send: %d flows to %s ports %d-%d, every %v, duration %v, count %d",
		*ports, host, port, port+*ports-1, *interval, *duration, *count)

	buf := make([]byte, *size)
	send := func(i int, p packet) error {
		p.flow = uint16(i)
		p.marshal(buf)
		_, err := conns[i].Write(buf)
		return err
	}

	t0 := time.Now()
	rep.StartedNs = t0.UnixNano()
	iv := int64(*interval)
	sched := t0 // planned time of slot 0 (seq 1); moves forward when slots are skipped
	var seq uint64
	var lastSendNs int64
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
loop:
	for {
		if *count > 0 && seq >= *count {
			break
		}
		now := time.Now()
		if *duration > 0 && now.Sub(t0) >= *duration {
			break
		}
		due := sched.Add(time.Duration(seq) * *interval)
		if wait := due.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		late := int64(now.Sub(due))
		rep.MaxLateNs = max(rep.MaxLateNs, late)
		if behind := uint64(late / iv); behind >= maxBurst {
			skip := behind - (maxBurst - 1)
			sched = sched.Add(time.Duration(skip) * *interval)
			rep.Skipped += skip
		}
		seq++
		rep.Slots++
		for i := range conns {
			lastSendNs = time.Now().UnixNano()
			f := &rep.Flows[i]
			f.Sent++
			f.LastSeq = seq
			err := send(i, packet{kind: kindData, seq: seq, sendNs: lastSendNs, intervalNs: iv, startNs: t0.UnixNano()})
			if err != nil {
				if f.SendErrors == 0 || f.LastError != err.Error() {
					log.Printf("send: flow %d seq %d: %v", i, seq, err)
				}
				f.SendErrors++
				f.LastError = err.Error()
			}
		}
	}
	// Tell the receiver the last seq so it counts a lost tail.
	for n := range finCount {
		if n > 0 {
			time.Sleep(*interval)
		}
		for i := range conns {
			if send(i, packet{kind: kindFin, seq: seq, sendNs: lastSendNs, intervalNs: iv, startNs: t0.UnixNano()}) == nil {
				rep.Flows[i].Fins++
			}
		}
	}
	rep.StoppedNs = time.Now().UnixNano()
	for _, f := range rep.Flows {
		rep.Sent += f.Sent
		rep.SendErrors += f.SendErrors
	}
	log.Printf("send: done: %d rounds, sent %d, send errors %d, skipped slots %d, max late %v",
		rep.Slots, rep.Sent, rep.SendErrors, rep.Skipped, time.Duration(rep.MaxLateNs))
	return writeJSON(*out, rep)
}
