package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

const gwConfig = `
instance: {name: gw1, mode: active-active}
bgp:
  asn: 65515
  router_id: 192.0.2.1
  hold_time: 9s
announce: [10.10.0.0/16, 10.20.0.0/24]
ipsec: {mode: none}
tunnels:
  - name: onprem
    inside: {local: 169.254.21.1/30, remote: 169.254.21.2}
    peer_asn: 65010
    accept: ["10.1.0.0/16 le 24"]
    max_prefixes: 10
    password_file: %[1]s/md5
api: {socket: %[2]s}
kernel: {protocol: 201}
drain: {state_file: %[1]s/drained}
`

// The on-prem router announces two prefixes bgpgw must accept and five it
// must refuse: a default route, a cloud-side prefix, a more-specific of
// one, a prefix outside the accept-list and one longer than its "le".
const onpremConfig = `frr defaults datacenter
hostname onprem
!
ip route 10.1.0.0/16 blackhole
ip route 10.1.1.0/24 blackhole
ip route 0.0.0.0/0 blackhole
ip route 10.10.0.0/16 blackhole
ip route 10.10.5.0/24 blackhole
ip route 10.99.0.0/16 blackhole
ip route 10.1.2.0/25 blackhole
!
router bgp 65010
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 neighbor 169.254.21.1 remote-as 65515
 neighbor 169.254.21.1 password md5-lab-secret
 neighbor 169.254.21.1 ttl-security hops 1
 address-family ipv4 unicast
  redistribute static
 exit-address-family
!
`

