package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// The IPsec lab: a real tunnel between charon on the gateway (driven by
// bgpgw over VICI) and charon on the on-prem device (loaded with swanctl),
// both with kernel-libipsec; FRR on the on-prem device peers with bgpgw over
// the tunnel's inside addresses.
//
//	oh 10.1.1.10 -- op (charon + FRR, AS 65010) ==IPsec== gw (charon + bgpgw, AS 65515) -- ch 10.10.1.10
//	               203.0.113.2                            203.0.113.1
const ipsecGateway = `
instance: {name: gw1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1}
announce: [10.10.0.0/16]
ipsec: {mode: libipsec, vici_socket: %[1]s}
tunnels:
%[2]s
api: {socket: %[3]s}
drain: {state_file: %[4]s/drained}
metrics: {listen: "off"}
`

// ipsecTunnel is one tunnel of ipsecGateway.
func ipsecTunnel(name, local, remote, pskFile, proposal string, n int) string {
	return fmt.Sprintf(`  - name: %[1]s
    local_address: %[2]s
    remote_address: %[3]s
    psk_file: %[4]s
    ike_proposals: [%[5]s]
    esp_proposals: [aes256gcm16-ecp384]
    inside: {local: 169.254.2%[6]d.1/30, remote: 169.254.2%[6]d.2}
    peer_asn: 65010
    accept: ["10.%[6]d.0.0/16 le 24"]
    bfd: {enabled: true, multihop: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}
`, name, local, remote, pskFile, proposal, n)
}

// onpremSwanctl is the on-prem device's tunnel to the gateway: route-based
// (0.0.0.0/0 both ways), responder only.
func onpremSwanctl(local, remote, psk string) string {
	return lab.SwanctlPSK("gw", local, remote, psk, "none")
}

// onpremFRR peers with bgpgw over the inside addresses of tunnel n and
// announces the on-prem LAN; BFD as in the gateway.
func onpremFRR(n int) string {
	return fmt.Sprintf(`frr defaults datacenter
hostname op
!
router bgp 65010
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 neighbor 169.254.2%[1]d.1 remote-as 65515
 neighbor 169.254.2%[1]d.1 ttl-security hops 1
 neighbor 169.254.2%[1]d.1 bfd profile fast
 address-family ipv4 unicast
  network 10.%[1]d.1.0/24
 exit-address-family
!
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
 !
!
`, n)
}

const labPSK = "lab-psk-never-printed"

type ipsecLab struct {
	t              *testing.T
	l              *lab.Lab
	gwNS, opNS     *lab.Netns
	ohNS, chNS     *lab.Netns
	gwCharon, opCh *lab.Charon
	opFRR          *lab.FRR
	gw             *lab.Gateway
}

func newIPsecLab(t *testing.T, ctx context.Context) *ipsecLab {
	x := &ipsecLab{t: t, l: lab.ForTest(t)}
	l := x.l
	var err error
	for _, n := range []struct {
		p    **lab.Netns
		name string
	}{{&x.gwNS, "gw"}, {&x.opNS, "op"}, {&x.ohNS, "oh"}, {&x.chNS, "ch"}} {
		*n.p, err = l.Netns(n.name)
		require.NoError(t, err)
	}
	require.NoError(t, l.Link(x.gwNS, "wan0", "203.0.113.1/24", x.opNS, "wan0", "203.0.113.2/24"))
	require.NoError(t, l.Link(x.opNS, "lan0", "10.1.1.1/24", x.ohNS, "eth0", "10.1.1.10/24"))
	require.NoError(t, l.Link(x.gwNS, "vnet0", "10.10.1.1/24", x.chNS, "eth0", "10.10.1.10/24"))
	require.NoError(t, x.ohNS.AddRoute(ctx, "default", "via", "10.1.1.1"))
	require.NoError(t, x.chNS.AddRoute(ctx, "default", "via", "10.10.1.1"))

	x.opCh, err = l.StartCharon(x.opNS, "op")
	require.NoError(t, err)
	require.NoError(t, x.opCh.Load(ctx, onpremSwanctl("203.0.113.2", "203.0.113.1", labPSK)))
	_, err = x.opNS.IP(ctx, "addr", "add", "169.254.21.2/30", "dev", "ipsec0")
	require.NoError(t, err)
	_, err = x.opNS.IP(ctx, "link", "set", "ipsec0", "up")
	require.NoError(t, err)
	x.opFRR, err = l.StartFRR(x.opNS, l.Prefix()+"op", onpremFRR(1), "zebra", "bgpd", "bfdd")
	require.NoError(t, err)

	x.gwCharon, err = l.StartCharon(x.gwNS, "gw")
	require.NoError(t, err)
	psk := filepath.Join(l.Dir(), "gw.psk")
	require.NoError(t, os.WriteFile(psk, []byte(labPSK+"\n"), 0o600))
	cfg := fmt.Sprintf(ipsecGateway, x.gwCharon.Vici,
		ipsecTunnel("onprem", "203.0.113.1", "203.0.113.2", psk, "aes256gcm16-prfsha384-ecp384", 1),
		l.SocketPath("gw1"), l.Dir())
	x.gw, err = l.StartGateway(ctx, x.gwNS, bgpgwBin, "gw1", cfg)
	require.NoError(t, err)
	return x
}

