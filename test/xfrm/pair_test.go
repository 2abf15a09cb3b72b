//go:build guest

package xfrm

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// TestXfrmPair: two bgpgw in ipsec.mode xfrm against a route-based
// strongSwan device: every tunnel up with kernel ESP on its own XFRM
// interface, BGP over the inside addresses, the learned routes into the
// XFRM interfaces, traffic both ways through both instances in both
// families. Then the faults, one after the other on gw1: each moves the
// traffic to gw2, the traffic comes back after it, and no stale XFRM
// interface, state, policy or route is left.
func TestXfrmPair(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	x := newLab(t, ctx, labOptions{device: strongSwan})
	x.waitConverged(ctx, "start", "gw1", "gw2")
	t.Logf("lab up and converged in %v", time.Since(start).Round(100*time.Millisecond))
	x.checkDataPlane(ctx)
	x.requireCarriers("both carrying", x.burst(ctx, "both carrying", 2*time.Second, 0.05), "gw1", "gw2")
	x.waitNoStale(ctx, "start", "gw1", "gw2")

	gw1 := x.gw("gw1")
	faults := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"rekeys", func(t *testing.T) { x.rekeys(ctx, gw1) }},
		{"charon killed", func(t *testing.T) {
			x.moveAndBack(ctx, "charon killed on gw1", gw1.charon.Kill, func() error { return gw1.charon.Start() },
				func() {
					st, err := gw1.status(ctx)
					require.NoError(t, err)
					for _, tn := range st.Tunnels {
						assert.Contains(t, tn.IPsec.Error, "charon", "status names charon as the cause")
					}
				})
		}},
		{"ESP dropped", func(t *testing.T) {
			nft := "add table inet bgwesp; add chain inet bgwesp in { type filter hook input priority 0; }; " +
				"add rule inet bgwesp in meta l4proto esp drop"
			x.moveAndBack(ctx, "ESP dropped at gw1, IKE answering",
				func() error { _, err := gw1.ns.Exec(ctx, "nft", nft); return err },
				func() error { _, err := gw1.ns.Exec(ctx, "nft", "delete table inet bgwesp"); return err },
				func() {
					st, err := gw1.status(ctx)
					require.NoError(t, err)
					for _, tn := range st.Tunnels {
						assert.Equal(t, "up", tn.IPsec.State, "%s: IKE still up: BFD found the dead data plane", tn.Name)
						assert.Contains(t, tn.Reason, "BFD down")
					}
				})
		}},
		{"SA deleted by the far end", func(t *testing.T) { x.farEndDeletes(ctx, gw1) }},
		{"bgpgw killed and restarted", func(t *testing.T) {
			x.moveAndBack(ctx, "bgpgw killed on gw1",
				func() error {
					if err := gw1.gw.Proc.Signal(syscall.SIGKILL); err != nil {
						return err
					}
					wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					_ = gw1.gw.Proc.Wait(wctx) // "signal: killed"
					if !gw1.gw.Proc.Exited() {
						return fmt.Errorf("bgpgw still running after SIGKILL")
					}
					return nil
				},
				func() error { return x.startGateway(ctx, gw1) }, nil)
		}},
	}
	for _, f := range faults {
		if !x.run(f.name, f.run) {
			return // the lab is in an unknown state: later faults would only repeat the failure
		}
	}
	x.run("graceful stop", func(t *testing.T) { x.gracefulStop(ctx, gw1) })
	x.checkNoSecrets(ctx)
}

// run runs f as a subtest of x.t, with x.t the subtest's while it runs.
func (x *xlab) run(name string, f func(t *testing.T)) bool {
	parent := x.t
	defer func() { x.t = parent }()
	start := time.Now()
	ok := parent.Run(name, func(t *testing.T) {
		x.t = t
		f(t)
	})
	parent.Logf("%s: %v", name, time.Since(start).Round(100*time.Millisecond))
	return ok
}

