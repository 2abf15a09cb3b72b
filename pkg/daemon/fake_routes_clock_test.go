package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bgpgw/bgpgw/pkg/route"
)

// fakeRoutes is the route installer: it holds the installed routes,
// rejects what the kernel would (a prefix twice, an invalid next hop) and
// logs every route added, changed or removed in the call log.
type fakeRoutes struct {
	log       *callLog
	installed []route.Route // guarded by log.mu
	sets      int
	fail      error // Set fails with it, installing nothing
}

var _ routeSetter = (*fakeRoutes)(nil)

func newFakeRoutes(log *callLog) *fakeRoutes { return &fakeRoutes{log: log} }

func (r *fakeRoutes) Set(routes []route.Route) ([]route.Route, error) {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	defer r.log.changed()
	r.sets++
	if r.fail != nil {
		return slices.Clone(r.installed), r.fail
	}
	seen := map[netip.Prefix]bool{}
	var next []route.Route
	var errs []string
	for _, rt := range routes {
		p := rt.Prefix
		bad := ""
		switch {
		case !p.IsValid() || p != p.Masked():
			bad = "invalid prefix"
		case seen[p]:
			bad = "prefix twice"
		case len(rt.NextHops) == 0:
			bad = "no next hop"
		}
		for _, nh := range rt.NextHops {
			if bad == "" && (!nh.IsValid() || nh.IsUnspecified() || nh.Is4() != p.Addr().Is4()) {
				bad = fmt.Sprintf("invalid next hop %v", nh)
			}
		}
		if bad != "" {
			r.log.violate("routes.Set: %s: %s", rt, bad)
			errs = append(errs, fmt.Sprintf("%s: %s", rt, bad))
			continue
		}
		seen[p] = true
		hops := slices.Clone(rt.NextHops)
		slices.SortFunc(hops, netip.Addr.Compare)
		next = append(next, route.Route{Prefix: p, NextHops: slices.Compact(hops)})
	}
	slices.SortFunc(next, func(a, b route.Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	was := map[netip.Prefix]route.Route{}
	for _, rt := range r.installed {
		was[rt.Prefix] = rt
	}
	now := map[netip.Prefix]bool{}
	for _, rt := range next {
		now[rt.Prefix] = true
		old, ok := was[rt.Prefix]
		switch {
		case !ok:
			r.log.add("route add " + rt.String())
		case !slices.Equal(old.NextHops, rt.NextHops):
			r.log.add("route change " + rt.String())
		}
	}
	for _, rt := range r.installed {
		if !now[rt.Prefix] {
			r.log.add("route del " + rt.Prefix.String())
		}
	}
	r.installed = next
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("routes rejected: %s", strings.Join(errs, "; "))
	}
	return slices.Clone(next), err
}

// routes returns the installed routes as "PREFIX via HOP,HOP".
func (r *fakeRoutes) routes() []string {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	var out []string
	for _, rt := range r.installed {
		out = append(out, rt.String())
	}
	return out
}

// fakeClock is a Clock whose time moves only by Advance, which fires the
// timers that are due (their channels hold one value, like time.Timer's).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

var _ Clock = (*fakeClock)(nil)

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	t.resetLocked(d)
	return t
}

// Advance moves the time by d and fires every timer due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.active && !t.when.After(c.now) {
			t.fireLocked()
		}
	}
}

// pending reports how many timers are armed.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if t.active {
			n++
		}
	}
	return n
}

type fakeTimer struct {
	c      *fakeClock
	ch     chan time.Time
	when   time.Time
	active bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

// Reset re-arms the timer; no value sent before it is received after it
// (Go 1.23 semantics). A due timer fires at once.
func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.resetLocked(d)
}

func (t *fakeTimer) resetLocked(d time.Duration) {
	t.drain()
	t.when, t.active = t.c.now.Add(d), true
	if d <= 0 {
		t.fireLocked()
	}
}

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.active = false
	t.drain()
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

func (t *fakeTimer) fireLocked() {
	t.active = false
	select {
	case t.ch <- t.c.now:
	default:
	}
}
