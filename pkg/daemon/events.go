package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/health"
)

// The loop goroutine owns the core and every piece of state that feeds it.
// Other goroutines (BFD, health checks, charon's events, the API, reload,
// signals) never touch that state: they post an event to the mailbox, and
// the loop handles every pending event before one reconcile pass.

// event is one input to the loop.
type event interface{ isEvent() }

// bfdEvent is a BFD session's state change.
type bfdEvent struct{ ev bfd.StateChange }

// checkEvent is one health check result, from runner generation gen (a
// result of a runner a reload replaced is dropped).
type checkEvent struct {
	gen uint64
	res health.Result
}

// request runs fn on the loop goroutine (an API call, a reload); its error
// goes to done once the pass that applies it has published.
type request struct {
	fn   func(ctx context.Context) error
	done chan error
}

// wake asks for a pass and nothing else (charon reported a change).
type wake struct{}

func (bfdEvent) isEvent()   {}
func (checkEvent) isEvent() {}
func (request) isEvent()    {}
func (wake) isEvent()       {}

// mailbox is the loop's unbounded queue: posting never blocks, so no
// producer waits on the loop and the loop never waits on a producer.
type mailbox struct {
	mu     sync.Mutex
	queue  []event
	first  time.Time // when the oldest pending event was posted
	ready  chan struct{}
	closed bool
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

// post queues ev; false when the loop has stopped taking events.
func (m *mailbox) post(ev event, now time.Time) bool {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	if len(m.queue) == 0 {
		m.first = now
	}
	m.queue = append(m.queue, ev)
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns every pending event and when the oldest was posted.
func (m *mailbox) take() ([]event, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	q, first := m.queue, m.first
	m.queue, m.first = nil, time.Time{}
	return q, first
}

// close stops taking events and fails the requests still queued.
func (m *mailbox) close() {
	m.mu.Lock()
	q := m.queue
	m.queue, m.closed = nil, true
	m.mu.Unlock()
	for _, ev := range q {
		if r, ok := ev.(request); ok {
			r.done <- errStopped
		}
	}
}

var errStopped = errors.New("bgpgw is stopping")

// call runs fn on the loop goroutine and returns its error once the pass
// after it has applied and published the result; it gives up when ctx
// ends (fn may still run).
func (d *Daemon) call(ctx context.Context, fn func(ctx context.Context) error) error {
	r := request{fn: fn, done: make(chan error, 1)}
	if !d.mail.post(r, d.clock.Now()) {
		return errStopped
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poke asks the loop for a pass.
func (d *Daemon) poke() { d.mail.post(wake{}, d.clock.Now()) }
