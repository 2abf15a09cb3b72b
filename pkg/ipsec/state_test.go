package ipsec

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/strongswan/govici/vici"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// updown is a charon event about connection conn.
func updown(t *testing.T, name, conn string, up bool) vici.Event {
	t.Helper()
	m := vici.NewMessage()
	if up {
		require.NoError(t, m.Set("up", "yes"))
	}
	require.NoError(t, m.Set(conn, vici.NewMessage()))
	return vici.Event{Name: name, Message: m}
}

// TestSettle: a tunnel that is up is not taken down by a list-sas answer
// alone, for dropGrace: a rekey makes it look down or connecting for a
// moment (its IKE_SA busy and skipped, or the old IKE_SA listed without
// CHILD_SAs before the new one is registered), and took its BGP session
// down with it (QEMU guest, test/xfrm, forced rekeys). charon's down event
// takes it down at once; a tunnel that is not up takes every state at once.
func TestSettle(t *testing.T) {
	m := New(Options{Mode: config.IPsecXFRM, Tunnels: []config.Tunnel{{Name: "a"}, {Name: "b"}}})
	a, b := m.tunnels[0], m.tunnels[1]
	a.st.State, b.st.State = StateUp, StateUp
	t0 := time.Unix(1000, 0)

	// Not listed up, no event: kept up until dropGrace has passed.
	assert.False(t, m.settle(a, StateDown, t0))
	assert.False(t, m.settle(a, StateConnecting, t0.Add(dropGrace-time.Millisecond)))
	assert.True(t, m.settle(a, StateDown, t0.Add(dropGrace)), "still not up after dropGrace: taken down")
	// Listed up again in between: the grace starts over.
	assert.False(t, m.settle(a, StateDown, t0))
	assert.True(t, m.settle(a, StateUp, t0.Add(time.Second)))
	assert.False(t, m.settle(a, StateDown, t0.Add(2*time.Second)), "a new grace")

	// charon said a CHILD_SA of b went down: at once. Events of other
	// connections, up events and rekeys do not count.
	m.event(updown(t, "child-updown", "bgpgw-a", false))
	m.event(updown(t, "child-updown", "bgpgw-b", true))
	m.event(updown(t, "ike-rekey", "bgpgw-b", false))
	assert.False(t, m.settle(b, StateConnecting, t0))
	m.event(updown(t, "child-updown", "bgpgw-b", false))
	assert.True(t, m.settle(b, StateConnecting, t0.Add(time.Millisecond)))
	assert.Equal(t, uint64(1), b.st.Rekeys)
	// The event is used once.
	assert.False(t, m.settle(b, StateDown, t0.Add(2*time.Millisecond)))
	m.event(updown(t, "ike-updown", "bgpgw-b", false))
	assert.True(t, m.settle(b, StateDown, t0.Add(3*time.Millisecond)))

	// A tunnel that is not up takes every state at once.
	b.st.State = StateConnecting
	for _, s := range []string{StateDown, StateConnecting, StateUp} {
		assert.True(t, m.settle(b, s, t0), s)
	}
}
