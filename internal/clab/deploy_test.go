package clab

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// topoDir holds the topologies: the same files containerlab deploys.
const topoDir = "../../test/containerlab"

// convergeTimeout bounds how long a deployed topology may take to carry
// traffic end to end.
const convergeTimeout = 75 * time.Second

// binaries are built once per test binary, into a directory removed by
// TestMain.
var (
	buildOnce        sync.Once
	buildDir         string
	bgpgwBin, udpBin string
	errBuild         error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func binaries(t *testing.T) (bgpgw, probe string) {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, errBuild = os.MkdirTemp("", "clab-bin-")
		if errBuild != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if bgpgwBin, errBuild = lab.BuildBgpgw(ctx, buildDir); errBuild != nil {
			return
		}
		udpBin, errBuild = lab.BuildUDPProbe(ctx, buildDir)
	})
	require.NoError(t, errBuild)
	return bgpgwBin, udpBin
}

// flow is probe traffic between two hosts of a topology.
type flow struct {
	from, to, toAddr string
}

// ecmp expects prefix at a router node with paths BGP paths, of which
// active are installed in its FIB (ECMP when more than one); best, when
// set, is the next hop of the best path.
type ecmp struct {
	node, prefix  string
	paths, active int
	best          string
}

// spread expects the probe traffic leaving a router through ifaces to use
// all of them (ECMP: each carries at least a tenth), or with primary set,
// to leave through that one (at least nine tenths).
type spread struct {
	node    string
	ifaces  []string
	primary string
}

// expect is what a converged topology looks like.
type expect struct {
	file     string
	gateways map[string]int // gateway node -> tunnels
	routes   []ecmp
	flows    []flow
	spreads  []spread
	// noBFD lists the on-prem routers that run without BFD (a *-nobfd
	// variant): they have none, and neither have the gateways' tunnels.
	noBFD []string
	// bird lists the on-prem routers that run BIRD instead of FRR (a
	// *-bird variant; deploy_bird_test.go).
	bird []string
}

var (
	expectAS = expect{
		file:     "active-standby.clab.yml",
		gateways: map[string]int{"gw1": 1, "gw2": 1},
		routes: []ecmp{
			{node: "op", prefix: "10.10.0.0/16", paths: 2, active: 1, best: "169.254.21.1"},
			{node: "cr", prefix: "10.1.0.0/16", paths: 2, active: 1, best: "10.10.1.1"},
		},
		flows: []flow{{"oh", "ch", "10.10.0.10"}, {"ch", "oh", "10.1.0.10"}},
		spreads: []spread{
			{node: "op", ifaces: []string{"t1", "t2"}, primary: "t1"},
			{node: "cr", ifaces: []string{"gw1", "gw2"}, primary: "gw1"},
		},
	}
	expectAA = expect{
		file:     "active-active.clab.yml",
		gateways: map[string]int{"gw1": 1, "gw2": 1},
		routes: []ecmp{
			{node: "op", prefix: "10.10.0.0/16", paths: 2, active: 2},
			{node: "cr", prefix: "10.1.0.0/16", paths: 2, active: 2},
		},
		flows: []flow{{"oh", "ch", "10.10.0.10"}, {"ch", "oh", "10.1.0.10"}},
		spreads: []spread{
			{node: "op", ifaces: []string{"t1", "t2"}},
			{node: "cr", ifaces: []string{"gw1", "gw2"}},
		},
	}
	expectTwoOnprem = expect{
		file:     "two-onprem.clab.yml",
		gateways: map[string]int{"gw1": 2, "gw2": 2},
		routes: []ecmp{
			{node: "opa", prefix: "10.10.0.0/16", paths: 2, active: 2},
			{node: "opb", prefix: "10.10.0.0/16", paths: 2, active: 2},
			{node: "cr", prefix: "10.1.0.0/16", paths: 2, active: 2},
			{node: "cr", prefix: "10.2.0.0/16", paths: 2, active: 2},
		},
		flows: []flow{{"oha", "ch", "10.10.0.10"}, {"ch", "oha", "10.1.0.10"},
			{"ohb", "ch", "10.10.0.10"}, {"ch", "ohb", "10.2.0.10"}},
		spreads: []spread{
			{node: "opa", ifaces: []string{"t1", "t2"}},
			{node: "opb", ifaces: []string{"t1", "t2"}},
			{node: "cr", ifaces: []string{"gw1", "gw2"}},
		},
	}
	// The variant whose on-prem router runs no BFD.
	expectAANoBFD = func() expect {
		e := expectAA
		e.file = "active-active-nobfd.clab.yml"
		e.noBFD = []string{"op"}
		return e
	}()
	expectVNet = expect{
		file:     "vnet-to-vnet.clab.yml",
		gateways: map[string]int{"gwa1": 2, "gwa2": 2, "gwb1": 2, "gwb2": 2},
		routes: []ecmp{
			{node: "cra", prefix: "10.20.0.0/16", paths: 2, active: 2},
			{node: "crb", prefix: "10.10.0.0/16", paths: 2, active: 2},
		},
		flows: []flow{{"cha", "chb", "10.20.0.10"}, {"chb", "cha", "10.10.0.10"}},
		spreads: []spread{
			{node: "cra", ifaces: []string{"gwa1", "gwa2"}},
			{node: "crb", ifaces: []string{"gwb1", "gwb2"}},
		},
	}
)

