package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// BGPRoute is one BGP path as FRR 8.4 shows it.
type BGPRoute struct {
	Prefix    string
	Valid     bool
	Best      bool
	Multipath bool
	ASPath    string // "" for locally originated paths
	Origin    string // "IGP", "EGP", "incomplete"
	MED       uint32 // FRR's "metric"
	// LocalPref is 0 when the path carries no LOCAL_PREF attribute (FRR
	// omits "locPrf" then, e.g. for paths learned over eBGP without policy).
	LocalPref uint32
	Weight    uint32
	PathFrom  string // "external" or "internal"
	PeerID    string // "(unspec)" or "0.0.0.0" for locally originated paths
	NextHops  []string
	// Communities and LargeCommunities are filled by BGPPrefix only: FRR
	// 8.4's table view (show bgp ipv4 unicast json) does not carry them.
	Communities      []string
	LargeCommunities []string
}

// Neighbor is one BGP peer from `show bgp neighbors json`.
type Neighbor struct {
	Address        string // peer address, or interface for unnumbered peers
	State          string // "Established", "Active", "Idle", ...
	RemoteAS       uint32
	LocalAS        uint32
	RemoteRouterID string
	Hostname       string
	AdminShutdown  bool
	UptimeMsec     int64 // time since Established
	Established    int   // connectionsEstablished
	Dropped        int   // connectionsDropped
	LastResetDueTo string
	// PrefixesReceived is the IPv4 unicast prefixes accepted from the peer
	// (after inbound policy; FRR's acceptedPrefixCounter).
	PrefixesReceived int
	PrefixesSent     int // IPv4 unicast sentPrefixCounter
	// Accepted maps each address family (FRR key, e.g. "ipv4Unicast",
	// "ipv6Unicast") to its acceptedPrefixCounter.
	Accepted map[string]int
}

// BGPPrefixes returns FRR's IPv4 unicast table, one entry per prefix: its
// best path, or its first path when none is best.
func (f *FRR) BGPPrefixes(ctx context.Context) (map[string]BGPRoute, error) {
	return f.bgpTable(ctx, "ipv4")
}

// BGPPrefixes6 is BGPPrefixes for the IPv6 unicast table. NextHops hold
// the global next hop and, when the path has one, the link-local one.
func (f *FRR) BGPPrefixes6(ctx context.Context) (map[string]BGPRoute, error) {
	return f.bgpTable(ctx, "ipv6")
}

