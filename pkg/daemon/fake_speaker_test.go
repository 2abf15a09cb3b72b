package daemon

// Fakes of the loop's adapters (the BGP speaker, the route installer and
// the clock) for loop tests that drive the daemon with events and assert on
// the calls it makes. The fakes enforce their interfaces' contracts: a call
// that a real adapter could not accept (a peer it does not hold, a session
// enabled that was never shut down, the same prefix twice...) is recorded
// as a violation and fails the test at its end.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// callLog is the ordered record of every call the loop made to the fakes,
// shared by the speaker and the route installer so that their relative
// order shows, and the contract violations they saw. Every change
// broadcasts, for waitFor.
type callLog struct {
	mu         sync.Mutex
	lines      []string
	violations []string
	notify     chan struct{} // closed and replaced on every change
}

func newCallLog() *callLog { return &callLog{notify: make(chan struct{})} }

// changed wakes the waiters; caller holds l.mu.
func (l *callLog) changed() {
	close(l.notify)
	l.notify = make(chan struct{})
}

// add appends lines; caller holds l.mu.
func (l *callLog) add(lines ...string) {
	l.lines = append(l.lines, lines...)
}

// violate records a contract violation; caller holds l.mu.
func (l *callLog) violate(format string, args ...any) {
	l.violations = append(l.violations, fmt.Sprintf(format, args...))
}

// Lines returns the log from line from on.
func (l *callLog) Lines(from int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from > len(l.lines) {
		return nil
	}
	return slices.Clone(l.lines[from:])
}

// Len is the number of lines logged so far: a mark for Lines.
func (l *callLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// Violations returns the contract violations so far.
func (l *callLog) Violations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.violations)
}

// waitFor waits until cond (called with l.mu held, so it may read the
// fakes' state under their shared lock) holds, or fails the test after
// timeout. It wakes on every change of the fakes' state: no polling.
func (l *callLog) waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ok, ch := cond(), l.notify
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; calls:\n%s", timeout, what, strings.Join(l.Lines(0), "\n"))
		}
	}
}

// sessionState is what the test says a session is.
type sessionState struct {
	state    bgp.SessionState
	received []model.Learned
}

// fakeSpeaker is a bgp.Speaker that holds the peers, shutdowns and
// announcements the loop gave it, reports the session states the test
// sets, and records every call in the call log. It shares the log's lock.
type fakeSpeaker struct {
	log *callLog

	// All below guarded by log.mu.
	peers     map[string]bgp.PeerConfig // the last SetPeers
	order     []string                  // peer names as given to SetPeers
	held      map[string]string         // the last SetHeldDown (name -> message)
	down      map[string]bool           // held down now
	announced map[string]map[netip.Prefix]bgp.Announcement
	states    map[string]sessionState
	never     []filter.Rule
	// check validates one announcement to one peer (nil: anything goes).
	check func(peer string, kind bgp.PeerKind, a bgp.Announcement) error
	// Counters for the tests and the sync helpers.
	setPeers, setAnnouncements, sessionsReads int
	resets                                    map[string]int
	// pendingObserve: Changed was signalled and Sessions not called since.
	pendingObserve bool
	// block, when set, makes the next SetAnnouncements signal entered and
	// wait until block is closed (or its context ends).
	block, entered chan struct{}
	sessionsErr    error

	changed chan struct{}
}

var _ bgp.Speaker = (*fakeSpeaker)(nil)

func newFakeSpeaker(log *callLog) *fakeSpeaker {
	return &fakeSpeaker{log: log, peers: map[string]bgp.PeerConfig{}, held: map[string]string{}, down: map[string]bool{},
		announced: map[string]map[netip.Prefix]bgp.Announcement{}, states: map[string]sessionState{},
		resets: map[string]int{}, changed: make(chan struct{}, 1)}
}

