package bfd

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// freePort finds a UDP port free on both 0.0.0.0 and [::].
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 100 {
		p := uint16(20000 + rand.IntN(20000))
		c4, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(p)})
		if err != nil {
			continue
		}
		c6, err := net.ListenUDP("udp6", &net.UDPAddr{Port: int(p)})
		_ = c4.Close()
		if err != nil {
			continue
		}
		_ = c6.Close()
		return p
	}
	t.Fatal("no free UDP port")
	return 0
}

// waitEvent reads events until one satisfies ok, failing after timeout.
func waitEvent(t *testing.T, ch <-chan StateChange, timeout time.Duration, ok func(StateChange) bool) StateChange {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case c := <-ch:
			if ok(c) {
				return c
			}
		case <-deadline:
			t.Fatalf("no matching state change within %v", timeout)
		}
	}
}

func upFor(k Key) func(StateChange) bool {
	return func(c StateChange) bool { return c.Key == k && c.New == StateUp }
}

// TestManagerLoopback runs two Managers against each other over loopback
// (each listening on its own ports): single-hop and multihop sessions come
// Up, TTL and demultiplexing checks drop stray packets, a timer change is
// renegotiated without a Down, stopping one side takes the other Down with
// diag 1, and Run leaves no goroutine behind.
func TestManagerLoopback(t *testing.T) {
	defer goleak.VerifyNone(t)
	pa := ports{freePort(t), freePort(t), 0, 0}
	pb := ports{freePort(t), freePort(t), pa.listenSingle, pa.listenMulti}
	pa.peerSingle, pa.peerMulti = pb.listenSingle, pb.listenMulti
	ma := newManager(Options{Rand: rand.NewPCG(1, 1)}, pa)
	mb := newManager(Options{Rand: rand.NewPCG(2, 2)}, pb)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctxB, cancelB := context.WithCancel(ctx)
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { errA <- ma.Run(ctx) }()
	go func() { errB <- mb.Run(ctxB) }()

	lo := func(s string) netip.Addr { return netip.MustParseAddr("127.0.0." + s) }
	timers := func(c SessionConfig) SessionConfig {
		c.DesiredMinTx, c.RequiredMinRx, c.DetectMult = 20*time.Millisecond, 20*time.Millisecond, 3
		return c
	}
	shA := timers(SessionConfig{Peer: lo("2"), Local: lo("1")})
	shB := timers(SessionConfig{Peer: lo("1"), Local: lo("2")})
	mhA := timers(SessionConfig{Peer: lo("4"), Local: lo("3"), Multihop: true})
	mhB := timers(SessionConfig{Peer: lo("3"), Local: lo("4"), Multihop: true})
	for _, c := range []struct {
		m   *Manager
		cfg SessionConfig
	}{{ma, shA}, {ma, mhA}, {mb, shB}, {mb, mhB}} {
		require.NoError(t, c.m.Add(ctx, c.cfg))
	}
	require.Error(t, ma.Add(ctx, shA), "duplicate session")

	// Both sessions come Up on both sides.
	upA := map[Key]bool{}
	for len(upA) < 2 {
		c := waitEvent(t, ma.Events(), 10*time.Second, func(c StateChange) bool { return c.New == StateUp })
		upA[c.Key] = true
	}
	for _, k := range []Key{shB.Key(), mhB.Key()} {
		require.Eventually(t, func() bool { st, _ := mb.SessionStatus(k); return st.State == StateUp }, 10*time.Second, 5*time.Millisecond)
	}
	// Once both polls are over: the configured intervals.
	require.Eventually(t, func() bool {
		for _, s := range ma.Status() {
			if s.State != StateUp || s.PollInProgress || s.TxInterval != 20*time.Millisecond || s.DetectionTime != 60*time.Millisecond {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "%+v", ma.Status())
	st := ma.Status()
	require.Len(t, st, 2)
	for _, s := range st {
		assert.NotZero(t, s.Counters.Sent)
		assert.NotZero(t, s.Counters.Received)
	}

	// A valid packet from the peer's address, but with TTL 64, is dropped
	// before any session sees it; one from an unknown address finds no session.
	before := ma.Counters()
	stray := Packet{State: StateDown, DetectMult: 3, MyDiscriminator: 99, DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6}
	w, err := stray.Marshal()
	require.NoError(t, err)
	sendRaw(t, lo("2"), 64, netip.AddrPortFrom(lo("1"), pa.listenSingle), w)
	sendRaw(t, lo("9"), 255, netip.AddrPortFrom(lo("1"), pa.listenSingle), w)
	sendRaw(t, lo("2"), 255, netip.AddrPortFrom(lo("1"), pa.listenSingle), w[:20])
	require.Eventually(t, func() bool {
		c := ma.Counters()
		return c.TTLDrops == before.TTLDrops+1 && c.NoSession == before.NoSession+1 && c.DecodeErrors == before.DecodeErrors+1
	}, 5*time.Second, 5*time.Millisecond, "%+v", ma.Counters())

	// Timer change on A: poll, new intervals on both sides, no Down.
	shA2 := shA
	shA2.DesiredMinTx, shA2.RequiredMinRx = 40*time.Millisecond, 30*time.Millisecond
	require.NoError(t, ma.Update(shA2))
	require.Eventually(t, func() bool {
		a, _ := ma.SessionStatus(shA.Key())
		b, _ := mb.SessionStatus(shB.Key())
		return !a.PollInProgress && a.TxInterval == 40*time.Millisecond && a.DetectionTime == 90*time.Millisecond &&
			b.TxInterval == 30*time.Millisecond && b.DetectionTime == 120*time.Millisecond
	}, 5*time.Second, 5*time.Millisecond)

	// B stops: A's sessions go Down on detection timeout.
	cancelB()
	require.NoError(t, <-errB)
	_, open := <-mb.Events()
	for open {
		_, open = <-mb.Events()
	}
	stopped := time.Now()
	down := map[Key]StateChange{}
	for len(down) < 2 {
		c := waitEvent(t, ma.Events(), 5*time.Second, func(c StateChange) bool { return c.New == StateDown })
		down[c.Key] = c
	}
	for k, c := range down {
		assert.Equal(t, StateUp, c.Old, k.String())
		assert.Equal(t, DiagControlDetectionExpired, c.Diag, k.String())
		assert.Less(t, c.At.Sub(stopped), time.Second, k.String())
	}
	require.ErrorIs(t, mb.Update(shB), ErrStopped)

	require.NoError(t, ma.Remove(mhA.Key()))
	assert.Len(t, ma.Status(), 1)
	cancel()
	require.NoError(t, <-errA)
	for range ma.Events() { //nolint:revive // drain until closed
	}
}

// sendRaw sends b from src with the given TTL.
func sendRaw(t *testing.T, src netip.Addr, ttl int, dst netip.AddrPort, b []byte) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
	require.NoError(t, err)
	defer c.Close()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, rc.Control(func(fd uintptr) {
		require.NoError(t, unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl))
	}))
	_, err = c.WriteToUDPAddrPort(b, dst)
	require.NoError(t, err)
}

