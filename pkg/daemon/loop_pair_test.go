package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/pair"
)

const loopPairKeyEnv = "BGPGW_TEST_LOOP_PAIR_KEY"

// pairYAML is activeActive with a pair: both tunnels reach device site.
func pairYAML() string {
	y := strings.Replace(activeActive(), "  - {name: t1, ", "  - {name: t1, device: site, ", 1)
	y = strings.Replace(y, "  - {name: t2, ", "  - {name: t2, device: site, ", 1)
	return y + "pair: {partner: 10.10.2.1, local_address: 10.10.1.1, key_env: " + loopPairKeyEnv + ", release_delay: 2s}\n"
}

// partnerSays posts a message of the partner, as the channel would.
func (h *loopHarness) partnerSays(epoch uint64, drops uint32, carrying ...string) {
	h.d.mail.post(pairEvent{msg: pair.Message{State: pair.State{Instance: "gw2", Devices: []string{"site"},
		Carrying: carrying, ChecksOK: true, Drops: drops}, Epoch: epoch}, at: h.clock.Now()}, h.clock.Now())
}

// TestLoopPairTakeover: the partner lost (its BFD Down), the halves go out
// toward the device and the cloud side in one pass; it comes back, never
// having stopped carrying: the halves go release_delay later, and the
// takeover is counted false. Its state unheard for three refreshes while
// BFD stays Up is a loss too.
func TestLoopPairTakeover(t *testing.T) {
	require.NoError(t, os.Setenv(loopPairKeyEnv, "loop-test-pair-key-0123"))
	h := startLoop(t, pairYAML())
	h.partnerSays(7, 0, "site")
	h.bfd(pairBFDName, bfd.StateInit, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.bringUp()
	assert.Equal(t, bringUpCalls, h.calls.Lines(3), "no takeover while the partner carries the device")
	h.skip()
	p := h.status().Pair
	require.NotNil(t, p)
	assert.True(t, p.PartnerUp)
	assert.Equal(t, []string{"site"}, p.Carrying)
	assert.Equal(t, []string{"site"}, p.PartnerCarrying)

	diag := bfd.DiagControlDetectionExpired
	h.bfd(pairBFDName, bfd.StateUp, bfd.StateDown, bfd.StateUp, diag)
	h.settle()
	halves := []string{
		"announce rr 10.1.0.0/17", "announce rr 10.1.128.0/17", "announce rr 10.1.2.0/25", "announce rr 10.1.2.128/25",
		"announce t1 10.10.0.0/17", "announce t1 10.10.128.0/17", "announce t1 10.20.0.0/25", "announce t1 10.20.0.128/25",
		"announce t2 10.10.0.0/17", "announce t2 10.10.128.0/17", "announce t2 10.20.0.0/25", "announce t2 10.20.0.128/25",
	}
	assert.ElementsMatch(t, halves, h.next())
	p = h.status().Pair
	assert.False(t, p.PartnerUp)
	assert.Contains(t, p.Why, "BFD Down")
	require.Len(t, p.Takeovers, 1)
	assert.Equal(t, "site", p.Takeovers[0].Device)
	assert.Contains(t, p.Takeovers[0].Reason, "partner lost")
	assert.Equal(t, uint64(1), p.TakeoversTotal)

	// Back, same epoch, no drop: the halves stay release_delay.
	h.bfd(pairBFDName, bfd.StateDown, bfd.StateUp, bfd.StateUp, bfd.DiagNone)
	h.partnerSays(7, 0, "site")
	h.settle()
	assert.Empty(t, h.next())
	p = h.status().Pair
	require.Len(t, p.Takeovers, 1)
	assert.NotNil(t, p.Takeovers[0].ReleaseAt)
	for range 4 { // it keeps talking: never stale
		h.clock.Advance(pairRefresh)
		h.partnerSays(7, 0, "site")
		h.settle()
	}
	var withdrawn []string
	for _, l := range halves {
		withdrawn = append(withdrawn, strings.Replace(l, "announce", "withdraw", 1))
	}
	assert.ElementsMatch(t, withdrawn, h.next())
	p = h.status().Pair
	assert.Empty(t, p.Takeovers)
	require.Len(t, p.History, 1)
	assert.True(t, p.History[0].False, "the partner never stopped carrying")
	assert.Equal(t, uint64(1), p.FalseTakeoversTotal)

	// BFD Up but nothing heard for three refreshes: lost.
	h.clock.Advance(pairStaleAfter * pairRefresh)
	h.calls.waitFor(t, waitTimeout, "the takeover after the partner's state went stale", func() bool {
		return len(h.sp.announced["t1"]) == 6
	})
	h.settle()
	assert.ElementsMatch(t, halves, h.next())
	p = h.status().Pair
	assert.False(t, p.PartnerUp)
	assert.Contains(t, p.Why, "no state heard")
}
