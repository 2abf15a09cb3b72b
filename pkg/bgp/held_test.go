//go:build !nonetns

package bgp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHeldDownAcrossSetPeers: SetHeldDown closes exactly the sessions it
// names and keeps them down, also when SetPeers re-creates one of them (a
// reload changed its settings) or adds one already held; it lets them up
// again when they are no longer named; a held session is not reset; an
// unknown peer is an error naming it.
func TestHeldDownAcrossSetPeers(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	a := startSpeaker(t, port)
	b := startPeer(t, "127.0.0.2", 65010, port, "127.0.0.1")
	c := startPeer(t, "127.0.0.3", 65020, port, "127.0.0.1")
	pb, pc := tunnelPeer("b", b, port, 65010), tunnelPeer("c", c, port, 65020)
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{pb, pc}))
	waitEstablished(t, a, 2)

	state := func(name string) PeerStatus {
		st, err := a.Sessions(ctx)
		require.NoError(t, err)
		for _, p := range st {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("no session %s in %v", name, st)
		return PeerStatus{}
	}
	require.NoError(t, a.SetHeldDown(ctx, map[string]string{"b": "bgpgw: drained for maintenance"}))
	waitFor(t, "b held down", func() bool { s := state("b"); return s.AdminDown && s.State != StateEstablished })
	assert.Equal(t, StateEstablished, state("c").State, "c is not touched")
	require.NoError(t, a.Reset(ctx, "b", "BFD down"), "a held session is not reset")

	// A reload re-creates b (another hold time): it comes back down.
	pb.HoldTime = 12 * time.Second
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{pb, pc}))
	assert.True(t, state("b").AdminDown, "b re-created held down")
	assert.Equal(t, StateEstablished, state("c").State)

	// Let go: b comes up; the same set again changes nothing.
	require.NoError(t, a.SetHeldDown(ctx, nil))
	waitEstablished(t, a, 2)
	require.NoError(t, a.SetHeldDown(ctx, map[string]string{}))
	waitEstablished(t, a, 2)

	err := a.SetHeldDown(ctx, map[string]string{"x": "bye"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "hold x down: no such peer")
}
