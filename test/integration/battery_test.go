package integration

// TestBattery: a BGP peer that misbehaves on purpose. It sends bgpgw a
// battery of announcements it must never install or pass on, and some it
// must handle in a given way, and checks gw's kernel, the cloud router's
// RIB and what bgpgw sent back. The list of cases, what each sends and what
// must happen to it, is BATTERY.md (generated from battery_cases_test.go).
//
//	op: bgppeer AS 65010 ══ onprem  169.254.21.2 ↔ .1/30 (TCP-MD5) ══ gw: bgpgw AS 65515 ── 10.10.255.1 ↔ .2/30 ── cloud: FRR AS 65100
//	                     ══ onprem6 fd00:21::2 ↔ ::1/126         ══                     ── fd10:10:ffff::1 ↔ ::2/126 ──

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/internal/lab/bgppeer"
)

const batteryGateway = `
instance: {name: gw1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1, hold_time: 9s}
announce: [10.10.0.0/16, "fd10:10::/48"]
ipsec: {mode: none}
tunnels:
  - name: onprem
    local_address: 203.0.113.1
    remote_address: 198.51.100.2
    inside: {local: 169.254.21.1/30, remote: 169.254.21.2}
    peer_asn: 65010
    accept: ["10.0.0.0/8 le 24", "fd00::/8 le 64"]
    max_prefixes: %[4]d
    password_file: %[1]s/md5%[3]s
  - name: onprem6
    local_address: 203.0.113.1
    remote_address: 198.51.100.6
    inside: {local: "fd00:21::1/126", remote: "fd00:21::2"}
    peer_asn: 65010
    accept: ["10.0.0.0/8 le 24", "fd00::/8 le 64"]
    max_prefixes: %[4]d%[3]s
cloud_peers:
  - {name: cloud, address: 10.10.255.2, local_address: 10.10.255.1, peer_asn: 65100}
  - {name: cloud6, address: "fd10:10:ffff::2", local_address: "fd10:10:ffff::1", peer_asn: 65100}
api: {socket: %[2]s}
kernel: {protocol: %[5]d}
drain: {state_file: %[1]s/drained}
`

const batteryCloud = `frr defaults datacenter
hostname cloud
!
router bgp 65100
 bgp router-id 10.10.255.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 10.10.255.1 remote-as 65515
 neighbor 10.10.255.1 ttl-security hops 1
 neighbor fd10:10:ffff::1 remote-as 65515
 neighbor fd10:10:ffff::1 ttl-security hops 1
 address-family ipv4 unicast
  neighbor 10.10.255.1 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor fd10:10:ffff::1 activate
 exit-address-family
!
`

const batteryMD5 = "battery-md5-key"

// batteryLab is the running battery: gw, the cloud router, the test peer's
// two sessions.
type batteryLab struct {
	l        *lab.Lab
	gw       *lab.Gateway
	gwNS     *lab.Netns
	cloud    *lab.FRR
	peers    map[string]*bgppeer.Speaker // by tunnel name
	maxPath  bool                        // this bgpgw has tunnels[].max_as_path
	sessions map[string]time.Time        // established_since of every peer at the start
}

