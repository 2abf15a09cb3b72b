package daemon

import "time"

// Clock is the loop's source of time; tests replace it with a fake one.
type Clock interface {
	Now() time.Time
	// NewTimer is like time.NewTimer.
	NewTimer(d time.Duration) Timer
}

// Timer is a timer made by a [Clock].
type Timer interface {
	C() <-chan time.Time
	// Reset is like time.Timer.Reset (Go 1.23 semantics: no stale value
	// is received after it returns).
	Reset(d time.Duration)
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time   { return t.t.C }
func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }
