package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// pairLab is a gateway pair between an on-prem FRR router and a cloud-side
// FRR router, each with a host behind it:
//
//	oh 10.1.0.10 ── op (AS 65010) ══ tunnels ══ gw1, gw2 (AS 65515) ── cr (AS 65100) ── ch 10.10.0.10
//
// The "tunnels" are veth links (ipsec.mode none): 169.254.2N.0/30 between
// op and gwN. The cloud-side links are 10.10.N.0/30 between gwN and cr.
type pairLab struct {
	l              *lab.Lab
	oh, op, cr, ch *lab.Netns
	gwNS           [2]*lab.Netns
	gw             [2]*lab.Gateway
	opFRR, crFRR   *lab.FRR
	probe          string
	gwConfig       [2]string
	stateFiles     [2]string
	diagnostics    func() string
}

const pairOnprem = `frr defaults datacenter
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
 address-family ipv4 unicast
  network 10.1.0.0/16
  maximum-paths 4
 exit-address-family
!
`

const pairCloud = `frr defaults datacenter
hostname cr
!
router bgp 65100
 bgp router-id 10.10.0.1
 no bgp ebgp-requires-policy
 neighbor 10.10.1.1 remote-as 65515
 neighbor 10.10.1.1 ttl-security hops 1
 neighbor 10.10.2.1 remote-as 65515
 neighbor 10.10.2.1 ttl-security hops 1
 address-family ipv4 unicast
  maximum-paths 4
 exit-address-family
!
`

const pairGateway = `
instance: {name: gw%[1]d, mode: %[2]s%[3]s}
bgp: {asn: 65515, router_id: 192.0.2.%[1]d}
announce: [10.10.0.0/16]
ipsec: {mode: none}
tunnels:
  - name: onprem
    inside: {local: 169.254.2%[1]d.1/30, remote: 169.254.2%[1]d.2}
    peer_asn: 65010
    accept: ["10.1.0.0/16 le 24"]
    bfd: {enabled: %[6]v, multihop: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}
cloud_peers:
  - {name: cr, address: 10.10.%[1]d.2, local_address: 10.10.%[1]d.1, peer_asn: 65100}
health:
  - {name: uplink, kind: link, target: up0}
drain: {time: 2s, state_file: %[4]s}
api: {socket: %[5]s}
`

// pairSection is the pair: part of gwN's configuration (takeover
// more-specific, the partner through the cloud router: multihop BFD).
const pairSection = `pair:
  partner: 10.10.%[1]d.1
  local_address: 10.10.%[2]d.1
  key_file: %[3]s
  bfd: {multihop: true}
  release_delay: 1s
`

func newPairLab(t *testing.T, ctx context.Context, mode string, withBFD ...bool) *pairLab {
	t.Helper()
	return newPairLabWith(t, ctx, mode, len(withBFD) > 0 && withBFD[0], false)
}