func TestBGPWithFRR(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := lab.ForTest(t)
	gwNS, err := l.Netns("gw")
	require.NoError(t, err)
	opNS, err := l.Netns("op")
	require.NoError(t, err)
	require.NoError(t, l.Link(gwNS, "tun0", "169.254.21.1/30", opNS, "gw0", "169.254.21.2/30"))
	require.NoError(t, os.WriteFile(filepath.Join(l.Dir(), "md5"), []byte("md5-lab-secret\n"), 0o600))

	frr, err := l.StartFRR(opNS, l.Prefix()+"op", onpremConfig, "zebra", "bgpd", "staticd")
	require.NoError(t, err)
	gw, err := l.StartGateway(ctx, gwNS, bgpgwBin, "gw1", fmt.Sprintf(gwConfig, l.Dir(), l.SocketPath("gw1")))
	require.NoError(t, err)
	diag := func() string {
		st, _ := gw.CLI(ctx, "status", "--json")
		return "bgpgw status:\n" + st + "\nbgpgw log:\n" + gw.LogTail(40) + "\nFRR log:\n" + frr.LogTail(20)
	}

	// The session comes up with TCP-MD5 and GTSM on both sides.
	upCtx, upCancel := context.WithTimeout(ctx, 30*time.Second)
	defer upCancel()
	require.NoError(t, lab.Poll(upCtx, 100*time.Millisecond, func() (bool, error) {
		p, ok, err := gw.Peer(ctx, "onprem")
		return ok && p.State == "established" && len(p.Received) == 2 && len(p.Rejected) >= 5, err
	}), diag())

	// FRR receives exactly the configured prefixes from bgpgw.
	var fromGW []string
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		fromGW, err = routesFrom(ctx, frr, "169.254.21.1")
		return len(fromGW) >= 2, err
	}), diag())
	slices.Sort(fromGW)
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, fromGW)

	// bgpgw accepted only the accept-list, and says what it refused.
	p, _, err := gw.Peer(ctx, "onprem")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.1.0.0/16", "10.1.1.0/24"}, p.Received)
	// FRR also echoes our own prefixes back; GoBGP drops them as AS loops.
	assert.Subset(t, p.Rejected, []string{"0.0.0.0/0", "10.10.0.0/16", "10.10.5.0/24", "10.99.0.0/16", "10.1.2.0/25"})
	assert.Subset(t, []string{"0.0.0.0/0", "10.10.0.0/16", "10.10.5.0/24", "10.99.0.0/16", "10.1.2.0/25", "10.20.0.0/24"}, p.Rejected)
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, p.Announced)
	assert.Equal(t, uint32(65010), p.PeerASN)
	assert.NotNil(t, p.EstablishedSince)

	// The kernel holds exactly the accepted prefixes, toward the tunnel.
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		routes, err := kernelRoutes(ctx, gwNS, 201)
		return slices.Equal(routes, []string{"10.1.0.0/16 via 169.254.21.2", "10.1.1.0/24 via 169.254.21.2"}), err
	}), "kernel routes: %v\n%s", must(kernelRoutes(ctx, gwNS, 201)), diag())
	all, err := gwNS.IP(ctx, "route", "show", "table", "all")
	require.NoError(t, err)
	for _, refused := range []string{"default", "10.10.5.0/24", "10.99.0.0/16", "10.1.2.0/25"} {
		assert.NotContains(t, all, refused+" via 169.254.21.2", "a refused prefix reached the kernel")
	}

	// The secret appears nowhere.
	out, err := gw.CLI(ctx, "status", "--json")
	require.NoError(t, err)
	assert.NotContains(t, out, "md5-lab-secret")
	assert.NotContains(t, gw.LogTail(1000), "md5-lab-secret")

	// Exceeding max-prefix (10) tears the session down and withdraws
	// everything that depended on it.
	_, err = frr.Vtysh(ctx, "configure terminal",
		"ip route 10.1.3.0/24 blackhole", "ip route 10.1.4.0/24 blackhole",
		"ip route 10.1.5.0/24 blackhole", "ip route 10.1.6.0/24 blackhole")
	require.NoError(t, err)
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		p, _, err := gw.Peer(ctx, "onprem")
		return p.State != "established" && strings.Contains(p.LastError, "maximum prefix"), err
	}), diag())
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		n, err := frr.Neighbors(ctx)
		return n["169.254.21.1"].State != "Established", err
	}), diag())
	var nb map[string]map[string]any
	require.NoError(t, frr.JSON(ctx, "show bgp neighbors 169.254.21.1 json", &nb))
	assert.Contains(t, fmt.Sprint(nb["169.254.21.1"]["lastNotificationReason"]), "Maximum Number of Prefixes Reached", "FRR was told why")
	require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		routes, err := kernelRoutes(ctx, gwNS, 201)
		return len(routes) == 0, err
	}), "routes left after the session went down")

	// SIGTERM: clean exit, socket removed.
	require.NoError(t, gw.Proc.Signal(syscall.SIGTERM))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, gw.Proc.Wait(wctx), diag())
	_, err = os.Stat(gw.Socket)
	assert.True(t, os.IsNotExist(err), "API socket left behind")
}

// kernelRoutes lists the routes of one protocol in a namespace's main table
// as "PREFIX via NEXTHOP[,NEXTHOP]".
func kernelRoutes(ctx context.Context, n *lab.Netns, proto int) ([]string, error) {
	out, err := n.IP(ctx, "-j", "route", "show", "proto", fmt.Sprint(proto))
	if err != nil {
		return nil, err
	}
	var rs []struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("decode ip route: %w: %s", err, out)
	}
	var lines []string
	for _, r := range rs {
		hops := []string{}
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, h := range r.Nexthops {
			hops = append(hops, h.Gateway)
		}
		lines = append(lines, r.Dst+" via "+strings.Join(hops, ","))
	}
	slices.Sort(lines)
	return lines, nil
}

// routesFrom lists the prefixes FRR holds from one neighbor.
func routesFrom(ctx context.Context, frr *lab.FRR, neighbor string) ([]string, error) {
	var out struct {
		Routes map[string]json.RawMessage `json:"routes"`
	}
	if err := frr.JSON(ctx, "show bgp ipv4 unicast neighbors "+neighbor+" routes json", &out); err != nil {
		return nil, err
	}
	var l []string
	for p := range out.Routes {
		l = append(l, p)
	}
	slices.Sort(l)
	return l, nil
}

func must[T any](v T, _ error) T { return v }
