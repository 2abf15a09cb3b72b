//go:build guest

package xfrm

import (
	"context"
	"slices"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// Probe traffic: flows per direction and family, one datagram per flow
// every interval. op and cr spread flows over the gateways by ports, so
// with 8 flows a direction and family the chance that one gateway gets no
// flow of a direction is 2^-15.
const (
	burstFlows    = 8
	burstInterval = 50 * time.Millisecond
)

// carried is the probe datagrams one gateway forwarded through its XFRM
// interfaces: from on-prem (received) and to on-prem (sent), counted by nft
// in its forward hook.
type carried struct{ fromOnprem, toOnprem uint64 }

func probeCounters(ctx context.Context, g *gwNode) (carried, error) {
	c, err := nftCounters(ctx, g.ns, countTable)
	if err != nil {
		return carried{}, err
	}
	return carried{c["from-onprem"], c["to-onprem"]}, nil
}

// burst sends probe traffic between oh and ch, both ways and in both
// families, for d, and checks that it arrived (at least maxLoss of each
// direction may be lost). It returns what went through each gateway.
func (x *xlab) burst(ctx context.Context, what string, d time.Duration, maxLoss float64) map[string]carried {
	x.t.Helper()
	before := map[string]carried{}
	for _, g := range x.gws {
		c, err := probeCounters(ctx, g)
		require.NoError(x.t, err)
		before[g.name] = c
	}
	type dir struct {
		from, to *lab.Netns
		addr     string
		port     int
	}
	dirs := []dir{{x.oh, x.ch, chAddr4, 40000}, {x.ch, x.oh, ohAddr4, 41000},
		{x.oh, x.ch, chAddr6, 42000}, {x.ch, x.oh, ohAddr6, 43000}}
	var flows []*lab.Flows
	for _, dr := range dirs {
		f, err := x.l.StartTraffic(ctx, x.probe, dr.from, dr.to, dr.addr, dr.port, burstFlows, burstInterval, d)
		require.NoError(x.t, err, "%s: start traffic to %s", what, dr.addr)
		flows = append(flows, f)
	}
	for i, f := range flows {
		rep, err := f.Stop(ctx)
		require.NoError(x.t, err, "%s: traffic to %s", what, dirs[i].addr)
		x.t.Logf("%s: to %s: sent %d, received %d, lost %d, longest outage %v", what, dirs[i].addr,
			rep.Sent, rep.Received, rep.Lost, rep.MaxOutage)
		require.Positive(x.t, rep.Sent)
		require.LessOrEqual(x.t, float64(rep.Lost), maxLoss*float64(rep.Sent),
			"%s: traffic to %s lost %d of %d\n%s\n%s", what, dirs[i].addr, rep.Lost, rep.Sent, rep, x.diag())
	}
	out := map[string]carried{}
	for _, g := range x.gws {
		c, err := probeCounters(ctx, g)
		require.NoError(x.t, err)
		out[g.name] = carried{c.fromOnprem - before[g.name].fromOnprem, c.toOnprem - before[g.name].toOnprem}
	}
	x.t.Logf("%s: probe datagrams through the XFRM interfaces (from on-prem, to on-prem): %v", what, out)
	return out
}

// requireCarriers fails unless the gateways named forwarded probe traffic
// both ways through their XFRM interfaces in a burst (at least one flow's
// worth), and the others none at all.
func (x *xlab) requireCarriers(what string, c map[string]carried, carriers ...string) {
	x.t.Helper()
	perFlow := uint64(time.Second / burstInterval) // a flow sends at least a second's worth in a burst
	for _, g := range x.gws {
		got := c[g.name]
		if slices.Contains(carriers, g.name) {
			require.True(x.t, got.fromOnprem >= perFlow && got.toOnprem >= perFlow,
				"%s: %s forwarded only %+v probe datagrams through its XFRM interfaces, want at least %d each way",
				what, g.name, got, perFlow)
		} else {
			require.Equal(x.t, carried{}, got, "%s: %s forwarded probe datagrams through its XFRM interfaces, want none", what, g.name)
		}
	}
}