// TestManagerStallNoFalseDown: when this process stalls (simulated by
// holding the manager's lock) longer than a detection time while the
// peer's packets keep arriving, the session stays Up: the timer loop lets
// the queued packets through first, judged by their kernel arrival time.
func TestManagerStallNoFalseDown(t *testing.T) {
	defer goleak.VerifyNone(t)
	pa := ports{freePort(t), freePort(t), 0, 0}
	pb := ports{freePort(t), freePort(t), pa.listenSingle, pa.listenMulti}
	pa.peerSingle, pa.peerMulti = pb.listenSingle, pb.listenMulti
	ma := newManager(Options{}, pa)
	mb := newManager(Options{}, pb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { errA <- ma.Run(ctx) }()
	go func() { errB <- mb.Run(ctx) }()
	lo := func(s string) netip.Addr { return netip.MustParseAddr("127.0.0." + s) }
	// A detects B's silence after 3 x 50 ms; B would need 20 x 50 ms to
	// notice that A, stalled, sends nothing. (50 ms, not less: the test
	// shares a loaded CI machine, and only the stall may exceed A's
	// detection time.)
	ca := SessionConfig{Peer: lo("2"), Local: lo("1"), DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 20}
	cb := SessionConfig{Peer: lo("1"), Local: lo("2"), DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}
	require.NoError(t, ma.Add(ctx, ca))
	require.NoError(t, mb.Add(ctx, cb))
	steady := func() bool {
		a, _ := ma.SessionStatus(ca.Key())
		b, _ := mb.SessionStatus(cb.Key())
		return a.State == StateUp && b.State == StateUp && !a.PollInProgress && !b.PollInProgress &&
			a.DetectionTime == 150*time.Millisecond
	}
	require.Eventually(t, steady, 10*time.Second, 5*time.Millisecond)
	sentByB := func() uint64 { st, _ := mb.SessionStatus(cb.Key()); return st.Counters.Sent }
	up, _ := ma.SessionStatus(ca.Key())
	changes := up.Counters.StateChanges // Down -> Up, possibly through Init

	for range 3 {
		before := sentByB()
		ma.mu.Lock() // the stall: A reads nothing, sends nothing, runs no timer
		require.Eventually(t, func() bool { return sentByB() >= before+10 }, 5*time.Second, time.Millisecond,
			"B sends 10 packets (about 425 ms) while A stalls")
		ma.mu.Unlock()
		require.Eventually(t, func() bool { return sentByB() >= before+20 }, 5*time.Second, time.Millisecond)
		a, _ := ma.SessionStatus(ca.Key())
		assert.Equal(t, StateUp, a.State, "A kept the session up through the stall")
		assert.Equal(t, changes, a.Counters.StateChanges, "no state change through the stall: %+v", a)
	}
	cancel()
	require.NoError(t, <-errA)
	require.NoError(t, <-errB)
}

func TestArrival(t *testing.T) {
	now := time.Now()
	assert.Equal(t, now, arrival(now, 0), "no timestamp")
	assert.Equal(t, now.Add(-30*time.Millisecond), arrival(now, now.UnixNano()-int64(30*time.Millisecond)))
	assert.Equal(t, now, arrival(now, now.UnixNano()+int64(time.Millisecond)), "timestamp in the future")
	assert.Equal(t, now, arrival(now, now.UnixNano()-int64(2*time.Second)), "implausibly old")
	assert.True(t, arrival(now, now.UnixNano()-1000).Sub(now) < 0, "keeps the monotonic reading: %v", arrival(now, now.UnixNano()-1000))
}

func TestManagerRunTwiceAndStopped(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := ports{freePort(t), freePort(t), 1, 1}
	m := newManager(Options{}, p)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	require.NoError(t, m.Add(ctx, SessionConfig{Peer: netip.MustParseAddr("127.0.0.2")}))
	cancel()
	require.NoError(t, <-errc)
	require.Error(t, m.Run(context.Background()))
	require.ErrorIs(t, m.Add(context.Background(), SessionConfig{Peer: netip.MustParseAddr("127.0.0.3")}), ErrStopped)
	require.NoError(t, m.Remove(Key{Peer: netip.MustParseAddr("127.0.0.2")}))
}

func TestManagerListenConflict(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := freePort(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(p)})
	require.NoError(t, err)
	defer c.Close()
	m := newManager(Options{}, ports{p, freePort(t), 1, 1})
	err = m.Run(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprint(p))
	_, open := <-m.Events()
	assert.False(t, open, "Events closed after Run")
}

