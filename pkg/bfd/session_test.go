package bfd

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func transitions(cs []StateChange) []State {
	var out []State
	for _, c := range cs {
		out = append(out, c.New)
	}
	return out
}

// TestBringUpBothSides is the three-way handshake of RFC 5880 6.2 with both
// systems starting at once: Down -> Init/Up -> Up on each side, then the
// poll that leaves the 1 s floor, then the negotiated intervals.
func TestBringUpBothSides(t *testing.T) {
	ca, cb := cfgA(), cfgB()
	ca.DesiredMinTx, ca.RequiredMinRx, ca.DetectMult = 50*time.Millisecond, 50*time.Millisecond, 3
	cb.DesiredMinTx, cb.RequiredMinRx, cb.DetectMult = 100*time.Millisecond, 80*time.Millisecond, 5
	p := newPair(t, ca, cb)

	// While Down, packets advertise a desired min TX of at least 1 s.
	p.runFor(0)
	require.Len(t, p.a.sent, 1, "first packet at creation")
	first := p.a.sent[0].pkt
	assert.Equal(t, StateDown, first.State)
	assert.Equal(t, uint32(0), first.YourDiscriminator)
	assert.Equal(t, uint32(1_000_000), first.DesiredMinTxInterval)
	assert.Equal(t, uint32(50_000), first.RequiredMinRxInterval)

	p.bringUp()
	assert.Less(t, p.now.Sub(t0), 100*time.Millisecond, "bring-up takes a few packet exchanges, not timer periods")
	// Each side went Down -> Init -> Up, or Down -> Up if the other's Init came first.
	for _, x := range []*side{p.a, p.b} {
		tr := transitions(x.changes)
		assert.Contains(t, [][]State{{StateInit, StateUp}, {StateUp}}, tr, "side %s", x.name)
		assert.Equal(t, StateDown, x.changes[0].Old)
		assert.Equal(t, DiagNone, x.changes[len(x.changes)-1].Diag)
	}

	// Each side started a poll on coming Up (its advertised TX left 1 s).
	assert.True(t, hasPoll(p.a.sent), "a polled")
	assert.True(t, hasPoll(p.b.sent), "b polled")

	// Negotiated: TX = max(own desired TX, peer's required RX); detection
	// time = peer's multiplier x max(own required RX, peer's desired TX).
	p.runFor(2 * time.Second)
	sa, sb := p.a.s.Status(), p.b.s.Status()
	assert.Equal(t, 80*time.Millisecond, sa.TxInterval)
	assert.Equal(t, 100*time.Millisecond, sa.RxInterval)
	assert.Equal(t, 5*100*time.Millisecond, sa.DetectionTime)
	assert.Equal(t, 100*time.Millisecond, sb.TxInterval)
	assert.Equal(t, 80*time.Millisecond, sb.RxInterval)
	assert.Equal(t, 3*80*time.Millisecond, sb.DetectionTime)
	assert.Equal(t, uint32(0x2222), sa.RemoteDiscriminator)
	assert.Equal(t, uint32(0x1111), sb.RemoteDiscriminator)
	assert.Equal(t, uint64(len(p.a.changes)), sa.Counters.StateChanges)
	assert.Equal(t, uint64(len(p.b.changes)), sb.Counters.StateChanges)

	// Steady state: periodic packets within 75-100% of the TX interval.
	from := p.now.Add(-time.Second)
	for _, g := range gaps(p.a.sentSince(from)) {
		assert.GreaterOrEqual(t, g, 60*time.Millisecond)
		assert.Less(t, g, 80*time.Millisecond)
	}
	for _, g := range gaps(p.b.sentSince(from)) {
		assert.GreaterOrEqual(t, g, 75*time.Millisecond)
		assert.Less(t, g, 100*time.Millisecond)
	}
	assert.Empty(t, p.a.rxErrs)
	assert.Empty(t, p.b.rxErrs)
}

func hasPoll(pkts []sentPacket) bool {
	for _, s := range pkts {
		if s.pkt.Poll {
			return true
		}
	}
	return false
}

// TestBringUpOneSideLate: a system alone stays Down sending at the slow
// rate (1 s less jitter, RFC 5880 6.8.3); when the peer appears 5 s later
// both come Up.
func TestBringUpOneSideLate(t *testing.T) {
	p := newPair(t, cfgA(), cfgB())
	bs := p.b.s
	p.b.s = nil // not there yet: its packets to nobody are not simulated
	p.a.drop = true
	p.runFor(5 * time.Second)
	assert.Equal(t, StateDown, p.a.s.State())
	g := gaps(p.a.sent)
	require.GreaterOrEqual(t, len(g), 4)
	for _, d := range g {
		assert.GreaterOrEqual(t, d, 750*time.Millisecond)
		assert.Less(t, d, time.Second)
	}
	p.a.drop = false
	p.b.s = bs // its first packet was due at t0: it goes out now
	p.bringUp()
	assert.Less(t, p.now.Sub(t0), 7*time.Second)
}