// newPairLabWith is newPairLab, with BFD on the on-prem router's sessions
// (bfdOn) and the instances knowing each other (pairOn: pair:).
func newPairLabWith(t *testing.T, ctx context.Context, mode string, bfdOn, pairOn bool) *pairLab {
	t.Helper()
	p := &pairLab{l: lab.ForTest(t)}
	l := p.l
	ns := func(name string) *lab.Netns {
		n, err := l.Netns(name)
		require.NoError(t, err)
		return n
	}
	p.oh, p.op, p.cr, p.ch = ns("oh"), ns("op"), ns("cr"), ns("ch")
	p.gwNS = [2]*lab.Netns{ns("gw1"), ns("gw2")}
	link := func(a *lab.Netns, aIf, aAddr string, b *lab.Netns, bIf, bAddr string) {
		require.NoError(t, l.Link(a, aIf, aAddr, b, bIf, bAddr))
	}
	link(p.oh, "eth0", "10.1.0.10/24", p.op, "host0", "10.1.0.1/24")
	link(p.ch, "eth0", "10.10.0.10/24", p.cr, "host0", "10.10.0.1/24")
	for i, gw := range p.gwNS {
		n := i + 1
		link(gw, "tun0", fmt.Sprintf("169.254.2%d.1/30", n), p.op, fmt.Sprintf("gw%d", n), fmt.Sprintf("169.254.2%d.2/30", n))
		link(gw, "up0", fmt.Sprintf("10.10.%d.1/30", n), p.cr, fmt.Sprintf("gw%d", n), fmt.Sprintf("10.10.%d.2/30", n))
		// The cloud side is reached through the cloud router: the host's
		// own routing, not bgpgw's job.
		require.NoError(t, gw.AddRoute(ctx, "10.10.0.0/16", "via", fmt.Sprintf("10.10.%d.2", n)))
	}
	require.NoError(t, p.oh.AddRoute(ctx, "default", "via", "10.1.0.1"))
	require.NoError(t, p.ch.AddRoute(ctx, "default", "via", "10.10.0.1"))
	for _, r := range []*lab.Netns{p.op, p.cr} {
		require.NoError(t, r.Sysctl(ctx, "net.ipv4.fib_multipath_hash_policy", "1"))
	}
	var err error
	onprem, daemons := pairOnprem, []string{"zebra", "bgpd", "staticd"}
	if bfdOn {
		onprem = strings.Replace(onprem, " address-family ipv4 unicast\n",
			" neighbor 169.254.21.1 bfd profile fast\n neighbor 169.254.22.1 bfd profile fast\n address-family ipv4 unicast\n", 1)
		onprem += "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n !\n!\n"
		daemons = append(daemons, "bfdd")
	}
	p.opFRR, err = l.StartFRR(p.op, l.Prefix()+"op", onprem, daemons...)
	require.NoError(t, err)
	p.crFRR, err = l.StartFRR(p.cr, l.Prefix()+"cr", pairCloud, "zebra", "bgpd")
	require.NoError(t, err)
	p.probe, err = lab.BuildUDPProbe(ctx, l.Dir())
	require.NoError(t, err)
	for i := range p.gwNS {
		role := ""
		if mode == "active-standby" {
			role = ", role: primary"
			if i == 1 {
				role = ", role: standby"
			}
		}
		name := fmt.Sprintf("gw%d", i+1)
		p.stateFiles[i] = filepath.Join(l.Dir(), name+".drained")
		p.gwConfig[i] = fmt.Sprintf(pairGateway, i+1, mode, role, p.stateFiles[i], l.SocketPath(name), bfdOn)
		if pairOn {
			key := filepath.Join(l.Dir(), "pair.key")
			require.NoError(t, os.WriteFile(key, []byte("integration-pair-key-0123456789"), 0o600))
			p.gwConfig[i] += fmt.Sprintf(pairSection, 2-i, i+1, key)
		}
		p.gw[i], err = l.StartGateway(ctx, p.gwNS[i], bgpgwBin, name, p.gwConfig[i])
		require.NoError(t, err)
	}
	p.diagnostics = func() string {
		var b strings.Builder
		for _, g := range p.gw {
			if g != nil {
				st, _ := g.CLI(ctx, "status")
				fmt.Fprintf(&b, "--- %s status:\n%s\n--- %s log:\n%s\n", g.Name, st, g.Name, g.LogTail(25))
			}
		}
		if bfdPeers, err := p.opFRR.Vtysh(ctx, "show bfd peers counters"); err == nil {
			fmt.Fprintf(&b, "--- op bfd:\n%s\n", bfdPeers)
		}
		op, _ := p.opFRR.Vtysh(ctx, "show bgp ipv4 unicast")
		cr, _ := p.crFRR.Vtysh(ctx, "show bgp ipv4 unicast")
		fmt.Fprintf(&b, "--- op:\n%s\n--- cr:\n%s\n", op, cr)
		return b.String()
	}
	require.NoError(t, p.waitWhole(ctx), "pair did not come up\n%s", p.diagnostics())
	return p
}

