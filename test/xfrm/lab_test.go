//go:build guest

package xfrm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// The lab, in network namespaces of the guest:
//
//	oh -- op ========= inet ========= gw1 -- cr -- ch
//	      (VPN + FRR)   \                /
//	                     ========== gw2 --
//
// oh is an on-prem host (10.1.1.10, fd01:1:1::10) behind op, the on-prem
// router: a route-based VPN device (strongSwan or libreswan, one XFRM
// interface per tunnel) with FRR, AS 65010, on 198.51.100.10 and
// 2001:db8:198::10. inet joins the outer addresses. gw1 and gw2 are the
// bgpgw pair (AS 65515), each with charon (kernel ESP) and two tunnels to
// op: op4 over IPv4 with IPv4 inside addresses, op6 over IPv6 with IPv6
// inside addresses, each on its own XFRM interface (bgpgw1 and bgpgw2,
// if_id 1 and 2). cr is the cloud-side FRR router (AS 65100) with a session
// to each gateway per family; ch is a cloud host (10.10.1.10, fd10:10:0:1::10).
// bgpgw announces 10.10.0.0/16 and fd10:10::/48 to op, op announces
// 10.1.1.0/24 and fd01:1:1::/64.

// labPSK is the tunnels' pre-shared key: it must appear in no log or status.
const labPSK = "xfrm-lab-psk-never-printed"

const (
	onpremLAN4, onpremLAN6 = "10.1.1.0/24", "fd01:1:1::/64"
	cloud4, cloud6         = "10.10.0.0/16", "fd10:10::/48"
	ohAddr4, ohAddr6       = "10.1.1.10", "fd01:1:1::10"
	chAddr4, chAddr6       = "10.10.1.10", "fd10:10:0:1::10"
	opWAN4, opWAN6         = "198.51.100.10", "2001:db8:198::10"
)

// Bindings of one gateway's tunnel on both ends.
type tunnelSpec struct {
	name           string // bgpgw's tunnel name: op4, op6
	v6             bool
	gwOuter        string // the gateway's outer address
	gwInside       string // inside.local, with its length
	opInside       string // the device's inside address, with the length
	gwIfID, opIfID int
	gwIface        string // bgpgw's XFRM interface
	opIface        string // the device's XFRM interface: ipsecN, N its if_id (libreswan's name)
	opConn         string // the device's connection name
}

func (s tunnelSpec) opInsideAddr() string { return strings.Split(s.opInside, "/")[0] }
func (s tunnelSpec) gwInsideAddr() string { return strings.Split(s.gwInside, "/")[0] }

// gwNode is one gateway instance.
type gwNode struct {
	name    string // gw1, gw2
	idx     int
	ns      *lab.Netns
	charon  *lab.Charon
	gw      *lab.Gateway
	config  string
	tunnels []tunnelSpec
}

func (g *gwNode) wan4() string    { return fmt.Sprintf("203.0.113.%d", 4*g.idx+6) }
func (g *gwNode) wan6() string    { return fmt.Sprintf("2001:db8:203:%d::10", g.idx) }
func (g *gwNode) cloud4() string  { return fmt.Sprintf("10.10.254.%d", 4*g.idx-3) }
func (g *gwNode) cloud6() string  { return fmt.Sprintf("fd10:10:ffff:%d::1", g.idx) }
func (g *gwNode) crAddr4() string { return fmt.Sprintf("10.10.254.%d", 4*g.idx-2) }
func (g *gwNode) crAddr6() string { return fmt.Sprintf("fd10:10:ffff:%d::2", g.idx) }

// tunnelsOf is the two tunnels of gateway idx.
func tunnelsOf(idx int) []tunnelSpec {
	g := &gwNode{idx: idx}
	return []tunnelSpec{
		{name: "op4", gwOuter: g.wan4(), gwInside: fmt.Sprintf("169.254.2%d.1/30", idx),
			opInside: fmt.Sprintf("169.254.2%d.2/30", idx), gwIfID: 1, opIfID: 10*idx + 1,
			gwIface: "bgpgw1", opIface: fmt.Sprintf("ipsec%d", 10*idx+1), opConn: fmt.Sprintf("gw%dv4", idx)},
		{name: "op6", v6: true, gwOuter: g.wan6(), gwInside: fmt.Sprintf("fd00:3%d::1/126", idx),
			opInside: fmt.Sprintf("fd00:3%d::2/126", idx), gwIfID: 2, opIfID: 10*idx + 2,
			gwIface: "bgpgw2", opIface: fmt.Sprintf("ipsec%d", 10*idx+2), opConn: fmt.Sprintf("gw%dv6", idx)},
	}
}

