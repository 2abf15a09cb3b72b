package lab

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBGPTable(t *testing.T) {
	data, err := os.ReadFile("testdata/frr84_bgp_ipv4_unicast.json")
	require.NoError(t, err)
	routes, err := parseBGPTable(data)
	require.NoError(t, err)
	require.Len(t, routes, 2)

	assert.Equal(t, BGPRoute{
		Prefix: "10.77.1.1/32", Valid: true, Best: true, ASPath: "65002", Origin: "IGP",
		MED: 50, LocalPref: 200, PathFrom: "external", PeerID: "10.0.12.2",
		NextHops: []string{"10.0.12.2"},
	}, routes["10.77.1.1/32"])

	local := routes["10.99.0.0/16"]
	assert.True(t, local.Best)
	assert.Empty(t, local.ASPath)
	assert.Equal(t, uint32(32768), local.Weight)
	assert.Zero(t, local.LocalPref)
	assert.Equal(t, []string{"0.0.0.0"}, local.NextHops)
}

func TestParseBGPPrefix(t *testing.T) {
	data, err := os.ReadFile("testdata/frr84_bgp_ipv4_unicast_prefix.json")
	require.NoError(t, err)
	paths, err := parseBGPPrefix(data)
	require.NoError(t, err)
	require.Len(t, paths, 1)
	assert.Equal(t, BGPRoute{
		Prefix: "10.77.1.1/32", Valid: true, Best: true, ASPath: "65002", Origin: "IGP",
		MED: 50, LocalPref: 200, PathFrom: "external", PeerID: "10.0.12.2",
		NextHops:         []string{"10.0.12.2"},
		Communities:      []string{"65002:100", "65002:200"},
		LargeCommunities: []string{"65002:1:2"},
	}, paths[0])

	paths, err = parseBGPPrefix([]byte("{}"))
	require.NoError(t, err)
	assert.Empty(t, paths)
}

func TestParseNeighbors(t *testing.T) {
	data, err := os.ReadFile("testdata/frr84_bgp_neighbors.json")
	require.NoError(t, err)
	nbrs, err := parseNeighbors(data)
	require.NoError(t, err)
	require.Len(t, nbrs, 3)

	up := nbrs["10.0.12.2"]
	assert.Equal(t, "Established", up.State)
	assert.Equal(t, uint32(65002), up.RemoteAS)
	assert.Equal(t, uint32(65001), up.LocalAS)
	assert.Equal(t, "2.2.2.2", up.RemoteRouterID)
	assert.Equal(t, "t2", up.Hostname)
	assert.Equal(t, 1, up.PrefixesReceived)
	assert.Equal(t, 2, up.PrefixesSent)
	assert.Equal(t, 1, up.Established)
	assert.Positive(t, up.UptimeMsec)
	assert.Equal(t, map[string]int{"ipv4Unicast": 1}, up.Accepted)

	assert.Equal(t, "Active", nbrs["10.0.12.9"].State)
	assert.False(t, nbrs["10.0.12.9"].AdminShutdown)
	assert.Equal(t, "Idle", nbrs["10.0.12.10"].State)
	assert.True(t, nbrs["10.0.12.10"].AdminShutdown)
	assert.Zero(t, nbrs["10.0.12.10"].PrefixesReceived)
}

func TestOrderDaemons(t *testing.T) {
	assert.Equal(t, []string{"zebra", "bgpd", "bfdd"}, orderDaemons([]string{"bgpd", "zebra", "bfdd", "bgpd"}))
	assert.Equal(t, []string{"bgpd"}, orderDaemons([]string{"bgpd"}))
}
