package clab

import (
	"bufio"
	"context"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/configfile"
)

// The lab's configuration files as the node scripts use them: gateway.sh
// installs the secrets below /run/lab/var, and with
// GATEWAY=bgpgw-notakeover turns this line of the pair section into
// "takeover: off".
const (
	labVar       = "/run/lab/var/"
	takeoverLine = "  takeover: more-specific\n"
)

// labSecrets installs the lab's secrets as gateway.sh does, in a
// directory standing for /run/lab/var.
func labSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for src, dst := range map[string]string{"lab.psk": "psk", "lab-pair.key": "pair.key"} {
		data, err := os.ReadFile(filepath.Join(topoDir, "nodes", src))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, dst), data, 0o600))
	}
	return dir
}

// loadLabConfig decodes a gateway's bgpgw configuration with the lab's
// secrets (labSecrets), as bgpgw validate does in the node; with
// noTakeover, after gateway.sh's edit for bgpgw-notakeover.
func loadLabConfig(t *testing.T, secrets, path string, noTakeover bool) *config.Config {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(data)
	if noTakeover {
		require.Equal(t, 1, strings.Count(text, takeoverLine), "%s: gateway.sh's bgpgw-notakeover edits this line", path)
		text = strings.Replace(text, takeoverLine, "  takeover: off\n", 1)
	}
	c, err := configfile.Parse([]byte(strings.ReplaceAll(text, labVar, secrets+"/")))
	require.NoError(t, err, path)
	require.Empty(t, c.Warnings, path)
	return c
}

// cloudAddr is the address ip.batch puts on a gateway's cloud-side uplink.
func cloudAddr(t *testing.T, dir string) netip.Addr {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "ip.batch"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) == 5 && w[0] == "addr" && w[1] == "add" && w[3] == "dev" && w[4] == "cloud" {
			p, err := netip.ParsePrefix(w[2])
			require.NoError(t, err)
			return p.Addr()
		}
	}
	t.Fatalf("%s/ip.batch: no address on cloud", dir)
	return netip.Addr{}
}

// TestLabPairs checks the pair sections of the lab's gateways: every
// configuration (bgpgw.yaml, bgpgw-nobfd.yaml, both also with takeover
// off) is valid; each instance's local_address is its cloud-side address
// and its partner the other instance's, both ways; the pair runs multihop
// BFD (through the cloud router) and takeover more-specific; and the two
// instances name the same devices.
func TestLabPairs(t *testing.T) {
	gws, err := filepath.Glob(filepath.Join(topoDir, "nodes", "*", "*", "bgpgw.yaml"))
	require.NoError(t, err)
	require.Len(t, gws, 10, "two instances in three topologies, four in vnet-to-vnet")
	secrets := labSecrets(t)
	type instance struct {
		dir     string
		c       *config.Config
		devices []string
	}
	// By topology and address: the topologies use the same addresses.
	type key struct {
		topology string
		addr     netip.Addr
	}
	byAddr := map[key]instance{}
	for _, f := range gws {
		dir := filepath.Dir(f)
		files, err := filepath.Glob(filepath.Join(dir, "bgpgw*.yaml"))
		require.NoError(t, err)
		for _, g := range files {
			for _, off := range []bool{false, true} {
				c := loadLabConfig(t, secrets, g, off)
				want := config.TakeoverMoreSpecific
				if off {
					want = config.TakeoverOff
				}
				assert.Equal(t, want, c.Pair.Takeover, g)
			}
		}
		c := loadLabConfig(t, secrets, f, false)
		p := c.Pair
		require.True(t, p.Enabled, "%s: a pair section", f)
		assert.True(t, p.Multihop, "%s: the partner is reached through the cloud router", f)
		assert.Equal(t, cloudAddr(t, dir), p.LocalAddress, "%s: local_address is the cloud-side address", f)
		var devices []string
		for _, tn := range c.Tunnels {
			devices = append(devices, tn.Device)
		}
		slices.Sort(devices)
		k := key{filepath.Dir(dir), p.LocalAddress}
		require.NotContains(t, byAddr, k, "%s: local_address %s used twice", f, p.LocalAddress)
		byAddr[k] = instance{dir: dir, c: c, devices: devices}
	}
	for k, in := range byAddr {
		partner, ok := byAddr[key{k.topology, in.c.Pair.Partner}]
		if !assert.True(t, ok, "%s: partner %s is no instance's local_address", in.dir, in.c.Pair.Partner) {
			continue
		}
		assert.Equal(t, k.addr, partner.c.Pair.Partner, "%s and %s are each other's partners", in.dir, partner.dir)
		assert.NotEqual(t, in.dir, partner.dir)
		assert.Equal(t, in.devices, partner.devices, "%s and %s: the same devices", in.dir, partner.dir)
		assert.Equal(t, in.c.Instance.Mode, partner.c.Instance.Mode, in.dir)
	}
}

