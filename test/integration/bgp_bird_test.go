package integration

import (
	"context"
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

// The on-prem router of these tests is BIRD 2 running docs/onprem/bird.conf
// itself (its syslog line left out: the lab logs to a file), against two
// bgpgw instances with the values of configs/active-active/ (gw1.yaml,
// gw2.yaml): the same ASNs, inside addresses, prefixes, TCP-MD5 passwords
// (configs/secrets/), timers and BFD. The tunnels are veth pairs carrying
// the inside addresses (ipsec.mode: none), named as the XFRM interfaces of
// docs/onprem/README.md on the router's side. BIRD runs the BFD session of
// a directly connected neighbor single-hop, so the gateways' tunnels have
// bfd.multihop: false (docs/onprem/README.md, "BIRD").
const birdDocConf = "../../docs/onprem/bird.conf"

const birdGateway = `
instance: {name: gw%[1]d, mode: active-active}
bgp: {asn: 65515, router_id: 10.10.1.%[1]d, hold_time: 9s, keepalive: 3s, connect_retry: 5s}
announce: [10.10.0.0/16, 10.11.0.0/16]
standby: {prepend: 3}
ipsec: {mode: none}
tunnels:
  - name: onprem
    inside: {local: 169.254.2%[1]d.1/30, remote: 169.254.2%[1]d.2}
    peer_asn: 65010
    accept: ["10.1.0.0/16 le 24", 10.2.0.0/16]
    max_prefixes: 100
    password_file: %[2]s/gw%[1]d.bgp-password
    bfd: {enabled: true, multihop: false, min_rx: 100ms, min_tx: 100ms, multiplier: 3}
api: {socket: %[3]s}
kernel: {protocol: 201}
drain: {state_file: %[2]s/gw%[1]d.drained, time: 10s}
`

// birdLab is the on-prem BIRD router op and the two gateway instances.
type birdLab struct {
	l       *lab.Lab
	op      *lab.Netns
	gwNS    [2]*lab.Netns
	gw      [2]*lab.Gateway
	gwConf  [2]string
	bird    *lab.BIRD
	secrets [2]string // the TCP-MD5 passwords, for the checks that they leak nowhere
}

func newBirdLab(t *testing.T, ctx context.Context) *birdLab {
	t.Helper()
	x := &birdLab{l: lab.ForTest(t)}
	var err error
	x.op, err = x.l.Netns("op")
	require.NoError(t, err)
	data, err := os.ReadFile(birdDocConf)
	require.NoError(t, err)
	conf := string(data)
	require.Equal(t, 1, strings.Count(conf, "log syslog all;\n"))
	conf = strings.Replace(conf, "log syslog all;\n", "", 1)
	for i := range x.gwNS {
		n := i + 1
		x.gwNS[i], err = x.l.Netns(fmt.Sprintf("gw%d", n))
		require.NoError(t, err)
		require.NoError(t, x.l.Link(x.op, fmt.Sprintf("xfrm-gw%d", n), fmt.Sprintf("169.254.2%d.2/30", n),
			x.gwNS[i], "tun0", fmt.Sprintf("169.254.2%d.1/30", n)))
		secret, err := os.ReadFile(fmt.Sprintf("../../configs/secrets/onprem-gw%d.bgp-password", n))
		require.NoError(t, err)
		x.secrets[i] = strings.TrimSpace(string(secret))
		require.Contains(t, conf, fmt.Sprintf("password %q;", x.secrets[i]), "docs/onprem/bird.conf has gw%d's placeholder", n)
		require.NoError(t, os.WriteFile(filepath.Join(x.l.Dir(), fmt.Sprintf("gw%d.bgp-password", n)), secret, 0o600))
		x.gwConf[i] = fmt.Sprintf(birdGateway, n, x.l.Dir(), x.l.SocketPath(fmt.Sprintf("gw%d", n)))
	}
	x.bird, err = x.l.StartBIRD(ctx, x.op, "op", conf)
	require.NoError(t, err)
	for i := range x.gw {
		x.startGateway(t, ctx, i)
	}
	return x
}

func (x *birdLab) startGateway(t *testing.T, ctx context.Context, i int) {
	t.Helper()
	var err error
	x.gw[i], err = x.l.StartGateway(ctx, x.gwNS[i], bgpgwBin, fmt.Sprintf("gw%d", i+1), x.gwConf[i])
	require.NoError(t, err)
}

func (x *birdLab) diag() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	for _, cmd := range [][]string{{"show", "protocols", "all"}, {"show", "route", "all"}, {"show", "bfd", "sessions"}} {
		out, err := x.bird.Birdc(ctx, cmd...)
		fmt.Fprintf(&b, "--- op: birdc %s (%v)\n%s\n", strings.Join(cmd, " "), err, out)
	}
	fmt.Fprintf(&b, "--- op: BIRD log\n%s\n", x.bird.LogTail(40))
	for i, g := range x.gw {
		if g == nil {
			continue
		}
		st, _ := g.CLI(ctx, "status")
		fmt.Fprintf(&b, "--- gw%d: status\n%s\n--- gw%d: log\n%s\n", i+1, st, i+1, g.LogTail(30))
	}
	return b.String()
}