// labOptions vary the lab.
type labOptions struct {
	device vpnKind       // the on-prem VPN device
	bfd    time.Duration // BFD interval on the tunnel sessions (both ends), x3
}

// xlab is the running lab.
type xlab struct {
	t                    *testing.T
	l                    *lab.Lab
	opts                 labOptions
	oh, op, inet, cr, ch *lab.Netns
	gws                  []*gwNode
	dev                  vpnDevice
	opFRR, crFRR         *lab.FRR
	pskFile              string
	probe                string
	bgpgwBin             string
	kernels              map[string]*kernel
}

func newLab(t *testing.T, ctx context.Context, opts labOptions) *xlab {
	if opts.bfd == 0 {
		opts.bfd = defaultBFD
	}
	x := &xlab{t: t, l: lab.ForTest(t), opts: opts, probe: probeBin, bgpgwBin: bgpgwBin, kernels: map[string]*kernel{}}
	l := x.l
	var err error
	mk := func(name string) *lab.Netns {
		n, err := l.Netns(name)
		require.NoError(t, err)
		return n
	}
	x.oh, x.op, x.inet, x.cr, x.ch = mk("oh"), mk("op"), mk("inet"), mk("cr"), mk("ch")
	for i := 1; i <= 2; i++ {
		x.gws = append(x.gws, &gwNode{name: fmt.Sprintf("gw%d", i), idx: i, ns: mk(fmt.Sprintf("gw%d", i)), tunnels: tunnelsOf(i)})
	}
	x.topology(ctx)

	x.pskFile = filepath.Join(l.Dir(), "psk")
	require.NoError(t, os.WriteFile(x.pskFile, []byte(labPSK+"\n"), 0o600))

	// The on-prem VPN device, then FRR behind it.
	x.dev, err = startDevice(ctx, x)
	require.NoError(t, err)
	x.opFRR, err = l.StartFRR(x.op, "op", x.onpremFRR(), "zebra", "bgpd", "bfdd")
	require.NoError(t, err)
	x.crFRR, err = l.StartFRR(x.cr, "cr", x.cloudFRR(), "zebra", "bgpd")
	require.NoError(t, err)

	for _, g := range x.gws {
		// Debian's charon installs routes by default; with XFRM
		// interfaces it must not (checked by x.stale).
		g.charon, err = l.StartCharonKernel(g.ns, g.name, true)
		require.NoError(t, err)
		g.config = x.gatewayConfig(g, g.tunnels)
		require.NoError(t, x.startGateway(ctx, g))
	}
	return x
}

// defaultBFD is the BFD interval of the tunnel sessions in the guest, x3.
// The guest runs under TCG, 5 to 40 times slower than the host depending
// on the host's load: at 200 ms x 3 its BFD sessions went down falsely
// while probe traffic ran.
const defaultBFD = time.Second

// gatewaySysctls are the kernel settings of a gateway host, as
// docs/operations.md lists them.
var gatewaySysctls = [][2]string{
	{"net.ipv4.ip_forward", "1"},
	{"net.ipv6.conf.all.forwarding", "1"},
	{"net.ipv4.fib_multipath_hash_policy", "1"},
	{"net.ipv6.fib_multipath_hash_policy", "1"},
	{"net.ipv4.conf.all.rp_filter", "2"},
}

// countTable is the nft table on each gateway that counts the probe's
// datagrams through its XFRM interfaces.
const countTable = "bgwcount"

// end is one end of a veth: its namespace, name and addresses.
type end struct {
	n      *lab.Netns
	dev    string
	a4, a6 string
}