func (x *ipsecLab) diag() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _ := x.gw.CLI(ctx, "status", "--json")
	sas, _ := x.gwCharon.Swanctl(ctx, "--list-sas")
	return "bgpgw status:\n" + st + "\nbgpgw log:\n" + x.gw.LogTail(40) + "\ngateway SAs:\n" + sas +
		"\ngateway charon log:\n" + x.gwCharon.LogTail(20) + "\non-prem charon log:\n" + x.opCh.LogTail(20) +
		"\nFRR log:\n" + x.opFRR.LogTail(20)
}

// carrying reports whether tunnel onprem carries traffic: IPsec up, BGP
// established, the on-prem LAN in the gateway's kernel and the cloud
// prefix at the on-prem router.
func (x *ipsecLab) carrying(ctx context.Context) (bool, error) {
	st, err := x.gw.Status(ctx)
	if err != nil || len(st.Tunnels) != 1 || !st.Tunnels[0].Carrying {
		return false, err
	}
	routes, err := kernelRoutes(ctx, x.gwNS, 201)
	if err != nil || len(routes) != 1 || routes[0] != "10.1.1.0/24 via 169.254.21.2" {
		return false, err
	}
	got, err := routesFrom(ctx, x.opFRR, "169.254.21.1")
	return err == nil && len(got) == 1 && got[0] == "10.10.0.0/16", err
}

// withdrawn reports whether the gateway has withdrawn the tunnel: the
// learned route has left its kernel.
func (x *ipsecLab) withdrawn(ctx context.Context) (bool, error) {
	out, err := x.gwNS.IP(ctx, "route", "show", "10.1.1.0/24", "proto", "201")
	return err == nil && strings.TrimSpace(out) == "", err
}

func (x *ipsecLab) waitCarrying(ctx context.Context, what string) {
	x.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	require.NoError(x.t, lab.Poll(wctx, 50*time.Millisecond, func() (bool, error) { return x.carrying(ctx) }),
		"%s: tunnel not carrying traffic\n%s", what, x.diag())
}

// timeWithdrawal applies fault and returns how long the gateway took to
// take the tunnel's routes out of its kernel.
func (x *ipsecLab) timeWithdrawal(ctx context.Context, what string, fault func() error) time.Duration {
	x.t.Helper()
	start := time.Now()
	require.NoError(x.t, fault(), what)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(x.t, lab.Poll(wctx, 5*time.Millisecond, func() (bool, error) { return x.withdrawn(ctx) }),
		"%s: routes not withdrawn\n%s", what, x.diag())
	d := time.Since(start)
	x.t.Logf("%s -> tunnel routes withdrawn: %s", what, d.Round(100*time.Microsecond))
	return d
}

