package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// route is a router's route toward a destination: the prefix that matched
// (the longest) and its active next hops, sorted. The prefix tells a
// takeover apart from the full state where the next hops do not (in
// active-standby both instances' halves resolve to the primary).
type route struct {
	Prefix string
	Hops   []string
}

func (rt route) String() string { return rt.Prefix + " via " + strings.Join(rt.Hops, ",") }

// routes are the routers' routes, keyed "router->destination".
type routes map[string]route

// equalRoutes reports whether a and b have the same prefixes and next hops
// for the same keys.
func equalRoutes(a, b routes) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Prefix != w.Prefix || !slices.Equal(v.Hops, w.Hops) {
			return false
		}
	}
	return true
}

// parseRoute reads `show ip route DST json`: the selected, not connected
// route's prefix and active next hops (ok false: none, the destination is
// connected or unreachable).
func parseRoute(js []byte) (route, bool, error) {
	var byPrefix map[string][]struct {
		Selected bool `json:"selected"`
		Protocol string
		Nexthops []struct {
			IP     string `json:"ip"`
			Active bool   `json:"active"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(js, &byPrefix); err != nil {
		return route{}, false, err
	}
	var rt route
	for prefix, rs := range byPrefix {
		for _, x := range rs {
			if !x.Selected || x.Protocol == "connected" {
				continue
			}
			for _, h := range x.Nexthops {
				if h.Active && h.IP != "" {
					rt.Prefix = prefix
					rt.Hops = append(rt.Hops, h.IP)
				}
			}
		}
	}
	slices.Sort(rt.Hops)
	rt.Hops = slices.Compact(rt.Hops)
	return rt, len(rt.Hops) > 0, nil
}

// nextHops returns, for every router and destination, the router's route
// toward the destination. With background, vtysh runs at a low priority
// (nice 10): the convergence poll runs back to back while a fault is
// measured, and at normal priority its vtysh processes took up to a core's
// worth of CPU from the daemons and the data plane under measurement.
func (r *runner) nextHops(ctx context.Context, background bool) (routes, error) {
	out := routes{}
	cmd := []string{"vtysh", "-c"}
	if background {
		cmd = []string{"nice", "-n", "10", "vtysh", "-c"}
	}
	for _, n := range r.routers {
		for _, dst := range r.destinations {
			js, err := n.Exec(ctx, append(cmd, "show ip route "+dst+" json")...)
			if err != nil {
				return nil, err
			}
			rt, ok, err := parseRoute([]byte(js))
			if err != nil {
				return nil, fmt.Errorf("%s: show ip route %s: %w", n.Name, dst, err)
			}
			if ok { // none: connected, or no route at all
				out[n.Name+"->"+dst] = rt
			}
		}
	}
	return out, nil
}

// converged reports whether every router has its routes again, none of
// them through the broken gateway (one of whose addresses is gwAddrs).
func (r *runner) converged(rs routes, gwAddrs []string) bool {
	for k := range r.full {
		if len(rs[k].Hops) == 0 {
			return false
		}
	}
	for _, rt := range rs {
		for _, h := range rt.Hops {
			if slices.Contains(gwAddrs, h) {
				return false
			}
		}
	}
	return true
}

// establishedWith lists the routers' BGP sessions established with one of
// addrs ("router addr").
func (r *runner) establishedWith(ctx context.Context, addrs []string) ([]string, error) {
	var out []string
	for _, n := range r.routers {
		js, err := n.Exec(ctx, "vtysh", "-c", "show bgp summary json")
		if err != nil {
			return nil, err
		}
		up, err := parseEstablished([]byte(js))
		if err != nil {
			return nil, fmt.Errorf("%s: show bgp summary: %w", n.Name, err)
		}
		for _, a := range up {
			if slices.Contains(addrs, a) {
				out = append(out, n.Name+" "+a)
			}
		}
	}
	return out, nil
}

// parseEstablished reads `show bgp summary json`: the IPv4 unicast peers
// whose session is established, sorted.
func parseEstablished(js []byte) ([]string, error) {
	up, _, err := parseSummary(js)
	return up, err
}

// parseSummary reads `show bgp summary json`: the IPv4 unicast peers whose
// session is established, sorted, and how many peers there are.
func parseSummary(js []byte) (up []string, peers int, err error) {
	var sum struct {
		IPv4 struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := json.Unmarshal(js, &sum); err != nil {
		return nil, 0, err
	}
	for addr, p := range sum.IPv4.Peers {
		if p.State == "Established" {
			up = append(up, addr)
		}
	}
	slices.Sort(up)
	return up, len(sum.IPv4.Peers), nil
}
