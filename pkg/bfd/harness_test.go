package bfd

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// t0 is the fake clock's origin.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// latency is the one-way delay of the fake wire.
const latency = time.Millisecond

// side is one end of a back-to-back pair: a Session and what it did.
type side struct {
	name      string
	s         *Session
	sent      []sentPacket  // every packet it sent
	changes   []StateChange // every state change
	rxErrs    []error       // every packet it discarded
	drop      bool          // drop the packets it sends
	dropFinal bool          // drop the packets it sends with Final set
	tamper    func([]byte)  // modify the packets it sends, if set
}

type sentPacket struct {
	at   time.Time
	pkt  Packet
	wire []byte
}

type delivery struct {
	at   time.Time
	to   *side
	wire []byte
}

// pair wires two sessions back to back with a fake clock and a wire of
// fixed latency, and runs them event by event: the earliest of a session
// timer (Next) and a packet delivery goes first.
type pair struct {
	t       testing.TB
	now     time.Time
	a, b    *side
	wire    []delivery
	maxStep int
}

func cfgA() SessionConfig {
	return SessionConfig{Peer: netip.MustParseAddr("192.0.2.2"), Local: netip.MustParseAddr("192.0.2.1"),
		DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}
}

func cfgB() SessionConfig {
	return SessionConfig{Peer: netip.MustParseAddr("192.0.2.1"), Local: netip.MustParseAddr("192.0.2.2"),
		DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}
}

// newPair creates both sessions at t0 (b after bDelay).
func newPair(t testing.TB, ca, cb SessionConfig) *pair {
	t.Helper()
	p := &pair{t: t, now: t0, maxStep: 1_000_000}
	sa, err := NewSession(ca, 0x1111, rand.NewPCG(1, 2), t0)
	require.NoError(t, err)
	sb, err := NewSession(cb, 0x2222, rand.NewPCG(3, 4), t0)
	require.NoError(t, err)
	p.a = &side{name: "a", s: sa}
	p.b = &side{name: "b", s: sb}
	return p
}

func (p *pair) other(x *side) *side {
	if x == p.a {
		return p.b
	}
	return p.a
}

// handle records an output of x and puts its packet on the wire.
func (p *pair) handle(x *side, out Output) {
	if out.Change != nil {
		x.changes = append(x.changes, *out.Change)
	}
	if out.Packet == nil {
		return
	}
	w := slices.Clone(out.Wire)
	x.sent = append(x.sent, sentPacket{at: p.now, pkt: *out.Packet, wire: w})
	if x.drop || (x.dropFinal && out.Packet.Final) {
		return
	}
	if x.tamper != nil {
		x.tamper(w)
	}
	p.wire = append(p.wire, delivery{at: p.now.Add(latency), to: p.other(x), wire: w})
}

// deliver hands a wire packet to x as the adapter would: decode, then
// Receive.
func (p *pair) deliver(x *side, w []byte) {
	pkt, err := Decode(w)
	if err != nil {
		x.rxErrs = append(x.rxErrs, err)
		return
	}
	out, err := x.s.Receive(p.now, &pkt)
	if err != nil {
		x.rxErrs = append(x.rxErrs, err)
	}
	p.handle(x, out)
}

// step runs the earliest pending event if it is not after until, and
// reports whether it ran one.
func (p *pair) step(until time.Time) bool {
	next, kind := time.Time{}, ""
	consider := func(at time.Time, k string) {
		if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next, kind = at, k
		}
	}
	if p.a.s != nil {
		consider(p.a.s.Next(), "a")
	}
	if p.b.s != nil {
		consider(p.b.s.Next(), "b")
	}
	for _, d := range p.wire {
		consider(d.at, "wire")
	}
	if next.IsZero() || next.After(until) {
		return false
	}
	if next.After(p.now) {
		p.now = next
	}
	switch kind {
	case "a":
		p.handle(p.a, p.a.s.Tick(p.now))
	case "b":
		p.handle(p.b, p.b.s.Tick(p.now))
	case "wire":
		i := slices.IndexFunc(p.wire, func(d delivery) bool { return d.at.Equal(next) })
		d := p.wire[i]
		p.wire = slices.Delete(p.wire, i, i+1)
		p.deliver(d.to, d.wire)
	}
	return true
}

// runFor advances the clock by d, running every event on the way.
func (p *pair) runFor(d time.Duration) {
	p.runUntil(p.now.Add(d), func() bool { return false })
}

// runUntil runs events until cond holds (checked after each event) or the
// clock would pass until; it reports whether cond held.
func (p *pair) runUntil(until time.Time, cond func() bool) bool {
	for i := 0; i < p.maxStep; i++ {
		if cond() {
			return true
		}
		if !p.step(until) {
			if until.After(p.now) {
				p.now = until
			}
			return cond()
		}
	}
	p.t.Fatalf("no quiescence after %d steps", p.maxStep)
	return false
}

func (p *pair) bothUp() bool {
	return p.a.s.State() == StateUp && p.b.s.State() == StateUp
}

// bringUp runs until both sides are Up and their polls are over.
func (p *pair) bringUp() {
	p.t.Helper()
	ok := p.runUntil(p.now.Add(10*time.Second), func() bool {
		return p.bothUp() && !p.a.s.Status().PollInProgress && !p.b.s.Status().PollInProgress
	})
	require.True(p.t, ok, "sessions did not come Up: a %v, b %v", p.a.s.State(), p.b.s.State())
}

// sentSince returns x's packets sent at or after from.
func (x *side) sentSince(from time.Time) []sentPacket {
	i := slices.IndexFunc(x.sent, func(s sentPacket) bool { return !s.at.Before(from) })
	if i < 0 {
		return nil
	}
	return x.sent[i:]
}

// changesSince returns x's state changes at or after from.
func (x *side) changesSince(from time.Time) []StateChange {
	var out []StateChange
	for _, c := range x.changes {
		if !c.At.Before(from) {
			out = append(out, c)
		}
	}
	return out
}

// gaps returns the intervals between consecutive packets of pkts.
func gaps(pkts []sentPacket) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(pkts); i++ {
		out = append(out, pkts[i].at.Sub(pkts[i-1].at))
	}
	return out
}
