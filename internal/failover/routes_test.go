package failover

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRoute(t *testing.T) {
	ecmp := `{"10.10.0.0/16":[{"prefix":"10.10.0.0/16","protocol":"bgp","selected":true,"nexthops":[
		{"ip":"169.254.22.1","active":true,"fib":true},{"ip":"169.254.21.1","active":true,"fib":true},
		{"ip":"169.254.23.1","active":false}]}]}`
	rt, ok, err := parseRoute([]byte(ecmp))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, route{Prefix: "10.10.0.0/16", Hops: []string{"169.254.21.1", "169.254.22.1"}}, rt)
	assert.Equal(t, "10.10.0.0/16 via 169.254.21.1,169.254.22.1", rt.String())

	// A takeover: the half wins, through one instance.
	half := `{"10.10.0.0/17":[{"prefix":"10.10.0.0/17","protocol":"bgp","selected":true,"nexthops":[{"ip":"169.254.22.1","active":true}]}]}`
	rt, ok, err = parseRoute([]byte(half))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, route{Prefix: "10.10.0.0/17", Hops: []string{"169.254.22.1"}}, rt)

	for _, none := range []string{`{}`,
		`{"10.1.0.0/24":[{"prefix":"10.1.0.0/24","protocol":"connected","selected":true,"nexthops":[{"directlyConnected":true,"active":true}]}]}`,
		`{"10.10.0.0/16":[{"protocol":"bgp","selected":false,"nexthops":[{"ip":"169.254.21.1","active":true}]}]}`} {
		_, ok, err := parseRoute([]byte(none))
		require.NoError(t, err)
		assert.False(t, ok, none)
	}
	_, _, err = parseRoute([]byte(`% Unknown command`))
	assert.Error(t, err)
}

// TestEqualRoutes: the full state is the same prefixes through the same
// next hops; a takeover that resolves to the same next hop (active-standby:
// both instances' halves, the primary's best) is not the full state.
func TestEqualRoutes(t *testing.T) {
	full := routes{"op->10.10.0.10": {"10.10.0.0/16", []string{"169.254.21.1"}}, "cr->10.1.0.10": {"10.1.0.0/16", []string{"10.10.1.1"}}}
	same := routes{"cr->10.1.0.10": {"10.1.0.0/16", []string{"10.10.1.1"}}, "op->10.10.0.10": {"10.10.0.0/16", []string{"169.254.21.1"}}}
	assert.True(t, equalRoutes(full, same))
	halves := routes{"op->10.10.0.10": {"10.10.0.0/17", []string{"169.254.21.1"}}, "cr->10.1.0.10": {"10.1.0.0/16", []string{"10.10.1.1"}}}
	assert.False(t, equalRoutes(full, halves))
	other := routes{"op->10.10.0.10": {"10.10.0.0/16", []string{"169.254.22.1"}}, "cr->10.1.0.10": {"10.1.0.0/16", []string{"10.10.1.1"}}}
	assert.False(t, equalRoutes(full, other))
	assert.False(t, equalRoutes(full, routes{"op->10.10.0.10": full["op->10.10.0.10"]}))
	assert.False(t, equalRoutes(full, routes{"op->10.10.0.10": full["op->10.10.0.10"], "cr->10.2.0.10": full["cr->10.1.0.10"]}))
	assert.False(t, equalRoutes(full, nil))
	assert.True(t, equalRoutes(nil, routes{}))
}

func TestConverged(t *testing.T) {
	r := &runner{full: routes{"op->10.10.0.10": {"10.10.0.0/16", []string{"169.254.21.1", "169.254.22.1"}},
		"cr->10.1.0.10": {"10.1.0.0/16", []string{"10.10.1.1", "10.10.2.1"}}}}
	gw1 := []string{"10.10.1.1", "203.0.113.2", "169.254.21.1"}
	assert.False(t, r.converged(r.full, gw1), "still through gw1")
	survivor := routes{"op->10.10.0.10": {"10.10.0.0/17", []string{"169.254.22.1"}}, "cr->10.1.0.10": {"10.1.0.0/17", []string{"10.10.2.1"}}}
	assert.True(t, r.converged(survivor, gw1), "the halves through gw2: converged")
	assert.False(t, r.converged(routes{"op->10.10.0.10": survivor["op->10.10.0.10"]}, gw1), "cr has no route")
}

func TestParseEstablished(t *testing.T) {
	js := `{"ipv4Unicast":{"routerId":"10.1.0.1","peers":{
		"169.254.22.1":{"remoteAs":65515,"state":"Established"},
		"169.254.21.1":{"remoteAs":65515,"state":"Active"},
		"169.254.23.1":{"state":"Established"}}}}`
	up, err := parseEstablished([]byte(js))
	require.NoError(t, err)
	assert.Equal(t, []string{"169.254.22.1", "169.254.23.1"}, up)
	up, err = parseEstablished([]byte(`{}`))
	require.NoError(t, err)
	assert.Empty(t, up)
}

