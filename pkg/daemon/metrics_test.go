package daemon

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/metrics"
)

func anns(prefixes ...string) []bgp.Announcement {
	out := []bgp.Announcement{}
	for _, p := range prefixes {
		out = append(out, bgp.Announcement{Prefix: netip.MustParsePrefix(p)})
	}
	return out
}

func TestWithdrawn(t *testing.T) {
	for _, tc := range []struct {
		name       string
		prev, next []bgp.Announcement
		want       int
	}{
		{"nothing before", nil, anns("10.0.0.0/8"), 0},
		{"same", anns("10.0.0.0/8", "10.1.0.0/16"), anns("10.0.0.0/8", "10.1.0.0/16"), 0},
		{"same, other attributes", anns("10.0.0.0/8"), []bgp.Announcement{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Prepend: 3}}, 0},
		{"same, other order", anns("10.0.0.0/8", "10.1.0.0/16"), anns("10.1.0.0/16", "10.0.0.0/8"), 0},
		{"all gone", anns("10.0.0.0/8", "10.1.0.0/16"), anns(), 2},
		{"all gone, nil", anns("10.0.0.0/8"), nil, 1},
		{"one gone, one new", anns("10.0.0.0/8", "10.1.0.0/16"), anns("10.0.0.0/8", "10.2.0.0/16"), 1},
		{"added only", anns("10.0.0.0/8"), anns("10.0.0.0/8", "10.2.0.0/16"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, withdrawn(tc.prev, tc.next))
		})
	}
}

func TestDaemonMetricsEvents(t *testing.T) {
	m := metrics.New(metrics.Options{
		Snapshot: func(context.Context) (api.Status, error) { return api.Status{}, nil },
		Tunnels:  []string{"a", "b"}, Peers: []string{"a", "b"},
	})
	dm := &daemonMetrics{m: m}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }

	// No event: a pass counts from its own start.
	assert.Equal(t, at(5), dm.take(at(5)))
	// The first event wins until a pass takes it; taking clears it.
	dm.event(at(10))
	dm.event(at(20))
	assert.Equal(t, at(10), dm.take(at(30)))
	assert.Equal(t, at(40), dm.take(at(40)))

	// The first pass withdraws nothing (nothing was applied before).
	dm.announced(at(0), at(1), map[string][]bgp.Announcement{"a": anns("10.0.0.0/8", "10.1.0.0/16"), "b": anns()}, nil)
	// A failed pass counts nothing, and the next one counts from what the
	// last successful pass applied.
	dm.announced(at(0), at(100), map[string][]bgp.Announcement{"a": anns(), "b": anns()}, errors.New("speaker busy"))
	dm.announced(at(1000), at(1300), map[string][]bgp.Announcement{"a": anns("10.0.0.0/8"), "b": anns("10.2.0.0/16")}, nil)
	// Adding only: no observation.
	dm.announced(at(2000), at(9000), map[string][]bgp.Announcement{"a": anns("10.0.0.0/8"), "b": anns("10.2.0.0/16", "10.3.0.0/16")}, nil)
	// Everything withdrawn from both peers: one observation of 2 ms.
	dm.announced(at(10000), at(12000), map[string][]bgp.Announcement{"a": anns(), "b": anns()}, nil)
	dm.failover("a")

	want := `
# HELP bgpgw_failovers_total Times a tunnel stopped carrying traffic (its announcements withdrawn) while bgpgw ran.
# TYPE bgpgw_failovers_total counter
bgpgw_failovers_total{tunnel="a"} 1
bgpgw_failovers_total{tunnel="b"} 0
# HELP bgpgw_withdrawals_total Prefixes withdrawn from a BGP peer.
# TYPE bgpgw_withdrawals_total counter
bgpgw_withdrawals_total{peer="a"} 2
bgpgw_withdrawals_total{peer="b"} 2
`
	require.NoError(t, testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"bgpgw_failovers_total", "bgpgw_withdrawals_total"))
	mfs, err := m.Gatherer().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "bgpgw_withdrawal_latency_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			assert.Equal(t, uint64(2), h.GetSampleCount())
			assert.InDelta(t, 0.0003+0.002, h.GetSampleSum(), 1e-9)
		}
	}

	// Metrics off: every call is a no-op on the nil pointer.
	var off *daemonMetrics
	off.event(at(1))
	assert.Equal(t, at(2), off.take(at(2)))
	off.announced(at(0), at(1), nil, nil)
	off.failover("a")
}