// exported is the route BIRD gives the kernel toward dst: its next hops
// (both gateways' inside addresses when it uses both tunnels).
func (x *birdLab) exported(ctx context.Context, dst string) ([]string, error) {
	rs, err := x.bird.Routes(ctx, "for", dst, "export", "kernel4")
	if err != nil {
		return nil, err
	}
	var hops []string
	for _, r := range rs {
		for _, nh := range r.NextHops {
			hops = append(hops, nh.Via.String())
		}
	}
	slices.Sort(hops)
	return hops, nil
}

// waitHops polls until BIRD exports dst through exactly hops, and returns
// how long that took.
func (x *birdLab) waitHops(t *testing.T, ctx context.Context, within time.Duration, dst string, hops ...string) time.Duration {
	t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last []string
	err := lab.Poll(wctx, 20*time.Millisecond, func() (bool, error) {
		var err error
		last, err = x.exported(wctx, dst)
		return slices.Equal(last, hops), err
	})
	require.NoError(t, err, "BIRD's route toward %s via %v, want %v within %s\n%s", dst, last, hops, within, x.diag())
	return time.Since(start)
}

// waitUp polls until gateway i's session is established at both ends,
// with BFD up on bgpgw's side and the on-prem prefixes received.
func (x *birdLab) waitUp(t *testing.T, ctx context.Context, within time.Duration, i int) time.Duration {
	t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	err := lab.Poll(wctx, 50*time.Millisecond, func() (bool, error) {
		p, ok, err := x.gw[i].Peer(wctx, "onprem")
		if err != nil || !ok || p.State != "established" || p.BFD == nil || !strings.EqualFold(p.BFD.State, "up") || len(p.Received) != 2 {
			return false, err
		}
		bp, ok, err := x.bird.Protocol(wctx, fmt.Sprintf("gw%d", i+1))
		return ok && bp.Established(), err
	})
	require.NoError(t, err, "gw%d: session and BFD not up within %s\n%s", i+1, within, x.diag())
	return time.Since(start)
}