func TestParseControl(t *testing.T) {
	ne := binary.NativeEndian
	b := make([]byte, unix.CmsgSpace(4)+unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	put := func(off int, level, typ int32, data []byte) int {
		hdr := unix.SizeofCmsghdr
		if hdr == 16 {
			ne.PutUint64(b[off:], uint64(hdr+len(data)))
		} else {
			ne.PutUint32(b[off:], uint32(hdr+len(data)))
		}
		ne.PutUint32(b[off+hdr-8:], uint32(level))
		ne.PutUint32(b[off+hdr-4:], uint32(typ))
		copy(b[off+hdr:], data)
		return off + unix.CmsgSpace(len(data))
	}
	ttl := ne.AppendUint32(nil, 255)
	pkt := make([]byte, unix.SizeofInet4Pktinfo)
	ne.PutUint32(pkt, 7)
	copy(pkt[8:], []byte{192, 0, 2, 1})
	off := put(0, unix.IPPROTO_IP, unix.IP_TTL, ttl)
	put(off, unix.IPPROTO_IP, unix.IP_PKTINFO, pkt)
	assert.Equal(t, rxControl{ttl: 255, ifindex: 7, dst: netip.MustParseAddr("192.0.2.1")}, parseControl(b))
	assert.Equal(t, -1, parseControl(nil).ttl)
	assert.Equal(t, -1, parseControl(b[:10]).ttl, "truncated")
	b[0] = 0xff // absurd length
	assert.NotPanics(t, func() { parseControl(b) })
}