func TestBattery(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b := newBatteryLab(t, ctx)

	// Step 1: every session up; bgpgw announces exactly its prefixes.
	s := b.snapshot(t, ctx)
	b.checkEcho(t, s)
	assert.Empty(t, s.kernel, "gw's kernel before the battery")
	assert.Empty(t, s.cloud, "the cloud router's RIB before the battery")

	// Step 2: the battery.
	cases := batteryCases()
	if !b.maxPath {
		t.Logf("THIS bgpgw HAS NO tunnels[].max_as_path: case as-path-300 is only checked for consistency")
		for i := range cases {
			if strings.HasPrefix(cases[i].Note, batteryPending) {
				cases[i].Want = either
			}
		}
	}
	for _, c := range cases {
		require.NoError(t, b.peers[c.Tunnel].Announce(c.Route), c.Name)
	}
	s = b.converge(t, ctx, cases)
	b.checkEcho(t, s)
	b.checkSessions(t, ctx, s, nil)
	var kept, reorig []string
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			for _, x := range c.Route.Prefixes {
				t.Logf("%-22s %-18s want %-9s observed: %s", c.Name, x, c.Want, s.observe(c, x))
				b.checkCase(t, s, c, x)
				if r, ok := s.cloud[x]; ok {
					sent := bgp.AsPathString(bgp.NewPathAttributeAsPath(c.Route.ASPath))
					switch r.ASPath {
					case fmt.Sprintf("%d %s", batteryGwAS, sent):
						kept = append(kept, c.Name)
					case fmt.Sprint(batteryGwAS):
						reorig = append(reorig, c.Name)
					}
				}
			}
		})
	}
	t.Logf("at the cloud router, AS path kept: %v; re-originated (65515 alone): %v", kept, reorig)
	assert.False(t, len(kept) > 0 && len(reorig) > 0, "bgpgw keeps some AS paths and not others: kept %v, re-originated %v", kept, reorig)
	// What else of the attributes reaches the cloud router: logged, not
	// judged (bgpgw announces with its own attributes).
	for _, c := range cases {
		if x := c.Route.Prefixes[0]; x.Addr().Is4() && c.Route.Attrs != nil && s.cloud[x].Prefix != "" {
			paths, err := b.cloud.BGPPrefix(ctx, x.String())
			if err == nil && len(paths) > 0 {
				r := paths[0]
				t.Logf("cloud router, %s %s: origin %s, med %d, locprf %d, communities %v, large communities %v",
					c.Name, x, r.Origin, r.MED, r.LocalPref, r.Communities, r.LargeCommunities)
			}
		}
	}

	// Step 3: more than max_prefixes on onprem.
	require.NoError(t, b.peers["onprem"].Announce(maxPrefixRoute()))
	b.checkMaxPrefix(t, ctx, s)

	// The TCP-MD5 key appears nowhere.
	st, err := b.status(ctx)
	require.NoError(t, err)
	assert.NotContains(t, st.raw, batteryMD5)
	assert.NotContains(t, b.gw.LogTail(10000), batteryMD5)
	t.Logf("battery: %v", time.Since(start).Round(100*time.Millisecond))
}

func newBatteryLab(t *testing.T, ctx context.Context) *batteryLab {
	l := lab.ForTest(t)
	b := &batteryLab{l: l, peers: map[string]*bgppeer.Speaker{}}
	ns := func(name string) *lab.Netns {
		n, err := l.Netns(name)
		require.NoError(t, err)
		return n
	}
	b.gwNS = ns("gw")
	op, cloudNS := ns("op"), ns("cloud")
	require.NoError(t, l.Link(b.gwNS, "tun0", "169.254.21.1/30", op, "gw0", "169.254.21.2/30"))
	require.NoError(t, l.Link(b.gwNS, "up0", "10.10.255.1/30", cloudNS, "gw0", "10.10.255.2/30"))
	for _, a := range []struct {
		n         *lab.Netns
		addr, dev string
	}{{b.gwNS, "fd00:21::1/126", "tun0"}, {op, "fd00:21::2/126", "gw0"}, {b.gwNS, "fd10:10:ffff::1/126", "up0"}, {cloudNS, "fd10:10:ffff::2/126", "gw0"}} {
		_, err := a.n.IP(ctx, "addr", "add", a.addr, "dev", a.dev, "nodad")
		require.NoError(t, err)
	}
	require.NoError(t, os.WriteFile(filepath.Join(l.Dir(), "md5"), []byte(batteryMD5+"\n"), 0o600))

	var err error
	b.cloud, err = l.StartFRR(cloudNS, l.Prefix()+"cloud", batteryCloud, "zebra", "bgpd")
	require.NoError(t, err)

	// tunnels[].max_as_path is being added: use it when this bgpgw takes it.
	cfg := func(maxPath string) string {
		return fmt.Sprintf(batteryGateway, l.Dir(), l.SocketPath("gw1"), maxPath, batteryMaxPfx, batteryProto)
	}
	conf := cfg(fmt.Sprintf("\n    max_as_path: %d", batteryMaxPath))
	probe := filepath.Join(l.Dir(), "probe.yaml")
	require.NoError(t, os.WriteFile(probe, []byte(conf), 0o600))
	out, err := b.gwNS.Exec(ctx, bgpgwBin, "validate", "--config", probe)
	switch {
	case err == nil:
		b.maxPath = true
	case strings.Contains(out, "max_as_path"):
		conf = cfg("")
	default:
		require.NoError(t, err, "bgpgw validate: %s", out)
	}
	b.gw, err = l.StartGateway(ctx, b.gwNS, bgpgwBin, "gw1", conf)
	require.NoError(t, err)

	// The sessions come up within a minute.
	up, upCancel := context.WithTimeout(ctx, time.Minute)
	defer upCancel()
	for name, c := range map[string]bgppeer.Config{
		"onprem":  {Local: ip4Remote, Remote: netip.AddrPortFrom(ip4Local, 179), Password: batteryMD5},
		"onprem6": {Local: ip6Remote, Remote: netip.AddrPortFrom(ip6Local, 179)},
	} {
		c.Netns, c.ASN, c.RouterID = op.Name(), batteryPeerAS, netip.MustParseAddr("198.51.100.1")
		var sp *bgppeer.Speaker
		// bgpgw may not have configured the session yet: it then refuses us.
		b.must(t, ctx, lab.Poll(up, 200*time.Millisecond, func() (bool, error) {
			dctx, dcancel := context.WithTimeout(up, 5*time.Second)
			defer dcancel()
			var err error
			sp, err = bgppeer.Dial(dctx, c)
			return err == nil, err
		}), "test peer "+name)
		t.Cleanup(func() { _ = sp.Close() })
		b.peers[name] = sp
	}

	// Every session established, and what bgpgw announces reached the
	// test peer.
	b.must(t, ctx, lab.Poll(up, 100*time.Millisecond, func() (bool, error) {
		st, err := b.status(ctx)
		if err != nil {
			return false, err
		}
		b.sessions = map[string]time.Time{}
		for _, p := range st.Peers {
			if p.State != "established" || p.EstablishedSince == nil {
				return false, fmt.Errorf("peer %s: %s", p.Name, p.State)
			}
			b.sessions[p.Name] = *p.EstablishedSince
		}
		return len(b.sessions) == 4 && len(b.peers["onprem"].RIB()) == 1 && len(b.peers["onprem6"].RIB()) == 1, nil
	}), "sessions")
	return b
}