// checkDataPlane checks, in each gateway's kernel, that every tunnel is on
// its own XFRM interface with its if_id, up, with its inside address, that
// its SAs are ESP in tunnel mode with AES-GCM bound to that if_id, and that
// bgpgw's status reports the interface and the SPIs the kernel holds.
func (x *xlab) checkDataPlane(ctx context.Context) {
	t := x.t
	for _, g := range x.gws {
		k := x.kern(g.ns)
		st, err := g.status(ctx)
		require.NoError(t, err)
		states, err := k.states()
		require.NoError(t, err)
		t.Logf("%s: ESP states: %q", g.name, states)
		for i, s := range g.tunnels {
			l, addrs, err := k.link(s.gwIface)
			require.NoError(t, err)
			xl, ok := l.(*netlink.Xfrmi)
			require.True(t, ok, "%s: %s is a %s link, want xfrm", g.name, s.gwIface, l.Type())
			assert.Equal(t, uint32(s.gwIfID), xl.Ifid, "%s %s if_id", g.name, s.gwIface)
			assert.NotZero(t, xl.Flags&net.FlagUp, "%s %s is up", g.name, s.gwIface)
			assert.Contains(t, addrs, s.gwInside, "%s %s holds the inside address", g.name, s.gwIface)
			tn := st.Tunnels[i]
			require.Equal(t, s.name, tn.Name)
			require.NotNil(t, tn.IPsec)
			assert.Equal(t, "up", tn.IPsec.State)
			assert.Equal(t, s.gwIface, tn.IPsec.Interface)
			require.Len(t, tn.IPsec.ChildSPIs, 2)
			for _, spi := range tn.IPsec.ChildSPIs {
				want := fmt.Sprintf("0x%08s if_id %d tunnel aead rfc4106(gcm(aes))", strings.TrimPrefix(spi, "0x"), s.gwIfID)
				assert.Contains(t, states, want, "%s %s: the kernel holds the SA charon reports, bound to the if_id", g.name, s.name)
			}
		}
		rules, err := g.ns.IP(ctx, "rule", "show")
		require.NoError(t, err)
		t.Logf("%s: policy-routing rules with charon running in xfrm mode:\n%s", g.name, rules)
	}
}

// moveAndBack applies a fault to a gateway, waits until the traffic goes
// only through the other one and checks it there (during, if set, checks
// the faulty one), repairs it, waits until the traffic goes through both
// again and checks it there, and then that nothing stale is left.
func (x *xlab) moveAndBack(ctx context.Context, what string, fault, repair func() error, during func()) {
	t := x.t
	require.NoError(t, fault(), what)
	x.waitConverged(ctx, what, "gw2")
	if during != nil {
		during()
	}
	x.requireCarriers(what, x.burst(ctx, what, 2*time.Second, 0.05), "gw2")
	require.NoError(t, repair(), what+": repair")
	x.waitConverged(ctx, what+", repaired", "gw1", "gw2")
	x.requireCarriers(what+", repaired", x.burst(ctx, what+", repaired", 2*time.Second, 0.05), "gw1", "gw2")
	x.waitNoStale(ctx, what+", repaired", "gw1", "gw2")
}

// rekeys rekeys g's CHILD_SAs and IKE_SAs from g, and its CHILD_SAs from
// op, while the tunnels carry: no tunnel leaves "up" (bgpgw logs every change), no BGP
// session is reset, the traffic goes on through both gateways, and the old
// SAs leave the kernels on both ends.
func (x *xlab) rekeys(ctx context.Context, g *gwNode) {
	t := x.t
	before, err := g.status(ctx)
	require.NoError(t, err)
	since := map[string]time.Time{}
	for _, p := range before.Peers {
		if p.Kind == "tunnel" {
			require.NotNil(t, p.EstablishedSince, "%s: %s established", g.name, p.Name)
			since[p.Name] = *p.EstablishedSince
		}
	}
	oldSPIs, err := x.kern(g.ns).spis()
	require.NoError(t, err)
	logStart := fileSize(t, g.gw.LogFile)
	for _, s := range g.tunnels {
		name := "bgpgw-" + s.name
		for _, args := range [][]string{{"--child", name}, {"--ike", name}} {
			_, err := g.charon.Swanctl(ctx, "--rekey", args...)
			require.NoError(t, err, "%s: swanctl --rekey %v", g.name, args)
		}
		// The device rekeys the CHILD_SA too (an IKE_SA rekey from both
		// ends at once is a collision, which strongSwan resolves slowly).
		if d, ok := x.dev.(*strongswanDevice); ok {
			_, err := d.ch.Swanctl(ctx, "--rekey", "--child", s.opConn)
			require.NoError(t, err, "op: swanctl --rekey --child %s", s.opConn)
		}
	}
	// Every SA of before is replaced.
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	require.NoError(t, lab.Poll(wctx, 200*time.Millisecond, func() (bool, error) {
		spis, err := x.kern(g.ns).spis()
		if err != nil {
			return false, err
		}
		for _, s := range oldSPIs {
			if slices.Contains(spis, s) {
				return false, nil
			}
		}
		return len(spis) > 0, nil
	}), "%s: the rekeyed SAs replace the old ones\n%s", g.name, x.diag())
	x.waitNoStale(ctx, "rekeyed", "gw1", "gw2")
	after, err := g.status(ctx)
	require.NoError(t, err)
	for _, p := range after.Peers {
		if want, ok := since[p.Name]; ok {
			require.NotNil(t, p.EstablishedSince, "%s: %s still established after the rekeys", g.name, p.Name)
			assert.True(t, want.Equal(*p.EstablishedSince), "%s: session %s was reset by a rekey", g.name, p.Name)
		}
	}
	b, err := os.ReadFile(g.gw.LogFile)
	require.NoError(t, err)
	logs := string(b[min(logStart, int64(len(b))):])
	var left []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "tunnel down") || strings.Contains(line, "tunnel connecting") ||
			strings.Contains(line, "session shut down") {
			left = append(left, line)
		}
	}
	assert.Empty(t, left, "%s: a rekey made a tunnel leave up\n=== bgpgw log since the rekeys\n%s\n=== charon log\n%s",
		g.name, logs, g.charon.LogTail(150))
	x.requireCarriers("rekeyed", x.burst(ctx, "rekeyed", 2*time.Second, 0.05), "gw1", "gw2")
}

