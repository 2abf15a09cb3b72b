package bfd

import (
	"container/heap"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// UDP ports of RFC 5881 and RFC 5883.
const (
	SingleHopPort = 3784
	MultihopPort  = 4784
)

// maxQueuedEvents bounds the events waiting for a reader of Events; more
// are dropped and counted (ManagerCounters.EventsDropped).
const maxQueuedEvents = 4096

// Options configures a Manager.
type Options struct {
	// Logger receives state changes (Info) and socket errors; nil discards.
	Logger *slog.Logger
	// Rand drives jitter, discriminators and initial sequence numbers; nil
	// seeds a generator from crypto/rand.
	Rand rand.Source
}

// ManagerCounters count packets the Manager dropped before any session saw
// them, and other adapter-level events.
type ManagerCounters struct {
	DecodeErrors  uint64 // invalid control packets (Decode failed)
	TTLDrops      uint64 // single-hop TTL not 255, or multihop TTL below MinTTL
	NoSession     uint64 // no session matched
	SessionDrops  uint64 // discarded by the session (wrong discriminator, authentication)
	SendErrors    uint64
	ReadErrors    uint64
	EventsDropped uint64
}

// Manager runs BFD sessions over UDP sockets: the adapter around Session.
// Sessions may be added before or while Run runs. Sockets are created in the
// goroutine that calls Run (the listeners, when it starts) and in the one
// calling Add (the session's sending socket), so they belong to that
// goroutine's network namespace. Run closes every socket when it returns;
// a Manager that is never run keeps its sessions' sockets open.
type Manager struct {
	log   *slog.Logger
	ports ports

	mu       sync.Mutex
	rnd      *rand.Rand
	sessions map[Key]*msess
	byDiscr  map[uint32]*msess
	byPeer   map[netip.Addr][]*msess
	timers   timerHeap
	wakeAt   time.Time // when the timer loop sleeps until
	running  bool
	done     bool
	queue    []StateChange
	counters ManagerCounters
	wake     chan struct{} // timer loop: re-evaluate
	evWake   chan struct{} // event loop: queue not empty
	events   chan StateChange
	// inflight counts datagrams read but not yet handed to their session.
	inflight atomic.Int32
}

// ports are the UDP ports used; tests change them to run two managers on
// one host.
type ports struct {
	listenSingle, listenMulti uint16
	peerSingle, peerMulti     uint16
}

var standardPorts = ports{SingleHopPort, MultihopPort, SingleHopPort, MultihopPort}

// msess is a session with its adapter state.
type msess struct {
	s       *Session
	key     Key
	conn    *net.UDPConn
	dst     netip.AddrPort
	ifindex int
	minTTL  uint8
	next    time.Time
	heapIdx int // -1 when not in the timer heap
}

// NewManager returns a Manager with no sessions.
func NewManager(opts Options) *Manager {
	return newManager(opts, standardPorts)
}

func newManager(opts Options, p ports) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src := opts.Rand
	if src == nil {
		var seed [32]byte
		_, _ = crand.Read(seed[:]) // never fails on Linux
		src = rand.NewChaCha8(seed)
	}
	return &Manager{
		log:      log,
		ports:    p,
		rnd:      rand.New(src),
		sessions: map[Key]*msess{},
		byDiscr:  map[uint32]*msess{},
		byPeer:   map[netip.Addr][]*msess{},
		wake:     make(chan struct{}, 1),
		evWake:   make(chan struct{}, 1),
		events:   make(chan StateChange, 64),
	}
}

// Events delivers every state change, in order. The channel is closed when
// Run returns. Changes wait in a bounded queue for a slow reader; beyond
// it they are dropped and counted.
func (m *Manager) Events() <-chan StateChange { return m.events }

// ErrStopped is returned by calls on a Manager whose Run has returned.
var ErrStopped = errors.New("bfd: manager stopped")

