package bgp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	pA = netip.MustParsePrefix("10.10.0.0/16")
	pB = netip.MustParsePrefix("10.20.0.0/24")
)

func TestDiffNewPrefixJoinsSetsBeforeUpsert(t *testing.T) {
	want, conflicts := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}}, "t2": {{Prefix: pA}}})
	require.Empty(t, conflicts)
	p := diff(map[netip.Prefix]*ribEntry{}, want)
	assert.Equal(t, []Announcement{{Prefix: pA}}, p.upserts)
	assert.Equal(t, map[string][]netip.Prefix{"t1": {pA}, "t2": {pA}}, p.listAdd)
	assert.Empty(t, p.refresh, "a new path reaches the peers through its own UPDATE")
	assert.Empty(t, p.deletes)
}

func TestDiffWithdrawFromOnePeerRefreshesIt(t *testing.T) {
	cur, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}, {Prefix: pB}}, "t2": {{Prefix: pA}}})
	want, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pB}}, "t2": {{Prefix: pA}}})
	p := diff(cur, want)
	assert.Empty(t, p.upserts)
	assert.Empty(t, p.deletes, "t2 still wants the path")
	assert.Equal(t, map[string][]netip.Prefix{"t1": {pA}}, p.listDel)
	assert.Equal(t, []string{"t1"}, p.refresh)
	assert.Empty(t, p.emptied, "t1 keeps B")
}

func TestDiffPeerLosingEverythingIsEmptied(t *testing.T) {
	cur, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}, {Prefix: pB}}, "t2": {{Prefix: pA}, {Prefix: pB}}})
	want, _ := buildRIB(map[string][]Announcement{"t2": {{Prefix: pA}, {Prefix: pB}}})
	p := diff(cur, want)
	assert.Empty(t, p.deletes, "t2 still wants both paths")
	assert.Equal(t, []string{"t1"}, p.emptied)
	assert.Empty(t, p.refresh, "an emptied peer is withdrawn from by its gate, not refreshed again")
	assert.ElementsMatch(t, []netip.Prefix{pA, pB}, p.listDel["t1"])
}

func TestDiffWithdrawFromAllDeletesPath(t *testing.T) {
	cur, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}, {Prefix: pB}}, "t2": {{Prefix: pA}}})
	want, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pB}}})
	p := diff(cur, want)
	assert.Equal(t, []netip.Prefix{pA}, p.deletes)
	assert.Equal(t, map[string][]netip.Prefix{"t1": {pA}, "t2": {pA}}, p.listDel)
	assert.Equal(t, []string{"t2"}, p.emptied)
	assert.Empty(t, p.refresh, "the DeletePath withdrawal reaches t1, t2's gate withdraws from t2")
}

func TestDiffParkedPaths(t *testing.T) {
	parked := func(a Announcement) *ribEntry {
		return &ribEntry{ann: a, peers: map[string]bool{}, parked: time.Now()}
	}
	gshut := Announcement{Prefix: pB, Communities: []uint32{CommunityGracefulShutdown}}
	cur := map[netip.Prefix]*ribEntry{pA: parked(Announcement{Prefix: pA}), pB: parked(gshut)}

	p := diff(cur, map[netip.Prefix]*ribEntry{})
	assert.ElementsMatch(t, []netip.Prefix{pA, pB}, p.deletes)
	assert.Empty(t, p.listDel)
	assert.Empty(t, p.emptied)
	park, del := splitDeletes(cur, p, time.Now().Add(time.Hour))
	assert.Empty(t, del, "parked paths are left to the sweeper")
	assert.Equal(t, cur, park, "and keep the time they were parked")

	want, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}, {Prefix: pB}}})
	p = diff(cur, want)
	assert.Equal(t, []Announcement{{Prefix: pB}}, p.upserts, "B comes back with other attributes: a new path")
	assert.ElementsMatch(t, []netip.Prefix{pA, pB}, p.listAdd["t1"])
	assert.Equal(t, []string{"t1"}, p.refresh, "A's parked path is unchanged: listed again and refreshed")
	assert.Empty(t, p.deletes)
}

func TestDiffAttributeChangeIsOneUpsert(t *testing.T) {
	cur, _ := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}}, "t2": {{Prefix: pA}}})
	drained := Announcement{Prefix: pA, Prepend: 3, Communities: []uint32{CommunityGracefulShutdown}}
	want, _ := buildRIB(map[string][]Announcement{"t1": {drained}, "t2": {drained}})
	p := diff(cur, want)
	assert.Equal(t, []Announcement{drained}, p.upserts)
	assert.Empty(t, p.listAdd)
	assert.Empty(t, p.listDel)
	assert.Empty(t, p.refresh)
}

func TestWantedPeersCountsLostConflicts(t *testing.T) {
	desired := map[string][]Announcement{
		"t1": {{Prefix: pA}},
		"t2": {{Prefix: pA, MED: 5, HasMED: true}},               // loses its only prefix to t1
		"t3": {{Prefix: pA, MED: 5, HasMED: true}, {Prefix: pB}}, // keeps B
		"t4": {},
	}
	_, conflicts := buildRIB(desired)
	assert.Equal(t, map[string]bool{"t1": true, "t3": true}, wantedPeers(desired, conflicts))
	assert.Equal(t, []string{"t2", "t4"}, emptiedPeers(map[string]bool{"t1": true, "t2": true, "t4": true}, wantedPeers(desired, conflicts)))
}

