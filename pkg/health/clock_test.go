package health

import (
	"slices"
	"sync"
	"time"
)

// fakeClock is a Clock whose time moves only when the test calls Advance, which fires the
// tickers that fall due, like the time package would (at most one pending tick each).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
	stops   chan time.Duration // if not nil, receives the interval of every ticker stopped
}

type fakeTicker struct {
	clk  *fakeClock
	c    chan time.Time
	d    time.Duration
	next time.Time
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("fakeClock: non-positive ticker interval")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{clk: c, c: make(chan time.Time, 1), d: d, next: c.now.Add(d)}
	c.tickers = append(c.tickers, t)
	return t
}

// Advance moves the time forward by d and fires the tickers that fall due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.tickers {
		for !t.next.After(c.now) {
			select {
			case t.c <- t.next:
			default: // a tick is pending already: drop this one, like time.Ticker
			}
			t.next = t.next.Add(t.d)
		}
	}
}

// running counts the tickers not stopped.
func (c *fakeClock) running() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tickers)
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }

func (t *fakeTicker) Stop() {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	t.clk.tickers = slices.DeleteFunc(t.clk.tickers, func(x *fakeTicker) bool { return x == t })
	if t.clk.stops != nil {
		t.clk.stops <- t.d
	}
}
