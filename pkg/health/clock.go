package health

import "time"

// Clock is the runner's source of time; tests replace it with a fake one.
type Clock interface {
	Now() time.Time
	// NewTicker is like time.NewTicker: its channel holds at most one pending tick.
	NewTicker(d time.Duration) Ticker
}

// Ticker is a ticker made by a [Clock].
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// RealClock returns the clock of the time package.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }
