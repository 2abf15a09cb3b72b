package daemon

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/bfd"
)

// TestLoopBringUp: nothing is announced before the instance check passes
// and the sessions are up; then the cloud prefixes go to the tunnels, the
// on-prem prefixes learned from them are routed (ECMP over both) and
// passed on to the cloud-side peer, in one pass.
func TestLoopBringUp(t *testing.T) {
	h := startLoop(t, activeActive())
	assert.Equal(t, []string{"add peer t1", "add peer t2", "add peer rr"}, h.next(), "only SetPeers before anything is up")
	st := h.status()
	assert.False(t, st.InstanceOK)
	assert.Equal(t, "normal", st.DrainState)
	assert.Equal(t, "BGP session not established", tunnelStatus(t, st, "t1").Reason)
	require.Len(t, st.Checks, 1)
	assert.Nil(t, st.Checks[0].OK, "no result yet")

	h.check("uplink", true)
	h.settle()
	assert.Empty(t, h.next(), "no session up: nothing to announce or route")
	assert.True(t, h.status().InstanceOK)

	h.sp.setSessions(map[string]sessionState{
		"t1": sessUp("10.1.0.0/16", "10.1.2.0/24"),
		"t2": sessUp("10.1.0.0/16"),
		"rr": sessUp(),
	})
	h.settle()
	assert.Equal(t, bringUpCalls, h.next())
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, h.sp.prefixesTo("t1"))
	assert.Equal(t, []string{"10.1.0.0/16 via 169.254.21.2,169.254.22.2", "10.1.2.0/24 via 169.254.21.2"}, h.rt.routes())

	st = h.status()
	assert.True(t, st.InstanceOK)
	for _, name := range []string{"t1", "t2"} {
		tu := tunnelStatus(t, st, name)
		assert.True(t, tu.Carrying, name)
		assert.Empty(t, tu.Reason, name)
	}
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, peerStatus(t, st, "t1").Announced)
	assert.Equal(t, "established", peerStatus(t, st, "t1").State)
	assert.Equal(t, []string{"10.1.0.0/16", "10.1.2.0/24"}, peerStatus(t, st, "rr").Announced)
	assert.Equal(t, []string{"10.1.0.0/16 via 169.254.21.2,169.254.22.2", "10.1.2.0/24 via 169.254.21.2"}, routeStrings(st))
	require.NotNil(t, st.Checks[0].OK)
	assert.True(t, *st.Checks[0].OK)
	assert.Empty(t, st.Errors)

	// What a tunnel sends changes: the routes and the cloud side follow.
	h.sp.setSessions(map[string]sessionState{"t2": sessUp("10.1.0.0/16", "10.1.3.0/24")})
	h.settle()
	assert.Equal(t, []string{"announce rr 10.1.3.0/24", "route add 10.1.3.0/24 via 169.254.22.2"}, h.next())

	// A quiet pass (nothing changed) calls the adapters again, changing
	// nothing.
	h.settle()
	assert.Empty(t, h.next())
}

// TestLoopInstanceCheck: a failing instance check withdraws everything
// from every peer at once; when it passes again, the announcements come
// back only after the hold-down, woken by the timer alone.
func TestLoopInstanceCheck(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()

	h.check("uplink", false)
	h.settle()
	assert.Equal(t, []string{
		"withdraw rr 10.1.0.0/16",
		"withdraw rr 10.1.2.0/24",
		"withdraw t1 10.10.0.0/16",
		"withdraw t1 10.20.0.0/24",
		"withdraw t2 10.10.0.0/16",
		"withdraw t2 10.20.0.0/24",
	}, h.next())
	st := h.status()
	assert.False(t, st.InstanceOK)
	assert.Empty(t, peerStatus(t, st, "t1").Announced)
	assert.Empty(t, peerStatus(t, st, "rr").Announced)
	// The core keeps the kernel routes toward the tunnels (they still
	// carry: traffic from the cloud side still in flight is delivered);
	// only the announcements move the traffic to the other instance.
	assert.Equal(t, []string{"10.1.0.0/16 via 169.254.21.2,169.254.22.2", "10.1.2.0/24 via 169.254.21.2"}, h.rt.routes())

	h.check("uplink", true)
	h.settle()
	assert.Empty(t, h.next(), "hold-down after the flap")
	assert.False(t, h.status().InstanceOK)
	h.clock.Advance(999 * time.Millisecond)
	h.settle()
	assert.Empty(t, h.next(), "still in the hold-down")

	// The hold-down ends: nothing is posted, the loop's timer wakes it.
	h.clock.Advance(time.Millisecond)
	h.calls.waitFor(t, waitTimeout, "re-announcement at the end of the hold-down", func() bool {
		return len(h.sp.announced["t1"]) == 2 && len(h.sp.announced["t2"]) == 2 && len(h.sp.announced["rr"]) == 2
	})
	h.settle()
	assert.Equal(t, bringUpCalls[:6], h.next())
	assert.True(t, h.status().InstanceOK)
}

