package bgp

import (
	"net/netip"
	"slices"
)

// ribEntry is one locally originated path: the attributes are the same for
// every peer that gets the prefix (GoBGP holds one local path per prefix).
type ribEntry struct {
	ann   Announcement
	peers map[string]bool
}

// plan is the work that moves the speaker from one desired state to the next.
type plan struct {
	// upserts are paths to add or replace in the RIB (new prefixes or new attributes).
	upserts []Announcement
	// deletes are prefixes no peer wants any more: delete the path first,
	// while the export sets still let the withdrawal out, then unlist them.
	deletes []netip.Prefix
	// listAdd and listDel change each peer's export set.
	listAdd map[string][]netip.Prefix
	listDel map[string][]netip.Prefix
	// refresh are peers whose export set changed for prefixes that stay in
	// the RIB: they need a soft reset out to get the difference on the wire.
	refresh []string
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

// diff computes the plan from the current to the desired RIB.
func diff(cur, want map[netip.Prefix]*ribEntry) plan {
	p := plan{listAdd: map[string][]netip.Prefix{}, listDel: map[string][]netip.Prefix{}}
	refresh := map[string]bool{}
	for _, pfx := range sortedPrefixes(want) {
		w := want[pfx]
		c, had := cur[pfx]
		if !had || !c.ann.Equal(w.ann) {
			p.upserts = append(p.upserts, w.ann)
		}
		for _, peer := range sortedKeys(w.peers) {
			if had && c.peers[peer] {
				continue
			}
			p.listAdd[peer] = append(p.listAdd[peer], pfx)
			if had && c.ann.Equal(w.ann) {
				refresh[peer] = true // path unchanged: only a soft reset sends it
			}
		}
		if had {
			for _, peer := range sortedKeys(c.peers) {
				if !w.peers[peer] {
					p.listDel[peer] = append(p.listDel[peer], pfx)
					refresh[peer] = true
				}
			}
		}
	}
	for _, pfx := range sortedPrefixes(cur) {
		if _, keep := want[pfx]; keep {
			continue
		}
		p.deletes = append(p.deletes, pfx)
		for _, peer := range sortedKeys(cur[pfx].peers) {
			p.listDel[peer] = append(p.listDel[peer], pfx)
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

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	keys := make([]netip.Prefix, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, comparePrefix)
	return keys
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
