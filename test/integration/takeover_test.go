package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// nftDrop runs nft in n: table bgwtest dropping what rule matches, in, out
// and forwarded (DIR is saddr or daddr).
func nftDrop(ctx context.Context, n *lab.Netns, rule string) error {
	var b strings.Builder
	b.WriteString("add table inet bgwtest; ")
	for _, c := range []struct{ name, hook string }{{"c_in", "input"}, {"c_out", "output"}, {"c_fwd", "forward"}} {
		fmt.Fprintf(&b, "add chain inet bgwtest %s { type filter hook %s priority -300; }; ", c.name, c.hook)
		for _, dir := range []string{"saddr", "daddr"} {
			fmt.Fprintf(&b, "add rule inet bgwtest %s %s drop; ", c.name, strings.ReplaceAll(rule, "DIR", dir))
		}
	}
	_, err := n.Exec(ctx, "nft", b.String())
	return err
}

func nftClear(ctx context.Context, n *lab.Netns) error {
	_, err := n.Exec(ctx, "nft", "delete table inet bgwtest")
	return err
}

// pairState polls gw's status until ok holds for its pair part.
func (p *pairLab) waitPair(ctx context.Context, gw int, what string, ok func(*api.Pair) bool) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return lab.Poll(wctx, 20*time.Millisecond, func() (bool, error) {
		st, err := p.gw[gw].Status(wctx)
		if err != nil {
			return false, err
		}
		return st.Pair != nil && ok(st.Pair), nil
	})
}

func partnerUpNoTakeover(p *api.Pair) bool { return p.PartnerUp && len(p.Takeovers) == 0 }

// TestPairTakeover: an on-prem router without BFD, so on its own it would
// notice a silent instance only after the BGP hold time (9 s). With pair:
// the survivor takes over (the halves of the cloud prefix toward on-prem,
// of the on-prem prefix toward the cloud router) and traffic moves far
// sooner; the silent instance rejoining loses nothing; the link between
// two healthy instances cut: both take over, nothing lost, and each
// counts its takeover false once the link is back. Garbage on the pair
// port is dropped and counted.
func TestPairTakeover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := newPairLabWith(t, ctx, "active-active", false, true)
	for gw := range p.gw {
		require.NoError(t, p.waitPair(ctx, gw, "partner up", partnerUpNoTakeover), "gw%d: partner not up\n%s", gw+1, p.diagnostics())
	}

	// Garbage and a forged message on gw2's pair port change nothing.
	_, err := p.gwNS[0].Exec(ctx, "bash", "-c", "echo garbage >/dev/udp/10.10.2.1/7784; printf 'BGWP\\001\\003%058d' 0 >/dev/udp/10.10.2.1/7784")
	require.NoError(t, err)
	require.NoError(t, p.waitPair(ctx, 1, "drops counted", func(pp *api.Pair) bool {
		return pp.Channel.Malformed+pp.Channel.BadAuth >= 2 && partnerUpNoTakeover(pp)
	}), p.diagnostics())

	// gw1 silent: everything in and out dropped.
	var outage time.Duration
	up, down := p.traffic(t, ctx, 14*time.Second, func() {
		require.NoError(t, nftDrop(ctx, p.gwNS[0], "ip DIR 0.0.0.0/0"))
		start := time.Now()
		require.NoError(t, lab.Poll(ctx, 5*time.Millisecond, func() (bool, error) {
			a, err := p.paths(ctx, p.opFRR, "10.10.0.0/17")
			if err != nil || len(a) != 1 {
				return false, err
			}
			b, err := p.paths(ctx, p.crFRR, "10.1.0.0/17")
			return len(b) == 1 && b[0].NextHop == "10.10.2.1" && a[0].NextHop == "169.254.22.1", err
		}), "gw2 did not take over\n%s", p.diagnostics())
		outage = time.Since(start)
		st, err := p.gw[1].Status(ctx)
		require.NoError(t, err)
		require.Len(t, st.Pair.Takeovers, 1, p.diagnostics())
		require.Contains(t, st.Pair.Takeovers[0].Reason, "partner lost")
	})
	t.Logf("gw1 silent -> both routers use gw2's halves after %s", outage.Round(time.Millisecond))
	for _, r := range []lab.TrafficReport{up, down} {
		// Not a timing assertion on the machine: the hold time it would
		// otherwise take is 9 s, the traffic lasts 14 s.
		require.Less(t, r.MaxOutage, 3*time.Second, "%s -> %s: the takeover, not the on-prem hold time, moved the traffic", r.From, r.To)
	}

	// gw1 back: it rejoins, gw2's halves go release_delay after gw1
	// carries again; nothing is lost.
	up, down = p.traffic(t, ctx, 8*time.Second, func() {
		require.NoError(t, nftClear(ctx, p.gwNS[0]))
		require.NoError(t, p.waitPair(ctx, 1, "takeover ended", partnerUpNoTakeover), p.diagnostics())
		require.NoError(t, p.waitWhole(ctx), p.diagnostics())
	})
	requireNoLoss(t, "gw1 rejoining", up, down)
	st, err := p.gw[1].Status(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, st.Pair.History)
	require.False(t, st.Pair.History[len(st.Pair.History)-1].False, "gw1 lost its sessions: a real takeover")

	// The link between the two cut, both healthy: both take over, nothing lost.
	up, down = p.traffic(t, ctx, 10*time.Second, func() {
		require.NoError(t, nftDrop(ctx, p.gwNS[0], "ip DIR 10.10.2.1"))
		for gw := range p.gw {
			require.NoError(t, p.waitPair(ctx, gw, "takeover", func(pp *api.Pair) bool { return len(pp.Takeovers) == 1 }), p.diagnostics())
		}
		require.NoError(t, nftClear(ctx, p.gwNS[0]))
		for gw := range p.gw {
			require.NoError(t, p.waitPair(ctx, gw, "takeover ended", partnerUpNoTakeover), p.diagnostics())
		}
	})
	requireNoLoss(t, "the link between the instances cut", up, down)
	for gw := range p.gw {
		st, err := p.gw[gw].Status(ctx)
		require.NoError(t, err)
		require.Positive(t, st.Pair.FalseTakeoversTotal, "gw%d: a cut link's takeover is false", gw+1)
	}
}

func requireNoLoss(t *testing.T, what string, reports ...lab.TrafficReport) {
	t.Helper()
	for _, r := range reports {
		require.Positive(t, r.Received, "%s -> %s", r.From, r.To)
		require.Zero(t, r.Lost, "%s: %s -> %s lost datagrams (the probe's own sockets dropped %d)", what, r.From, r.To, r.ProbeDrops)
	}
}