// signal signals Changed (level-triggered, capacity 1); caller holds log.mu.
func (s *fakeSpeaker) signal() {
	s.pendingObserve = true
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// known reports whether the last SetPeers holds peer, recording a
// violation when not; caller holds log.mu.
func (s *fakeSpeaker) known(call, peer string) bool {
	if _, ok := s.peers[peer]; !ok {
		s.log.violate("%s %s: no such peer (peers: %v)", call, peer, s.order)
		return false
	}
	return true
}

func (s *fakeSpeaker) SetPeers(_ context.Context, peers []bgp.PeerConfig) error {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	defer s.log.changed()
	s.setPeers++
	want := map[string]bgp.PeerConfig{}
	var order, names []string
	for _, p := range peers {
		if _, dup := want[p.Name]; dup {
			s.log.violate("SetPeers: peer %s twice", p.Name)
		}
		want[p.Name] = p
		order = append(order, p.Name)
	}
	changed := false
	for _, name := range slices.Sorted(maps.Keys(s.peers)) {
		cur := s.peers[name]
		w, stays := want[name]
		switch {
		case !stays:
			// Removed: forgotten with what it was sent and its state.
			s.log.add("remove peer " + name)
			delete(s.announced, name)
			delete(s.states, name)
			delete(s.down, name)
			delete(s.held, name)
			delete(s.resets, name)
			changed = true
		case !w.Equal(cur):
			// Recreated: its session starts over, down if it is held
			// (what it is sent is kept, as the real speaker keeps its
			// RIB entries).
			s.log.add("recreate peer " + name)
			delete(s.states, name)
			changed = true
		}
	}
	for _, name := range order {
		if _, ok := s.peers[name]; !ok {
			names = append(names, name)
			changed = true
		}
	}
	for _, name := range names {
		s.log.add("add peer " + name)
		if _, held := s.held[name]; held {
			s.down[name] = true // added down
		}
	}
	s.peers, s.order = want, order
	if changed {
		s.signal()
	}
	return nil
}

func (s *fakeSpeaker) SetNever(_ context.Context, never []filter.Rule) error {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	s.never = slices.Clone(never)
	return nil
}

// attrString renders an announcement's attributes for the call log.
func attrString(a bgp.Announcement) string {
	var parts []string
	if a.Prepend > 0 {
		parts = append(parts, fmt.Sprintf("prepend %d", a.Prepend))
	}
	if a.HasMED {
		parts = append(parts, fmt.Sprintf("med %d", a.MED))
	}
	for _, c := range a.Communities {
		if c == bgp.CommunityGracefulShutdown {
			parts = append(parts, "gshut")
		} else {
			parts = append(parts, fmt.Sprintf("community %d:%d", c>>16, c&0xffff))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, ", ") + "]"
}

func (s *fakeSpeaker) SetAnnouncements(ctx context.Context, desired map[string][]bgp.Announcement) error {
	s.log.mu.Lock()
	block, entered := s.block, s.entered
	s.block, s.entered = nil, nil
	s.log.mu.Unlock()
	if block != nil {
		close(entered)
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	defer s.log.changed()
	s.setAnnouncements++
	// One path per prefix: the real speaker refuses the same prefix with
	// other attributes for two peers.
	paths := map[netip.Prefix]struct {
		peer string
		a    bgp.Announcement
	}{}
	next := map[string]map[netip.Prefix]bgp.Announcement{}
	for _, peer := range slices.Sorted(maps.Keys(desired)) {
		if !s.known("SetAnnouncements", peer) {
			continue
		}
		kind := s.peers[peer].Kind
		m := map[netip.Prefix]bgp.Announcement{}
		for _, a := range desired[peer] {
			if _, dup := m[a.Prefix]; dup {
				s.log.violate("SetAnnouncements: %s announced twice to %s", a.Prefix, peer)
			}
			if !a.Prefix.IsValid() || a.Prefix != a.Prefix.Masked() {
				s.log.violate("SetAnnouncements: invalid prefix %s to %s", a.Prefix, peer)
			}
			if !slices.IsSorted(a.Communities) {
				s.log.violate("SetAnnouncements: %s to %s: communities not sorted: %v", a.Prefix, peer, a.Communities)
			}
			if s.check != nil {
				if err := s.check(peer, kind, a); err != nil {
					s.log.violate("SetAnnouncements: %s to %s %s: %v", a.Prefix, kind, peer, err)
				}
			}
			if p, ok := paths[a.Prefix]; ok && !p.a.Equal(a) {
				s.log.violate("SetAnnouncements: %s with other attributes to %s (%s) and %s (%s)",
					a.Prefix, p.peer, attrString(p.a), peer, attrString(a))
			}
			paths[a.Prefix] = struct {
				peer string
				a    bgp.Announcement
			}{peer, a}
			m[a.Prefix] = a
		}
		next[peer] = m
	}
	// The call log gets the difference with the previous call, per peer.
	for _, peer := range slices.Sorted(maps.Keys(s.peers)) {
		was, now := s.announced[peer], next[peer]
		for _, p := range slices.SortedFunc(maps.Keys(was), comparePrefix) {
			if _, ok := now[p]; !ok {
				s.log.add(fmt.Sprintf("withdraw %s %s", peer, p))
			}
		}
		for _, p := range slices.SortedFunc(maps.Keys(now), comparePrefix) {
			a := now[p]
			old, ok := was[p]
			switch {
			case !ok:
				s.log.add(fmt.Sprintf("announce %s %s%s", peer, p, attrString(a)))
			case !old.Equal(a):
				s.log.add(fmt.Sprintf("update %s %s%s", peer, p, attrString(a)))
			}
		}
		if len(now) == 0 {
			delete(s.announced, peer)
		} else {
			s.announced[peer] = now
		}
	}
	return nil
}

func (s *fakeSpeaker) Status(ctx context.Context) ([]bgp.PeerStatus, error) {
	st, err := s.Sessions(ctx)
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	for i := range st {
		if st[i].State == bgp.StateEstablished {
			st[i].Announced = slices.SortedFunc(maps.Keys(s.announced[st[i].Name]), comparePrefix)
		}
	}
	return st, err
}

// Sessions reports every peer of the last SetPeers, in its order, in the
// state the test set (idle by default); a peer held down is idle.
func (s *fakeSpeaker) Sessions(context.Context) ([]bgp.PeerStatus, error) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	defer s.log.changed()
	s.sessionsReads++
	s.pendingObserve = false
	if s.sessionsErr != nil {
		return nil, s.sessionsErr
	}
	var out []bgp.PeerStatus
	for _, name := range s.order {
		p := s.peers[name]
		st := s.states[name]
		ps := bgp.PeerStatus{Name: name, Kind: p.Kind, Address: p.Address, PeerASN: p.PeerASN,
			State: st.state, AdminDown: s.down[name]}
		if ps.State == "" || ps.AdminDown {
			ps.State = bgp.StateIdle
		}
		if ps.State == bgp.StateEstablished {
			ps.Since = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			ps.Received = slices.Clone(st.received)
		}
		out = append(out, ps)
	}
	return out, nil
}

func (s *fakeSpeaker) Changed() <-chan struct{} { return s.changed }

// SetHeldDown logs "shutdown PEER" and "enable PEER" for the sessions
// whose state it changes.
func (s *fakeSpeaker) SetHeldDown(_ context.Context, held map[string]string) error {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	defer s.log.changed()
	var errs []error
	s.held = map[string]string{}
	for _, peer := range slices.Sorted(maps.Keys(held)) {
		if !s.known("SetHeldDown", peer) {
			errs = append(errs, fmt.Errorf("peer %s: not configured", peer))
			continue
		}
		if held[peer] == "" {
			s.log.violate("SetHeldDown %s: no RFC 8203 message", peer)
		}
		s.held[peer] = held[peer]
	}
	changed := false
	for _, peer := range s.order {
		_, want := s.held[peer]
		switch {
		case want && !s.down[peer]:
			s.log.add("shutdown " + peer)
			s.down[peer] = true
			changed = true
		case !want && s.down[peer]:
			s.log.add("enable " + peer)
			delete(s.down, peer)
			changed = true
		}
	}
	if changed {
		s.signal() // sessions go down or may come up
	}
	return errors.Join(errs...)
}

func (s *fakeSpeaker) Reset(_ context.Context, peer, message string) error {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	defer s.log.changed()
	s.log.add(fmt.Sprintf("reset %s: %s", peer, message))
	if !s.known("Reset", peer) {
		return fmt.Errorf("peer %s: not configured", peer)
	}
	if s.down[peer] {
		s.log.violate("Reset %s: held down", peer)
	}
	s.resets[peer]++
	return nil
}

func (s *fakeSpeaker) Close() {}

// setSessions sets what Sessions reports for the peers given (state, then
// the prefixes received when established) and signals Changed once.
func (s *fakeSpeaker) setSessions(states map[string]sessionState) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	defer s.log.changed()
	for peer, st := range states {
		s.states[peer] = st
	}
	s.signal()
}

// sessUp is an established session that sent received.
func sessUp(received ...string) sessionState {
	st := sessionState{state: bgp.StateEstablished}
	for _, p := range received {
		st.received = append(st.received, model.Learned{Prefix: netip.MustParsePrefix(p)})
	}
	return st
}

// sessDown is a session that is not established.
func sessDown() sessionState { return sessionState{state: bgp.StateActive} }

// blockNext makes the next SetAnnouncements wait until the returned
// release is called; entered is closed once it waits.
func (s *fakeSpeaker) blockNext() (entered <-chan struct{}, release func()) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	block, ent := make(chan struct{}), make(chan struct{})
	s.block, s.entered = block, ent
	var once sync.Once
	return ent, func() { once.Do(func() { close(block) }) }
}