// TestBGPWithBIRD runs docs/onprem/bird.conf against two bgpgw instances:
// sessions with GTSM, TCP-MD5 and single-hop BFD on the tunnel interfaces,
// the prefixes both ways, ECMP over both
// tunnels in the router's kernel; RFC 8326 graceful shutdown honoured on a
// drain; a gateway whose tunnel goes silent withdrawn by BFD far inside
// the BGP hold time, and used again seconds after it is back (the
// configuration's short error wait: BIRD's default would refuse it for a
// minute); a killed bgpgw withdrawn, and used again once restarted.
func TestBGPWithBIRD(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	x := newBirdLab(t, ctx)
	for i := range x.gw {
		x.waitUp(t, ctx, 45*time.Second, i)
	}

	// BIRD's side: single-hop BFD on the tunnel interfaces at 100 ms x 3,
	// the gateways' prefixes from both sessions, merged into one ECMP route
	// for the kernel.
	ss, err := x.bird.BFDSessions(ctx)
	require.NoError(t, err)
	require.Len(t, ss, 2, x.diag())
	var ifaces []string
	for _, s := range ss {
		assert.Equal(t, "Up", s.State, "%+v", s)
		assert.Equal(t, 300*time.Millisecond, s.Timeout, "%+v", s)
		ifaces = append(ifaces, s.Interface)
	}
	slices.Sort(ifaces)
	assert.Equal(t, []string{"xfrm-gw1", "xfrm-gw2"}, ifaces, "single-hop sessions on the tunnel interfaces")
	for i := range x.gw {
		rs, err := x.bird.Routes(ctx, "protocol", fmt.Sprintf("gw%d", i+1))
		require.NoError(t, err)
		var got []string
		for _, r := range rs {
			got = append(got, r.Prefix.String())
		}
		slices.Sort(got)
		assert.Equal(t, []string{"10.10.0.0/16", "10.11.0.0/16"}, got, "BIRD's routes from gw%d", i+1)
	}
	both := []string{"169.254.21.1", "169.254.22.1"}
	x.waitHops(t, ctx, 10*time.Second, "10.10.0.10", both...)
	kr, err := x.op.IP(ctx, "route", "show", "10.11.0.0/16")
	require.NoError(t, err)
	assert.Contains(t, kr, "proto bird")
	assert.Contains(t, kr, "nexthop via 169.254.21.1 dev xfrm-gw1")
	assert.Contains(t, kr, "nexthop via 169.254.22.1 dev xfrm-gw2")

	// bgpgw's side: exactly the on-prem prefixes, in the kernel toward the tunnel.
	for i, g := range x.gw {
		p, _, err := g.Peer(ctx, "onprem")
		require.NoError(t, err)
		assert.Equal(t, []string{"10.1.0.0/16", "10.2.0.0/16"}, p.Received)
		assert.Empty(t, p.Rejected)
		assert.Equal(t, []string{"10.10.0.0/16", "10.11.0.0/16"}, p.Announced)
		via := fmt.Sprintf("169.254.2%d.2", i+1)
		require.NoError(t, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
			routes, err := kernelRoutes(ctx, x.gwNS[i], 201)
			return slices.Equal(routes, []string{"10.1.0.0/16 via " + via, "10.2.0.0/16 via " + via}), err
		}), "gw%d kernel routes\n%s", i+1, x.diag())
	}

	// Drain gw2: BIRD lowers its routes' LOCAL_PREF to 0 on the
	// GRACEFUL_SHUTDOWN community (bird.conf's import filter) and uses gw1
	// alone while gw2's session stays up; undrained, both again.
	_, err = x.gw[1].CLI(ctx, "drain")
	require.NoError(t, err)
	x.waitHops(t, ctx, 5*time.Second, "10.10.0.10", "169.254.21.1")
	rs, err := x.bird.Routes(ctx, "protocol", "gw2", "all")
	require.NoError(t, err)
	require.NotEmpty(t, rs, "gw2's routes stay while it drains\n%s", x.diag())
	assert.Equal(t, "0", rs[0].Attrs["BGP.local_pref"], "graceful shutdown: %+v", rs[0].Attrs)
	_, err = x.gw[1].CLI(ctx, "undrain")
	require.NoError(t, err)
	x.waitHops(t, ctx, 15*time.Second, "10.10.0.10", both...)

	// gw1's tunnel goes silent (everything in and out of gw1 dropped): BFD
	// takes gw1 out, not the 9 s hold time.
	require.NoError(t, nftDrop(ctx, x.gwNS[0], "ip DIR 0.0.0.0/0"))
	took := x.waitHops(t, ctx, 3*time.Second, "10.10.0.10", "169.254.22.1")
	t.Logf("gw1 silent: BIRD withdrew its paths after %s", took.Round(time.Millisecond))
	p, _, err := x.bird.Protocol(ctx, "gw1")
	require.NoError(t, err)
	assert.Contains(t, p.LastError, "BFD session down", "%+v", p)

	// Back: with BIRD's default error wait (60 s, then up to 300 s) BIRD
	// would refuse gw1's connections for a minute; bird.conf waits 1 s.
	require.NoError(t, nftClear(ctx, x.gwNS[0]))
	took = x.waitUp(t, ctx, 20*time.Second, 0)
	x.waitHops(t, ctx, 10*time.Second, "10.10.0.10", both...)
	t.Logf("gw1 back: session and BFD up again after %s", took.Round(time.Millisecond))

	// bgpgw on gw1 killed: BIRD withdraws gw1's paths (the connection
	// closes, BFD stops), and uses gw1 again once it is restarted.
	require.NoError(t, x.gw[0].Proc.Signal(syscall.SIGKILL))
	took = x.waitHops(t, ctx, 3*time.Second, "10.10.0.10", "169.254.22.1")
	t.Logf("gw1's bgpgw killed: BIRD withdrew its paths after %s", took.Round(time.Millisecond))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.Error(t, x.gw[0].Proc.Wait(wctx), "killed")
	x.startGateway(t, ctx, 0)
	took = x.waitUp(t, ctx, 30*time.Second, 0)
	x.waitHops(t, ctx, 10*time.Second, "10.10.0.10", both...)
	t.Logf("gw1's bgpgw restarted: session and BFD up after %s", took.Round(time.Millisecond))

	// The passwords appear in no status, no log and no BIRD output.
	for i, g := range x.gw {
		st, err := g.CLI(ctx, "status", "--json")
		require.NoError(t, err)
		for _, s := range x.secrets {
			assert.NotContains(t, st, s)
			assert.NotContains(t, g.LogTail(1000), s, "gw%d's log", i+1)
			assert.NotContains(t, x.bird.LogTail(1000), s, "BIRD's log")
		}
	}
	out, err := x.bird.Birdc(ctx, "show", "protocols", "all")
	require.NoError(t, err)
	for _, s := range x.secrets {
		assert.NotContains(t, out, s)
	}
}