// Add creates a session and starts sending for it (at once if Run is
// running, else when it starts). ctx bounds the socket setup.
func (m *Manager) Add(ctx context.Context, cfg SessionConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	key := cfg.Key()
	m.mu.Lock()
	err = m.checkNew(key)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	conn, ifindex, err := openSender(ctx, &cfg)
	if err != nil {
		return fmt.Errorf("bfd session %v: %w", key, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkNew(key); err != nil {
		_ = conn.Close()
		return err
	}
	discr := m.rnd.Uint32()
	for discr == 0 || m.byDiscr[discr] != nil {
		discr = m.rnd.Uint32()
	}
	s, err := NewSession(cfg, discr, rand.NewPCG(m.rnd.Uint64(), m.rnd.Uint64()), time.Now())
	if err != nil {
		_ = conn.Close()
		return err
	}
	port := m.ports.peerSingle
	if cfg.Multihop {
		port = m.ports.peerMulti
	}
	peer := cfg.Peer
	if peer.Is6() && peer.IsLinkLocalUnicast() && cfg.Interface != "" {
		peer = peer.WithZone(cfg.Interface)
	}
	ms := &msess{s: s, key: key, conn: conn, dst: netip.AddrPortFrom(peer, port),
		ifindex: ifindex, minTTL: cfg.MinTTL, heapIdx: -1}
	m.sessions[key] = ms
	m.byDiscr[discr] = ms
	m.byPeer[key.Peer] = append(m.byPeer[key.Peer], ms)
	m.reschedule(ms)
	m.log.Info("bfd session added", "peer", key.String(), "discriminator", discr)
	return nil
}

// lookup finds a live session.
func (m *Manager) lookup(key Key) (*msess, error) {
	if m.done {
		return nil, ErrStopped
	}
	ms := m.sessions[key]
	if ms == nil {
		return nil, fmt.Errorf("bfd session %v not found", key)
	}
	return ms, nil
}

func (m *Manager) checkNew(key Key) error {
	if m.done {
		return ErrStopped
	}
	if m.sessions[key] != nil {
		return fmt.Errorf("bfd session %v already exists", key)
	}
	return nil
}

// Remove sends the peer one AdminDown packet (so that it does not take
// the removal for a failure, RFC 5880 6.8.16) and deletes the session.
func (m *Manager) Remove(key Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := m.sessions[key]
	if ms == nil {
		return fmt.Errorf("bfd session %v not found", key)
	}
	if !m.done {
		m.apply(ms, ms.s.SetAdminDown(time.Now(), true))
	}
	delete(m.sessions, key)
	delete(m.byDiscr, ms.s.LocalDiscriminator())
	m.byPeer[key.Peer] = slices.DeleteFunc(m.byPeer[key.Peer], func(x *msess) bool { return x == ms })
	if len(m.byPeer[key.Peer]) == 0 {
		delete(m.byPeer, key.Peer)
	}
	if ms.heapIdx >= 0 {
		heap.Remove(&m.timers, ms.heapIdx)
	}
	if m.done {
		return nil // Run closed the socket
	}
	return ms.conn.Close()
}

// Update changes a session's timers, multiplier, authentication or MinTTL
// (the Key must be that of an existing session). Timer changes on an Up
// session go through a Poll Sequence without taking it down.
func (m *Manager) Update(cfg SessionConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ms, err := m.lookup(cfg.Key())
	if err != nil {
		return err
	}
	out, err := ms.s.Update(time.Now(), cfg)
	if err != nil {
		return err
	}
	ms.minTTL = cfg.MinTTL
	m.apply(ms, out)
	m.reschedule(ms)
	return nil
}

// SetAdminDown takes a session administratively down (diagnostic 7) or
// back to Down.
func (m *Manager) SetAdminDown(key Key, down bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms, err := m.lookup(key)
	if err != nil {
		return err
	}
	m.apply(ms, ms.s.SetAdminDown(time.Now(), down))
	m.reschedule(ms)
	return nil
}

// Status returns a snapshot of every session, sorted by key.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	out := make([]Status, 0, len(m.sessions))
	for _, ms := range m.sessions {
		out = append(out, ms.s.Status())
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return compareKeys(a.Key, b.Key) })
	return out
}

// SessionStatus returns the status of one session.
func (m *Manager) SessionStatus(key Key) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := m.sessions[key]
	if ms == nil {
		return Status{}, false
	}
	return ms.s.Status(), true
}

// Counters returns the Manager's own counters.
func (m *Manager) Counters() ManagerCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters
}

func compareKeys(a, b Key) int {
	if c := a.Peer.Compare(b.Peer); c != 0 {
		return c
	}
	if c := a.Local.Compare(b.Local); c != 0 {
		return c
	}
	if a.Interface != b.Interface {
		if a.Interface < b.Interface {
			return -1
		}
		return 1
	}
	switch {
	case a.Multihop == b.Multihop:
		return 0
	case b.Multihop:
		return -1
	}
	return 1
}

// Run opens the listening sockets (UDP 3784 and 4784, IPv4 and, where the
// host has it, IPv6), then receives packets and runs the session timers
// until ctx is done. It returns nil after ctx is done and every goroutine
// it started has stopped, having closed all sockets; the Manager cannot be
// reused. It returns an error if the sockets cannot be opened.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running || m.done {
		m.mu.Unlock()
		return errors.New("bfd: Run called twice")
	}
	m.running = true
	m.mu.Unlock()

	ls, err := m.listen(ctx)
	if err != nil {
		m.shutdown(nil)
		close(m.events)
		return err
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() { m.readLoop(l) })
	}
	wg.Go(func() { m.eventLoop(ctx) })
	m.timerLoop(ctx, ls)
	m.shutdown(ls) // closing the listeners ends the read loops
	wg.Wait()
	close(m.events)
	return nil
}

// shutdown marks the manager done and closes every socket.
func (m *Manager) shutdown(ls []*listener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done = true
	for _, l := range ls {
		_ = l.conn.Close()
	}
	for _, ms := range m.sessions {
		_ = ms.conn.Close()
	}
}