// TestLabNoBFDConfigs checks bgpgw-nobfd.yaml against bgpgw.yaml for every
// gateway of a -nobfd topology: no BFD on the tunnels, instead one fast
// icmp check of tunnel scope per tunnel to the device's inside address,
// and otherwise the same configuration (the cloud peers keep their BFD).
func TestLabNoBFDConfigs(t *testing.T) {
	variants, err := filepath.Glob(filepath.Join(topoDir, "*-nobfd.clab.yml"))
	require.NoError(t, err)
	require.Len(t, variants, 3)
	secrets := labSecrets(t)
	for _, v := range variants {
		base := strings.TrimSuffix(filepath.Base(v), "-nobfd.clab.yml")
		topo, err := Load(v)
		require.NoError(t, err)
		for _, n := range topo.Nodes {
			if !strings.HasSuffix(n.Exec[0].Args[1], "/gateway.sh") {
				continue
			}
			dir := filepath.Join(topoDir, "nodes", base, n.Name)
			with := loadLabConfig(t, secrets, filepath.Join(dir, "bgpgw.yaml"), false)
			without := loadLabConfig(t, secrets, filepath.Join(dir, "bgpgw-nobfd.yaml"), false)
			var checks []config.Check
			for _, ch := range without.Health {
				if ch.Kind == "icmp" && ch.Scope == config.ScopeTunnel {
					checks = append(checks, ch)
				}
			}
			require.Len(t, checks, len(without.Tunnels), "%s: an icmp check per tunnel", dir)
			for i, tn := range without.Tunnels {
				assert.False(t, tn.BFD.Enabled, "%s: tunnel %s without BFD", dir, tn.Name)
				ch := checks[i]
				assert.Equal(t, tn.Name, ch.Tunnel, dir)
				assert.Equal(t, tn.InsideRemote.String(), ch.Target, "%s: %s probes the device's inside address", dir, ch.Name)
				assert.LessOrEqual(t, int64(ch.Interval)*int64(ch.Fall), int64(300e6), "%s: %s detects within 300 ms", dir, ch.Name)
				assert.True(t, with.Tunnels[i].BFD.Enabled, "%s: bgpgw.yaml's tunnel %s has BFD", dir, tn.Name)
			}
			for _, cp := range without.CloudPeers {
				assert.True(t, cp.BFD.Enabled, "%s: the cloud router keeps BFD", dir)
			}
			// The rest is the same: keep the two files in step.
			for i := range without.Tunnels {
				without.Tunnels[i].BFD = with.Tunnels[i].BFD
			}
			without.Health = slices.DeleteFunc(without.Health, func(ch config.Check) bool {
				return slices.ContainsFunc(checks, func(x config.Check) bool { return x.Name == ch.Name })
			})
			assert.Equal(t, with, without, "%s: bgpgw-nobfd.yaml is bgpgw.yaml without tunnel BFD, with the icmp checks", dir)
		}
	}
}

