package core

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/route"
)

var (
	cloudA = netip.MustParsePrefix("10.10.0.0/16")
	cloudB = netip.MustParsePrefix("10.20.0.0/24")
	onprem = netip.MustParsePrefix("10.1.0.0/16")
	other  = netip.MustParsePrefix("10.2.0.0/16")
)

func testConfig(mode config.Mode, role config.Role) *config.Config {
	return &config.Config{
		Instance: config.Instance{Name: "gw1", Mode: mode, Role: role},
		Announce: []netip.Prefix{cloudA, cloudB},
		Standby:  config.Standby{Prepend: 3, MED: 200},
		Tunnels: []config.Tunnel{
			{Name: "t1", InsideRemote: netip.MustParseAddr("169.254.21.2")},
			{Name: "t2", InsideRemote: netip.MustParseAddr("169.254.22.2")},
		},
		CloudPeers: []config.CloudPeer{{Name: "rr", Address: netip.MustParseAddr("10.10.0.2")}},
	}
}

func TestActiveActive(t *testing.T) {
	out := Compute(Input{
		Config:  testConfig(config.ActiveActive, config.RoleNone),
		Learned: map[string][]netip.Prefix{"t1": {onprem, other}, "t2": {onprem}},
	})
	plain := []bgp.Announcement{{Prefix: cloudA}, {Prefix: cloudB}}
	assert.Equal(t, plain, out.Announcements["t1"])
	assert.Equal(t, plain, out.Announcements["t2"])
	assert.Equal(t, []bgp.Announcement{{Prefix: onprem}, {Prefix: other}}, out.Announcements["rr"])
	assert.Equal(t, []route.Route{
		{Prefix: onprem, NextHops: []netip.Addr{netip.MustParseAddr("169.254.21.2"), netip.MustParseAddr("169.254.22.2")}},
		{Prefix: other, NextHops: []netip.Addr{netip.MustParseAddr("169.254.21.2")}},
	}, out.Routes)
}

func TestStandbyIsPrepended(t *testing.T) {
	primary := Compute(Input{Config: testConfig(config.ActiveStandby, config.RolePrimary)})
	standby := Compute(Input{Config: testConfig(config.ActiveStandby, config.RoleStandby)})
	assert.Equal(t, bgp.Announcement{Prefix: cloudA, HasMED: true}, primary.Announcements["t1"][0])
	assert.Equal(t, bgp.Announcement{Prefix: cloudA, HasMED: true, MED: 200, Prepend: 3}, standby.Announcements["t1"][0])
	assert.Empty(t, standby.Routes)
	assert.Empty(t, standby.Announcements["rr"], "nothing learned, nothing for the cloud side")
}

func TestDrainAddsGracefulShutdown(t *testing.T) {
	out := Compute(Input{Config: testConfig(config.ActiveActive, config.RoleNone), Drained: true,
		Learned: map[string][]netip.Prefix{"t1": {onprem}}})
	for _, peer := range []string{"t1", "t2", "rr"} {
		require.NotEmpty(t, out.Announcements[peer], peer)
		for _, a := range out.Announcements[peer] {
			assert.Equal(t, []uint32{bgp.CommunityGracefulShutdown}, a.Communities, peer)
			assert.Equal(t, 3, a.Prepend, peer)
		}
	}
}
