package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
)

// Gates and parking: the fast withdrawal.
//
// When a peer loses every prefix it had (a tunnel fails, an instance-scope
// check fails, a drain ends), SetAnnouncements closes its gate (puts its
// address in the neighbor set of the export statement that rejects) and
// has GoBGP withdraw everything the peer was sent (WithdrawAll, bgpgw's
// patch of GoBGP: every emptied peer in one call, no export policy run),
// in as few UPDATEs as fit. That is the whole withdrawal: nothing
// per prefix comes before it. The peer's export set is left as it was
// behind the closed gate, and tidied when the peer is wanted again, just
// before its gate opens. A path that no peer wants any more is then not
// deleted at once (GoBGP's DeletePath costs ~10 us per path and peer, ~100
// ms at 10,000 prefixes, and would compete for the CPU with the withdrawal
// going out) but parked: kept in GoBGP's RIB, exported to nobody. A
// re-announcement of a parked path only lists it again; parked paths still
// unwanted after parkFor are deleted by the sweeper, in chunks so that a
// withdrawal never waits long behind it (GoBGP then sends their withdrawals
// to every established peer again: a peer ignores the withdrawal of a
// prefix it does not have). The rest of the update, the bookkeeping, runs
// settleFor later or at the start of the next call, so that it does not
// take the CPU from the UPDATEs going out.

const (
	// settleFor is how long the bookkeeping after a withdrawal waits for
	// the UPDATEs to leave (they take ~10 ms at 10,000 prefixes).
	settleFor = 50 * time.Millisecond
	// defaultParkFor is how long an unwanted path stays in GoBGP's RIB.
	defaultParkFor = 10 * time.Second
	// sweepChunk bounds the paths one DeletePath call removes (~10 ms).
	sweepChunk = 1000
)

// splitDeletes decides, for each prefix no peer wants any more, whether it
// is parked (the peers that had it all lose everything and are withdrawn
// from by their gate, or it was parked already) or deleted now (some peer
// keeps other prefixes: DeletePath sends its withdrawal). The entries it
// parks are cur's, with their peers cleared: cur is the RIB being replaced.
func splitDeletes(cur map[netip.Prefix]*ribEntry, p plan, now time.Time) (park map[netip.Prefix]*ribEntry, del []netip.Prefix) {
	park = map[netip.Prefix]*ribEntry{}
	for _, pfx := range p.deletes {
		e := cur[pfx]
		parkable := true
		for peer := range e.peers {
			if !slices.Contains(p.emptied, peer) {
				parkable = false
				break
			}
		}
		if !parkable {
			del = append(del, pfx)
			continue
		}
		clear(e.peers)
		if e.parked.IsZero() {
			e.parked = now
		}
		park[pfx] = e
	}
	return park, del
}

// deferBookkeeping schedules f, the bookkeeping after a withdrawal, for settleFor
// from now or the next call that needs the applied state, whichever comes
// first. Caller holds a.mu and has run finishDeferred.
func (a *GoBGP) deferBookkeeping(f func() []error) {
	a.deferred = f
	a.settleGen++
	gen := a.settleGen
	a.settleTimer = a.clock.AfterFunc(settleFor, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.closed || a.settleGen != gen {
			return // closed, or a timer that fired while its work was run by a call, for later work
		}
		if errs := a.runDeferred(); len(errs) > 0 {
			a.log.Warn("bookkeeping after a withdrawal failed; the next update reports it", "error", errors.Join(errs...))
		}
	})
}

// runDeferred runs the pending bookkeeping, if any, and keeps its errors
// for the next SetAnnouncements. Caller holds a.mu.
func (a *GoBGP) runDeferred() []error {
	if a.deferred == nil {
		return nil
	}
	a.settleTimer.Stop()
	f := a.deferred
	a.deferred = nil
	errs := f()
	a.deferredErrs = append(a.deferredErrs, errs...)
	return errs
}

// finishDeferred runs the pending bookkeeping and returns every error it
// and earlier deferred runs met. Caller holds a.mu.
func (a *GoBGP) finishDeferred() []error {
	a.runDeferred()
	errs := a.deferredErrs
	a.deferredErrs = nil
	return errs
}

// gateResult is what closeGates did: the gates it closed, and closed ones
// whose soft reset failed.
type gateResult struct {
	closed, notReset []string
}