// TestNoBFDVariants checks each -nobfd topology against its base: the same
// nodes (configuration directories, scripts, binds) and links, and
// ONPREM_BFD=off exactly on the gateways and on the on-prem routers (the
// routers with BGP neighbors inside the tunnels, 169.254/16), so the cloud
// router keeps its BFD.
func TestNoBFDVariants(t *testing.T) {
	variants, err := filepath.Glob(filepath.Join(topoDir, "*-nobfd.clab.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, variants)
	tunnelPeer := regexp.MustCompile(`(?m)^ neighbor 169\.254\.\S+ remote-as`)
	for _, v := range variants {
		t.Run(filepath.Base(v), func(t *testing.T) {
			nobfd, err := Load(v)
			require.NoError(t, err)
			base, err := Load(strings.Replace(v, "-nobfd.clab.yml", ".clab.yml", 1))
			require.NoError(t, err)
			assert.Equal(t, base.Links, nobfd.Links)
			require.Equal(t, len(base.Nodes), len(nobfd.Nodes))
			for i, n := range nobfd.Nodes {
				b := base.Nodes[i]
				assert.Equal(t, b.Name, n.Name)
				assert.Equal(t, b.Exec, n.Exec, n.Name)
				assert.Equal(t, b.Binds, n.Binds, n.Name)
				assert.NotContains(t, b.Env, "ONPREM_BFD", "base %s", b.Name)
				env := maps.Clone(n.Env)
				delete(env, "ONPREM_BFD")
				assert.Equal(t, b.Env, env, n.Name)

				script := filepath.Base(n.Exec[0].Args[1])
				onprem := false
				if script == "router.sh" {
					conf, err := os.ReadFile(filepath.Join(topoDir, "nodes", n.Exec[0].Args[2], "frr.conf"))
					onprem = err == nil && tunnelPeer.Match(conf)
				}
				if script == "gateway.sh" || onprem {
					assert.Equal(t, "off", n.Env["ONPREM_BFD"], n.Name)
				} else {
					assert.NotContains(t, n.Env, "ONPREM_BFD", n.Name)
				}
			}
		})
	}
}

// birdConfigs are the BIRD configurations the repository ships: the
// on-prem router's of docs/onprem and the lab's (nodes/*/*/bird.conf).
func birdConfigs(t *testing.T) []string {
	t.Helper()
	lab, err := filepath.Glob(filepath.Join(topoDir, "nodes", "*", "*", "bird.conf"))
	require.NoError(t, err)
	require.NotEmpty(t, lab)
	return append([]string{onpremDir + "/bird.conf"}, lab...)
}

// onpremDir holds the on-prem router's configuration documented for users.
const onpremDir = "../../docs/onprem"

// TestBIRDConfigsParse has BIRD parse every BIRD configuration of the
// repository (`bird -p -c FILE`: parse only, nothing started).
func TestBIRDConfigsParse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, f := range birdConfigs(t) {
		assert.NoError(t, lab.CheckBIRDConfig(ctx, f), "BIRD 2 (apt-get install -y bird2) refuses %s", f)
	}
}

var (
	frrNeighborRE  = regexp.MustCompile(`(?m)^ neighbor (169\.254\.\S+) remote-as (\d+)$`)
	birdNeighborRE = regexp.MustCompile(`(?m)^\s+neighbor (169\.254\.\S+) as (\d+);$`)
	frrPasswordRE  = regexp.MustCompile(`(?m)^ neighbor \S+ password (\S+)$`)
	birdPasswordRE = regexp.MustCompile(`(?m)^\s+password "([^"]+)";$`)
)

// matches returns every submatch of re in text, the groups of one match
// joined by a space, sorted.
func matches(re *regexp.Regexp, text string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, strings.Join(m[1:], " "))
	}
	slices.Sort(out)
	return out
}