// TestIPsecTunnel: bgpgw has charon bring the tunnel up, the BGP session
// runs over its inside addresses, traffic crosses it both ways; each fault
// (charon killed, SA deleted by the far end, ESP dropped while IKE still
// answers) withdraws the tunnel's routes, and the tunnel comes back by
// itself, also after charon restarts under bgpgw.
func TestIPsecTunnel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	x := newIPsecLab(t, ctx)
	x.waitCarrying(ctx, "start")

	st, err := x.gw.Status(ctx)
	require.NoError(t, err)
	ip := st.Tunnels[0].IPsec
	require.NotNil(t, ip, "status has the tunnel's IPsec state")
	assert.Equal(t, "up", ip.State)
	assert.Equal(t, "ESTABLISHED", ip.IKEState)
	assert.Len(t, ip.ChildSPIs, 2)
	assert.Equal(t, "ipsec0", ip.Interface)
	// charon (kernel-libipsec) adds "pref 220 lookup 220": the on-prem
	// router keeps it; bgpgw removed it on the gateway, so that its routes
	// alone steer into ipsec0.
	opRules, err := x.opNS.IP(ctx, "rule", "show", "pref", "220")
	require.NoError(t, err)
	require.Contains(t, opRules, "lookup 220", "charon added no rule in this lab: the next check would prove nothing")
	ruleCtx, ruleCancel := context.WithTimeout(ctx, 10*time.Second)
	defer ruleCancel()
	require.NoError(t, lab.Poll(ruleCtx, 20*time.Millisecond, func() (bool, error) {
		gwRules, err := x.gwNS.IP(ctx, "rule", "show", "pref", "220")
		return strings.TrimSpace(gwRules) == "", err
	}), "charon's rule is still on the gateway\n%s", x.diag())
	assert.Contains(t, x.gw.LogTail(200), "removed charon's policy-routing rule")

	probe, err := lab.BuildUDPProbe(ctx, x.l.Dir())
	require.NoError(t, err)
	up, err := x.l.StartTraffic(ctx, probe, x.ohNS, x.chNS, "10.10.1.10", 40000, 2, time.Millisecond, 2*time.Second)
	require.NoError(t, err)
	down, err := x.l.StartTraffic(ctx, probe, x.chNS, x.ohNS, "10.1.1.10", 41000, 2, time.Millisecond, 2*time.Second)
	require.NoError(t, err)
	require.NoError(t, up.WaitReceiving(ctx), x.diag())
	require.NoError(t, down.WaitReceiving(ctx), x.diag())
	ru, err := up.Stop(ctx)
	require.NoError(t, err)
	rd, err := down.Stop(ctx)
	require.NoError(t, err)
	t.Logf("through the tunnel: on-prem -> cloud %s; cloud -> on-prem %s", ru, rd)
	assert.Positive(t, ru.Received)
	assert.Positive(t, rd.Received)

	// 1. charon on the gateway killed; then restarted under the running bgpgw.
	x.timeWithdrawal(ctx, "charon killed on the gateway", x.gwCharon.Kill)
	require.NoError(t, lab.Poll(ctx, 20*time.Millisecond, func() (bool, error) {
		st, err := x.gw.Status(ctx)
		return err == nil && st.Tunnels[0].IPsec != nil && strings.Contains(st.Tunnels[0].IPsec.Error, "charon"), err
	}), "status names charon as the cause\n%s", x.diag())
	require.False(t, x.gw.Proc.Exited(), "bgpgw keeps running without charon")
	require.NoError(t, x.gwCharon.Start())
	x.waitCarrying(ctx, "charon restarted")

	// 2. The far end deletes the IKE_SA (and with it the CHILD_SA).
	x.timeWithdrawal(ctx, "IKE_SA deleted by the on-prem device", func() error {
		_, err := x.opCh.Swanctl(ctx, "--terminate", "--ike", "gw", "--timeout", "5")
		return err
	})
	x.waitCarrying(ctx, "after the SA was deleted")

	// 3. ESP dropped while IKE still answers (libipsec encapsulates ESP
	// in UDP 4500; IKE on 4500 starts with a zero non-ESP marker).
	nft := "add table inet bgwesp; add chain inet bgwesp in { type filter hook input priority 0; }; " +
		"add rule inet bgwesp in udp dport 4500 @th,64,32 != 0 drop"
	x.timeWithdrawal(ctx, "ESP dropped, IKE answering", func() error {
		_, err := x.gwNS.Exec(ctx, "nft", nft)
		return err
	})
	st, err = x.gw.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "up", st.Tunnels[0].IPsec.State, "IKE still up: BFD found the dead data plane")
	assert.Contains(t, st.Tunnels[0].Reason, "BFD down")
	// The session was reset with Cease subcode 10, BFD Down (RFC 9384),
	// and the RFC 8203 text; FRR's neighbor says so.
	require.NoError(t, lab.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		out, err := x.opFRR.Vtysh(ctx, "show bgp neighbors json")
		return strings.Contains(out, "BFD Down"), err
	}), "FRR was told the session closed for BFD Down\n%s", x.diag())
	_, err = x.gwNS.Exec(ctx, "nft", "delete table inet bgwesp")
	require.NoError(t, err)
	x.waitCarrying(ctx, "ESP flowing again")

	// The pre-shared key appears nowhere.
	out, err := x.gw.CLI(ctx, "status", "--json")
	require.NoError(t, err)
	assert.NotContains(t, out, labPSK)
	assert.NotContains(t, x.gw.LogTail(5000), labPSK)
}

