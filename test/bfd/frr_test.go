// Package bfd_test checks bgpgw's BFD (pkg/bfd) against FRR bfdd 8.4 in
// network namespaces: single-hop and multihop sessions, detection in both
// directions, and timer renegotiation. It needs root and FRR, and fails
// (never skips) without them.
//
// The bfd.Manager runs inside this test process: its sockets are created on
// OS threads moved into the gateway namespace (bfdlab.RunManager, Add), so
// the test reads its Events and Status directly.
package bfd_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/test/bfd/bfdlab"
)

// Topology:
//
//	gw (bgpgw) frr0 10.0.0.1/30    ---- gw0 10.0.0.2/30    frr   single-hop IPv4
//	                fd00:12::1/64  ----     fd00:12::2/64        single-hop IPv6
//	gw (bgpgw) rt0  10.0.1.1/30    ---- rt ---- 10.0.2.2/30 frr  multihop (one router)
const frrConf = `frr defaults traditional
hostname frr
debug bfd peer
!
bfd
 peer 10.0.0.1 interface gw0
  detect-multiplier 3
  receive-interval 50
  transmit-interval 50
 exit
 !
 peer fd00:12::1 interface gw0
  detect-multiplier 3
  receive-interval 50
  transmit-interval 50
 exit
 !
 peer 10.0.1.1 multihop local-address 10.0.2.2
  detect-multiplier 3
  receive-interval 50
  transmit-interval 50
 exit
 !
exit
!
`

// frrPeerCmds are the vtysh commands that enter each FRR peer's node.
var frrPeerCmds = []string{"peer 10.0.0.1 interface gw0", "peer fd00:12::1 interface gw0", "peer 10.0.1.1 multihop local-address 10.0.2.2"}

// session is one of our sessions and the name FRR knows its peer by (our address).
type session struct {
	cfg     bfd.SessionConfig
	frrPeer string
}

func timers(c bfd.SessionConfig) bfd.SessionConfig {
	c.DesiredMinTx, c.RequiredMinRx, c.DetectMult = 50*time.Millisecond, 50*time.Millisecond, 3
	return c
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// slack is what the issue allows beyond a detection time.
const slack = 50 * time.Millisecond

type env struct {
	t       *testing.T
	ctx     context.Context
	gw, fns *lab.Netns
	frr     *lab.FRR
	frrLog  string // bfdd's log with microsecond timestamps
	m       *bfd.Manager
	ss      []session

	mu     sync.Mutex
	events []bfd.StateChange
}

func setup(t *testing.T) *env {
	l := lab.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	gw, err := l.Netns("gw")
	require.NoError(t, err)
	rt, err := l.Netns("rt")
	require.NoError(t, err)
	fns, err := l.Netns("frr")
	require.NoError(t, err)
	require.NoError(t, l.Link(gw, "frr0", "10.0.0.1/30", fns, "gw0", "10.0.0.2/30"))
	require.NoError(t, l.Link(gw, "rt0", "10.0.1.1/30", rt, "gw0", "10.0.1.2/30"))
	require.NoError(t, l.Link(rt, "frr0", "10.0.2.1/30", fns, "rt0", "10.0.2.2/30"))
	for _, a := range []struct {
		ns   *lab.Netns
		addr string
		dev  string
	}{{gw, "fd00:12::1/64", "frr0"}, {fns, "fd00:12::2/64", "gw0"}} {
		_, err := a.ns.IP(ctx, "addr", "add", a.addr, "dev", a.dev, "nodad")
		require.NoError(t, err)
	}
	require.NoError(t, gw.AddRoute(ctx, "10.0.2.0/30", "via", "10.0.1.2"))
	require.NoError(t, fns.AddRoute(ctx, "10.0.1.0/30", "via", "10.0.2.1"))
	f, err := l.StartFRR(fns, "frr", frrConf, "zebra", "bfdd")
	require.NoError(t, err)
	logPath, err := bfdlab.PreciseLog(ctx, f)
	require.NoError(t, err)

	e := &env{t: t, ctx: ctx, gw: gw, fns: fns, frr: f, frrLog: logPath,
		m: bfd.NewManager(bfd.Options{}),
		ss: []session{
			{timers(bfd.SessionConfig{Peer: ip("10.0.0.2"), Local: ip("10.0.0.1"), Interface: "frr0"}), "10.0.0.1"},
			{timers(bfd.SessionConfig{Peer: ip("fd00:12::2"), Local: ip("fd00:12::1"), Interface: "frr0"}), "fd00:12::1"},
			{timers(bfd.SessionConfig{Peer: ip("10.0.2.2"), Local: ip("10.0.1.1"), Multihop: true}), "10.0.1.1"},
		},
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := bfdlab.RunManager(runCtx, gw, e.m)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for c := range e.m.Events() {
			t.Logf("bgpgw event: %v %v -> %v (%v) remote %v", c.Key, c.Old, c.New, c.Diag, c.RemoteState)
			e.mu.Lock()
			e.events = append(e.events, c)
			e.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stop()
		assert.NoError(t, <-runErr, "Manager.Run")
		<-collected
	})
	for _, x := range e.ss {
		require.NoError(t, bfdlab.Add(ctx, gw, e.m, x.cfg))
	}
	return e
}

// eventsSince returns our state changes at or after from.
func (e *env) eventsSince(from time.Time) []bfd.StateChange {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []bfd.StateChange
	for _, c := range e.events {
		if !c.At.Before(from) {
			out = append(out, c)
		}
	}
	return out
}

func (e *env) status(cfg bfd.SessionConfig) bfd.Status {
	st, ok := e.m.SessionStatus(cfg.Key())
	require.True(e.t, ok, "session %v", cfg.Key())
	return st
}

// waitUp waits until every session is Up on both sides, with no poll
// under way on ours.
func (e *env) waitUp(timeout time.Duration) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	err := lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		peers, err := bfdlab.Peers(ctx, e.frr)
		if err != nil {
			return false, err
		}
		for _, x := range e.ss {
			st := e.status(x.cfg)
			p := peers[x.frrPeer]
			if st.State != bfd.StateUp || st.PollInProgress || p.Status != "up" {
				return false, fmt.Errorf("%v: ours %v (poll %v), FRR %q", x.cfg.Key(), st.State, st.PollInProgress, p.Status)
			}
		}
		return true, nil
	})
	require.NoError(e.t, err, "sessions Up\n%s", e.frr.LogTail(20))
}