func TestPairPartner(t *testing.T) {
	// The lab's own configuration: gw1's partner is gw2's cloud-side address.
	p, err := pairPartner(filepath.Join("..", "..", "test", "containerlab", "nodes", "active-active", "gw1", "bgpgw.yaml"))
	require.NoError(t, err)
	assert.Equal(t, "10.10.2.1", p)

	dir := t.TempDir()
	write := func(text string) string {
		path := filepath.Join(dir, "bgpgw.yaml")
		require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
		return path
	}
	p, err = pairPartner(write("instance: {name: gw1}\n"))
	require.NoError(t, err)
	assert.Empty(t, p, "no pair section")
	p, err = pairPartner(filepath.Join(dir, "missing.yaml"))
	require.NoError(t, err)
	assert.Empty(t, p, "no file")
	_, err = pairPartner(write("pair: {partner: gw2}\n"))
	assert.ErrorContains(t, err, "pair.partner")
	_, err = pairPartner(write("pair: [\n"))
	assert.Error(t, err)
	p, err = pairPartner(write("pair:\n  partner: 2001:db8::2\n"))
	require.NoError(t, err)
	assert.Equal(t, "2001:db8::2", p)
}

// TestNftPartnerCut: the cut drops only what goes to or comes from the
// partner's address, in the node's own input and output.
func TestNftPartnerCut(t *testing.T) {
	s := nftPartnerCut("10.10.2.1")
	assert.Contains(t, s, "table inet bgwpair")
	assert.Contains(t, s, "hook input priority -300; ip saddr 10.10.2.1 drop;")
	assert.Contains(t, s, "hook output priority -300; ip daddr 10.10.2.1 drop;")
	assert.NotContains(t, s, "forward", "traffic through the gateway is not touched")
	assert.Equal(t, 2, strings.Count(s, "drop"))
	assert.Contains(t, nftPartnerCut("2001:db8::2"), "ip6 saddr 2001:db8::2 drop")
}

// TestParseBIRDRoute: a BIRD router's route is what it exports to the
// kernel (birdc show route for DST export kernel4), ECMP paths merged.
func TestParseBIRDRoute(t *testing.T) {
	ecmp := "BIRD 2.0.12 ready.\nTable master4:\n10.10.0.0/16         unicast [gw1 17:27:59.809] * (100) [AS65515i]\n" +
		"\tvia 169.254.22.1 on t2 weight 1\n\tvia 169.254.21.1 on t1 weight 1\n"
	rt, ok, err := parseBIRDRoute(ecmp)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, route{Prefix: "10.10.0.0/16", Hops: []string{"169.254.21.1", "169.254.22.1"}}, rt)

	half := "Table master4:\n10.10.0.0/17         unicast [gw2 17:27:59.809] * (100) [AS65515i]\n\tvia 169.254.22.1 on t2\n"
	rt, ok, err = parseBIRDRoute(half)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, route{Prefix: "10.10.0.0/17", Hops: []string{"169.254.22.1"}}, rt)

	// Nothing exported toward the destination (the on-prem LAN: BIRD's
	// static aggregate is not exported), or no route at all.
	for _, none := range []string{"BIRD 2.0.12 ready.\n", "BIRD 2.0.12 ready.\nNetwork not found\n",
		"Table master4:\n10.1.0.0/16          blackhole [onprem 17:25:32.225] * (200)\n"} {
		_, ok, err := parseBIRDRoute(none)
		require.NoError(t, err)
		assert.False(t, ok, none)
	}
	_, _, err = parseBIRDRoute("Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n")
	assert.Error(t, err)
}

func TestParseBIRDEstablished(t *testing.T) {
	text := "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\n" +
		"kernel4    Kernel     master4    up     17:25:32.225  \n" +
		"gw2        BGP        ---        start  17:29:28.677  Idle          Error: BFD session down\n" +
		"  BGP state:          Idle\n    Neighbor address: 169.254.22.1\n" +
		"gw1        BGP        ---        up     17:27:58.876  Established   \n" +
		"  BGP state:          Established\n    Neighbor address: 169.254.21.1\n"
	up, err := parseBIRDEstablished(text)
	require.NoError(t, err)
	assert.Equal(t, []string{"169.254.21.1"}, up)
	_, err = parseBIRDEstablished("No such command. Press `?' for help.\n")
	assert.Error(t, err)
}

// TestBIRDKernelProtocolInLab: the suite reads a BIRD router's routes from
// what it exports to BIRDKernelProtocol; every lab bird.conf has it.
func TestBIRDKernelProtocolInLab(t *testing.T) {
	files, err := filepath.Glob("../../test/containerlab/nodes/*/*/bird.conf")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.Contains(t, string(data), "protocol kernel "+BIRDKernelProtocol+" {", f)
	}
}
