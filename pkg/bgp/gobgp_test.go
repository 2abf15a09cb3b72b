//go:build !nonetns

package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/bgp/bgptest"
)

// The tests run in a private network namespace: the speakers listen on
// 127.0.0.x there and nowhere else. It needs root, and fails without it
// (lab.RunInPrivateNetns).
//
// The files built with !nonetns (this one, grpc_test.go) hold the tests
// that need that namespace: real speakers and peers, the listeners in the
// namespace. `make check` builds with -tags nonetns: without them and
// without this TestMain, the pure tests (diff_test.go) run as any user.
// `make test` builds without the tag and runs every test here.
func TestMain(m *testing.M) { lab.RunInPrivateNetns(m) }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startPeer(t *testing.T, addr string, asn uint32, port int, gw string) *bgptest.Peer {
	t.Helper()
	p, err := bgptest.Start(context.Background(), addr, asn, port, gw, 65515)
	require.NoError(t, err)
	t.Cleanup(p.Stop)
	return p
}

func routes(t *testing.T, p *bgptest.Peer) map[netip.Prefix][]uint32 {
	r, err := p.Routes()
	require.NoError(t, err)
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// startSpeaker starts a GoBGP speaker on 127.0.0.1:port, closed when the
// test ends.
func startSpeaker(t *testing.T, port int) *GoBGP {
	t.Helper()
	a, err := NewGoBGP(context.Background(), Global{ASN: 65515, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: port,
		ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a
}

// tunnelPeer is the session config toward a stand-in peer.
func tunnelPeer(name string, p *bgptest.Peer, port int, asn uint32) PeerConfig {
	return PeerConfig{Name: name, Kind: KindTunnel, Address: p.Addr, LocalAddress: netip.MustParseAddr("127.0.0.1"),
		Port: port, PeerASN: asn, MaxPrefixes: 100, HoldTime: 9 * time.Second, Keepalive: 3 * time.Second, ConnectRetry: time.Second}
}

// waitEstablished waits until the speaker has n sessions, all established.
func waitEstablished(t *testing.T, a *GoBGP, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d sessions established", n), func() bool {
		st, err := a.Status(context.Background())
		return err == nil && len(st) == n && !slices.ContainsFunc(st, func(p PeerStatus) bool { return p.State != StateEstablished })
	})
}

// has reports whether p holds exactly the prefixes want.
func has(t *testing.T, p *bgptest.Peer, want ...netip.Prefix) func() bool {
	return func() bool {
		got := routes(t, p)
		return len(got) == len(want) && !slices.ContainsFunc(want, func(w netip.Prefix) bool { _, ok := got[w]; return !ok })
	}
}

func TestPerPeerAnnouncementsWithRealPeers(t *testing.T) {
	// Registered first, so it runs after every other cleanup has stopped its speaker.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, port)
	b := startPeer(t, "127.0.0.2", 65010, port, "127.0.0.1")
	c := startPeer(t, "127.0.0.3", 65020, port, "127.0.0.1")
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{tunnelPeer("b", b, port, 65010), tunnelPeer("c", c, port, 65020)}))
	waitEstablished(t, a, 2)
	// Different sets per peer.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {{Prefix: pA}, {Prefix: pB}}, "c": {{Prefix: pA}}}))
	waitFor(t, "b has A and B", has(t, b, pA, pB))
	waitFor(t, "c has A only", has(t, c, pA))
	// Sessions is Status without Announced.
	full, err := a.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{pA, pB}, full[0].Announced)
	lean, err := a.Sessions(ctx)
	require.NoError(t, err)
	for i := range full {
		full[i].Announced = nil
	}
	assert.Equal(t, full, lean)

	// Move B from b to c: b gets a withdrawal, c the announcement.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {{Prefix: pA}}, "c": {{Prefix: pA}, {Prefix: pB}}}))
	waitFor(t, "B withdrawn from b", has(t, b, pA))
	waitFor(t, "B announced to c", has(t, c, pA, pB))

	// New attributes reach every peer that has the prefix.
	gshut := Announcement{Prefix: pA, Prepend: 2, Communities: []uint32{CommunityGracefulShutdown}}
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {gshut}, "c": {gshut, {Prefix: pB}}}))
	for _, p := range []*bgptest.Peer{b, c} {
		waitFor(t, "graceful shutdown community", func() bool {
			return slices.Equal(routes(t, p)[pA], []uint32{CommunityGracefulShutdown})
		})
	}

	// c's only announcement loses a conflict (b owns A with other
	// attributes): an error names it, and c loses everything the slow way.
	err = a.SetAnnouncements(ctx, map[string][]Announcement{"b": {gshut}, "c": {{Prefix: pA}}})
	assert.ErrorContains(t, err, "peers b and c want different attributes")
	waitFor(t, "c empty after the conflict", has(t, c))
	assert.True(t, has(t, b, pA)(), "b keeps A")

	// Withdraw everything.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{}))
	waitFor(t, "b empty", has(t, b))
	waitFor(t, "c empty", has(t, c))

	st, err := a.Status(ctx)
	require.NoError(t, err)
	for _, p := range st {
		assert.Empty(t, p.Announced, p.Name)
	}
	// Unknown peers are an error, and change nothing else.
	assert.ErrorContains(t, a.SetAnnouncements(ctx, map[string][]Announcement{"nope": {{Prefix: pA}}}), "announce to nope: no such peer")
}