// Each topology is deployed twice: with bgpgw on the gateway instances,
// and with the hand-built stack (strongSwan + FRR) in their place.
var gateways = []string{"bgpgw", "handbuilt"}

func TestDeployActiveStandby(t *testing.T) { deployBoth(t, expectAS) }

func TestDeployActiveActive(t *testing.T) { deployBoth(t, expectAA) }

func TestDeployTwoOnprem(t *testing.T) { deployBoth(t, expectTwoOnprem) }

func TestDeployVNetToVNet(t *testing.T) { deployBoth(t, expectVNet) }

// TestDeployActiveActiveNoBFD deploys the variant without BFD on the
// on-prem router with bgpgw without takeover (bgpgw with takeover runs
// there in the failover suite's CI run) and with the hand-built stack.
func TestDeployActiveActiveBird(t *testing.T) { deployBoth(t, expectAABird) }

func TestDeployActiveActiveNoBFD(t *testing.T) {
	for _, gw := range []string{"bgpgw-notakeover", "handbuilt"} {
		t.Run(gw, func(t *testing.T) { deployAndCheck(t, expectAANoBFD, gw) })
	}
}

func deployBoth(t *testing.T, e expect) {
	for _, gw := range gateways {
		t.Run(gw, func(t *testing.T) { deployAndCheck(t, e, gw) })
	}
}

