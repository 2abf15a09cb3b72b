package pair

import "time"

// schedule decides when the sender transmits. It is pure: the sender
// goroutine feeds it clock readings and arms one timer for next.
//
//   - change: the state changed (or the partner restarted): transmit now,
//     then again at each Repeat offset after now, for loss.
//   - Every transmission, whatever its cause, pushes the refresh deadline
//     to Refresh after it; so the state goes out at least every Refresh.
type schedule struct {
	refresh time.Duration
	repeat  []time.Duration // ascending, positive

	last    time.Time   // last transmission; zero before the first
	pending []time.Time // repeat deadlines not yet reached, ascending
}

// change records a transmission at now caused by a change and plans the
// repeats after it. A change during earlier repeats replaces them.
func (s *schedule) change(now time.Time) {
	s.last = now
	s.pending = s.pending[:0]
	for _, d := range s.repeat {
		s.pending = append(s.pending, now.Add(d))
	}
}

// due reports whether a transmission is due at now; if so it records one
// at now, consuming every repeat deadline already reached (late timers
// roll several up into one datagram).
func (s *schedule) due(now time.Time) bool {
	if s.last.IsZero() {
		return false
	}
	n := 0
	for n < len(s.pending) && !s.pending[n].After(now) {
		n++
	}
	if n == 0 && now.Before(s.last.Add(s.refresh)) {
		return false
	}
	s.pending = s.pending[:copy(s.pending, s.pending[n:])]
	s.last = now
	return true
}

// next returns when due will next report true; ok is false before the
// first transmission (nothing to send yet).
func (s *schedule) next() (t time.Time, ok bool) {
	if s.last.IsZero() {
		return time.Time{}, false
	}
	t = s.last.Add(s.refresh)
	if len(s.pending) > 0 && s.pending[0].Before(t) {
		t = s.pending[0]
	}
	return t, true
}
