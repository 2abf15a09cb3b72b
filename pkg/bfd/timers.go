package bfd

import (
	"container/heap"
	"context"
	"time"
)

// reschedule puts a session at its place in the timer heap and wakes the
// timer loop if it now sleeps too long.
func (m *Manager) reschedule(ms *msess) {
	next := ms.s.Next()
	switch {
	case next.IsZero() && ms.heapIdx >= 0:
		heap.Remove(&m.timers, ms.heapIdx)
	case next.IsZero():
	case ms.heapIdx >= 0:
		ms.next = next
		heap.Fix(&m.timers, ms.heapIdx)
	default:
		ms.next = next
		heap.Push(&m.timers, ms)
	}
	if !next.IsZero() && next.Before(m.wakeAt) {
		m.wakeAt = next
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// expiryGrace bounds how long the timer loop holds back a detection
// timeout while received packets wait to be handed to the sessions.
const expiryGrace = 20 * time.Millisecond

// timerLoop runs every session's due timers, then sleeps until the next.
//
// A detection timeout is held back (for at most expiryGrace) while
// datagrams wait in a listener's queue or in a reader: after a stall of
// this process (CPU starvation), the packets that did arrive in time are
// handed over first, with their kernel arrival time, so the stall alone
// does not take sessions down.
func (m *Manager) timerLoop(ctx context.Context, ls []*listener) {
	const idle = time.Hour
	t := time.NewTimer(idle)
	defer t.Stop()
	var holding time.Time // since when a timeout is held back; zero if none
	for {
		m.mu.Lock()
		now := time.Now()
		held, checked, waiting := false, false, false
		// Each due session once per pass: Tick always moves Next past now.
		for n := len(m.timers); n > 0 && len(m.timers) > 0 && !m.timers[0].next.After(now); n-- {
			ms := m.timers[0]
			if ms.s.detectionDue(now) && (holding.IsZero() || now.Sub(holding) < expiryGrace) {
				if !checked {
					waiting, checked = m.inputWaiting(ls), true
				}
				if waiting {
					ms.next = now.Add(time.Millisecond)
					heap.Fix(&m.timers, 0)
					held = true
					continue
				}
			}
			m.apply(ms, ms.s.Tick(now))
			m.reschedule(ms)
		}
		switch {
		case !held:
			holding = time.Time{}
		case holding.IsZero():
			holding = now
		}
		d := idle
		if len(m.timers) > 0 {
			d = max(m.timers[0].next.Sub(now), 0)
		}
		m.wakeAt = now.Add(d)
		m.mu.Unlock()
		t.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
	}
}

// inputWaiting reports whether received datagrams wait to reach their
// sessions: read by a reader, or queued in a listener's socket.
func (m *Manager) inputWaiting(ls []*listener) bool {
	if m.inflight.Load() > 0 {
		return true
	}
	for _, l := range ls {
		if l.pending() {
			return true
		}
	}
	return false
}

// timerHeap orders sessions by their next timer.
type timerHeap []*msess

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *timerHeap) Push(x any) {
	ms := x.(*msess)
	ms.heapIdx = len(*h)
	*h = append(*h, ms)
}
func (h *timerHeap) Pop() any {
	old := *h
	ms := old[len(old)-1]
	old[len(old)-1] = nil
	ms.heapIdx = -1
	*h = old[:len(old)-1]
	return ms
}