// deployAndCheck deploys one topology with the given gateway stack and
// checks that it converges: every tunnel up with its sessions, the routes
// (with ECMP where expected) at the routers, and UDP between the hosts.
func deployAndCheck(t *testing.T, e expect, gateway string) {
	bgpgw, probe := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := lab.ForTest(t)
	topo, err := Load(filepath.Join(topoDir, e.file))
	require.NoError(t, err)

	start := time.Now()
	d, err := Deploy(ctx, l, topo, Options{Logf: t.Logf, Env: map[string]string{"BGPGW_BIN": bgpgw, "GATEWAY": gateway}})
	require.NoError(t, err)
	deployed := time.Since(start)
	x := &checker{t: t, d: d, topo: topo, bgpgw: bgpgw, gateway: gateway}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(x.diag(e))
		}
	})

	cctx, ccancel := context.WithTimeout(ctx, convergeTimeout)
	defer ccancel()
	var last string
	err = lab.Poll(cctx, 200*time.Millisecond, func() (bool, error) {
		msg, err := x.converged(ctx, e)
		last = msg
		return msg == "" && err == nil, err
	})
	require.NoError(t, err, "%s (GATEWAY=%s) did not converge: %s", e.file, gateway, last)
	converged := time.Since(start)
	t.Logf("%s, GATEWAY=%s: deploy %v, converged %v after the start", e.file, gateway,
		deployed.Round(10*time.Millisecond), converged.Round(10*time.Millisecond))
	x.checkConfig(ctx, e)

	// Traffic both ways between the hosts, all at once: 16 flows each, so
	// that L4 hashing puts some on every ECMP path. The receivers listen
	// above the ephemeral port range, where no sender's source port is.
	before := x.txPackets(e.spreads)
	var flows []*lab.Flows
	for i, f := range e.flows {
		fl, err := l.StartTraffic(ctx, probe, d.Node(f.from).NS, d.Node(f.to).NS, f.toAddr, 61000+100*i, 16,
			10*time.Millisecond, 2*time.Second)
		require.NoError(t, err)
		flows = append(flows, fl)
	}
	for _, fl := range flows {
		require.NoError(t, fl.WaitReceiving(ctx))
	}
	for _, fl := range flows {
		rep, err := fl.Stop(ctx)
		require.NoError(t, err)
		t.Logf("%s", rep)
		for _, fr := range rep.Flows {
			assert.Positive(t, fr.Received, "%s -> %s flow %d", rep.From, rep.To, fr.Flow)
		}
		assert.GreaterOrEqual(t, rep.Received, rep.Sent*9/10, "%s -> %s: at most 10%% lost once converged", rep.From, rep.To)
	}
	after := x.txPackets(e.spreads)
	for _, sp := range e.spreads {
		total := 0
		for _, ifn := range sp.ifaces {
			total += after[sp.node+":"+ifn] - before[sp.node+":"+ifn]
		}
		for _, ifn := range sp.ifaces {
			n := after[sp.node+":"+ifn] - before[sp.node+":"+ifn]
			t.Logf("%s: %d of %d packets out of %s", sp.node, n, total, ifn)
			switch {
			case sp.primary == "":
				assert.GreaterOrEqual(t, 10*n, total, "%s: ECMP uses %s", sp.node, ifn)
			case sp.primary == ifn:
				assert.GreaterOrEqual(t, 10*n, 9*total, "%s: the primary's path %s carries the traffic", sp.node, ifn)
			}
		}
	}
}

// txPackets reads the transmit counters of the interfaces spreads name,
// keyed "node:iface".
func (x *checker) txPackets(spreads []spread) map[string]int {
	x.t.Helper()
	out := map[string]int{}
	for _, sp := range spreads {
		for _, ifn := range sp.ifaces {
			data, err := x.d.Node(sp.node).ReadFile("/sys/class/net/" + ifn + "/statistics/tx_packets")
			require.NoError(x.t, err)
			n, err := strconv.Atoi(strings.TrimSpace(string(data)))
			require.NoError(x.t, err)
			out[sp.node+":"+ifn] = n
		}
	}
	return out
}

type checker struct {
	t       *testing.T
	d       *Deployment
	topo    *Topology
	bgpgw   string
	gateway string
}

// converged returns "" when the topology looks as e says, else what is
// still missing.
func (x *checker) converged(ctx context.Context, e expect) (string, error) {
	for _, name := range slices.Sorted(maps.Keys(e.gateways)) {
		if msg, err := x.gatewayUp(ctx, name, e.gateways[name]); msg != "" || err != nil {
			return name + ": " + msg, err
		}
	}
	for _, r := range e.routes {
		if msg, err := x.route(ctx, r); msg != "" || err != nil {
			return r.node + " " + r.prefix + ": " + msg, err
		}
	}
	return "", nil
}

// bgpgwConf is the configuration a bgpgw gateway runs with (lib.sh's
// $BGPGW_CONF): its bgpgw.yaml or bgpgw-nobfd.yaml, takeover off for
// bgpgw-notakeover.
const bgpgwConf = "/run/lab/var/bgpgw.yaml"

