package clab

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// The variant whose on-prem router runs BIRD 2 instead of FRR: converged,
// it looks as active-active does, read through birdc.
var expectAABird = func() expect {
	e := expectAA
	e.file = "active-active-bird.clab.yml"
	e.bird = []string{"op"}
	return e
}()

// isBIRD reports whether a node runs BIRD: a router with ONPREM_ROUTER=bird
// (checkBIRDConfig checks that router.sh started BIRD there).
func (x *checker) isBIRD(node string) bool {
	n := x.d.Node(node)
	if n == nil || n.Env["ONPREM_ROUTER"] != "bird" || len(n.Config.Exec) == 0 || len(n.Config.Exec[0].Args) < 2 {
		return false
	}
	return strings.HasSuffix(n.Config.Exec[0].Args[1], "/router.sh")
}

// birdc runs one birdc command in a node; "Network not found" is an
// answer, not an error.
func (x *checker) birdc(ctx context.Context, node string, words ...string) (string, error) {
	out, err := x.d.Node(node).Exec(ctx, append([]string{"birdc"}, words...)...)
	if err != nil && !strings.Contains(out, "Network not found") {
		return "", err
	}
	return lab.StripBirdcBanner(out), nil
}

// birdRoute checks a prefix at a BIRD router: its BGP paths in BIRD's
// table, the best one's next hop, and how many next hops the route BIRD
// exports to the kernel has (ECMP merged).
func (x *checker) birdRoute(ctx context.Context, r ecmp) (string, error) {
	out, err := x.birdc(ctx, r.node, "show", "route", "for", r.prefix, "all")
	if err != nil {
		return "", err
	}
	rs, err := lab.ParseBIRDRoutes(out)
	if err != nil {
		return "", fmt.Errorf("%s: show route for %s all: %w", r.node, r.prefix, err)
	}
	paths, best := 0, ""
	for _, rt := range rs {
		if rt.Prefix.String() != r.prefix || !strings.HasPrefix(rt.Attrs["Type"], "BGP") {
			continue
		}
		paths++
		if rt.Primary && len(rt.NextHops) > 0 {
			best = rt.NextHops[0].Via.String()
		}
	}
	if paths != r.paths {
		return fmt.Sprintf("%d BGP paths, want %d", paths, r.paths), nil
	}
	if r.best != "" && best != r.best {
		return fmt.Sprintf("best path via %q, want %s", best, r.best), nil
	}
	out, err = x.birdc(ctx, r.node, "show", "route", "for", r.prefix, "export", "kernel4")
	if err != nil {
		return "", err
	}
	if rs, err = lab.ParseBIRDRoutes(out); err != nil {
		return "", fmt.Errorf("%s: show route for %s export kernel4: %w", r.node, r.prefix, err)
	}
	hops := 0
	for _, rt := range rs {
		hops += len(rt.NextHops)
	}
	if hops != r.active {
		return fmt.Sprintf("%d next hops exported to the kernel, want %d", hops, r.active), nil
	}
	return "", nil
}

// checkBIRDConfig checks what the node scripts made of ONPREM_ROUTER=bird:
// the on-prem router runs BIRD with single-hop BFD sessions on its tunnel
// links, all up; the gateways run single-hop BFD toward it (bgpgw: the
// tunnels' bfd.multihop off, the cloud peer's on; hand-built FRR:
// ttl-security through the peer-group).
func (x *checker) checkBIRDConfig(ctx context.Context, e expect) {
	t := x.t
	for _, node := range e.bird {
		require.True(t, x.isBIRD(node), node)
		out, err := x.birdc(ctx, node, "show", "bfd", "sessions")
		require.NoError(t, err)
		ss, err := lab.ParseBIRDBFDSessions(out)
		require.NoError(t, err)
		var ifaces []string
		for _, s := range ss {
			assert.Equal(t, "Up", s.State, "%s: %+v", node, s)
			ifaces = append(ifaces, s.Interface)
		}
		slices.Sort(ifaces)
		assert.Equal(t, []string{"t1", "t2"}, ifaces, "%s: single-hop BFD on the tunnel links", node)
		// The node's processes (the nodes share the host's PID namespace:
		// pgrep would see every node's).
		pids, err := x.d.Node(node).NS.Pids(ctx)
		require.NoError(t, err)
		var comms []string
		for _, pid := range pids {
			if c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
				comms = append(comms, strings.TrimSpace(string(c)))
			}
		}
		assert.Contains(t, comms, "bird", node)
		assert.NotContains(t, comms, "zebra", "%s: no FRR", node)
		assert.NotContains(t, comms, "bgpd", "%s: no FRR", node)
	}
	for name := range e.gateways {
		n := x.d.Node(name)
		if x.gateway == "handbuilt" {
			out, err := n.Exec(ctx, "vtysh", "-c", "show running-config")
			require.NoError(t, err)
			assert.Regexp(t, `neighbor 169\.254\.\S+ peer-group ONPREM-1HOP`, out, name)
			assert.NotRegexp(t, `neighbor 169\.254\.\S+ ttl-security`, out, name)
			continue
		}
		data, err := n.ReadFile(bgpgwConf)
		require.NoError(t, err)
		conf := string(data)
		tunnels, cloud, _ := strings.Cut(conf, "\ncloud_peers:")
		assert.Contains(t, tunnels, "bfd: {enabled: true, multihop: false,", "%s: the tunnels' BFD single-hop", name)
		assert.NotContains(t, tunnels[strings.Index(tunnels, "\ntunnels:"):], "multihop: true", name)
		assert.Contains(t, cloud, "multihop: true", "%s: the cloud peer's BFD unchanged", name)
	}
}
