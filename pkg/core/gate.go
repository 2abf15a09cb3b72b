package core

import (
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// gate is something that is healthy or not, and that holds its
// re-announcement down after a flap: the hold-down doubles with every
// flap still remembered (from Initial up to Max) and one flap is
// forgotten per Decay of uninterrupted health. A gate starts unhealthy
// with no flap remembered, so the first time it turns healthy it opens at
// once.
type gate struct {
	healthy   bool
	flaps     int
	holdUntil time.Time
	stableAt  time.Time // since when the gate has been healthy (decay clock)
}

func (g *gate) set(now time.Time, ok bool, h config.HoldDown) {
	g.decay(now, h)
	if ok == g.healthy {
		return
	}
	g.healthy = ok
	if !ok {
		// Remember no more flaps than it takes to reach the maximum
		// hold-down, so a long storm is forgotten in bounded time.
		if holdDown(g.flaps, h) < h.Max {
			g.flaps++
		}
		g.holdUntil = time.Time{}
		return
	}
	g.stableAt = now
	if g.flaps > 0 {
		g.holdUntil = now.Add(holdDown(g.flaps, h))
	}
}

// pause closes the gate without counting a flap: bgpgw itself holds the
// session down (a completed drain), which says nothing about its health.
func (g *gate) pause() {
	g.healthy = false
	g.holdUntil = time.Time{}
}

// resume opens a paused gate at once: what closed it was bgpgw's own
// doing, so no hold-down applies, whatever flaps are remembered.
func (g *gate) resume(now time.Time) {
	if !g.healthy {
		g.healthy, g.stableAt, g.holdUntil = true, now, time.Time{}
	}
}

func holdDown(flaps int, h config.HoldDown) time.Duration {
	d := h.Initial
	for i := 1; i < flaps && d < h.Max; i++ {
		d *= 2
	}
	return min(d, h.Max)
}

// decay forgets one flap per Decay of health, counted from the end of the
// hold-down.
func (g *gate) decay(now time.Time, h config.HoldDown) {
	if !g.healthy || g.flaps == 0 || h.Decay <= 0 {
		return
	}
	from := g.stableAt
	if g.holdUntil.After(from) {
		from = g.holdUntil
	}
	for g.flaps > 0 && !now.Before(from.Add(h.Decay)) {
		g.flaps--
		from = from.Add(h.Decay)
		g.stableAt = from
	}
}

// open reports whether the gate lets announcements through.
func (g *gate) open(now time.Time) bool {
	return g.healthy && !now.Before(g.holdUntil)
}

// next is when the gate next changes on its own (hold-down end or decay).
func (g *gate) next(now time.Time, h config.HoldDown) time.Time {
	if !g.healthy {
		return time.Time{}
	}
	if now.Before(g.holdUntil) {
		return g.holdUntil
	}
	if g.flaps > 0 && h.Decay > 0 {
		from := g.stableAt
		if g.holdUntil.After(from) {
			from = g.holdUntil
		}
		return from.Add(h.Decay)
	}
	return time.Time{}
}
