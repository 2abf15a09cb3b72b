package bgp

import "time"

// Clock is the adapter's time: when a path was parked, and the timers of
// the deferred bookkeeping and of the sweeper of parked paths. Tests
// replace it to drive those timers.
type Clock interface {
	Now() time.Time
	// AfterFunc is like time.AfterFunc: f runs in its own goroutine.
	AfterFunc(d time.Duration, f func()) Stopper
}

// Stopper stops a timer made by a [Clock], like time.Timer.Stop.
type Stopper interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                              { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Stopper { return time.AfterFunc(d, f) }
