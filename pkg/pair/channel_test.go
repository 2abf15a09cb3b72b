package pair

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const wait = 5 * time.Second // deadline for anything the tests wait on

var loopback = netip.MustParseAddr("127.0.0.1")

// freePort returns a loopback address whose UDP port was free a moment ago.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	require.NoError(t, err)
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	require.NoError(t, c.Close())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// peer is a raw UDP socket playing the partner.
type peer struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
}

func newPeer(t *testing.T, addr netip.Addr) *peer {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return &peer{t: t, conn: c, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
}

func (p *peer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	_, err := p.conn.WriteToUDPAddrPort(b, to)
	require.NoError(p.t, err)
}

// read returns the next datagram, decoded with testKey.
func (p *peer) read() Message {
	p.t.Helper()
	buf := make([]byte, maxDatagram)
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(wait)))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	require.NoError(p.t, err)
	m, err := Decode(buf[:n], testKey)
	require.NoError(p.t, err)
	return m
}

// start runs c until the test ends and checks that Run returned nil.
func start(t *testing.T, c *Channel) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
		}
	})
}

func receive(t *testing.T, c *Channel) Message {
	t.Helper()
	select {
	case m := <-c.Received():
		return m
	case <-time.After(wait):
		t.Fatal("nothing received")
		return Message{}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, wait, time.Millisecond, msg)
}

func testConfig(local, remote netip.AddrPort) Config {
	return Config{Self: "gw-a", Partner: "gw-b", Local: local, Remote: remote, Key: testKey,
		Refresh: time.Hour, Repeat: []time.Duration{}}
}