// topology makes the links, addresses, routes and sysctls, with one ip
// process per namespace and step.
func (x *xlab) topology(ctx context.Context) {
	t := x.t
	links := [][2]end{
		{{x.op, "lan0", "10.1.1.1/24", "fd01:1:1::1/64"}, {x.oh, "eth0", ohAddr4 + "/24", ohAddr6 + "/64"}},
		{{x.op, "wan0", opWAN4 + "/24", opWAN6 + "/64"}, {x.inet, "op", "198.51.100.1/24", "2001:db8:198::1/64"}},
		{{x.cr, "vnet0", "10.10.1.1/24", "fd10:10:0:1::1/64"}, {x.ch, "eth0", chAddr4 + "/24", chAddr6 + "/64"}},
	}
	for _, g := range x.gws {
		links = append(links,
			[2]end{{g.ns, "wan0", g.wan4() + "/30", g.wan6() + "/64"},
				{x.inet, g.name, fmt.Sprintf("203.0.113.%d/30", 4*g.idx+5), fmt.Sprintf("2001:db8:203:%d::1/64", g.idx)}},
			[2]end{{g.ns, "cloud0", g.cloud4() + "/30", g.cloud6() + "/64"}, {x.cr, g.name, g.crAddr4() + "/30", g.crAddr6() + "/64"}})
	}
	// 1. The veths, each made in its first namespace with the peer moved
	// to the second.
	var order []*lab.Netns
	create, conf := map[*lab.Netns][]string{}, map[*lab.Netns][]string{}
	add := func(m map[*lab.Netns][]string, n *lab.Netns, lines ...string) {
		if _, ok := create[n]; !ok {
			if _, ok := conf[n]; !ok {
				order = append(order, n)
			}
		}
		m[n] = append(m[n], lines...)
	}
	for _, lk := range links {
		add(create, lk[0].n, fmt.Sprintf("link add %s type veth peer name %s netns %s", lk[0].dev, lk[1].dev, lk[1].n.Name()))
		// 2. Addresses (IPv6 without duplicate address detection, whose
		// delay would only slow the start), links up, routes.
		for _, e := range lk {
			add(conf, e.n, "addr add "+e.a4+" dev "+e.dev, "addr add "+e.a6+" dev "+e.dev+" nodad", "link set "+e.dev+" up")
		}
	}
	add(conf, x.oh, "route add default via 10.1.1.1", "route add ::/0 via fd01:1:1::1")
	add(conf, x.ch, "route add default via 10.10.1.1", "route add ::/0 via fd10:10:0:1::1")
	add(conf, x.op, "route add default via 198.51.100.1", "route add ::/0 via 2001:db8:198::1")
	for _, g := range x.gws {
		add(conf, g.ns,
			fmt.Sprintf("route add default via 203.0.113.%d", 4*g.idx+5),
			fmt.Sprintf("route add ::/0 via 2001:db8:203:%d::1", g.idx),
			// The cloud prefixes are the cloud side's: static routes, as
			// a gateway host in a VNet has them.
			"route add "+cloud4+" via "+g.crAddr4(), "route add "+cloud6+" via "+g.crAddr6())
	}
	for _, step := range []map[*lab.Netns][]string{create, conf} {
		for _, n := range order {
			if lines := step[n]; len(lines) > 0 {
				require.NoError(t, ipBatch(ctx, n, lines...))
			}
		}
	}
	// 3. Forwarding on the routers; the gateways get what
	// docs/operations.md tells an operator to set; op and cr hash flows
	// over ECMP by ports.
	require.NoError(t, setSysctls(ctx, x.inet, [2]string{"net.ipv6.conf.all.forwarding", "1"}))
	for _, n := range []*lab.Netns{x.op, x.cr} {
		require.NoError(t, setSysctls(ctx, n, [2]string{"net.ipv6.conf.all.forwarding", "1"},
			[2]string{"net.ipv4.fib_multipath_hash_policy", "1"}, [2]string{"net.ipv6.fib_multipath_hash_policy", "1"}))
	}
	nft := fmt.Sprintf(`add table inet %[1]s
add chain inet %[1]s forward { type filter hook forward priority 0; }
add rule inet %[1]s forward iifname "bgpgw*" udp dport 40000-43999 counter comment "from-onprem"
add rule inet %[1]s forward oifname "bgpgw*" udp dport 40000-43999 counter comment "to-onprem"
`, countTable)
	for _, g := range x.gws {
		require.NoError(t, setSysctls(ctx, g.ns, gatewaySysctls...))
		// Counts the probe's datagrams through the XFRM interfaces.
		cmd := g.ns.Command(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(nft)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "nft: %s", out)
	}
}