// gwStatus is the part of `bgpgw status --json` the battery reads, decoded
// here so that fields being added (rejected_routes) need no change to
// pkg/api.
type gwStatus struct {
	Peers  []gwPeer `json:"peers"`
	Routes []struct {
		Prefix   string   `json:"prefix"`
		NextHops []string `json:"next_hops"`
	} `json:"routes"`
	raw string
}

type gwPeer struct {
	Name             string          `json:"name"`
	State            string          `json:"state"`
	LastError        string          `json:"last_error"`
	EstablishedSince *time.Time      `json:"established_since"`
	Announced        []string        `json:"announced"`
	Received         []string        `json:"received"`
	Rejected         []string        `json:"rejected"`
	RejectedRoutes   []rejectedRoute `json:"rejected_routes"`
}

// rejectedRoute is one entry of a peer's rejected_routes (being added).
type rejectedRoute struct {
	Prefix string          `json:"prefix"`
	Reason string          `json:"reason"`
	Detail string          `json:"detail"`
	ASPath json.RawMessage `json:"as_path"`
}

func (b *batteryLab) status(ctx context.Context) (gwStatus, error) {
	var st gwStatus
	if b.gw.Proc.Exited() {
		return st, lab.Fatal(fmt.Errorf("bgpgw exited: %s", b.gw.LogTail(40)))
	}
	out, err := b.gw.CLI(ctx, "status", "--json")
	if err != nil {
		return st, err
	}
	st.raw = out
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

// must fails the test on err, with the lab's state.
func (b *batteryLab) must(t *testing.T, ctx context.Context, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, b.diag(ctx))
	}
}

func (b *batteryLab) diag(ctx context.Context) string {
	st, _ := b.gw.CLI(ctx, "status")
	var peers []string
	for name, sp := range b.peers {
		peers = append(peers, fmt.Sprintf("%s: received %v, session end: %v", name, sp.Ever(), sp.Err()))
	}
	c4, _ := b.cloud.Vtysh(ctx, "show bgp ipv4 unicast")
	c6, _ := b.cloud.Vtysh(ctx, "show bgp ipv6 unicast")
	k, _ := b.gwNS.IP(ctx, "route", "show", "table", "all", "proto", fmt.Sprint(batteryProto))
	k6, _ := b.gwNS.IP(ctx, "-6", "route", "show", "table", "all", "proto", fmt.Sprint(batteryProto))
	return fmt.Sprintf("--- bgpgw status:\n%s\n--- bgpgw log:\n%s\n--- test peer:\n%s\n--- cloud:\n%s\n%s\n--- gw kernel:\n%s%s\n--- FRR log:\n%s",
		st, b.gw.LogTail(40), strings.Join(peers, "\n"), c4, c6, k, k6, b.cloud.LogTail(15))
}

// snapshot is everything the battery checks, at one time.
type snapshot struct {
	kernel map[netip.Prefix][]netip.Addr // bgpgw's routes in gw, every table
	cloud  map[netip.Prefix]lab.BGPRoute // the cloud router's RIB, both families
	fromGW map[string][]bgppeer.Path     // per tunnel, every path bgpgw ever sent the test peer
	status gwStatus
}