func TestFRRInterop(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last: after the lab is gone
	e := setup(t)

	t.Run("up", func(t *testing.T) {
		e.waitUp(30 * time.Second)
		peers, err := bfdlab.Peers(e.ctx, e.frr)
		require.NoError(t, err)
		for _, x := range e.ss {
			cfg := x.cfg
			st := e.status(cfg)
			p := peers[x.frrPeer]
			assert.Equal(t, p.ID, st.RemoteDiscriminator, "discriminators cross-match")
			assert.Equal(t, st.LocalDiscriminator, p.RemoteID)
			assert.Equal(t, cfg.Multihop, p.Multihop)
			assert.Equal(t, 50, p.RemoteTransmitInterval, "FRR sees our timers")
			assert.Equal(t, 50, p.RemoteReceiveInterval)
			assert.Equal(t, 3, p.RemoteDetectMultiplier)
			assert.Equal(t, 50*time.Millisecond, st.TxInterval)
			assert.Equal(t, 50*time.Millisecond, st.RxInterval)
			assert.Equal(t, 150*time.Millisecond, st.DetectionTime)
			assert.Zero(t, st.Counters.AuthFailures)
			t.Logf("%v: up, ours tx %v detect %v; FRR detect %v", cfg.Key(), st.TxInterval, st.DetectionTime, p.DetectionTime())
		}
		c := e.m.Counters()
		assert.Zero(t, c.TTLDrops, "FRR's packets arrive with the TTL we require")
		assert.Zero(t, c.DecodeErrors)
	})

	t.Run("frr detects our silence", func(t *testing.T) {
		e.waitUp(30 * time.Second)
		peers, err := bfdlab.Peers(e.ctx, e.frr)
		require.NoError(t, err)
		off, err := bfdlab.LogSize(e.frrLog)
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, bfdlab.DropBFD(e.ctx, e.gw))
		nftTook := time.Since(start)
		defer func() { require.NoError(t, bfdlab.UndropBFD(e.ctx, e.gw)) }()
		// Poll FRR as fast as vtysh answers until every peer is down.
		seen := map[string]time.Duration{}
		var pollTook time.Duration
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		err = lab.Poll(ctx, time.Millisecond, func() (bool, error) {
			t0 := time.Now()
			ps, err := bfdlab.Peers(ctx, e.frr)
			pollTook = max(pollTook, time.Since(t0))
			if err != nil {
				return false, err
			}
			for _, x := range e.ss {
				if _, ok := seen[x.frrPeer]; !ok && ps[x.frrPeer].Status == "down" {
					seen[x.frrPeer] = time.Since(start)
				}
			}
			return len(seen) == len(e.ss), nil
		})
		require.NoError(t, err, "FRR declares the sessions down")
		for _, x := range e.ss {
			detect := peers[x.frrPeer].DetectionTime()
			downs, err := bfdlab.DownsInLog(e.frrLog, off, x.frrPeer)
			require.NoError(t, err)
			require.NotEmpty(t, downs, "bfdd logged no down for %s", x.frrPeer)
			logged := downs[0].At.Sub(start)
			t.Logf("FRR peer %s (multihop %v): FRR detection time %v; down logged by bfdd %v after the nft drop "+
				"(nft took %v); first seen by polling vtysh after %v (a poll takes up to %v)",
				x.frrPeer, x.cfg.Multihop, detect, logged.Round(time.Millisecond), nftTook.Round(time.Millisecond),
				seen[x.frrPeer].Round(time.Millisecond), pollTook.Round(time.Millisecond))
			assert.Contains(t, downs[0].Line, "reason:control-expired")
			assert.LessOrEqual(t, logged, detect+slack, "FRR down within its detection time + %v", slack)
			assert.LessOrEqual(t, seen[x.frrPeer], detect+slack+pollTook, "polling agrees")
		}
		// We still hear FRR: it tells us it went down (diag 3 on our side).
		for _, x := range e.ss {
			require.Eventually(t, func() bool { return e.status(x.cfg).State != bfd.StateUp }, 5*time.Second, 5*time.Millisecond)
			var ours []bfd.StateChange
			for _, c := range e.eventsSince(start) {
				if c.Key == x.cfg.Key() {
					ours = append(ours, c)
				}
			}
			require.NotEmpty(t, ours)
			assert.Equal(t, bfd.StateDown, ours[0].New)
			assert.Equal(t, bfd.DiagNeighborSignaledDown, ours[0].Diag)
		}
	})

	t.Run("we detect frr's silence", func(t *testing.T) {
		e.waitUp(30 * time.Second)
		detect := map[bfd.Key]time.Duration{}
		for _, x := range e.ss {
			detect[x.cfg.Key()] = e.status(x.cfg).DetectionTime
		}
		start := time.Now()
		require.NoError(t, bfdlab.DropBFD(e.ctx, e.fns))
		nftTook := time.Since(start)
		defer func() { require.NoError(t, bfdlab.UndropBFD(e.ctx, e.fns)) }()
		var downs map[bfd.Key]bfd.StateChange
		require.Eventually(t, func() bool {
			downs = map[bfd.Key]bfd.StateChange{}
			for _, c := range e.eventsSince(start) {
				if _, ok := downs[c.Key]; !ok && c.New == bfd.StateDown {
					downs[c.Key] = c
				}
			}
			return len(downs) == len(e.ss)
		}, 10*time.Second, time.Millisecond)
		for k, c := range downs {
			took := c.At.Sub(start)
			t.Logf("bgpgw %v: detection time %v; Down event %v after the nft drop (nft took %v)",
				k, detect[k], took.Round(time.Millisecond), nftTook.Round(time.Millisecond))
			assert.Equal(t, bfd.StateUp, c.Old)
			assert.Equal(t, bfd.DiagControlDetectionExpired, c.Diag)
			assert.LessOrEqual(t, took, detect[k]+slack, "Down within our detection time + %v", slack)
		}
	})

	t.Run("frr timer change renegotiates without down", func(t *testing.T) {
		e.waitUp(30 * time.Second)
		before, err := bfdlab.Counters(e.ctx, e.frr)
		require.NoError(t, err)
		start := time.Now()
		cmds := []string{"configure terminal", "bfd"}
		for _, p := range frrPeerCmds {
			cmds = append(cmds, p, "transmit-interval 200", "receive-interval 300", "exit")
		}
		_, err = e.frr.Vtysh(e.ctx, cmds...)
		require.NoError(t, err)
		for _, x := range e.ss {
			// We now send at FRR's required 300 ms and expect FRR's 200 ms.
			require.Eventually(t, func() bool {
				st := e.status(x.cfg)
				return !st.PollInProgress && st.RemoteDesiredMinTx == 200*time.Millisecond && st.RemoteRequiredMinRx == 300*time.Millisecond &&
					st.TxInterval == 300*time.Millisecond && st.RxInterval == 200*time.Millisecond &&
					st.DetectionTime == 600*time.Millisecond
			}, 10*time.Second, 10*time.Millisecond, "%v: %+v", x.cfg.Key(), e.status(x.cfg))
		}
		peers, err := bfdlab.Peers(e.ctx, e.frr)
		require.NoError(t, err)
		for _, x := range e.ss {
			p := peers[x.frrPeer]
			assert.Equal(t, "up", p.Status)
			assert.Equal(t, 200, p.TransmitInterval)
			assert.Equal(t, 300, p.ReceiveInterval)
			assert.Equal(t, 50, p.RemoteTransmitInterval)
			assert.Equal(t, 900*time.Millisecond, p.DetectionTime(), "FRR: 3 x max(300, our 50)")
		}
		e.checkNoDown(start, before)
	})

	t.Run("our timer change renegotiates without down", func(t *testing.T) {
		e.waitUp(30 * time.Second)
		before, err := bfdlab.Counters(e.ctx, e.frr)
		require.NoError(t, err)
		start := time.Now()
		for i := range e.ss {
			cfg := &e.ss[i].cfg
			cfg.DesiredMinTx, cfg.RequiredMinRx = 100*time.Millisecond, 150*time.Millisecond
			require.NoError(t, e.m.Update(*cfg))
		}
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		err = lab.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
			peers, err := bfdlab.Peers(ctx, e.frr)
			if err != nil {
				return false, err
			}
			for _, x := range e.ss {
				if p := peers[x.frrPeer]; p.RemoteTransmitInterval != 100 || p.RemoteReceiveInterval != 150 {
					return false, fmt.Errorf("FRR sees %s at %d/%d", x.frrPeer, p.RemoteTransmitInterval, p.RemoteReceiveInterval)
				}
			}
			return true, nil
		})
		require.NoError(t, err, "FRR sees our new timers")
		for _, x := range e.ss {
			// FRR still transmits at 200 and requires 300 (previous step).
			require.Eventually(t, func() bool {
				st := e.status(x.cfg)
				return !st.PollInProgress && st.DesiredMinTx == 100*time.Millisecond && st.RequiredMinRx == 150*time.Millisecond &&
					st.TxInterval == 300*time.Millisecond && st.RxInterval == 200*time.Millisecond && st.DetectionTime == 600*time.Millisecond
			}, 10*time.Second, 10*time.Millisecond, "%v: %+v", x.cfg.Key(), e.status(x.cfg))
		}
		peers, err := bfdlab.Peers(e.ctx, e.frr)
		require.NoError(t, err)
		for _, x := range e.ss {
			assert.Equal(t, 900*time.Millisecond, peers[x.frrPeer].DetectionTime(), "FRR: 3 x max(300, our 100)")
		}
		e.checkNoDown(start, before)
	})
}

// checkNoDown asserts that neither side saw a session go down since start
// (FRR's session-down counters are unchanged, we had no event), after
// letting time pass: 10 more packets from FRR on every session.
func (e *env) checkNoDown(start time.Time, before map[string]bfdlab.FRRCounters) {
	e.t.Helper()
	rx := map[bfd.Key]uint64{}
	for _, x := range e.ss {
		rx[x.cfg.Key()] = e.status(x.cfg).Counters.Received
	}
	require.Eventually(e.t, func() bool {
		for _, x := range e.ss {
			if e.status(x.cfg).Counters.Received < rx[x.cfg.Key()]+10 {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond)
	e.waitUp(5 * time.Second)
	after, err := bfdlab.Counters(e.ctx, e.frr)
	require.NoError(e.t, err)
	for _, x := range e.ss {
		assert.Equal(e.t, before[x.frrPeer].SessionDown, after[x.frrPeer].SessionDown, "FRR saw %s go down", x.frrPeer)
	}
	assert.Empty(e.t, e.eventsSince(start), "no state change on our side")
}