func mustNew(t *testing.T, cfg Config) *Channel {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// TestPairExchange: two Channels on loopback tell each other their state,
// and a change arrives at once (Refresh is an hour).
func TestPairExchange(t *testing.T) {
	pa, pb := freePort(t), freePort(t)
	cfgA, cfgB := testConfig(pa, pb), testConfig(pb, pa)
	cfgB.Self, cfgB.Partner = "gw-b", "gw-a"
	a, b := mustNew(t, cfgA), mustNew(t, cfgB)

	a.Send(State{Devices: []string{"dc1", "dc2"}, Carrying: []string{"dc1"}, ChecksOK: true})
	b.Send(State{Devices: []string{"dc1", "dc2"}, ChecksOK: true})
	start(t, a)
	start(t, b)

	want := State{Instance: "gw-a", Devices: []string{"dc1", "dc2"}, Carrying: []string{"dc1"}, ChecksOK: true}
	m := receive(t, b)
	assert.Equal(t, want, m.State)

	// a state change travels at once
	a.Send(State{Devices: []string{"dc1", "dc2"}, Carrying: []string{"dc1", "dc2"}, ChecksOK: true, Draining: true, Drops: 1})
	want = State{Instance: "gw-a", Devices: []string{"dc1", "dc2"}, Carrying: []string{"dc1", "dc2"}, ChecksOK: true, Draining: true, Drops: 1}
	for m.Draining != true {
		m = receive(t, b)
	}
	assert.Equal(t, want, m.State)
	last, at, ok := b.Last()
	require.True(t, ok)
	assert.Equal(t, want, last.State)
	assert.GreaterOrEqual(t, last.Seq, m.Seq, "a later copy may have arrived")
	assert.WithinDuration(t, time.Now(), at, wait)

	// and the other way
	eventually(t, func() bool { m, _, ok := a.Last(); return ok && m.Instance == "gw-b" }, "a hears b")
	for _, c := range []*Channel{a, b} {
		n := c.Counters()
		assert.Zero(t, n.SendErrors+n.BadAuth+n.Replayed+n.Malformed+n.WrongSender, "%+v", n)
	}
}

// TestFiltering: a Channel whose partner is a raw socket; every bad datagram
// is dropped and counted, and none reaches Received.
func TestFiltering(t *testing.T) {
	p := newPeer(t, loopback)
	local := freePort(t)
	cfg := testConfig(local, p.addr)
	cfg.Now = func() time.Time { return time.Unix(0, 777) }
	c := mustNew(t, cfg)
	c.Send(State{Devices: []string{"dc1"}})
	start(t, c)

	// The state set before Run goes out first, under the injected epoch.
	m := p.read()
	assert.Equal(t, Message{State: State{Instance: "gw-a", Devices: []string{"dc1"}}, Epoch: 777, Seq: 1}, m)

	msg := func(inst string, epoch, seq uint64) Message {
		return Message{State: State{Instance: inst, Devices: []string{"dc1"}, Carrying: []string{"dc1"}, ChecksOK: true}, Epoch: epoch, Seq: seq}
	}
	first := mustEncode(t, msg("gw-b", 100, 5))
	p.send(local, first)
	assert.Equal(t, msg("gw-b", 100, 5), receive(t, c))
	// The partner's first message makes c answer at once.
	assert.Equal(t, uint64(2), p.read().Seq)

	otherKey, err := Encode(nil, msg("gw-b", 100, 9), []byte("not-the-pair-key-at-all"))
	require.NoError(t, err)
	p.send(local, first)                                                        // replayed
	p.send(local, mustEncode(t, msg("gw-b", 100, 4)))                           // older seq
	p.send(local, mustEncode(t, msg("gw-b", 99, 50)))                           // older epoch
	p.send(local, otherKey)                                                     // bad auth
	p.send(local, []byte("garbage"))                                            // malformed (short)
	p.send(local, append(append([]byte(nil), first[:10]...), 'x'))              // malformed (short)
	p.send(local, sign(append(first[:len(first)-macLen:len(first)-macLen], 0))) // malformed (trailing)
	p.send(local, mustEncode(t, msg("gw-a", 100, 10)))                          // reflection: names us
	p.send(local, mustEncode(t, msg("gw-c", 100, 11)))                          // not the partner
	wrongSenders := uint64(2)
	if q, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}); err == nil {
		_, err = q.WriteToUDPAddrPort(mustEncode(t, msg("gw-b", 100, 12)), local) // other address
		require.NoError(t, err)
		require.NoError(t, q.Close())
		wrongSenders++
	} else {
		t.Logf("no 127.0.0.2 here, source address check not exercised: %v", err)
	}
	// Ordering across two sockets is not guaranteed: wait for every drop.
	eventually(t, func() bool { return c.Counters().WrongSender == wrongSenders }, "wrong senders counted")
	// The next valid message is the next one out of Received.
	p.send(local, mustEncode(t, msg("gw-b", 100, 6)))
	assert.Equal(t, msg("gw-b", 100, 6), receive(t, c))
	// A restart (higher epoch) is accepted from seq 1 and answered.
	p.send(local, mustEncode(t, msg("gw-b", 101, 1)))
	assert.Equal(t, msg("gw-b", 101, 1), receive(t, c))
	assert.Equal(t, uint64(3), p.read().Seq)

	assert.Empty(t, c.Received())
	eventually(t, func() bool { return c.Counters().Sent == 3 }, "three datagrams sent")
	assert.Equal(t, Counters{Sent: 3, Received: 3, BadAuth: 1, Replayed: 3, Malformed: 3, WrongSender: wrongSenders}, c.Counters())
	last, _, ok := c.Last()
	require.True(t, ok)
	assert.Equal(t, msg("gw-b", 101, 1), last)
}

// TestAnyPartnerName: with Partner "" any name but our own is accepted.
func TestAnyPartnerName(t *testing.T) {
	p := newPeer(t, loopback)
	local := freePort(t)
	cfg := testConfig(local, p.addr)
	cfg.Partner = ""
	c := mustNew(t, cfg)
	c.Send(State{})
	start(t, c)
	p.read() // bound
	p.send(local, mustEncode(t, Message{State: State{Instance: "gw-a"}, Epoch: 1, Seq: 1}))
	p.send(local, mustEncode(t, Message{State: State{Instance: "whoever"}, Epoch: 1, Seq: 2}))
	assert.Equal(t, "whoever", receive(t, c).Instance)
	assert.Equal(t, uint64(1), c.Counters().WrongSender)
}