func TestSplitStale(t *testing.T) {
	pC := netip.MustParsePrefix("10.30.0.0/16")
	// Left behind the gate: A, B, A again. The peer is to get A and C; the
	// diff adds both (the applied RIB has nothing for it).
	stale, add := splitStale([]netip.Prefix{pA, pB, pA}, map[netip.Prefix]bool{pA: true, pC: true}, []netip.Prefix{pA, pC})
	assert.Equal(t, []netip.Prefix{pB}, stale)
	assert.Equal(t, []netip.Prefix{pC}, add, "A is in the set already")
	// A retry after the stale removal failed: the diff adds nothing new,
	// and what the peer gets must not be taken out.
	stale, add = splitStale([]netip.Prefix{pA, pB}, map[netip.Prefix]bool{pA: true, pC: true}, nil)
	assert.Equal(t, []netip.Prefix{pB}, stale)
	assert.Empty(t, add)
}

func TestConflictingAttributesReported(t *testing.T) {
	_, conflicts := buildRIB(map[string][]Announcement{"t1": {{Prefix: pA}}, "t2": {{Prefix: pA, MED: 5, HasMED: true}}})
	require.Len(t, conflicts, 1)
	assert.Equal(t, [2]string{"t1", "t2"}, conflicts[0].peers)
}

// TestDiffConverges applies random desired states in sequence and checks
// that applying each plan to a model of the speaker (parking included)
// reaches exactly the desired state, and that a second diff is empty.
func TestDiffConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	peers := []string{"t1", "t2", "rr"}
	prefixes := []netip.Prefix{pA, pB, netip.MustParsePrefix("10.30.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}
	cur := map[netip.Prefix]*ribEntry{}
	parked, deleted := 0, 0
	for step := 0; step < 500; step++ {
		attrs := Announcement{Prepend: rng.IntN(2)}
		desired := map[string][]Announcement{}
		for _, peer := range peers {
			for _, pfx := range prefixes {
				if rng.IntN(2) == 0 {
					a := attrs
					a.Prefix = pfx
					desired[peer] = append(desired[peer], a)
				}
			}
		}
		want, conflicts := buildRIB(desired)
		require.Empty(t, conflicts)
		p := diff(cur, want)
		holding := map[string]bool{}
		for _, e := range cur {
			for peer := range e.peers {
				holding[peer] = true
			}
		}
		require.Equal(t, p.emptied, emptiedPeers(holding, wantedPeers(desired, conflicts)), "step %d: emptied by count", step)
		next := apply(cur, p)
		// As SetAnnouncements does: some deleted paths are parked, not deleted.
		park, del := splitDeletes(cur, p, time.Now())
		for pfx, e := range park {
			next[pfx] = e
		}
		parked += len(park)
		deleted += len(del)
		require.Equal(t, exported(want), exported(next), "step %d", step)
		again := diff(next, want)
		require.Empty(t, again.upserts, "step %d", step)
		for _, pfx := range again.deletes {
			require.False(t, next[pfx].parked.IsZero(), "step %d: only parked paths stay unwanted", step)
		}
		require.Empty(t, again.listAdd, "step %d", step)
		require.Empty(t, again.listDel, "step %d", step)
		require.Empty(t, again.refresh, "step %d", step)
		cur = next
	}
	assert.Positive(t, parked, "some paths were parked")
	assert.Positive(t, deleted, "some paths were deleted at once")
}

// apply models the speaker: the RIB paths and each peer's export set.
func apply(cur map[netip.Prefix]*ribEntry, p plan) map[netip.Prefix]*ribEntry {
	out := map[netip.Prefix]*ribEntry{}
	for pfx, e := range cur {
		peers := map[string]bool{}
		for peer := range e.peers {
			peers[peer] = true
		}
		out[pfx] = &ribEntry{ann: e.ann, peers: peers, parked: e.parked}
	}
	for peer, l := range p.listAdd {
		for _, pfx := range l {
			if out[pfx] == nil {
				out[pfx] = &ribEntry{peers: map[string]bool{}}
			}
			out[pfx].peers[peer] = true
		}
	}
	for _, a := range p.upserts {
		out[a.Prefix].ann = a
	}
	for peer, l := range p.listDel {
		for _, pfx := range l {
			delete(out[pfx].peers, peer)
		}
	}
	for _, pfx := range p.deletes {
		delete(out, pfx)
	}
	return out
}

// exported is what each peer is sent according to rib.
func exported(rib map[netip.Prefix]*ribEntry) map[string]map[netip.Prefix]Announcement {
	m := map[string]map[netip.Prefix]Announcement{}
	for pfx, e := range rib {
		for peer := range e.peers {
			if m[peer] == nil {
				m[peer] = map[netip.Prefix]Announcement{}
			}
			m[peer][pfx] = e.ann
		}
	}
	return m
}