func (b *batteryLab) snapshot(t *testing.T, ctx context.Context) snapshot {
	t.Helper()
	s, err := b.take(ctx)
	b.must(t, ctx, err, "snapshot")
	return s
}

func (b *batteryLab) take(ctx context.Context) (snapshot, error) {
	s := snapshot{kernel: map[netip.Prefix][]netip.Addr{}, cloud: map[netip.Prefix]lab.BGPRoute{}, fromGW: map[string][]bgppeer.Path{}}
	var err error
	if s.status, err = b.status(ctx); err != nil {
		return s, err
	}
	for _, fam := range []string{"-4", "-6"} {
		out, err := b.gwNS.IP(ctx, "-j", fam, "route", "show", "table", "all", "proto", fmt.Sprint(batteryProto))
		if err != nil {
			return s, err
		}
		var rs []struct {
			Dst      string `json:"dst"`
			Gateway  string `json:"gateway"`
			Nexthops []struct {
				Gateway string `json:"gateway"`
			} `json:"nexthops"`
		}
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			return s, fmt.Errorf("ip route: %w: %s", err, out)
		}
		for _, r := range rs {
			dst := kernelPrefix(r.Dst, fam == "-6")
			for _, g := range append([]string{r.Gateway}, gateways(r.Nexthops)...) {
				if a, err := netip.ParseAddr(g); err == nil {
					s.kernel[dst] = append(s.kernel[dst], a)
				}
			}
			if _, ok := s.kernel[dst]; !ok {
				s.kernel[dst] = nil // a route without a gateway
			}
		}
	}
	for _, get := range []func(context.Context) (map[string]lab.BGPRoute, error){b.cloud.BGPPrefixes, b.cloud.BGPPrefixes6} {
		rs, err := get(ctx)
		if err != nil {
			return s, err
		}
		for k, r := range rs {
			s.cloud[netip.MustParsePrefix(k)] = r
		}
	}
	for name, sp := range b.peers {
		for _, m := range sp.Messages() {
			if u := m.Update(); u != nil {
				ann, _ := bgppeer.DecodeUpdate(u)
				s.fromGW[name] = append(s.fromGW[name], ann...)
			}
		}
	}
	return s, nil
}

func gateways(hops []struct {
	Gateway string `json:"gateway"`
}) []string {
	var out []string
	for _, h := range hops {
		out = append(out, h.Gateway)
	}
	return out
}

// kernelPrefix reads ip's "dst": "default", an address (a host route) or a
// prefix.
func kernelPrefix(dst string, v6 bool) netip.Prefix {
	if dst == "default" {
		if v6 {
			return netip.MustParsePrefix("::/0")
		}
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	if a, err := netip.ParseAddr(dst); err == nil {
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(dst)
}

// converge waits until bgpgw has taken in the whole battery (every
// prefix it must judge is in its peers' received or rejected) and its view
// has reached gw's kernel (status routes) and the cloud router (the cloud
// peers' announced), then returns a snapshot. On a timeout it logs and
// returns what there is: the cases then say what is wrong.
func (b *batteryLab) converge(t *testing.T, ctx context.Context, cases []batteryCase) snapshot {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	var s snapshot
	var why string
	err := lab.Poll(cctx, 200*time.Millisecond, func() (bool, error) {
		var err error
		if s, err = b.take(ctx); err != nil {
			return false, err
		}
		for _, c := range cases {
			if c.Want == either {
				continue
			}
			for _, x := range c.Route.Prefixes {
				if _, listed := s.listed(c.Tunnel, x); !listed {
					why = fmt.Sprintf("status does not list %s (%s) yet", x, c.Name)
					return false, nil
				}
			}
		}
		var said []netip.Prefix
		for _, r := range s.status.Routes {
			said = append(said, netip.MustParsePrefix(r.Prefix))
		}
		if k := sortedKeys(s.kernel); !slices.Equal(k, sortPrefixes(said)) {
			why = fmt.Sprintf("kernel %v, status routes %v", k, sortPrefixes(said))
			return false, nil
		}
		var toCloud []netip.Prefix
		for _, name := range []string{"cloud", "cloud6"} {
			for _, a := range s.peer(name).Announced {
				toCloud = append(toCloud, netip.MustParsePrefix(a))
			}
		}
		if c := sortedKeys(s.cloud); !slices.Equal(c, sortPrefixes(toCloud)) {
			why = fmt.Sprintf("cloud router %v, announced to it %v", c, sortPrefixes(toCloud))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("bgpgw did not settle on the battery: %s: %v\n%s", why, err, b.diag(ctx))
	}
	return s
}