// TestReceivedKeepsNewest: with nobody reading, the oldest pending
// messages give way and the newest 16 remain, in order.
func TestReceivedKeepsNewest(t *testing.T) {
	p := newPeer(t, loopback)
	local := freePort(t)
	c := mustNew(t, testConfig(local, p.addr))
	c.Send(State{})
	start(t, c)
	p.read()
	for seq := uint64(1); seq <= 20; seq++ {
		p.send(local, mustEncode(t, Message{State: State{Instance: "gw-b"}, Epoch: 1, Seq: seq}))
	}
	eventually(t, func() bool { return c.Counters().Received == 20 }, "20 accepted")
	require.Len(t, c.Received(), receivedCap)
	for seq := uint64(5); seq <= 20; seq++ {
		assert.Equal(t, seq, receive(t, c).Seq)
	}
}

// TestRefresh: with no change the state goes out every Refresh.
func TestRefresh(t *testing.T) {
	p := newPeer(t, loopback)
	cfg := testConfig(freePort(t), p.addr)
	cfg.Refresh = 5 * time.Millisecond
	c := mustNew(t, cfg)
	c.Send(State{Devices: []string{"dc1"}, ChecksOK: true})
	start(t, c)
	for seq := uint64(1); seq <= 5; seq++ {
		m := p.read()
		assert.Equal(t, seq, m.Seq)
		assert.Equal(t, State{Instance: "gw-a", Devices: []string{"dc1"}, ChecksOK: true}, m.State)
	}
	eventually(t, func() bool { return c.Counters().Sent >= 5 }, "Sent counts refreshes")
}

// TestRepeat: a change goes out at once and again at the Repeat offsets
// (Refresh is an hour, so every copy here is a repeat). A late timer may
// roll repeats up (the schedule test pins the exact times), so the test
// asks for at least one repeat and at most one per offset.
func TestRepeat(t *testing.T) {
	p := newPeer(t, loopback)
	cfg := testConfig(freePort(t), p.addr)
	cfg.Repeat = []time.Duration{time.Millisecond, 3 * time.Millisecond}
	c := mustNew(t, cfg)
	c.Send(State{Devices: []string{"dc1"}})
	start(t, c)
	m := p.read()
	require.Equal(t, uint64(1), m.Seq)
	require.False(t, m.ChecksOK)
	m = p.read()
	require.Equal(t, uint64(2), m.Seq, "at least one repeat")
	require.False(t, m.ChecksOK)

	c.Send(State{Devices: []string{"dc1"}, ChecksOK: true})
	seq, oldCopies := m.Seq, 2
	for m = p.read(); !m.ChecksOK; m = p.read() {
		seq++
		require.Equal(t, seq, m.Seq)
		oldCopies++
	}
	assert.LessOrEqual(t, oldCopies, 3, "one datagram and two repeats at most")
	assert.Equal(t, seq+1, m.Seq, "Seq grows by one per datagram")
	m = p.read()
	assert.Equal(t, seq+2, m.Seq)
	assert.True(t, m.ChecksOK, "the new state is repeated")
}