func (m *Manager) listen(ctx context.Context) ([]*listener, error) {
	var ls []*listener
	for _, spec := range []struct {
		v6       bool
		multihop bool
		port     uint16
	}{{false, false, m.ports.listenSingle}, {false, true, m.ports.listenMulti},
		{true, false, m.ports.listenSingle}, {true, true, m.ports.listenMulti}} {
		l, err := openListener(ctx, spec.v6, spec.multihop, spec.port)
		if err != nil {
			if spec.v6 && errors.Is(err, errNoIPv6) {
				m.log.Warn("bfd: no IPv6 on this host; IPv6 sessions will not receive", "error", err)
				continue
			}
			for _, l := range ls {
				_ = l.conn.Close()
			}
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// readLoop receives packets on one listener until it is closed.
func (m *Manager) readLoop(l *listener) {
	buf := make([]byte, 512)
	oob := make([]byte, 256)
	for {
		n, oobn, _, from, err := l.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.mu.Lock()
			m.counters.ReadErrors++
			m.mu.Unlock()
			m.log.Debug("bfd: read", "error", err)
			continue
		}
		m.inflight.Add(1)
		ctl := parseControl(oob[:oobn])
		m.input(arrival(time.Now(), ctl.stamp), l.multihop, buf[:n], from.Addr().Unmap().WithZone(""), ctl)
		m.inflight.Add(-1)
	}
}

// arrival is when a datagram reached the host: now, moved back by the
// delay since the kernel's receive timestamp (kept on the monotonic
// clock). The session then judges the peer by when its packets arrived,
// not by when this process got to read them.
func arrival(now time.Time, stamp int64) time.Time {
	if stamp == 0 {
		return now
	}
	if d := time.Duration(now.UnixNano() - stamp); d > 0 && d < time.Second {
		return now.Add(-d)
	}
	return now
}

// input hands one received datagram to its session.
func (m *Manager) input(now time.Time, multihop bool, b []byte, src netip.Addr, ctl rxControl) {
	var pkt Packet
	err := pkt.Unmarshal(b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.counters.DecodeErrors++
		return
	}
	// RFC 5881 section 5: single-hop packets must arrive with TTL 255.
	if !multihop && ctl.ttl != 255 {
		m.counters.TTLDrops++
		return
	}
	ms := m.demux(&pkt, src, multihop, ctl)
	if ms == nil {
		m.counters.NoSession++
		return
	}
	// RFC 5883 section 5: a configurable minimum TTL for multihop.
	if multihop && ctl.ttl < int(ms.minTTL) {
		m.counters.TTLDrops++
		return
	}
	out, err := ms.s.Receive(now, &pkt)
	if err != nil {
		m.counters.SessionDrops++
		m.log.Debug("bfd: packet discarded", "peer", ms.key.String(), "error", err)
	}
	m.apply(ms, out)
	m.reschedule(ms)
}

// demux finds the session of a packet: by Your Discriminator when set,
// else by source address, hop mode, interface and destination address
// (RFC 5880 6.8.6, RFC 5881 section 3, RFC 5883 section 3).
func (m *Manager) demux(p *Packet, src netip.Addr, multihop bool, ctl rxControl) *msess {
	match := func(ms *msess) bool {
		return ms.key.Peer == src && ms.key.Multihop == multihop &&
			(ms.ifindex == 0 || ms.ifindex == ctl.ifindex) &&
			(!ms.key.Local.IsValid() || !ctl.dst.IsValid() || ms.key.Local == ctl.dst)
	}
	if p.YourDiscriminator != 0 {
		if ms := m.byDiscr[p.YourDiscriminator]; ms != nil && match(ms) {
			return ms
		}
		return nil
	}
	for _, ms := range m.byPeer[src] {
		if match(ms) {
			return ms
		}
	}
	return nil
}

// apply carries out a session's output. Called with m.mu held, so the
// session's buffers stay valid.
func (m *Manager) apply(ms *msess, out Output) {
	if out.Packet != nil {
		if _, err := ms.conn.WriteToUDPAddrPort(out.Wire, ms.dst); err != nil {
			m.counters.SendErrors++
			m.log.Debug("bfd: send", "peer", ms.key.String(), "error", err)
		}
	}
	if c := out.Change; c != nil {
		m.log.Info("bfd session state", "peer", c.Key.String(), "old", c.Old.String(), "new", c.New.String(),
			"diag", c.Diag.String(), "remote_state", c.RemoteState.String(), "remote_diag", c.RemoteDiag.String())
		if len(m.queue) >= maxQueuedEvents {
			m.counters.EventsDropped++
		} else {
			m.queue = append(m.queue, *c)
			select {
			case m.evWake <- struct{}{}:
			default:
			}
		}
	}
}

// eventLoop moves queued state changes to the Events channel until ctx is
// done.
func (m *Manager) eventLoop(ctx context.Context) {
	for {
		m.mu.Lock()
		q := m.queue
		m.queue = nil
		m.mu.Unlock()
		for _, c := range q {
			select {
			case m.events <- c:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-m.evWake:
		}
	}
}