// checkConfig checks what the node scripts made of the topology's env: the
// on-prem routers of a *-nobfd variant run no BFD, the gateways run the
// variant's configuration (bgpgw-nobfd.yaml: an icmp check per tunnel, no
// BFD on them; hand-built FRR: BFD only toward the cloud router), and
// bgpgw-notakeover runs with takeover off.
func (x *checker) checkConfig(ctx context.Context, e expect) {
	t := x.t
	if len(e.bird) > 0 {
		x.checkBIRDConfig(ctx, e)
	}
	for _, node := range e.noBFD {
		out, err := x.d.Node(node).Exec(ctx, "vtysh", "-c", "show running-config")
		require.NoError(t, err)
		assert.NotContains(t, out, "bfd", "%s runs without BFD", node)
	}
	for _, name := range slices.Sorted(maps.Keys(e.gateways)) {
		n := x.d.Node(name)
		if x.gateway == "handbuilt" {
			out, err := n.Exec(ctx, "vtysh", "-c", "show running-config")
			require.NoError(t, err)
			if len(e.noBFD) > 0 {
				assert.NotRegexp(t, `neighbor 169\.254\.\S+ bfd`, out, "%s: no BFD toward the on-prem devices", name)
			}
			assert.Regexp(t, `neighbor 10\.\S+ bfd`, out, "%s: BFD toward the cloud router", name)
			continue
		}
		data, err := n.ReadFile(bgpgwConf)
		require.NoError(t, err)
		conf := string(data)
		assert.Equal(t, len(e.noBFD) > 0, strings.Contains(conf, "kind: icmp"), "%s: icmp checks with the on-prem BFD off", name)
		takeover := "  takeover: more-specific\n"
		if x.gateway == "bgpgw-notakeover" {
			takeover = "  takeover: off\n"
		}
		assert.Contains(t, conf, takeover, name)
	}
}

// gatewayUp checks a gateway instance: with bgpgw, every tunnel carrying
// and every session established (BFD up); hand-built, every IKE_SA
// established with its CHILD_SA and every FRR session established.
func (x *checker) gatewayUp(ctx context.Context, name string, tunnels int) (string, error) {
	n := x.d.Node(name)
	if x.gateway == "handbuilt" {
		out, err := n.Exec(ctx, "swanctl", "--list-sas")
		if err != nil {
			return "", err
		}
		if got := strings.Count(out, "INSTALLED, TUNNEL"); got < tunnels {
			return fmt.Sprintf("%d of %d CHILD_SAs installed", got, tunnels), nil
		}
		bfd := tunnels + 1
		if strings.HasSuffix(x.topo.Name, "-nobfd") {
			bfd = 1 // the cloud router only
		}
		return x.frrSessions(ctx, name, tunnels+1, bfd)
	}
	out, err := n.Exec(ctx, x.bgpgw, "status", "--json", "--config", bgpgwConf)
	if err != nil {
		return "", err
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return "", fmt.Errorf("bgpgw status: %w", err)
	}
	if len(st.Tunnels) != tunnels {
		return fmt.Sprintf("%d tunnels, want %d", len(st.Tunnels), tunnels), nil
	}
	for _, tn := range st.Tunnels {
		if !tn.Carrying {
			return fmt.Sprintf("tunnel %s not carrying: %s", tn.Name, tn.Reason), nil
		}
	}
	for _, p := range st.Peers {
		if p.State != "established" {
			return fmt.Sprintf("peer %s %s", p.Name, p.State), nil
		}
		if p.BFD != nil && !strings.EqualFold(p.BFD.State, "up") {
			return fmt.Sprintf("peer %s BFD %s", p.Name, p.BFD.State), nil
		}
	}
	// The pair whole: the partner up, and no takeover (one at the start,
	// while the partner came up, ends release_delay after it carries).
	if pr := st.Pair; pr != nil {
		if !pr.PartnerUp {
			return "partner not up: " + pr.Why, nil
		}
		for _, tk := range pr.Takeovers {
			return fmt.Sprintf("taking %s over: %s", tk.Device, tk.Reason), nil
		}
	}
	return "", nil
}

// vtysh runs one FRR command in a node and decodes its JSON output.
func (x *checker) vtysh(ctx context.Context, node, cmd string, out any) error {
	s, err := x.d.Node(node).Exec(ctx, "vtysh", "-c", cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return fmt.Errorf("%s: %q: %w", node, cmd, err)
	}
	return nil
}

