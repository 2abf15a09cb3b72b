package bgp

import (
	"net/netip"
	"slices"
	"time"
)

// ribEntry is one locally originated path: the attributes are the same for
// every peer that gets the prefix (GoBGP holds one local path per prefix).
type ribEntry struct {
	ann   Announcement
	peers map[string]bool
	// parked is when the path was withdrawn from its last peer and kept
	// in the RIB (see park.go); zero while some peer has it.
	parked time.Time
}

// plan is the work that moves the speaker from one desired state to the next.
type plan struct {
	// upserts are paths to add or replace in the RIB (new prefixes or new attributes).
	upserts []Announcement
	// deletes are prefixes no peer wants any more (parked paths included):
	// SetAnnouncements parks them or deletes the path (GoBGP sends that
	// withdrawal to every established peer), and unlists them.
	deletes []netip.Prefix
	// listAdd and listDel change each peer's export set.
	listAdd map[string][]netip.Prefix
	listDel map[string][]netip.Prefix
	// refresh are peers whose export set changed for prefixes that stay in
	// the RIB: they need a soft reset out to get the difference on the wire.
	refresh []string
	// emptied are peers that lose every prefix they had (a failed tunnel, a
	// failing instance check, the end of a drain). Their export set is
	// emptied and one soft reset out withdraws everything in a single
	// pass, before any path is deleted: GoBGP's DeletePath costs ~10 us
	// per path and peer, too slow for a failover at 10,000 prefixes. They
	// are not in refresh.
	emptied []string
}

// conflict is an announcement whose attributes differ between peers.
type conflict struct {
	prefix netip.Prefix
	peers  [2]string
}

// buildRIB turns per-peer desired announcements into one path per prefix.
func buildRIB(desired map[string][]Announcement) (map[netip.Prefix]*ribEntry, []conflict) {
	rib := map[netip.Prefix]*ribEntry{}
	var conflicts []conflict
	owner := map[netip.Prefix]string{}
	for _, peer := range sortedKeys(desired) {
		for _, a := range desired[peer] {
			a.Prefix = a.Prefix.Masked()
			e, ok := rib[a.Prefix]
			if !ok {
				rib[a.Prefix] = &ribEntry{ann: a, peers: map[string]bool{peer: true}}
				owner[a.Prefix] = peer
				continue
			}
			if !e.ann.Equal(a) {
				conflicts = append(conflicts, conflict{a.Prefix, [2]string{owner[a.Prefix], peer}})
				continue
			}
			e.peers[peer] = true
		}
	}
	return rib, conflicts
}

// wantedPeers are the peers that get at least one prefix from buildRIB:
// those with announcements that did not all lose a conflict. It costs
// O(peers + conflicts), not O(prefixes): a withdrawal starts from it.
func wantedPeers(desired map[string][]Announcement, conflicts []conflict) map[string]bool {
	lost := map[string]int{}
	for _, c := range conflicts {
		lost[c.peers[1]]++
	}
	out := map[string]bool{}
	for peer, anns := range desired {
		if len(anns) > lost[peer] {
			out[peer] = true
		}
	}
	return out
}

// emptiedPeers are the peers that held a prefix and get none now.
func emptiedPeers(holding, wanted map[string]bool) []string {
	var out []string
	for _, peer := range sortedKeys(holding) {
		if !wanted[peer] {
			out = append(out, peer)
		}
	}
	return out
}

// diff computes the plan from the current to the desired RIB.
func diff(cur, want map[netip.Prefix]*ribEntry) plan {
	p := plan{listAdd: map[string][]netip.Prefix{}, listDel: map[string][]netip.Prefix{}}
	refresh := map[string]bool{}
	wants := map[string]bool{} // peers left with at least one prefix
	// Map order: the plan's lists are sets (GoBGP takes them in any order),
	// and sorting 10,000 prefixes would cost milliseconds of a withdrawal.
	for pfx, w := range want {
		c, had := cur[pfx]
		if !had || !c.ann.Equal(w.ann) {
			p.upserts = append(p.upserts, w.ann)
		}
		for peer := range w.peers {
			wants[peer] = true
			if had && c.peers[peer] {
				continue
			}
			p.listAdd[peer] = append(p.listAdd[peer], pfx)
			if had && c.ann.Equal(w.ann) {
				refresh[peer] = true // path unchanged: only a soft reset sends it
			}
		}
		if had {
			for peer := range c.peers {
				if !w.peers[peer] {
					p.listDel[peer] = append(p.listDel[peer], pfx)
					refresh[peer] = true
				}
			}
		}
	}
	for pfx, c := range cur {
		if _, keep := want[pfx]; keep {
			continue
		}
		p.deletes = append(p.deletes, pfx)
		for peer := range c.peers {
			p.listDel[peer] = append(p.listDel[peer], pfx)
		}
	}
	for _, peer := range sortedKeys(p.listDel) {
		if !wants[peer] {
			p.emptied = append(p.emptied, peer)
			delete(refresh, peer)
		}
	}
	p.refresh = sortedKeys(refresh)
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
