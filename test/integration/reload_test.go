package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// One on-prem FRR router with three links to the gateway; the gateway
// starts with tunnels t1 and t2, a reload removes t2, adds t3 and changes
// the announced prefixes.
const reloadOnprem = `frr defaults datacenter
hostname op
!
ip route 10.1.0.0/16 blackhole
!
router bgp 65010
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 neighbor 169.254.21.1 remote-as 65515
 neighbor 169.254.21.1 ttl-security hops 1
 neighbor 169.254.22.1 remote-as 65515
 neighbor 169.254.22.1 ttl-security hops 1
 neighbor 169.254.23.1 remote-as 65515
 neighbor 169.254.23.1 ttl-security hops 1
 address-family ipv4 unicast
  network 10.1.0.0/16
 exit-address-family
!
`

const reloadGateway = `
instance: {name: gw1, mode: active-active}
bgp: {asn: %[3]s, router_id: 192.0.2.1}
announce: [%[4]s]
ipsec: {mode: none}
tunnels:
%[5]s
api: {socket: %[1]s}
drain: {state_file: %[2]s/drained}
metrics: {listen: "off"}
`

// reloadLab builds the gateway namespace linked three times to the on-prem
// one, where FRR runs reloadOnprem.
func reloadLab(t *testing.T) (*lab.Lab, *lab.Netns, *lab.FRR) {
	t.Helper()
	l := lab.ForTest(t)
	gwNS, err := l.Netns("gw")
	require.NoError(t, err)
	opNS, err := l.Netns("op")
	require.NoError(t, err)
	for i := 1; i <= 3; i++ {
		require.NoError(t, l.Link(gwNS, fmt.Sprintf("tun%d", i), fmt.Sprintf("169.254.2%d.1/30", i),
			opNS, fmt.Sprintf("gw%d", i), fmt.Sprintf("169.254.2%d.2/30", i)))
	}
	frr, err := l.StartFRR(opNS, l.Prefix()+"op", reloadOnprem, "zebra", "bgpd", "staticd")
	require.NoError(t, err)
	return l, gwNS, frr
}

// reloadDiag is bgpgw's status and log tail, for a failure message.
func reloadDiag(ctx context.Context, gw *lab.Gateway) func() string {
	return func() string {
		st, _ := gw.CLI(ctx, "status", "--json")
		return "bgpgw status:\n" + st + "\nbgpgw log:\n" + gw.LogTail(40)
	}
}

// frrRoutes lists, sorted, the prefixes FRR received from a neighbor (an
// error as the only entry).
func frrRoutes(ctx context.Context, frr *lab.FRR) func(neighbor string) []string {
	return func(neighbor string) []string {
		r, err := routesFrom(ctx, frr, neighbor)
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		return r
	}
}

func reloadTunnel(n int) string {
	return fmt.Sprintf(`  - {name: t%[1]d, inside: {local: 169.254.2%[1]d.1/30, remote: 169.254.2%[1]d.2}, peer_asn: 65010, accept: ["10.1.0.0/16"]}
`, n)
}

