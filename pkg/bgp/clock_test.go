package bgp

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// fakeClock is a Clock whose time moves only by Advance, which runs the
// functions that are due, each in its own goroutine (as time.AfterFunc).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c             *fakeClock
	at            time.Time
	f             func()
	stopped, done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	active := !t.stopped && !t.done
	t.stopped = true
	return active
}

// Advance moves the time by d and starts the functions now due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.stopped && !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		go f()
	}
}

// pending is how many timers have neither fired nor been stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.done {
			n++
		}
	}
	return n
}

func TestFakeClock(t *testing.T) {
	c := newFakeClock()
	fired := make(chan int, 2)
	c.AfterFunc(time.Second, func() { fired <- 1 })
	stopped := c.AfterFunc(time.Second, func() { fired <- 2 })
	assert.True(t, stopped.Stop())
	c.Advance(999 * time.Millisecond)
	assert.Equal(t, 1, c.pending())
	c.Advance(time.Millisecond)
	assert.Equal(t, 1, <-fired)
	assert.Equal(t, 0, c.pending())
	assert.False(t, stopped.Stop())
}
