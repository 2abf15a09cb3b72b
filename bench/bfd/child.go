package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/bgpgw/bgpgw/pkg/bfd"
)

// ChildResult is what the manager process measured over the window.
type ChildResult struct {
	WallS             float64           `json:"wall_s"`
	CPUUserS          float64           `json:"cpu_user_s"`
	CPUSysS           float64           `json:"cpu_sys_s"`
	CPUPercent        float64           `json:"cpu_percent_of_one_core"`
	MaxRSSKiB         int64             `json:"max_rss_kib"`
	Downs             int               `json:"downs"`
	DownEvents        []bfd.StateChange `json:"down_events,omitempty"`
	Sent              uint64            `json:"sent"`
	Received          uint64            `json:"received"`
	MinDetectMarginMS float64           `json:"min_detect_margin_ms"`
	Manager           bfd.ManagerCounters
	Sessions          []SessionFigures `json:"sessions"`
}

// SessionFigures are one session's figures at the end of the window.
type SessionFigures struct {
	Peer              string  `json:"peer"`
	State             string  `json:"state"`
	TxMS              float64 `json:"tx_interval_ms"`
	DetectMS          float64 `json:"detection_time_ms"`
	Sent              uint64  `json:"sent"`
	Received          uint64  `json:"received"`
	MinDetectMarginMS float64 `json:"min_detect_margin_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runChild runs the BFD manager with one session per link until every
// session is Up, measures for p.Duration, writes its result, then keeps
// the sessions running until it is told to stop (so that the parent reads
// FRR's counters while we are still alive).
func runChild(ctx context.Context, p params, resultPath string) error {
	m := bfd.NewManager(bfd.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	runErr := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { runErr <- m.Run(runCtx) }()
	var keys []bfd.Key
	for i := range p.Sessions {
		cfg := bfd.SessionConfig{Peer: netip.MustParseAddr(frrAddr(i)), Local: netip.MustParseAddr(ourAddr(i)), Interface: ourIf(i),
			DesiredMinTx: p.Interval, RequiredMinRx: p.Interval, DetectMult: uint8(p.DetectMult)}
		if err := m.Add(ctx, cfg); err != nil {
			return err
		}
		keys = append(keys, cfg.Key())
	}

	// Wait until every session is Up with the configured timers.
	up := map[bfd.Key]bool{}
	deadline := time.After(2 * time.Minute)
	for len(up) < len(keys) {
		select {
		case c := <-m.Events():
			up[c.Key] = c.New == bfd.StateUp
			if !up[c.Key] {
				delete(up, c.Key)
			}
		case <-deadline:
			return fmt.Errorf("only %d of %d sessions Up after 2 minutes", len(up), len(keys))
		case <-ctx.Done():
			return ctx.Err()
		case err := <-runErr:
			return fmt.Errorf("manager stopped: %w", err)
		}
	}
	log.Printf("child: all %d sessions Up; measuring for %v", len(keys), p.Duration)

	var ru0, ru1 syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru0); err != nil {
		return err
	}
	st0 := m.Status()
	start := time.Now()
	var r ChildResult
	window := time.After(p.Duration)
collect:
	for {
		select {
		case c := <-m.Events():
			if c.Old == bfd.StateUp {
				r.Downs++
				r.DownEvents = append(r.DownEvents, c)
				log.Printf("child: DOWN %v: %v -> %v (%v)", c.Key, c.Old, c.New, c.Diag)
			}
		case <-window:
			break collect
		case <-ctx.Done():
			return ctx.Err()
		case err := <-runErr:
			return fmt.Errorf("manager stopped: %w", err)
		}
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru1); err != nil {
		return err
	}
	wall := time.Since(start)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	r.WallS = wall.Seconds()
	r.CPUUserS = tv(ru1.Utime) - tv(ru0.Utime)
	r.CPUSysS = tv(ru1.Stime) - tv(ru0.Stime)
	r.CPUPercent = 100 * (r.CPUUserS + r.CPUSysS) / r.WallS
	r.MaxRSSKiB = ru1.Maxrss
	r.Manager = m.Counters()
	first := true
	for i, s := range m.Status() {
		sent, rcvd := s.Counters.Sent-st0[i].Counters.Sent, s.Counters.Received-st0[i].Counters.Received
		r.Sent += sent
		r.Received += rcvd
		margin := ms(s.Counters.MinDetectMargin)
		if first || margin < r.MinDetectMarginMS {
			r.MinDetectMarginMS, first = margin, false
		}
		r.Sessions = append(r.Sessions, SessionFigures{Peer: s.Key.String(), State: s.State.String(),
			TxMS: ms(s.TxInterval), DetectMS: ms(s.DetectionTime), Sent: sent, Received: rcvd, MinDetectMarginMS: margin})
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := resultPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, resultPath); err != nil {
		return err
	}
	log.Printf("child: result written; running until stopped")
	<-ctx.Done()
	stop()
	if err := <-runErr; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