// localPaths lists the prefixes of the local paths in GoBGP's RIB.
func localPaths(t *testing.T, a *GoBGP) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	err := a.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
		func(nlri bgp.NLRI, paths []*apiutil.Path) {
			pfx, ok := nlriPrefix(nlri)
			if !ok {
				return
			}
			for _, p := range paths {
				if !p.PeerAddress.IsValid() {
					out = append(out, pfx)
				}
			}
		})
	require.NoError(t, err)
	return sortedUnique(out)
}

// TestEmptiedPeersAndParkedPaths covers the fast withdrawal: a peer losing
// everything is withdrawn from by closing its gate, its gate opens again,
// paths nobody wants are parked, reused, and swept.
func TestEmptiedPeersAndParkedPaths(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, port)
	clock := newFakeClock() // parking, the deferred bookkeeping and the sweeper
	a.mu.Lock()
	a.clock = clock
	a.mu.Unlock()
	b := startPeer(t, "127.0.0.2", 65010, port, "127.0.0.1")
	c := startPeer(t, "127.0.0.3", 65020, port, "127.0.0.1")
	peer := func(name string, p *bgptest.Peer, asn uint32) PeerConfig { return tunnelPeer(name, p, port, asn) }
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{peer("b", b, 65010), peer("c", c, 65020)}))
	waitEstablished(t, a, 2)
	both := []Announcement{{Prefix: pA}, {Prefix: pB}}
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": both, "c": both}))
	waitFor(t, "b has A and B", has(t, b, pA, pB))
	waitFor(t, "c has A and B", has(t, c, pA, pB))

	// b loses everything (its tunnel failed), c keeps both.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"c": both}))
	waitFor(t, "b empty", has(t, b))
	assert.True(t, has(t, c, pA, pB)(), "c keeps A and B")
	// b is wanted again, for A only: its gate opens, B (left in its export
	// set behind the closed gate) is not sent.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {{Prefix: pA}}, "c": both}))
	waitFor(t, "b has A again", has(t, b, pA))
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": both, "c": both}))
	waitFor(t, "b has A and B again", has(t, b, pA, pB))
	// Closed again, and a policy rebuild (a peer added) in between.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"c": both}))
	waitFor(t, "b empty", has(t, b))
	d := startPeer(t, "127.0.0.4", 65030, port, "127.0.0.1")
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{peer("b", b, 65010), peer("c", c, 65020), peer("d", d, 65030)}))
	waitEstablished(t, a, 3)
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {{Prefix: pB}}, "c": both}))
	waitFor(t, "b has B", has(t, b, pB))
	assert.Empty(t, routes(t, d), "d gets nothing")
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": both, "c": both}))
	waitFor(t, "b has A and B again", has(t, b, pA, pB))

	// Everybody loses everything (an instance-scope check failed): the
	// paths are parked, not deleted.
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{}))
	waitFor(t, "b empty", has(t, b))
	waitFor(t, "c empty", has(t, c))
	st, err := a.Status(ctx)
	require.NoError(t, err)
	for _, p := range st {
		assert.Empty(t, p.Announced, p.Name)
	}
	a.mu.Lock()
	a.runDeferred() // the parking is part of the bookkeeping
	a.mu.Unlock()
	assert.Equal(t, []netip.Prefix{pA, pB}, localPaths(t, a), "parked, not deleted")
	// A comes back to b alone, B to c with other attributes; the rest
	// stays parked and the sweeper deletes it.
	gshut := Announcement{Prefix: pB, Communities: []uint32{CommunityGracefulShutdown}}
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {{Prefix: pA}}, "c": {gshut}}))
	waitFor(t, "b has A", has(t, b, pA))
	waitFor(t, "c has B with the community", func() bool {
		r := routes(t, c)
		return len(r) == 1 && slices.Equal(r[pB], []uint32{CommunityGracefulShutdown})
	})
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{"b": {{Prefix: pA}}}))
	waitFor(t, "c empty again", has(t, c))
	// The bookkeeping parks B (it would run settleFor later) and arms the
	// sweeper: B stays in the RIB until parkFor has passed, then goes.
	a.mu.Lock()
	a.runDeferred()
	parkFor := a.parkFor
	a.mu.Unlock()
	assert.Equal(t, []netip.Prefix{pA, pB}, localPaths(t, a), "B parked")
	clock.Advance(parkFor - time.Millisecond)
	assert.Equal(t, []netip.Prefix{pA, pB}, localPaths(t, a), "B parked until parkFor has passed")
	clock.Advance(time.Millisecond)
	waitFor(t, "B's parked path swept from the RIB", func() bool {
		return slices.Equal(localPaths(t, a), []netip.Prefix{pA})
	})
	a.mu.Lock()
	assert.Len(t, a.rib, 1, "the applied RIB forgets the swept path")
	a.mu.Unlock()
	assert.True(t, has(t, b, pA)(), "b keeps A through the sweep")
}