// closeGates withdraws everything from peers that lose everything: their
// gates close, in one change of the shut set, then GoBGP withdraws from
// each everything it was sent, in one call for all of them (WithdrawAll,
// bgpgw's patch: no export policy run per path and peer). Caller holds a.mu.
func (a *GoBGP) closeGates(ctx context.Context, peers []string) (gateResult, []error) {
	var r gateResult
	if len(peers) == 0 {
		return r, nil
	}
	if err := a.setGates(ctx, peers, false); err != nil {
		return r, []error{err}
	}
	r.closed = peers
	var addrs []string
	for _, peer := range peers {
		if _, ok := a.gateClosed[peer]; !ok {
			a.gateClosed[peer] = nil
		}
		addrs = append(addrs, a.peers[peer].Address.String())
	}
	if err := a.s.WithdrawAll(ctx, addrs); err != nil {
		r.notReset = peers // a soft reset out each withdraws them instead
		return r, []error{fmt.Errorf("peers %s: withdraw: %w", strings.Join(peers, ", "), err)}
	}
	return r, nil
}

// reopening are the peers behind a closed gate that are wanted again.
// Caller holds a.mu.
func (a *GoBGP) reopening(wanted map[string]bool) []string {
	var out []string
	for _, peer := range sortedKeys(a.gateClosed) {
		if wanted[peer] {
			out = append(out, peer)
		}
	}
	return out
}

// splitStale compares what a closed gate left in a peer's export set with
// what the peer is to get (all of it, and what the diff adds): what to
// take out of the set, and what to add that is not there already.
func splitStale(left []netip.Prefix, get map[netip.Prefix]bool, listAdd []netip.Prefix) (stale, add []netip.Prefix) {
	in := make(map[netip.Prefix]bool, len(left))
	for _, pfx := range left {
		if in[pfx] {
			continue
		}
		in[pfx] = true
		if !get[pfx] {
			stale = append(stale, pfx)
		}
	}
	for _, pfx := range listAdd {
		if !in[pfx] {
			add = append(add, pfx)
		}
	}
	return stale, add
}

// prefixesOf is the set of prefixes a peer gets in rib.
func prefixesOf(rib map[netip.Prefix]*ribEntry, peer string) map[netip.Prefix]bool {
	out := map[netip.Prefix]bool{}
	for pfx, e := range rib {
		if e.peers[peer] {
			out[pfx] = true
		}
	}
	return out
}

func union(lists ...[]string) []string {
	set := map[string]bool{}
	for _, l := range lists {
		for _, s := range l {
			set[s] = true
		}
	}
	return sortedKeys(set)
}

// deletePaths removes local paths from GoBGP's RIB. Caller holds a.mu.
func (a *GoBGP) deletePaths(prefixes []netip.Prefix) error {
	paths := make([]*apiutil.Path, 0, len(prefixes))
	for _, pfx := range prefixes {
		paths = append(paths, a.path(a.rib[pfx].ann))
	}
	return a.s.DeletePath(apiutil.DeletePathRequest{Paths: paths})
}

// scheduleSweep arms the sweeper for the oldest parked path. Caller holds a.mu.
func (a *GoBGP) scheduleSweep() {
	if a.closed || a.sweeping {
		return
	}
	var oldest time.Time
	for _, e := range a.rib {
		if !e.parked.IsZero() && (oldest.IsZero() || e.parked.Before(oldest)) {
			oldest = e.parked
		}
	}
	if oldest.IsZero() {
		return
	}
	a.sweeping = true
	a.sweepTimer = a.clock.AfterFunc(oldest.Add(a.parkFor).Sub(a.clock.Now()), a.sweep)
}

// sweep deletes the paths parked for a.parkFor or longer, sweepChunk at a
// time, releasing the lock between chunks.
func (a *GoBGP) sweep() {
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return
		}
		cutoff := a.clock.Now().Add(-a.parkFor)
		var due []netip.Prefix
		for pfx, e := range a.rib {
			if !e.parked.IsZero() && !e.parked.After(cutoff) {
				due = append(due, pfx)
				if len(due) == sweepChunk {
					break
				}
			}
		}
		if len(due) == 0 {
			a.sweeping = false
			a.scheduleSweep()
			a.mu.Unlock()
			return
		}
		if err := a.deletePaths(due); err != nil {
			// Nothing is exported from a parked path: retrying later is safe.
			a.log.Warn("delete withdrawn paths from the RIB; retrying later", "paths", len(due), "error", err)
			a.sweepTimer = a.clock.AfterFunc(a.parkFor, a.sweep)
			a.mu.Unlock()
			return
		}
		for _, pfx := range due {
			delete(a.rib, pfx)
		}
		a.mu.Unlock()
	}
}