func (f *FRR) bgpTable(ctx context.Context, afi string) (map[string]BGPRoute, error) {
	cmd := "show bgp " + afi + " unicast json"
	out, err := f.Vtysh(ctx, cmd)
	if err != nil {
		return nil, err
	}
	routes, err := parseBGPTable([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("frr %s: %s: %w", f.instance, cmd, err)
	}
	return routes, nil
}

// BGPPrefix returns all paths of one IPv4 unicast prefix (e.g.
// "10.0.0.0/16"), with communities. No paths and no error when the prefix is
// not in the table.
func (f *FRR) BGPPrefix(ctx context.Context, prefix string) ([]BGPRoute, error) {
	cmd := "show bgp ipv4 unicast " + prefix + " json"
	out, err := f.Vtysh(ctx, cmd)
	if err != nil {
		return nil, err
	}
	paths, err := parseBGPPrefix([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("frr %s: %s: %w", f.instance, cmd, err)
	}
	return paths, nil
}

// Neighbors returns the BGP peers of the default VRF, keyed by address.
func (f *FRR) Neighbors(ctx context.Context) (map[string]Neighbor, error) {
	out, err := f.Vtysh(ctx, "show bgp neighbors json")
	if err != nil {
		return nil, err
	}
	nbrs, err := parseNeighbors([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("frr %s: show bgp neighbors json: %w", f.instance, err)
	}
	return nbrs, nil
}

type tablePath struct {
	Valid     bool   `json:"valid"`
	Best      bool   `json:"bestpath"`
	Multipath bool   `json:"multipath"`
	Network   string `json:"network"`
	Metric    uint32 `json:"metric"`
	LocPrf    uint32 `json:"locPrf"`
	Weight    uint32 `json:"weight"`
	PeerID    string `json:"peerId"`
	Path      string `json:"path"`
	Origin    string `json:"origin"`
	PathFrom  string `json:"pathFrom"`
	NextHops  []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

func parseBGPTable(data []byte) (map[string]BGPRoute, error) {
	var raw struct {
		Routes map[string][]tablePath `json:"routes"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	routes := make(map[string]BGPRoute, len(raw.Routes))
	for prefix, paths := range raw.Routes {
		if len(paths) == 0 {
			continue
		}
		p := paths[0]
		for _, q := range paths {
			if q.Best {
				p = q
				break
			}
		}
		r := BGPRoute{Prefix: prefix, Valid: p.Valid, Best: p.Best, Multipath: p.Multipath,
			ASPath: p.Path, Origin: p.Origin, MED: p.Metric, LocalPref: p.LocPrf,
			Weight: p.Weight, PathFrom: p.PathFrom, PeerID: p.PeerID}
		for _, nh := range p.NextHops {
			r.NextHops = append(r.NextHops, nh.IP)
		}
		routes[prefix] = r
	}
	return routes, nil
}

type detailPath struct {
	ASPath struct {
		String string `json:"string"`
	} `json:"aspath"`
	Origin    string `json:"origin"`
	Metric    uint32 `json:"metric"`
	LocPrf    uint32 `json:"locPrf"`
	Weight    uint32 `json:"weight"`
	Valid     bool   `json:"valid"`
	Multipath bool   `json:"multipath"`
	Bestpath  *struct {
		Overall bool `json:"overall"`
	} `json:"bestpath"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	NextHops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
		Type   string `json:"type"`
	} `json:"peer"`
}

func parseBGPPrefix(data []byte) ([]BGPRoute, error) {
	var raw struct {
		Prefix string       `json:"prefix"`
		Paths  []detailPath `json:"paths"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var out []BGPRoute
	for _, p := range raw.Paths {
		as := p.ASPath.String
		if as == "Local" {
			as = ""
		}
		r := BGPRoute{Prefix: raw.Prefix, Valid: p.Valid, Best: p.Bestpath != nil && p.Bestpath.Overall,
			Multipath: p.Multipath, ASPath: as, Origin: p.Origin, MED: p.Metric, LocalPref: p.LocPrf,
			Weight: p.Weight, PathFrom: p.Peer.Type, PeerID: p.Peer.PeerID}
		if p.Community != nil {
			r.Communities = strings.Fields(p.Community.String)
		}
		if p.LargeCommunity != nil {
			r.LargeCommunities = strings.Fields(p.LargeCommunity.String)
		}
		for _, nh := range p.NextHops {
			r.NextHops = append(r.NextHops, nh.IP)
		}
		out = append(out, r)
	}
	return out, nil
}

type rawNeighbor struct {
	RemoteAS       uint32 `json:"remoteAs"`
	LocalAS        uint32 `json:"localAs"`
	Hostname       string `json:"hostname"`
	RemoteRouterID string `json:"remoteRouterId"`
	State          string `json:"bgpState"`
	AdminShutDown  bool   `json:"adminShutDown"`
	UpMsec         int64  `json:"bgpTimerUpMsec"`
	Established    int    `json:"connectionsEstablished"`
	Dropped        int    `json:"connectionsDropped"`
	LastResetDueTo string `json:"lastResetDueTo"`
	AFI            map[string]struct {
		Accepted int `json:"acceptedPrefixCounter"`
		Sent     int `json:"sentPrefixCounter"`
	} `json:"addressFamilyInfo"`
}

func parseNeighbors(data []byte) (map[string]Neighbor, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	nbrs := make(map[string]Neighbor, len(raw))
	for addr, msg := range raw {
		var r rawNeighbor
		if err := json.Unmarshal(msg, &r); err != nil || r.State == "" {
			continue // not a peer object
		}
		n := Neighbor{Address: addr, State: r.State, RemoteAS: r.RemoteAS, LocalAS: r.LocalAS,
			RemoteRouterID: r.RemoteRouterID, Hostname: r.Hostname, AdminShutdown: r.AdminShutDown,
			UptimeMsec: r.UpMsec, Established: r.Established, Dropped: r.Dropped,
			LastResetDueTo: r.LastResetDueTo, Accepted: map[string]int{}}
		for afi, a := range r.AFI {
			n.Accepted[afi] = a.Accepted
		}
		if a, ok := r.AFI["ipv4Unicast"]; ok {
			n.PrefixesReceived, n.PrefixesSent = a.Accepted, a.Sent
		}
		nbrs[addr] = n
	}
	return nbrs, nil
}