// announcedTo returns what peer is announced now, sorted by prefix.
func (s *fakeSpeaker) announcedTo(peer string) []bgp.Announcement {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.announcedLocked(peer)
}

func (s *fakeSpeaker) announcedLocked(peer string) []bgp.Announcement {
	m := s.announced[peer]
	var out []bgp.Announcement
	for _, p := range slices.SortedFunc(maps.Keys(m), comparePrefix) {
		out = append(out, m[p])
	}
	return out
}

// prefixesTo returns the prefixes announced to peer, as strings.
func (s *fakeSpeaker) prefixesTo(peer string) []string {
	var out []string
	for _, a := range s.announcedTo(peer) {
		out = append(out, a.Prefix.String())
	}
	return out
}

// isDown reports whether peer is held down.
func (s *fakeSpeaker) isDown(peer string) bool {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.down[peer]
}

// peerNames is the last SetPeers, in its order.
func (s *fakeSpeaker) peerNames() []string {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return slices.Clone(s.order)
}

// counts returns the SetPeers calls and the resets of peer so far.
func (s *fakeSpeaker) counts(peer string) (setPeers, resets int) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.setPeers, s.resets[peer]
}

// observePending reports whether Changed was signalled and the loop has
// not read Sessions since.
func (s *fakeSpeaker) observePending() bool {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return s.pendingObserve
}

// cloudPrefixCheck is a speaker check: tunnel peers are sent only the cloud
// prefixes (announce) and their halves (a pair takeover), cloud-side peers
// never one of them.
func cloudPrefixCheck(announce []netip.Prefix) func(string, bgp.PeerKind, bgp.Announcement) error {
	return func(_ string, kind bgp.PeerKind, a bgp.Announcement) error {
		// A cloud prefix, or a half of one (a pair takeover).
		cloud := slices.ContainsFunc(announce, func(p netip.Prefix) bool {
			return a.Prefix.Bits() >= p.Bits() && a.Prefix.Addr().Is4() == p.Addr().Is4() && p.Contains(a.Prefix.Addr())
		})
		switch {
		case kind == bgp.KindTunnel && !cloud:
			return fmt.Errorf("not a cloud prefix (announce: %v)", announce)
		case kind == bgp.KindCloud && cloud:
			return fmt.Errorf("a cloud prefix sent back to the cloud side")
		}
		return nil
	}
}

// setCheck replaces the announcement check (a reload changed announce).
func (s *fakeSpeaker) setCheck(check func(string, bgp.PeerKind, bgp.Announcement) error) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	s.check = check
}