// TestSendNormalizes: Send fills Instance, sorts and dedupes the lists, and
// only a real change asks for a transmission.
func TestSendNormalizes(t *testing.T) {
	c := mustNew(t, testConfig(netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")))
	devices := []string{"b", "a", "b"}
	c.Send(State{Instance: "ignored", Devices: devices, Carrying: []string{"b", "b"}})
	assert.Equal(t, State{Instance: "gw-a", Devices: []string{"a", "b"}, Carrying: []string{"b"}}, c.state)
	assert.Equal(t, []string{"b", "a", "b"}, devices, "the caller's slice is not touched")
	assert.Len(t, c.changed, 1)
	<-c.changed
	c.Send(State{Devices: []string{"a", "b"}, Carrying: []string{"b"}})
	assert.Empty(t, c.changed, "same state: nothing to send")
	c.Send(State{Devices: []string{"a", "b"}, Carrying: []string{"b"}, Drops: 1})
	assert.Len(t, c.changed, 1, "Drops is part of the state")
	<-c.changed
	c.Send(State{Devices: []string{"a", "b"}, Carrying: []string{"b"}, Drops: 1, Draining: true})
	assert.Len(t, c.changed, 1)
}

// TestInvalidState: a state that cannot be encoded is not sent, counts
// SendErrors, and uses no Seq.
func TestInvalidState(t *testing.T) {
	p := newPeer(t, loopback)
	c := mustNew(t, testConfig(freePort(t), p.addr))
	c.Send(State{Devices: []string{"a"}, Carrying: []string{"b"}})
	start(t, c)
	eventually(t, func() bool { return c.Counters().SendErrors == 1 }, "encode failure counted")
	c.Send(State{Devices: []string{"a"}, Carrying: []string{"a"}})
	m := p.read()
	assert.Equal(t, uint64(1), m.Seq)
	assert.Equal(t, []string{"a"}, m.Carrying)
}

func TestRunErrors(t *testing.T) {
	taken, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	require.NoError(t, err)
	defer taken.Close()
	addr := taken.LocalAddr().(*net.UDPAddr).AddrPort()
	c := mustNew(t, testConfig(addr, netip.MustParseAddrPort("127.0.0.1:9")))
	err = c.Run(context.Background())
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "pair: listen "+addr.String()+": "), err.Error())
	assert.Contains(t, err.Error(), "address already in use")
	assert.NotContains(t, err.Error(), "listen udp")
	assert.ErrorIs(t, err, syscall.EADDRINUSE)

	// Run twice at once: the second refuses.
	p := newPeer(t, loopback)
	c = mustNew(t, testConfig(freePort(t), p.addr))
	c.Send(State{})
	start(t, c)
	p.read() // running
	err = c.Run(context.Background())
	require.EqualError(t, err, "pair: channel already running")
}

// TestSendError: a write the kernel refuses (Linux: from a loopback source
// to a non-loopback address, EINVAL; or ENETUNREACH without a route) counts
// a SendError, not a Sent, and the channel goes on.
func TestSendError(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux refusing loopback-sourced datagrams to other addresses")
	}
	c := mustNew(t, testConfig(freePort(t), netip.MustParseAddrPort("198.51.100.1:9")))
	c.Send(State{})
	start(t, c)
	eventually(t, func() bool { return c.Counters().SendErrors >= 1 }, "write failure counted")
	assert.Zero(t, c.Counters().Sent)
}

// TestEpochWentBack: a lower epoch is refused while the current one is
// heard, and taken as the partner's restart (its clock set back) once the
// current one has been silent for staleEpochAfter refreshes.
func TestEpochWentBack(t *testing.T) {
	p := newPeer(t, loopback)
	local := freePort(t)
	cfg := testConfig(local, p.addr)
	cfg.Refresh = 20 * time.Millisecond
	c := mustNew(t, cfg)
	c.Send(State{Devices: []string{"dc1"}})
	start(t, c)
	p.read() // bound: its first datagram is out
	msg := func(epoch, seq uint64) Message {
		return Message{State: State{Instance: "gw-b", Devices: []string{"dc1"}, ChecksOK: true}, Epoch: epoch, Seq: seq}
	}
	p.send(local, mustEncode(t, msg(100, 1)))
	assert.Equal(t, msg(100, 1), receive(t, c))
	_, heard, ok := c.Last()
	require.True(t, ok)
	// Sent again and again with a lower epoch: refused while epoch 100 is
	// fresh, accepted once it has been silent for three refreshes.
	seq := uint64(0)
	var got Message
	eventually(t, func() bool {
		seq++
		p.send(local, mustEncode(t, msg(50, seq)))
		select {
		case got = <-c.Received():
			return true
		case <-time.After(5 * time.Millisecond):
			return false
		}
	}, "a lower epoch is never taken as a restart")
	assert.Equal(t, uint64(50), got.Epoch)
	_, at, _ := c.Last()
	assert.GreaterOrEqual(t, at.Sub(heard), staleEpochAfter*cfg.Refresh, "not before the old epoch went silent")
	// And the window now follows the new epoch: an old one is a replay again.
	replayed := c.Counters().Replayed
	p.send(local, mustEncode(t, msg(50, 1)))
	eventually(t, func() bool { return c.Counters().Replayed > replayed }, "an old sequence of the new epoch was not refused")
}