// tunnelYAML is one tunnels[] entry of a gateway.
func (x *xlab) tunnelYAML(s tunnelSpec) string {
	remote, accept := opWAN4, `"10.1.0.0/16 le 24"`
	if s.v6 {
		remote, accept = opWAN6, `"fd01::/16 le 64"`
	}
	bfd := x.opts.bfd.String()
	return fmt.Sprintf(`  - name: %[1]s
    local_address: "%[2]s"
    remote_address: "%[3]s"
    psk_file: %[4]s
    ike_proposals: [aes256gcm16-prfsha384-ecp384]
    esp_proposals: [aes256gcm16-ecp384]
    if_id: %[5]d
    interface: %[6]s
    inside: {local: "%[7]s", remote: "%[8]s"}
    peer_asn: 65010
    accept: [%[9]s]
    bfd: {enabled: true, multihop: true, min_rx: %[10]s, min_tx: %[10]s, multiplier: 3}
`, s.name, s.gwOuter, remote, x.pskFile, s.gwIfID, s.gwIface, s.gwInside, s.opInsideAddr(), accept, bfd)
}

// gatewayConfig is gateway g's configuration with the given tunnels.
func (x *xlab) gatewayConfig(g *gwNode, tunnels []tunnelSpec) string {
	var ts strings.Builder
	for _, s := range tunnels {
		ts.WriteString(x.tunnelYAML(s))
	}
	return fmt.Sprintf(`instance: {name: %[1]s, mode: active-active}
bgp: {asn: 65515, router_id: %[2]s}
announce: [%[3]s, "%[4]s"]
ipsec: {mode: xfrm, vici_socket: %[5]s}
tunnels:
%[6]scloud_peers:
  - {name: cr4, address: %[7]s, local_address: %[2]s, peer_asn: 65100}
  - {name: cr6, address: "%[8]s", local_address: "%[9]s", peer_asn: 65100}
api: {socket: %[10]s}
drain: {state_file: %[11]s}
metrics: {listen: "off"}
# The faults follow one another within a minute or two: the default decay
# (60 s) would have the hold-down double from one fault to the next.
hold_down: {initial: 1s, max: 4s, decay: 10s}
`, g.name, g.cloud4(), cloud4, cloud6, g.charon.Vici, ts.String(), g.crAddr4(), g.crAddr6(), g.cloud6(),
		x.l.SocketPath(g.name), filepath.Join(x.l.Dir(), g.name+".drained"))
}

// onpremFRR peers with both gateways over every tunnel's inside
// addresses, with BFD, and announces the on-prem LAN in both families.
func (x *xlab) onpremFRR() string {
	var nb, af4, af6 strings.Builder
	for _, g := range x.gws {
		for _, s := range g.tunnels {
			a := s.gwInsideAddr()
			fmt.Fprintf(&nb, " neighbor %[1]s remote-as 65515\n neighbor %[1]s ttl-security hops 1\n neighbor %[1]s bfd profile lab\n", a)
			af := &af4
			if s.v6 {
				af = &af6
			}
			fmt.Fprintf(af, "  neighbor %s activate\n", a)
		}
	}
	ms := x.opts.bfd.Milliseconds()
	return fmt.Sprintf(`frr defaults datacenter
hostname op
!
router bgp 65010
 bgp router-id 198.51.100.10
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
%[1]s address-family ipv4 unicast
  network %[2]s
  maximum-paths 4
%[3]s exit-address-family
 address-family ipv6 unicast
  network %[4]s
  maximum-paths 4
%[5]s exit-address-family
!
bfd
 profile lab
  receive-interval %[6]d
  transmit-interval %[6]d
 !
!
`, nb.String(), onpremLAN4, af4.String(), onpremLAN6, af6.String(), ms)
}