// TestRandomAnnouncementsReachPeers applies random desired states to three
// real peers, sometimes two in a row with no wait (the second runs the
// first one's deferred bookkeeping), and checks after each that every peer
// holds exactly what it should, with the right communities: gates closing
// and reopening, stale export sets, parked paths reused and swept.
func TestRandomAnnouncementsReachPeers(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, port)
	a.mu.Lock()
	a.parkFor = 300 * time.Millisecond // the sweeper runs during the test
	a.mu.Unlock()
	names := []string{"b", "c", "d"}
	peers := map[string]*bgptest.Peer{}
	var cfgs []PeerConfig
	for i, name := range names {
		asn := uint32(65010 + 10*i)
		peers[name] = startPeer(t, fmt.Sprintf("127.0.0.%d", i+2), asn, port, "127.0.0.1")
		cfgs = append(cfgs, tunnelPeer(name, peers[name], port, asn))
	}
	require.NoError(t, a.SetPeers(ctx, cfgs))
	waitEstablished(t, a, 3)
	prefixes := []netip.Prefix{pA, pB, netip.MustParsePrefix("10.30.0.0/16"), netip.MustParsePrefix("10.40.0.0/16")}
	rng := rand.New(rand.NewPCG(7, 8))
	random := func() map[string][]Announcement {
		var comms []uint32
		if rng.IntN(3) == 0 {
			comms = []uint32{CommunityGracefulShutdown}
		}
		desired := map[string][]Announcement{}
		for _, name := range names {
			if rng.IntN(3) == 0 {
				continue // this peer loses everything
			}
			for _, pfx := range prefixes {
				if rng.IntN(2) == 0 {
					desired[name] = append(desired[name], Announcement{Prefix: pfx, Communities: comms})
				}
			}
		}
		return desired
	}
	holds := func(desired map[string][]Announcement) func() bool {
		return func() bool {
			for _, name := range names {
				got := routes(t, peers[name])
				if len(got) != len(desired[name]) {
					return false
				}
				for _, ann := range desired[name] {
					c, ok := got[ann.Prefix]
					if !ok || !slices.Equal(c, ann.Communities) {
						return false
					}
				}
			}
			return true
		}
	}
	for step := range 40 {
		if rng.IntN(4) == 0 {
			require.NoError(t, a.SetAnnouncements(ctx, random()), "step %d (skipped)", step)
		}
		desired := random()
		require.NoError(t, a.SetAnnouncements(ctx, desired), "step %d", step)
		waitFor(t, fmt.Sprintf("step %d: every peer holds what it should", step), holds(desired))
	}
	require.NoError(t, a.SetAnnouncements(ctx, map[string][]Announcement{}))
	waitFor(t, "nothing held", holds(nil))
	waitFor(t, "every parked path swept", func() bool { return len(localPaths(t, a)) == 0 })
}