// TestLoopBFD: a tunnel's BFD going Down after Up withdraws from that
// tunnel and resets its session once, after the withdrawal; a Down
// without a prior Up changes nothing; a cloud-side peer's Down only
// resets its session.
func TestLoopBFD(t *testing.T) {
	h := startLoop(t, yamlWith(activeActiveYAML, "$BFD", ", bfd: {enabled: true}", "$T3", ""))
	h.bringUp()
	assert.Equal(t, bringUpCalls, h.calls.Lines(3), "BFD that never reported does not hold anything")
	h.skip()

	h.bfd("t1", bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.settle()
	assert.Empty(t, h.next())

	diag := bfd.DiagControlDetectionExpired
	h.bfd("t1", bfd.StateUp, bfd.StateDown, bfd.StateUp, diag)
	h.settle()
	calls := h.next()
	assert.Equal(t, []string{
		"withdraw rr 10.1.2.0/24", // learned from t1 only
		"withdraw t1 10.10.0.0/16",
		"withdraw t1 10.20.0.0/24",
		"reset t1: BFD down: " + diag.String(),
		"route change 10.1.0.0/16 via 169.254.22.2",
		"route del 10.1.2.0/24",
	}, calls)
	reset := slices.IndexFunc(calls, func(l string) bool { return strings.HasPrefix(l, "reset t1:") })
	for i, l := range calls {
		if strings.HasPrefix(l, "withdraw t1 ") {
			assert.Less(t, i, reset, "the reset goes after the withdrawal")
		}
	}
	assert.Contains(t, calls[reset], "BFD down")
	st := h.status()
	t1 := tunnelStatus(t, st, "t1")
	assert.False(t, t1.Carrying)
	assert.Contains(t, t1.Reason, "BFD down")
	assert.True(t, tunnelStatus(t, st, "t2").Carrying)

	// More passes do not reset again.
	h.sp.setSessions(map[string]sessionState{"t2": sessUp("10.1.0.0/16")})
	h.settle()
	h.settle()
	assert.Empty(t, h.next())
	_, resets := h.sp.counts("t1")
	assert.Equal(t, 1, resets)

	// t2's session never came Up: its Down is no failure (the peer may not
	// run BFD).
	h.bfd("t2", bfd.StateInit, bfd.StateDown, bfd.StateDown, diag)
	h.settle()
	assert.Empty(t, h.next())
	assert.True(t, tunnelStatus(t, h.status(), "t2").Carrying)

	// The cloud-side peer: a reset, nothing withdrawn.
	h.bfd("rr", bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.settle()
	h.bfd("rr", bfd.StateUp, bfd.StateDown, bfd.StateUp, diag)
	h.settle()
	assert.Equal(t, []string{"reset rr: BFD down: " + diag.String()}, h.next())

	// t1's BFD comes back: after the hold-down of its first flap (1s).
	h.bfd("t1", bfd.StateDown, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.settle()
	assert.Empty(t, h.next())
	assert.NotNil(t, tunnelStatus(t, h.status(), "t1").HoldDownUntil)
	h.clock.Advance(time.Second)
	h.calls.waitFor(t, waitTimeout, "t1 announced again", func() bool { return len(h.sp.announced["t1"]) == 2 })
	h.settle()
	assert.Equal(t, []string{
		"announce rr 10.1.2.0/24",
		"announce t1 10.10.0.0/16",
		"announce t1 10.20.0.0/24",
		"route change 10.1.0.0/16 via 169.254.21.2,169.254.22.2",
		"route add 10.1.2.0/24 via 169.254.21.2",
	}, h.next())
}

// TestLoopBFDWhileDrained: a BFD Down of a session the drain holds down
// resets nothing (it is down already), neither then nor after undrain.
func TestLoopBFDWhileDrained(t *testing.T) {
	h := startLoop(t, yamlWith(activeActiveYAML, "$BFD", ", bfd: {enabled: true}", "$T3", ""))
	h.bringUp()
	h.bfd("t1", bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	require.NoError(t, h.d.Drain(h.ctx()))
	h.clock.Advance(2 * time.Second)
	h.settle()
	require.True(t, h.sp.isDown("t1"))
	h.skip()

	h.bfd("t1", bfd.StateUp, bfd.StateDown, bfd.StateUp, bfd.DiagControlDetectionExpired)
	h.settle()
	assert.Empty(t, h.next(), "no reset of a session held down")

	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	for _, l := range h.next() {
		assert.False(t, strings.HasPrefix(l, "reset "), "%s: a reset left over from the drain", l)
	}
	_, resets := h.sp.counts("t1")
	assert.Zero(t, resets)
	// BFD is still down: t1 stays out until it is Up again.
	assert.Empty(t, h.sp.prefixesTo("t1"))
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, h.sp.prefixesTo("t2"))
}
