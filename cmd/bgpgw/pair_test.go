package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/bgpgw/bgpgw/pkg/api"
)

// TestPrintPair: the partner's line and one line per takeover, as the
// operations guide shows them.
func TestPrintPair(t *testing.T) {
	heard := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	printPair(&b, &api.Pair{Partner: "10.10.2.1", PartnerUp: true, LastHeard: &heard, PartnerName: "gw2",
		PartnerCarrying: []string{"onprem"}, PartnerChecksOK: true, Takeover: "more-specific", TakeoversTotal: 1})
	assert.Equal(t, "partner 10.10.2.1 (gw2): up; says it carries [onprem]; takeover more-specific, 1 so far (0 false)\n", b.String())

	b.Reset()
	why := "BFD Down: Control Detection Time Expired"
	printPair(&b, &api.Pair{Partner: "10.10.2.1", Why: why, LastHeard: &heard, PartnerName: "gw2",
		PartnerCarrying: []string{"onprem"}, PartnerChecksOK: true, Takeover: "more-specific", TakeoversTotal: 2,
		Takeovers: []api.Takeover{{Device: "onprem", Reason: "partner lost: " + why, DurationSeconds: 4.2123}}})
	assert.Equal(t, "partner 10.10.2.1 (gw2): LOST: "+why+"; says it carries [onprem]; takeover more-specific, 2 so far (0 false)\n"+
		"takeover onprem: partner lost: "+why+", for 4.212s\n", b.String())

	b.Reset()
	printPair(&b, nil)
	assert.Empty(t, b.String(), "no pair: nothing")
}