// waitWhole waits until both instances carry: the on-prem router has the
// cloud prefix from both, the cloud router the on-prem prefix from both.
func (p *pairLab) waitWhole(ctx context.Context) error {
	return lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		a, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
		if err != nil || len(a) != 2 {
			return false, err
		}
		b, err := p.paths(ctx, p.crFRR, "10.1.0.0/16")
		return len(b) == 2, err
	})
}

// path is one BGP path as FRR shows it.
type path struct {
	NextHop     string
	ASPath      string
	LocalPref   int
	Best        bool
	Communities string
}

// paths returns FRR's paths for one prefix.
func (p *pairLab) paths(ctx context.Context, frr *lab.FRR, prefix string) ([]path, error) {
	var out struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			LocalPref int `json:"locPrf"`
			BestPath  struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := frr.JSON(ctx, "show bgp ipv4 unicast "+prefix+" json", &out); err != nil {
		return nil, err
	}
	var l []path
	for _, x := range out.Paths {
		pp := path{ASPath: x.ASPath.String, LocalPref: x.LocalPref, Best: x.BestPath.Overall, Communities: x.Community.String}
		if len(x.Nexthops) > 0 {
			pp.NextHop = x.Nexthops[0].IP
		}
		l = append(l, pp)
	}
	return l, nil
}

// traffic runs 4 flows each way between the hosts for d and returns both reports.
func (p *pairLab) traffic(t *testing.T, ctx context.Context, d time.Duration, during func()) (lab.TrafficReport, lab.TrafficReport) {
	t.Helper()
	up, err := p.l.StartTraffic(ctx, p.probe, p.oh, p.ch, "10.10.0.10", 40000, 4, time.Millisecond, d)
	require.NoError(t, err)
	down, err := p.l.StartTraffic(ctx, p.probe, p.ch, p.oh, "10.1.0.10", 41000, 4, time.Millisecond, d)
	require.NoError(t, err)
	require.NoError(t, up.WaitReceiving(ctx), p.diagnostics())
	require.NoError(t, down.WaitReceiving(ctx), p.diagnostics())
	during()
	ru, err := up.Stop(ctx)
	require.NoError(t, err)
	rd, err := down.Stop(ctx)
	require.NoError(t, err)
	t.Logf("on-prem -> cloud: %s", ru.String())
	t.Logf("cloud -> on-prem: %s", rd.String())
	return ru, rd
}

func TestPairDrainAndStopLoseNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	p := newPairLab(t, ctx, "active-active")

	up, down := p.traffic(t, ctx, 12*time.Second, func() {
		// Drain gw1: before anything is withdrawn, FRR shows gw1's path with
		// the community and local-pref 0, and prefers gw2.
		_, err := p.gw[0].CLI(ctx, "drain")
		require.NoError(t, err)
		require.NoError(t, lab.Poll(ctx, 20*time.Millisecond, func() (bool, error) {
			ps, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
			if err != nil || len(ps) != 2 {
				return false, err
			}
			for _, x := range ps {
				if x.NextHop == "169.254.21.1" {
					return strings.Contains(x.Communities, "graceful-shutdown") && x.LocalPref == 0 && !x.Best, nil
				}
			}
			return false, nil
		}), "on-prem FRR did not move away from the draining instance\n%s", p.diagnostics())
		ps, _ := p.paths(ctx, p.opFRR, "10.10.0.0/16")
		t.Logf("during drain, on-prem FRR paths: %+v", ps)
		// Then gw1 withdraws and closes its sessions.
		require.NoError(t, lab.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
			ps, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
			return len(ps) == 1 && ps[0].NextHop == "169.254.22.1", err
		}), p.diagnostics())
		// Undrain gw1 and wait for the pair to be whole again.
		_, err = p.gw[0].CLI(ctx, "undrain")
		require.NoError(t, err)
		require.NoError(t, p.waitWhole(ctx), "pair not whole after undrain\n%s", p.diagnostics())
		// Stop gw2 with SIGTERM: it drains, then exits.
		require.NoError(t, p.gw[1].Proc.Signal(syscall.SIGTERM))
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		defer wcancel()
		require.NoError(t, p.gw[1].Proc.Wait(wctx), p.diagnostics())
	})
	// How many datagrams the senders managed to send depends on the
	// machine's load and is not asserted. Nothing may go missing: which
	// datagrams the probe's own sockets dropped is not known (their counter
	// counts the sender's fins too), so their drops are reported, not
	// subtracted.
	for _, r := range []lab.TrafficReport{up, down} {
		require.Positive(t, r.Received, "%s -> %s", r.From, r.To)
		require.Equal(t, r.Sent, r.Received+r.Lost, "%s -> %s: every datagram sent is received or counted lost", r.From, r.To)
		require.Zero(t, r.Lost, "%s -> %s lost datagrams through drain and stop (the probe's own sockets dropped %d)", r.From, r.To, r.ProbeDrops)
	}
}

