package daemon

import (
	"slices"

	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/filter"
)

func global(c *config.Config) bgp.Global {
	return bgp.Global{
		ASN: c.BGP.ASN, RouterID: c.BGP.RouterID,
		ListenPort: c.BGP.ListenPort, ListenAddresses: c.BGP.ListenAddresses,
		Never: filter.Never(c), GRPCListen: c.BGP.GRPCListen,
	}
}

func peers(c *config.Config) []bgp.PeerConfig {
	var out []bgp.PeerConfig
	base := bgp.PeerConfig{HoldTime: c.BGP.HoldTime, Keepalive: c.BGP.Keepalive, ConnectRetry: c.BGP.ConnectRetry}
	for _, t := range c.Tunnels {
		p := base
		p.Name, p.Kind, p.PeerASN = t.Name, bgp.KindTunnel, t.PeerASN
		p.Address, p.LocalAddress = t.InsideRemote, t.InsideLocal.Addr()
		p.Password, p.MaxPrefixes, p.MaxASPath = t.Password.Reveal(), t.MaxPrefixes, t.MaxASPath
		p.Accept = slices.Clone(t.Accept)
		out = append(out, p)
	}
	for _, cp := range c.CloudPeers {
		p := base
		p.Name, p.Kind, p.PeerASN = cp.Name, bgp.KindCloud, cp.PeerASN
		p.Address, p.LocalAddress = cp.Address, cp.LocalAddress
		p.Password, p.MultihopTTL = cp.Password.Reveal(), cp.Multihop
		// Nothing is accepted from cloud-side peers; the limit only guards memory.
		p.MaxPrefixes = config.DefaultMaxPrefixes
		out = append(out, p)
	}
	return out
}