// cloudFRR is the cloud-side router: a session per gateway and family.
func (x *xlab) cloudFRR() string {
	var nb, af4, af6 strings.Builder
	for _, g := range x.gws {
		for _, a := range []string{g.cloud4(), g.cloud6()} {
			fmt.Fprintf(&nb, " neighbor %[1]s remote-as 65515\n neighbor %[1]s ttl-security hops 1\n", a)
		}
		fmt.Fprintf(&af4, "  neighbor %s activate\n", g.cloud4())
		fmt.Fprintf(&af6, "  neighbor %s activate\n", g.cloud6())
	}
	return fmt.Sprintf(`frr defaults datacenter
hostname cr
!
router bgp 65100
 bgp router-id 10.10.1.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
%[1]s address-family ipv4 unicast
  maximum-paths 4
%[2]s exit-address-family
 address-family ipv6 unicast
  maximum-paths 4
%[3]s exit-address-family
!
`, nb.String(), af4.String(), af6.String())
}

// gw returns the gateway called name.
func (x *xlab) gw(name string) *gwNode {
	for _, g := range x.gws {
		if g.name == name {
			return g
		}
	}
	x.t.Fatalf("no gateway %s", name)
	return nil
}

// diag is what a failure shows: every gateway's status and logs, the
// device's and the routers' logs, the kernels' XFRM state.
func (x *xlab) diag() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	for _, g := range x.gws {
		if g.gw != nil {
			st, _ := g.gw.CLI(ctx, "status")
			fmt.Fprintf(&b, "=== %s: bgpgw status\n%s\n=== %s: bgpgw log\n%s\n", g.name, st, g.name, g.gw.LogTail(40))
		}
		if g.charon != nil {
			sas, _ := g.charon.Swanctl(ctx, "--list-sas")
			fmt.Fprintf(&b, "=== %s: SAs\n%s\n=== %s: charon log\n%s\n", g.name, sas, g.name, g.charon.LogTail(20))
		}
		b.WriteString(kernelState(ctx, g.ns))
	}
	if x.dev != nil {
		fmt.Fprintf(&b, "=== op: VPN device\n%s\n", x.dev.logTail(ctx, 40))
	}
	b.WriteString(kernelState(ctx, x.op))
	for _, n := range append([]*lab.Netns{x.op, x.cr}, x.gws[0].ns, x.gws[1].ns) {
		b.WriteString(dropCounters(ctx, n))
	}
	for _, f := range []*lab.FRR{x.opFRR, x.crFRR} {
		if f != nil {
			s, _ := f.Vtysh(ctx, "show bgp summary", "show bfd peers brief")
			fmt.Fprintf(&b, "=== %s\n%s\n%s\n", f.Name(), s, f.LogTail(15))
		}
	}
	return b.String()
}

// kernelState is a namespace's XFRM interfaces, states, policies and
// routes, for diagnosis (the keys are left out).
func kernelState(ctx context.Context, n *lab.Netns) string {
	var b strings.Builder
	fmt.Fprintf(&b, "=== %s: kernel\n", n.Name())
	for _, args := range [][]string{{"-d", "link", "show", "type", "xfrm"}, {"xfrm", "policy"},
		{"route"}, {"-6", "route"}, {"rule"}, {"route", "show", "table", "220"}} {
		out, err := n.IP(ctx, args...)
		fmt.Fprintf(&b, "$ ip %s\n%s%v\n", strings.Join(args, " "), out, errOrEmpty(err))
	}
	out, err := n.IP(ctx, "xfrm", "state")
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "aead ") && !strings.Contains(line, "enc ") && !strings.Contains(line, "auth") {
			keep = append(keep, line)
		}
	}
	fmt.Fprintf(&b, "$ ip xfrm state (keys left out)\n%s%v\n", strings.Join(keep, "\n"), errOrEmpty(err))
	return b.String()
}

func errOrEmpty(err error) string {
	if err != nil {
		return err.Error()
	}
	return ""
}

// sortedCopy returns s sorted.
func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// dropCounters is a namespace's XFRM error counters and its IP and IPv6
// counters that are not zero, for diagnosis.
func dropCounters(ctx context.Context, n *lab.Netns) string {
	out, err := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+n.Name(), "sh", "-c",
		"grep -v ' 0$' /proc/net/xfrm_stat; nstat -asz | grep -E '^(Ip|Ip6|Icmp6)' | grep -v ' 0 '").CombinedOutput()
	return fmt.Sprintf("=== %s: counters\n%s%v\n", n.Name(), out, errOrEmpty(err))
}