// farEndDeletes has op delete gw's SAs (both tunnels): gw brings them up
// again with new SPIs by itself, the BGP sessions are reset and come back,
// and no stale state is left on either end.
func (x *xlab) farEndDeletes(ctx context.Context, g *gwNode) {
	t := x.t
	st, err := g.status(ctx)
	require.NoError(t, err)
	old := map[string][]string{}
	for _, tn := range st.Tunnels {
		old[tn.Name] = tn.IPsec.ChildSPIs
	}
	before, err := x.opFRR.Neighbors(ctx)
	require.NoError(t, err)
	for _, s := range g.tunnels {
		require.NoError(t, x.dev.terminate(ctx, s.opConn), "op terminates %s", s.opConn)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, lab.Poll(wctx, 100*time.Millisecond, func() (bool, error) {
		st, err := g.status(ctx)
		if err != nil {
			return false, err
		}
		for _, tn := range st.Tunnels {
			if tn.IPsec.State != "up" || slices.Equal(tn.IPsec.ChildSPIs, old[tn.Name]) {
				return false, nil
			}
		}
		return true, nil
	}), "%s's tunnels up again with new SAs\n%s", g.name, x.diag())
	x.waitConverged(ctx, "SAs deleted by op", "gw1", "gw2")
	after, err := x.opFRR.Neighbors(ctx)
	require.NoError(t, err)
	for _, s := range g.tunnels {
		a := s.gwInsideAddr()
		assert.Greater(t, after[a].Dropped, before[a].Dropped, "op's session to %s was reset when its SA went", a)
	}
	x.requireCarriers("SAs deleted by op, back", x.burst(ctx, "SAs deleted by op, back", 2*time.Second, 0.05), "gw1", "gw2")
	x.waitNoStale(ctx, "SAs deleted by op", "gw1", "gw2")
}

// gracefulStop stops g's bgpgw with SIGTERM (a drain, then exit): the
// traffic moves to the other gateway, and bgpgw leaves nothing of its own:
// no XFRM interface, no SA or policy of its tunnels (charon unloaded them),
// no route.
func (x *xlab) gracefulStop(ctx context.Context, g *gwNode) {
	t := x.t
	require.NoError(t, g.gw.Proc.Signal(syscall.SIGTERM))
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, g.gw.Proc.Wait(wctx), "bgpgw exits 0 after SIGTERM\n%s", g.gw.LogTail(40))
	x.waitConverged(ctx, g.name+" stopped", "gw2")
	k := x.kern(g.ns)
	links, err := k.xfrmLinks()
	require.NoError(t, err)
	assert.Empty(t, links, "%s: bgpgw removed its XFRM interfaces", g.name)
	spis, err := k.spis()
	require.NoError(t, err)
	assert.Empty(t, spis, "%s: no SA left", g.name)
	pols, err := k.policies(ctx)
	require.NoError(t, err)
	assert.Empty(t, pols, "%s: no policy left", g.name)
	routes, err := k.ownRoutes()
	require.NoError(t, err)
	assert.Empty(t, routes, "%s: no route of bgpgw's left", g.name)
	conns, err := g.charon.Swanctl(ctx, "--list-conns")
	require.NoError(t, err)
	assert.NotContains(t, conns, "bgpgw-", "%s: bgpgw unloaded its connections from charon", g.name)
	x.requireCarriers(g.name+" stopped", x.burst(ctx, g.name+" stopped", 2*time.Second, 0.05), "gw2")
}

// checkNoSecrets: the PSK is in no status, bgpgw log or charon log.
func (x *xlab) checkNoSecrets(ctx context.Context) {
	for _, g := range x.gws {
		if !g.gw.Proc.Exited() {
			st, err := g.status(ctx)
			require.NoError(x.t, err)
			assert.NotContains(x.t, fmt.Sprintf("%+v", st), labPSK)
		}
		assert.NotContains(x.t, g.gw.LogTail(100000), labPSK)
		assert.NotContains(x.t, g.charon.LogTail(100000), labPSK)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}