// TestIPsecBadInput: charon missing, then three tunnels where one has a
// proposal charon refuses and one a wrong PSK: each gets a status and log
// line naming it, the daemon keeps running and the good tunnel carries.
func TestIPsecBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := lab.ForTest(t)
	gwNS, err := l.Netns("gw")
	require.NoError(t, err)
	op1, err := l.Netns("op1")
	require.NoError(t, err)
	op3, err := l.Netns("op3")
	require.NoError(t, err)
	require.NoError(t, l.Link(gwNS, "wan1", "203.0.113.1/30", op1, "wan0", "203.0.113.2/30"))
	require.NoError(t, l.Link(gwNS, "wan3", "203.0.113.9/30", op3, "wan0", "203.0.113.10/30"))

	ch1, err := l.StartCharon(op1, "op1")
	require.NoError(t, err)
	require.NoError(t, ch1.Load(ctx, onpremSwanctl("203.0.113.2", "203.0.113.1", labPSK)))
	ch3, err := l.StartCharon(op3, "op3")
	require.NoError(t, err)
	require.NoError(t, ch3.Load(ctx, onpremSwanctl("203.0.113.10", "203.0.113.9", labPSK)))
	// charon installs a route for each policy with a source address
	// inside the local traffic selector: both ends have their LAN.
	for _, x := range []struct {
		n    *lab.Netns
		addr string
	}{{gwNS, "10.10.1.1/24"}, {op1, "10.1.1.1/24"}, {op3, "10.3.1.1/24"}} {
		_, err = x.n.IP(ctx, "addr", "add", x.addr, "dev", "lo")
		require.NoError(t, err)
	}
	_, err = op1.IP(ctx, "addr", "add", "169.254.21.2/30", "dev", "ipsec0")
	require.NoError(t, err)
	_, err = op1.IP(ctx, "link", "set", "ipsec0", "up")
	require.NoError(t, err)
	frr, err := l.StartFRR(op1, l.Prefix()+"op1", onpremFRR(1), "zebra", "bgpd", "bfdd")
	require.NoError(t, err)

	good := filepath.Join(l.Dir(), "good.psk")
	bad := filepath.Join(l.Dir(), "bad.psk")
	require.NoError(t, os.WriteFile(good, []byte(labPSK), 0o600))
	require.NoError(t, os.WriteFile(bad, []byte("not-the-"+labPSK), 0o600))
	tunnels := ipsecTunnel("good", "203.0.113.1", "203.0.113.2", good, "aes256gcm16-prfsha384-ecp384", 1) +
		ipsecTunnel("badproposal", "203.0.113.5", "203.0.113.6", good, "aes999-sha999-modp999", 2) +
		ipsecTunnel("wrongpsk", "203.0.113.9", "203.0.113.10", bad, "aes256gcm16-prfsha384-ecp384", 3)
	vici := filepath.Join(l.Dir(), "charon-gw", "charon.vici") // not there yet
	gw, err := l.StartGateway(ctx, gwNS, bgpgwBin, "gw1", fmt.Sprintf(ipsecGateway, vici, tunnels, l.SocketPath("gw1"), l.Dir()))
	require.NoError(t, err)
	tunnel := func(st api.Status, name string) api.Tunnel {
		for _, t := range st.Tunnels {
			if t.Name == name {
				return t
			}
		}
		return api.Tunnel{}
	}
	diag := func() string {
		st, _ := gw.CLI(ctx, "status", "--json")
		return "bgpgw status:\n" + st + "\nbgpgw log:\n" + gw.LogTail(60) + "\non-prem charon op1:\n" + ch1.LogTail(30)
	}

	// No charon: every tunnel is down because of it, the daemon answers.
	require.NoError(t, lab.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		st, err := gw.Status(ctx)
		if err != nil {
			return false, err
		}
		for _, tn := range st.Tunnels {
			if tn.IPsec == nil || !strings.Contains(tn.IPsec.Error, "charon unreachable") || tn.Carrying {
				return false, nil
			}
		}
		return true, nil
	}), "charon missing\n%s", diag())
	assert.Contains(t, gw.LogTail(200), "no such file or directory")

	// charon appears: the good tunnel comes up; the two bad ones say why.
	chGW, err := l.StartCharon(gwNS, "gw")
	require.NoError(t, err)
	require.Equal(t, vici, chGW.Vici)
	bctx, bcancel := context.WithTimeout(ctx, 45*time.Second)
	defer bcancel()
	require.NoError(t, lab.Poll(bctx, 100*time.Millisecond, func() (bool, error) {
		st, err := gw.Status(ctx)
		if err != nil {
			return false, err
		}
		g, bp, wp := tunnel(st, "good"), tunnel(st, "badproposal"), tunnel(st, "wrongpsk")
		return g.Carrying && bp.IPsec != nil && strings.Contains(bp.IPsec.Error, "refused the connection") &&
			wp.IPsec != nil && strings.Contains(wp.IPsec.Error, "AUTHENTICATION_FAILED"), nil
	}), "bad tunnels\n%s", diag())
	st, err := gw.Status(ctx)
	require.NoError(t, err)
	for _, name := range []string{"badproposal", "wrongpsk"} {
		tn := tunnel(st, name)
		t.Logf("status of %s: carrying=%v reason=%q ipsec=%+v", name, tn.Carrying, tn.Reason, *tn.IPsec)
		assert.False(t, tn.Carrying)
		assert.Contains(t, tn.Reason, "tunnel down")
	}
	// A tunnel's BGP session runs only once its CHILD_SA is installed.
	for _, name := range []string{"badproposal", "wrongpsk"} {
		p, ok, err := gw.Peer(ctx, name)
		require.NoError(t, err)
		require.True(t, ok)
		assert.True(t, p.AdminDown, "%s: session held down while the tunnel is down", name)
	}
	gp, ok, err := gw.Peer(ctx, "good")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "established", gp.State)
	logs := gw.LogTail(1000)
	assert.Regexp(t, `tunnel=badproposal .*refused the connection`, logs)
	assert.Regexp(t, `tunnel=wrongpsk .*AUTHENTICATION_FAILED`, logs)
	assert.NotContains(t, logs, labPSK)
	out, err := gw.CLI(ctx, "status", "--json")
	require.NoError(t, err)
	assert.NotContains(t, out, labPSK)
	routes, err := routesFrom(ctx, frr, "169.254.21.1")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.10.0.0/16"}, routes, "the good tunnel carries the cloud prefix")
	require.False(t, gw.Proc.Exited())
}
