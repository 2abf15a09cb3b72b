// Package bgptest provides a plain GoBGP speaker that stands in for a
// remote router (an on-prem device) in tests and benchmarks of bgpgw's
// speaker. It belongs with pkg/bgp: the only other place that imports GoBGP.
package bgptest

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Peer is a GoBGP speaker with one eBGP session toward the gateway.
type Peer struct {
	s    *server.BgpServer
	Addr netip.Addr
}

// Update is one prefix in an UPDATE the peer received.
type Update struct {
	Prefix   netip.Prefix
	Withdraw bool
	At       time.Time
}

// Start runs a peer at addr:port (AS asn) with a session to gw:port
// (AS gwASN), GTSM on, accepting everything.
func Start(ctx context.Context, addr string, asn uint32, port int, gw string, gwASN uint32) (*Peer, error) {
	s := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), nil))
	go s.Serve()
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: addr, ListenPort: int32(port), ListenAddresses: []string{addr},
	}})
	if err == nil {
		err = s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:        &api.PeerConf{NeighborAddress: gw, PeerAsn: gwASN},
			Transport:   &api.Transport{LocalAddress: addr, RemotePort: uint32(port)},
			Timers:      &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 9, KeepaliveInterval: 3}},
			TtlSecurity: &api.TtlSecurity{Enabled: true, TtlMin: 255},
		}})
	}
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("test peer %s: %w", addr, err)
	}
	return &Peer{s: s, Addr: netip.MustParseAddr(addr)}, nil
}

// Stop stops the peer.
func (p *Peer) Stop() { p.s.Stop() }

// WatchUpdates calls fn for every prefix in every UPDATE received, as it
// arrives (before the peer's own policy), until ctx ends.
func (p *Peer) WatchUpdates(ctx context.Context, fn func(Update)) error {
	return p.s.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPathUpdate: func(paths []*apiutil.Path, at time.Time) {
			for _, path := range paths {
				if pfx, ok := path.Nlri.(*bgp.IPAddrPrefix); ok {
					fn(Update{Prefix: pfx.Prefix, Withdraw: path.Withdrawal, At: at})
				}
			}
		},
	}, server.WatchUpdate(false, "", ""))
}

// Routes returns the IPv4 routes the peer holds: prefix -> communities.
func (p *Peer) Routes() (map[netip.Prefix][]uint32, error) {
	out := map[netip.Prefix][]uint32{}
	err := p.eachRoute(func(pfx netip.Prefix, attrs []bgp.PathAttributeInterface) {
		var comms []uint32
		for _, a := range attrs {
			if c, ok := a.(*bgp.PathAttributeCommunities); ok {
				comms = c.Value
			}
		}
		out[pfx] = comms
	})
	return out, err
}

// eachRoute calls fn with every IPv4 path the peer holds.
func (p *Peer) eachRoute(fn func(netip.Prefix, []bgp.PathAttributeInterface)) error {
	return p.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
		func(nlri bgp.NLRI, paths []*apiutil.Path) {
			pfx, ok := nlri.(*bgp.IPAddrPrefix)
			if !ok {
				return
			}
			for _, path := range paths {
				fn(pfx.Prefix, path.Attrs)
			}
		})
}

// Route is a route the peer announces: the AS path after its own AS
// (which its speaker prepends, eBGP's rule) and standard communities.
type Route struct {
	Prefix      netip.Prefix
	ASPath      []uint32
	Communities []uint32
}

// Announce adds routes to what the peer announces (IPv4).
func (p *Peer) Announce(routes ...Route) error {
	var paths []*apiutil.Path
	for _, r := range routes {
		nlri, err := bgp.NewIPAddrPrefix(r.Prefix)
		if err != nil {
			return err
		}
		nh, err := bgp.NewPathAttributeNextHop(p.Addr)
		if err != nil {
			return err
		}
		attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), nh}
		if len(r.ASPath) > 0 {
			attrs = append(attrs, bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, r.ASPath)}))
		}
		if len(r.Communities) > 0 {
			attrs = append(attrs, bgp.NewPathAttributeCommunities(r.Communities))
		}
		paths = append(paths, &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri, Attrs: attrs})
	}
	_, err := p.s.AddPath(apiutil.AddPathRequest{Paths: paths})
	return err
}

// ASPaths returns the AS path of each IPv4 route the peer holds (the
// segments' ASNs in order).
func (p *Peer) ASPaths() (map[netip.Prefix][]uint32, error) {
	out := map[netip.Prefix][]uint32{}
	err := p.eachRoute(func(pfx netip.Prefix, attrs []bgp.PathAttributeInterface) {
		asns := []uint32{}
		for _, a := range attrs {
			if as, ok := a.(*bgp.PathAttributeAsPath); ok {
				for _, seg := range as.Value {
					asns = append(asns, seg.GetAS()...)
				}
			}
		}
		out[pfx] = asns
	})
	return out, err
}