// frrSessions checks that FRR in a node has n BGP sessions, all established,
// and bfd BFD sessions up.
func (x *checker) frrSessions(ctx context.Context, node string, n, bfd int) (string, error) {
	var sum struct {
		IPv4Unicast struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := x.vtysh(ctx, node, "show bgp summary json", &sum); err != nil {
		return "", err
	}
	peers := sum.IPv4Unicast.Peers
	if len(peers) != n {
		return fmt.Sprintf("FRR has %d BGP peers, want %d", len(peers), n), nil
	}
	for addr, p := range peers {
		if p.State != "Established" {
			return fmt.Sprintf("BGP peer %s %s", addr, p.State), nil
		}
	}
	var sessions []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := x.vtysh(ctx, node, "show bfd peers json", &sessions); err != nil {
		return "", err
	}
	up := 0
	for _, b := range sessions {
		if b.Status == "up" {
			up++
		}
	}
	if up != bfd {
		return fmt.Sprintf("%d of %d BFD sessions up", up, bfd), nil
	}
	return "", nil
}

// route checks a prefix at a router: its BGP paths, the best one, and how
// many next hops its FIB route has.
func (x *checker) route(ctx context.Context, r ecmp) (string, error) {
	if x.isBIRD(r.node) {
		return x.birdRoute(ctx, r)
	}
	var bgp struct {
		Paths []struct {
			BestPath *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := x.vtysh(ctx, r.node, "show bgp ipv4 unicast "+r.prefix+" json", &bgp); err != nil {
		return "", err
	}
	if len(bgp.Paths) != r.paths {
		return fmt.Sprintf("%d BGP paths, want %d", len(bgp.Paths), r.paths), nil
	}
	if r.best != "" {
		best := ""
		for _, p := range bgp.Paths {
			if p.BestPath != nil && p.BestPath.Overall && len(p.Nexthops) > 0 {
				best = p.Nexthops[0].IP
			}
		}
		if best != r.best {
			return fmt.Sprintf("best path via %q, want %s", best, r.best), nil
		}
	}
	var rib map[string][]struct {
		Selected bool `json:"selected"`
		Nexthops []struct {
			IP     string `json:"ip"`
			Active bool   `json:"active"`
			FIB    bool   `json:"fib"`
		} `json:"nexthops"`
	}
	if err := x.vtysh(ctx, r.node, "show ip route "+r.prefix+" json", &rib); err != nil {
		return "", err
	}
	for _, e := range rib[r.prefix] {
		if !e.Selected {
			continue
		}
		fib := 0
		for _, nh := range e.Nexthops {
			if nh.FIB {
				fib++
			}
		}
		if fib != r.active {
			return fmt.Sprintf("%d next hops in the FIB, want %d", fib, r.active), nil
		}
		return "", nil
	}
	return "no selected route", nil
}

// diag collects what a failed deployment looks like: gateway status and
// logs, FRR state, charon SAs.
func (x *checker) diag(e expect) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	show := func(node, what string, args ...string) {
		out, err := x.d.Node(node).Exec(ctx, args...)
		if err != nil {
			out += "\n(" + err.Error() + ")"
		}
		fmt.Fprintf(&b, "--- %s: %s\n%s\n", node, what, strings.TrimSpace(out))
	}
	tail := func(node, path string, n int) {
		data, err := x.d.Node(node).ReadFile(path)
		if err != nil {
			return
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s: %s\n%s\n", node, path, strings.Join(lines, "\n"))
	}
	for _, g := range slices.Sorted(maps.Keys(e.gateways)) {
		if x.gateway != "handbuilt" {
			show(g, "bgpgw status", x.bgpgw, "status", "--config", bgpgwConf)
			tail(g, "/run/lab/log/bgpgw.log", 30)
		} else {
			show(g, "bgp summary", "vtysh", "-c", "show bgp summary")
		}
		show(g, "SAs", "swanctl", "--list-sas")
		tail(g, "/run/lab/log/charon.log", 15)
	}
	for _, n := range x.d.Nodes() {
		if strings.Contains(n.Name, "-t") {
			show(n.Name, "SAs", "swanctl", "--list-sas")
			tail(n.Name, "/run/lab/log/charon.log", 10)
		}
	}
	seen := map[string]bool{}
	for _, r := range e.routes {
		if seen[r.node] {
			continue
		}
		seen[r.node] = true
		if x.isBIRD(r.node) {
			show(r.node, "bird", "sh", "-c", "birdc show protocols all; birdc show route; birdc show bfd sessions")
			tail(r.node, "/run/lab/log/bird.log", 30)
			continue
		}
		show(r.node, "bgp", "vtysh", "-c", "show bgp summary", "-c", "show bgp ipv4 unicast", "-c", "show bfd peers brief")
	}
	return b.String()
}