func TestPairActiveStandbyPrefersPrimary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newPairLab(t, ctx, "active-standby")
	ps, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
	require.NoError(t, err)
	for _, x := range ps {
		switch x.NextHop {
		case "169.254.21.1":
			require.True(t, x.Best, "the primary is preferred: %+v", ps)
			require.Equal(t, "65515", x.ASPath)
		case "169.254.22.1":
			require.False(t, x.Best)
			require.Equal(t, "65515 65515 65515 65515", x.ASPath, "the standby prepends")
		}
	}
	// Promote the standby at runtime: no session resets, and FRR switches.
	_, err = p.gw[0].CLI(ctx, "role", "standby")
	require.NoError(t, err)
	_, err = p.gw[1].CLI(ctx, "role", "primary")
	require.NoError(t, err)
	require.NoError(t, lab.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		ps, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
		for _, x := range ps {
			if x.Best {
				return x.NextHop == "169.254.22.1" && x.ASPath == "65515", err
			}
		}
		return false, err
	}), p.diagnostics())
	nb, err := p.opFRR.Neighbors(ctx)
	require.NoError(t, err)
	for addr, n := range nb {
		require.Zero(t, n.Dropped, "session with %s was reset by the role change", addr)
		require.Equal(t, "Established", n.State, addr)
	}
}

func TestPairUplinkDownWithdraws(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newPairLab(t, ctx, "active-active")
	// Capture BGP on the on-prem router's side of gw1's tunnel, to time the
	// withdrawal on the wire.
	capture := filepath.Join(p.l.Dir(), "bgp-gw1.txt")
	tcpdump, err := p.l.Start(p.op, capture, "tcpdump", "-i", "gw1", "-n", "-tt", "-l", "-U", "tcp", "port", "179")
	require.NoError(t, err)
	require.NoError(t, lab.Poll(ctx, 20*time.Millisecond, func() (bool, error) {
		b, _ := os.ReadFile(capture)
		return strings.Contains(string(b), "listening on"), nil
	}))
	start := time.Now()
	_, err = p.gwNS[0].IP(ctx, "link", "set", "up0", "down")
	require.NoError(t, err)
	require.NoError(t, lab.Poll(ctx, time.Millisecond, func() (bool, error) {
		ps, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
		return len(ps) == 1 && ps[0].NextHop == "169.254.22.1", err
	}), p.diagnostics())
	seen := time.Since(start)
	require.NoError(t, tcpdump.Signal(syscall.SIGTERM))
	wire := firstUpdateAfter(t, capture, "169.254.21.1.179", start)
	t.Logf("cloud-side uplink down -> withdrawal from gw1 on the wire at the on-prem router: %s (link-down command issued at 0; FRR's table, polled through vtysh, showed it after %s)",
		wire.Round(100*time.Microsecond), seen.Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "uplink-down withdrawal on the wire: %s\n", wire.Round(100*time.Microsecond))
	require.Less(t, wire, 50*time.Millisecond, "goal: withdrawn within 50 ms of the uplink going down")
	// Back up: re-announced after the hold-down.
	_, err = p.gwNS[0].IP(ctx, "link", "set", "up0", "up")
	require.NoError(t, err)
	require.NoError(t, lab.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		ps, err := p.paths(ctx, p.opFRR, "10.10.0.0/16")
		return len(ps) == 2, err
	}), p.diagnostics())
}

