package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bgpgw/bgpgw/pkg/api"
)

// TestPrintRejected: the counts by reason, each route with its AS path and
// reason, the session's error, and what the bound left out.
func TestPrintRejected(t *testing.T) {
	var b bytes.Buffer
	printRejected(&b, api.Status{Peers: []api.Peer{
		{Name: "cr", Address: "10.0.0.1", PeerASN: 65100},
		{Name: "onprem", Address: "169.254.21.2", PeerASN: 65010, RejectedCount: 102,
			RejectedReasons: map[string]int{"cloud-prefix": 1, "default-route": 101},
			RejectedRoutes: []api.RejectedRoute{
				{Prefix: "0.0.0.0/0", ASPath: "65010", Reason: "default-route", Detail: "a default route"},
				{Prefix: "10.10.5.0/24", ASPath: "65010 {65020 65021}", Reason: "cloud-prefix", Detail: "inside cloud prefix 10.10.0.0/16"},
			}},
		{Name: "other", Address: "169.254.22.2", PeerASN: 65020, LastError: "maximum prefix count (10) exceeded; session held down"},
	}})
	assert.Equal(t, `peer onprem (169.254.21.2, AS 65010): 102 refused (cloud-prefix 1, default-route 101)
  0.0.0.0/0     65010                default-route: a default route
  10.10.5.0/24  65010 {65020 65021}  cloud-prefix: inside cloud prefix 10.10.0.0/16
  ... and 100 more (status lists the first 100)
peer other (169.254.22.2, AS 65020): 0 refused
  session: maximum prefix count (10) exceeded; session held down
`, b.String())

	b.Reset()
	printRejected(&b, api.Status{Peers: []api.Peer{{Name: "cr"}}})
	assert.Equal(t, "no peer had a route refused\n", b.String())
}