// TestRemoteAdminDown (RFC 5880 6.8.16, 6.8.6): the peer going AdminDown
// (diag 7) takes us Down with diag 3 "Neighbor Signaled Session Down", and
// we stay Down (not Init) while it remains AdminDown.
func TestRemoteAdminDown(t *testing.T) {
	p := newPair(t, cfgA(), cfgB())
	p.bringUp()
	p.runFor(time.Second)
	at := p.now
	p.handle(p.b, p.b.s.SetAdminDown(p.now, true))
	require.Len(t, p.b.changesSince(at), 1)
	assert.Equal(t, StateChange{Key: p.b.s.Key(), Old: StateUp, New: StateAdminDown, Diag: DiagAdministrativelyDown,
		RemoteState: StateUp, At: at}, p.b.changesSince(at)[0])
	last := p.b.sent[len(p.b.sent)-1].pkt
	assert.Equal(t, StateAdminDown, last.State)
	assert.Equal(t, DiagAdministrativelyDown, last.Diag)

	p.runFor(10 * time.Second)
	ca := p.a.changesSince(at)
	require.Len(t, ca, 1, "a goes Down once and stays Down: %v", ca)
	assert.Equal(t, StateChange{Key: p.a.s.Key(), Old: StateUp, New: StateDown, Diag: DiagNeighborSignaledDown,
		RemoteState: StateAdminDown, RemoteDiag: DiagAdministrativelyDown, At: at.Add(latency)}, ca[0])
	assert.Equal(t, StateDown, p.a.s.State())
	assert.Equal(t, StateAdminDown, p.b.s.State())
	// AdminDown keeps sending, at the slow rate.
	for _, g := range gaps(p.b.sentSince(at.Add(time.Second))) {
		assert.GreaterOrEqual(t, g, 750*time.Millisecond)
	}

	p.handle(p.b, p.b.s.SetAdminDown(p.now, false))
	p.bringUp()
	assert.Equal(t, StateUp, p.a.s.State())
}

// TestDetectionTimeout (RFC 5880 6.8.4): when the peer's packets stop, the
// session goes Down with diag 1 exactly one detection time after the last
// packet; the peer, still hearing us, goes Down with diag 3.
func TestDetectionTimeout(t *testing.T) {
	p := newPair(t, cfgA(), cfgB())
	p.bringUp()
	p.runFor(time.Second)
	detect := p.a.s.Status().DetectionTime
	require.Equal(t, 150*time.Millisecond, detect)

	at := p.now
	p.b.drop = true
	lastFromB := p.b.sent[len(p.b.sent)-1].at.Add(latency) // in flight before the drop
	p.runFor(2 * time.Second)
	ca := p.a.changesSince(at)
	require.NotEmpty(t, ca)
	assert.Equal(t, StateUp, ca[0].Old)
	assert.Equal(t, StateDown, ca[0].New)
	assert.Equal(t, DiagControlDetectionExpired, ca[0].Diag)
	assert.Equal(t, lastFromB.Add(detect), ca[0].At, "Down exactly one detection time after the last packet")
	assert.Zero(t, p.a.s.Status().RemoteDiscriminator, "bfd.RemoteDiscr zeroed on expiry")

	cb := p.b.changesSince(at)
	require.NotEmpty(t, cb)
	assert.Equal(t, StateDown, cb[0].New)
	assert.Equal(t, DiagNeighborSignaledDown, cb[0].Diag)
	// a's packets after the expiry carry Your Discriminator zero.
	for _, s := range p.a.sentSince(ca[0].At) {
		assert.Zero(t, s.pkt.YourDiscriminator)
		assert.Equal(t, DiagControlDetectionExpired, s.pkt.Diag)
	}

	p.b.drop = false
	p.bringUp()
}