// TestBIRDAgreesWithFRR checks each bird.conf against the frr.conf beside
// it (the same router in FRR): the same tunnel neighbors with the same
// ASNs, the same TCP-MD5 passwords, GTSM, BFD and the 3 s/9 s timers,
// graceful restart off, ECMP through the kernel protocol the failover
// suite reads (kernel4: failover.BIRDKernelProtocol, checked there too),
// and BIRD's reconnect delays shortened.
func TestBIRDAgreesWithFRR(t *testing.T) {
	for _, f := range birdConfigs(t) {
		bird, err := os.ReadFile(f)
		require.NoError(t, err)
		frr, err := os.ReadFile(filepath.Join(filepath.Dir(f), "frr.conf"))
		require.NoError(t, err, "%s: a frr.conf beside it", f)
		b, r := string(bird), string(frr)
		nbrs := matches(birdNeighborRE, b)
		require.NotEmpty(t, nbrs, f)
		assert.Equal(t, matches(frrNeighborRE, r), nbrs, "%s: the tunnel neighbors and their ASNs", f)
		assert.Equal(t, matches(frrPasswordRE, r), matches(birdPasswordRE, b), "%s: the TCP-MD5 passwords", f)
		for _, want := range []string{"ttl security on;", "bfd on;", "hold time 9;", "keepalive time 3;",
			"graceful restart off;", "protocol kernel kernel4 {", "merge paths on",
			"protocol bfd {", "multiplier 3;", "min rx interval 100 ms;", "min tx interval 100 ms;",
			"error wait time 1, 10;", "error forget time 60;", "connect delay time 1;",
			"if (65535, 0) ~ bgp_community then bgp_local_pref = 0;"} {
			assert.Contains(t, b, want, f)
		}
		// Single-hop BFD (a BGP session without "multihop"): BIRD's
		// multihop BFD sends with TTL 64, which bgpgw and FRR refuse.
		assert.NotRegexp(t, `(?m)^\s*multihop`, b, "%s: single-hop sessions and BFD", f)
	}
}

// TestBIRDVariants checks each -bird topology against its base: the same
// nodes (configuration directories, scripts, binds) and links, and
// ONPREM_ROUTER=bird exactly on the gateways and on the routers with a
// bird.conf (the on-prem ones), so the cloud router stays FRR.
func TestBIRDVariants(t *testing.T) {
	variants, err := filepath.Glob(filepath.Join(topoDir, "*-bird.clab.yml"))
	require.NoError(t, err)
	require.Len(t, variants, 1, "active-active-bird")
	for _, v := range variants {
		t.Run(filepath.Base(v), func(t *testing.T) {
			bird, err := Load(v)
			require.NoError(t, err)
			base, err := Load(strings.Replace(v, "-bird.clab.yml", ".clab.yml", 1))
			require.NoError(t, err)
			assert.Equal(t, base.Links, bird.Links)
			require.Equal(t, len(base.Nodes), len(bird.Nodes))
			routers := 0
			for i, n := range bird.Nodes {
				b := base.Nodes[i]
				assert.Equal(t, b.Name, n.Name)
				assert.Equal(t, b.Exec, n.Exec, n.Name)
				assert.Equal(t, b.Binds, n.Binds, n.Name)
				assert.NotContains(t, b.Env, "ONPREM_ROUTER", "base %s", b.Name)
				env := maps.Clone(n.Env)
				delete(env, "ONPREM_ROUTER")
				assert.Equal(t, b.Env, env, n.Name)

				script := filepath.Base(n.Exec[0].Args[1])
				_, err := os.Stat(filepath.Join(topoDir, "nodes", n.Exec[0].Args[2], "bird.conf"))
				onprem := script == "router.sh" && err == nil
				if onprem {
					routers++
				}
				if script == "gateway.sh" || onprem {
					assert.Equal(t, "bird", n.Env["ONPREM_ROUTER"], n.Name)
				} else {
					assert.NotContains(t, n.Env, "ONPREM_ROUTER", n.Name)
				}
			}
			assert.Positive(t, routers, "a router runs BIRD")
		})
	}
}