// TestReload: SIGHUP applies only the difference (the session that stays
// keeps its uptime on both sides, FRR's routes change exactly as
// configured), and a bad file, or one that changes what only a restart can
// change, is rejected with the errors in the log and in status while
// everything keeps running as before.
func TestReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, gwNS, frr := reloadLab(t)
	write := func(asn, announce string, tunnels ...int) string {
		var ts strings.Builder
		for _, n := range tunnels {
			ts.WriteString(reloadTunnel(n))
		}
		return fmt.Sprintf(reloadGateway, l.SocketPath("gw1"), l.Dir(), asn, announce, ts.String())
	}
	gw, err := l.StartGateway(ctx, gwNS, bgpgwBin, "gw1", write("65515", "10.10.0.0/16", 1, 2))
	require.NoError(t, err)
	diag, routes := reloadDiag(ctx, gw), frrRoutes(ctx, frr)
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		return slices.Equal(routes("169.254.21.1"), []string{"10.10.0.0/16"}) &&
			slices.Equal(routes("169.254.22.1"), []string{"10.10.0.0/16"}), nil
	}), diag())
	peer := func(name string) api.Peer {
		p, _, err := gw.Peer(ctx, name)
		require.NoError(t, err)
		return p
	}
	t1Since := *peer("t1").EstablishedSince
	neighbors, err := frr.Neighbors(ctx)
	require.NoError(t, err)
	t1FRR := neighbors["169.254.21.1"]
	require.Equal(t, "Established", t1FRR.State)
	// t1 stays as it is through every reload below.
	t1Untouched := func(when string) {
		t.Helper()
		assert.Equal(t, t1Since, *peer("t1").EstablishedSince, "%s: bgpgw's t1 session was not reset", when)
		n, err := frr.Neighbors(ctx)
		require.NoError(t, err)
		assert.Equal(t, "Established", n["169.254.21.1"].State, when)
		assert.Equal(t, t1FRR.Established, n["169.254.21.1"].Established, "%s: FRR saw no new t1 session", when)
		assert.Equal(t, t1FRR.Dropped, n["169.254.21.1"].Dropped, "%s: FRR saw t1 drop", when)
	}

	// 1. Remove t2, add t3, announce one more prefix: SIGHUP.
	require.NoError(t, os.WriteFile(gw.Config, []byte(write("65515", "10.10.0.0/16, 10.30.0.0/24", 1, 3)), 0o600))
	require.NoError(t, gw.Proc.Signal(syscall.SIGHUP))
	want := []string{"10.10.0.0/16", "10.30.0.0/24"}
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		return slices.Equal(routes("169.254.21.1"), want) && slices.Equal(routes("169.254.23.1"), want) &&
			len(routes("169.254.22.1")) == 0, nil
	}), "after the reload FRR has the new prefixes over t1 and t3 and nothing over t2\n%s", diag())
	t1Untouched("after adding t3, removing t2, changing announce")
	st, err := gw.Status(ctx)
	require.NoError(t, err)
	require.NotNil(t, st.Reload)
	assert.True(t, st.Reload.OK)
	assert.Equal(t, []string{"tunnel t2 removed", "tunnel t3 added", "announce [10.10.0.0/16] -> [10.10.0.0/16 10.30.0.0/24]"}, st.Reload.Changes)
	names := []string{}
	for _, tn := range st.Tunnels {
		names = append(names, tn.Name)
	}
	assert.Equal(t, []string{"t1", "t3"}, names)
	assert.Contains(t, gw.LogTail(200), "configuration reloaded")

	// 2. A broken file through `bgpgw reload`: rejected, errors named,
	// nothing changes.
	require.NoError(t, os.WriteFile(gw.Config, []byte(write("0", "10.10.0.0/16", 1)), 0o600))
	out, err := gw.CLI(ctx, "reload")
	require.Error(t, err, "reload of a broken file fails: %s", out)
	assert.Contains(t, err.Error(), "bgp.asn")
	// 3. A change only a restart applies: rejected too.
	require.NoError(t, os.WriteFile(gw.Config, []byte(write("65516", "10.10.0.0/16", 1)), 0o600))
	_, err = gw.CLI(ctx, "reload")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bgp.asn: changed from 65515 to 65516: only a restart applies it")
	st, err = gw.Status(ctx)
	require.NoError(t, err)
	require.NotNil(t, st.Reload)
	assert.False(t, st.Reload.OK)
	assert.Contains(t, strings.Join(st.Reload.Errors, "\n"), "bgp.asn")
	assert.Regexp(t, `reload rejected: running configuration kept.*bgp\.asn`, gw.LogTail(50))
	assert.Equal(t, want, routes("169.254.21.1"), "the running configuration stays")
	assert.Equal(t, want, routes("169.254.23.1"))
	t1Untouched("after the rejected reloads")
	require.False(t, gw.Proc.Exited())
}