// TestPollSequence (RFC 5880 6.5, 6.8.3): a timer change while Up is
// announced with Poll until a Final arrives; a TX increase and an RX
// decrease take effect only then; the peer answers each Poll with a Final
// at once; nobody goes Down.
func TestPollSequence(t *testing.T) {
	p := newPair(t, cfgA(), cfgB())
	p.bringUp()
	p.runFor(time.Second)
	nChangesA, nChangesB := len(p.a.changes), len(p.b.changes)

	// Increase: a wants 300 ms both ways. Hold b's packets so the Final is late.
	p.b.drop = true
	at := p.now
	ca := cfgA()
	ca.DesiredMinTx, ca.RequiredMinRx = 300*time.Millisecond, 300*time.Millisecond
	out, err := p.a.s.Update(p.now, ca)
	require.NoError(t, err)
	require.NotNil(t, out.Packet, "the poll starts at once")
	assert.True(t, out.Packet.Poll)
	assert.Equal(t, uint32(300_000), out.Packet.DesiredMinTxInterval)
	p.handle(p.a, out)
	st := p.a.s.Status()
	assert.True(t, st.PollInProgress)
	assert.Equal(t, 50*time.Millisecond, st.TxInterval, "TX increase waits for the Final")
	assert.Equal(t, 300*time.Millisecond, st.DesiredMinTx, "advertised at once")

	p.runFor(100 * time.Millisecond)
	polls := p.a.sentSince(at)
	require.GreaterOrEqual(t, len(polls), 3, "periodic packets keep the old rate during the poll")
	for _, s := range polls {
		assert.True(t, s.pkt.Poll, "every packet carries Poll until the Final")
		assert.False(t, s.pkt.Final)
	}
	for _, g := range gaps(polls) {
		assert.Less(t, g, 50*time.Millisecond)
	}
	// b already slowed down for a's new required RX, and answered each Poll with a Final.
	assert.Equal(t, 300*time.Millisecond, p.b.s.Status().TxInterval)
	finals := 0
	for _, s := range p.b.sentSince(at) {
		assert.False(t, s.pkt.Poll && s.pkt.Final, "never P and F together")
		if s.pkt.Final {
			finals++
		}
	}
	assert.Equal(t, len(polls), finals, "one Final per Poll received")

	// Let the Final through.
	p.b.drop = false
	ok := p.runUntil(p.now.Add(time.Second), func() bool { return !p.a.s.Status().PollInProgress })
	require.True(t, ok, "poll ends with a Final")
	endAt := p.now
	st = p.a.s.Status()
	assert.Equal(t, 300*time.Millisecond, st.TxInterval, "TX increase in force after the Final")
	assert.Equal(t, 3*300*time.Millisecond, st.DetectionTime)
	p.runFor(2 * time.Second)
	after := p.a.sentSince(endAt)
	for _, s := range after {
		assert.False(t, s.pkt.Poll, "no Poll after the Final")
	}
	for _, g := range gaps(after) {
		assert.GreaterOrEqual(t, g, 225*time.Millisecond)
	}
	assert.Equal(t, 3*300*time.Millisecond, p.b.s.Status().DetectionTime)

	// Decrease back to 50 ms: the faster TX applies at once, the shorter
	// detection time (RX decrease) only after the Final.
	p.b.drop = true
	ca = cfgA()
	out, err = p.a.s.Update(p.now, ca)
	require.NoError(t, err)
	p.handle(p.a, out)
	st = p.a.s.Status()
	assert.Equal(t, 50*time.Millisecond, st.TxInterval, "TX decrease at once (peer's RX is 50 ms)")
	p.runFor(60 * time.Millisecond)
	st = p.a.s.Status()
	assert.True(t, st.PollInProgress)
	assert.Equal(t, 300*time.Millisecond, st.RxInterval, "RX decrease waits for the Final")
	p.b.drop = false
	ok = p.runUntil(p.now.Add(time.Second), func() bool { return !p.a.s.Status().PollInProgress })
	require.True(t, ok)
	p.runFor(time.Second)
	assert.Equal(t, 50*time.Millisecond, p.a.s.Status().RxInterval)
	assert.Equal(t, 150*time.Millisecond, p.a.s.Status().DetectionTime)
	assert.Equal(t, 150*time.Millisecond, p.b.s.Status().DetectionTime)

	assert.Len(t, p.a.changes, nChangesA, "no state change on either side")
	assert.Len(t, p.b.changes, nChangesB)
	assert.True(t, p.bothUp())
}