// firstUpdateAfter returns how long after start the first BGP message
// longer than a KEEPALIVE (19 bytes) left from (tcpdump's "addr.port")
// appears in a `tcpdump -tt -n` capture.
func firstUpdateAfter(t *testing.T, capture, from string, start time.Time) time.Duration {
	t.Helper()
	data, err := os.ReadFile(capture)
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[2] != from || !strings.Contains(line, "length") {
			continue
		}
		var sec, usec int64
		if _, err := fmt.Sscanf(f[0], "%d.%d", &sec, &usec); err != nil {
			continue
		}
		at := time.Unix(sec, usec*1000)
		var n int
		if i := strings.LastIndex(line, "length "); i >= 0 {
			_, _ = fmt.Sscanf(line[i:], "length %d", &n)
		}
		if at.After(start) && n > 19 {
			return at.Sub(start)
		}
	}
	t.Fatalf("no BGP UPDATE from %s after the link went down in the capture:\n%s", from, data)
	return 0
}

// TestPairBFDDownWithdraws runs BFD on the tunnels (multihop: FRR makes
// the BFD session of a ttl-security neighbor multihop), then blackholes gw1's tunnel link (nothing crosses,
// both ways): BGP's 9 s hold time cannot notice in time, BFD (100 ms x 3)
// does, and gw1 stops carrying: its on-prem routes leave the kernel and the
// cloud-side router, well before the hold timer.
func TestPairBFDDownWithdraws(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newPairLab(t, ctx, "active-active", true)
	bctx, bcancel := context.WithTimeout(ctx, 20*time.Second)
	defer bcancel()
	if os.Getenv("BGPGW_DEBUG_QUIT") != "" {
		defer func() {
			_ = p.gw[0].Proc.Signal(syscall.SIGQUIT)
			_ = p.gw[0].Proc.Wait(ctx)
			t.Log(p.gw[0].LogTail(400))
		}()
	}
	require.NoError(t, lab.Poll(bctx, 50*time.Millisecond, func() (bool, error) {
		pr, ok, err := p.gw[0].Peer(ctx, "onprem")
		return ok && pr.BFD != nil && pr.BFD.State == "Up", err
	}), "BFD did not come up\n%s", p.diagnostics())
	pr, _, err := p.gw[0].Peer(ctx, "onprem")
	require.NoError(t, err)
	t.Logf("gw1 BFD: %+v", *pr.BFD)
	require.Equal(t, 100.0, pr.BFD.TxIntervalMs, "negotiated 100 ms")

	_, err = p.gwNS[0].Exec(ctx, "nft", "add table inet bgwblackhole; add chain inet bgwblackhole in { type filter hook input priority 0; }; add chain inet bgwblackhole out { type filter hook output priority 0; }; add rule inet bgwblackhole in iifname tun0 drop; add rule inet bgwblackhole out oifname tun0 drop")
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, lab.Poll(ctx, 10*time.Millisecond, func() (bool, error) {
		st, err := p.gw[0].Status(ctx)
		if err != nil {
			return false, err
		}
		return len(st.Routes) == 0 && len(st.Tunnels) == 1 && !st.Tunnels[0].Carrying && strings.Contains(st.Tunnels[0].Reason, "BFD down"), nil
	}), "gw1 did not withdraw on BFD down\n%s", p.diagnostics())
	detected := time.Since(start)
	require.NoError(t, lab.Poll(ctx, 10*time.Millisecond, func() (bool, error) {
		ps, err := p.paths(ctx, p.crFRR, "10.1.0.0/16")
		return len(ps) == 1 && ps[0].NextHop == "10.10.2.1", err
	}), "the cloud-side router still routes through gw1\n%s", p.diagnostics())
	t.Logf("tunnel blackholed -> gw1 withdrew (kernel routes gone, status BFD down): %s; cloud-side router moved to gw2 after %s",
		detected.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	require.Less(t, detected, 3*time.Second, "BFD, not the 9 s BGP hold timer, detected it")
}