// TestPeerPollKeepsDetectionTime: when the peer polls to transmit faster,
// the detection time does not shrink before its poll ends, and then it does.
func TestPeerPollKeepsDetectionTime(t *testing.T) {
	ca, cb := cfgA(), cfgB()
	cb.DesiredMinTx = 200 * time.Millisecond
	p := newPair(t, ca, cb)
	p.bringUp()
	p.runFor(time.Second)
	require.Equal(t, 600*time.Millisecond, p.a.s.Status().DetectionTime)
	p.a.dropFinal = true // b's poll stays open
	cb.DesiredMinTx = 50 * time.Millisecond
	out, err := p.b.s.Update(p.now, cb)
	require.NoError(t, err)
	p.handle(p.b, out)
	p.runFor(500 * time.Millisecond)
	assert.Equal(t, 600*time.Millisecond, p.a.s.Status().DetectionTime, "unchanged while b polls")
	p.a.dropFinal = false
	p.runFor(time.Second)
	assert.Equal(t, 150*time.Millisecond, p.a.s.Status().DetectionTime)
	assert.True(t, p.bothUp())
}

func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		mult   uint8
		lo, hi float64
	}{{3, 0.75, 1.0}, {1, 0.75, 0.90}} {
		c := cfgA()
		c.DetectMult = tc.mult
		s, err := NewSession(c, 1, rand.NewPCG(5, 6), t0)
		require.NoError(t, err)
		var mn, mx = 2.0, 0.0
		for range 10000 {
			f := s.jitterFraction()
			mn, mx = min(mn, f), max(mx, f)
		}
		assert.GreaterOrEqual(t, mn, tc.lo, "mult %d", tc.mult)
		assert.Less(t, mx, tc.hi, "mult %d", tc.mult)
		assert.Less(t, mn, tc.lo+0.01, "uses the whole band")
		assert.Greater(t, mx, tc.hi-0.01, "uses the whole band")
	}
}

// fixedSource is a rand.Source returning one value.
type fixedSource uint64

func (f fixedSource) Uint64() uint64 { return uint64(f) }

func TestJitterInjected(t *testing.T) {
	for _, tc := range []struct {
		src  fixedSource
		want time.Duration
	}{{0, 750 * time.Millisecond}, {1 << 52, 875 * time.Millisecond}} {
		s, err := NewSession(cfgA(), 1, tc.src, t0)
		require.NoError(t, err)
		out := s.Tick(t0)
		require.NotNil(t, out.Packet)
		assert.Equal(t, t0.Add(tc.want), s.Next())
	}
}

func TestDiscardWrongDiscriminator(t *testing.T) {
	s, err := NewSession(cfgA(), 7, rand.NewPCG(1, 1), t0)
	require.NoError(t, err)
	pkt := Packet{State: StateInit, DetectMult: 3, MyDiscriminator: 9, YourDiscriminator: 8,
		DesiredMinTxInterval: 1e6, RequiredMinRxInterval: 1e6}
	_, err = s.Receive(t0, &pkt)
	require.ErrorIs(t, err, ErrDiscriminator)
	assert.Equal(t, StateDown, s.State())
	assert.Equal(t, uint64(1), s.Status().Counters.Discarded)
	assert.Zero(t, s.Status().Counters.Received)
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestConfigValidation(t *testing.T) {
	bad := []SessionConfig{
		{},
		{Peer: cfgA().Peer, Multihop: true},
		{Peer: cfgA().Peer, Local: cfgA().Local, Multihop: true, Interface: "eth0"},
		{Peer: cfgA().Peer, Local: netipMust("2001:db8::1")},
		{Peer: cfgA().Peer, DesiredMinTx: time.Nanosecond},
		{Peer: cfgA().Peer, Auth: &AuthConfig{Type: AuthKeyedMD5, Key: []byte("k")}},
		{Peer: cfgA().Peer, Auth: &AuthConfig{Type: AuthKeyedSHA1}},
		{Peer: cfgA().Peer, Auth: &AuthConfig{Type: AuthKeyedSHA1, Key: make([]byte, 21)}},
	}
	for i, c := range bad {
		_, err := NewSession(c, 1, rand.NewPCG(1, 1), t0)
		assert.Error(t, err, "case %d", i)
	}
	_, err := NewSession(cfgA(), 0, rand.NewPCG(1, 1), t0)
	assert.Error(t, err, "zero discriminator")
	s, err := NewSession(SessionConfig{Peer: cfgA().Peer}, 1, rand.NewPCG(1, 1), t0)
	require.NoError(t, err)
	c := s.Config()
	assert.Equal(t, DefaultDesiredMinTx, c.DesiredMinTx)
	assert.Equal(t, DefaultRequiredMinRx, c.RequiredMinRx)
	assert.Equal(t, uint8(DefaultDetectMult), c.DetectMult)
	_, err = s.Update(t0, cfgB())
	assert.Error(t, err, "update to another key")
}
