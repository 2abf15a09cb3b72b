package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bgpgw/bgpgw/internal/clab"
	"github.com/bgpgw/bgpgw/internal/lab"
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

// BIRDKernelProtocol is the kernel protocol of the lab's BIRD routers
// (test/containerlab/nodes/*/*/bird.conf). A BIRD router's route toward a
// destination is what BIRD exports to it: the best route, with the ECMP
// paths merged ("merge paths"), as the kernel gets it.
const BIRDKernelProtocol = "kernel4"

// isBIRD reports whether a router node runs BIRD instead of FRR: the
// topology sets ONPREM_ROUTER=bird for it and its configuration directory
// has a bird.conf (router.sh's rule).
func (r *runner) isBIRD(n *clab.Node) bool {
	if n.Env["ONPREM_ROUTER"] != "bird" {
		return false
	}
	_, err := os.Stat(filepath.Join(r.opts.Dir, "nodes", r.nodes, n.Name, "bird.conf"))
	return err == nil
}

// nextHops returns, for every router and destination, the router's route
// toward the destination. With background, vtysh (birdc) runs at a low
// priority (nice 10): the convergence poll runs back to back while a fault
// is measured, and at normal priority its vtysh processes took up to a
// core's worth of CPU from the daemons and the data plane under
// measurement.
func (r *runner) nextHops(ctx context.Context, background bool) (routes, error) {
	out := routes{}
	var nice []string
	if background {
		nice = []string{"nice", "-n", "10"}
	}
	for _, n := range r.routers {
		bird := r.isBIRD(n)
		for _, dst := range r.destinations {
			var rt route
			var ok bool
			var err error
			if bird {
				var text string
				cmd := append(slices.Clone(nice), "birdc", "show", "route", "for", dst, "export", BIRDKernelProtocol)
				text, err = n.Exec(ctx, cmd...)
				if err != nil && !strings.Contains(text, "Network not found") {
					return nil, err
				}
				rt, ok, err = parseBIRDRoute(text)
			} else {
				var js string
				js, err = n.Exec(ctx, append(slices.Clone(nice), "vtysh", "-c", "show ip route "+dst+" json")...)
				if err != nil {
					return nil, err
				}
				rt, ok, err = parseRoute([]byte(js))
			}
			if err != nil {
				return nil, fmt.Errorf("%s: route toward %s: %w", n.Name, dst, err)
			}
			if ok { // none: connected, or no route at all
				out[n.Name+"->"+dst] = rt
			}
		}
	}
	return out, nil
}

// parseBIRDRoute reads `birdc show route for DST export kernel4`: the
// prefix and next hops of the route BIRD gives the kernel (ok false: none,
// BIRD exports nothing toward DST).
func parseBIRDRoute(text string) (route, bool, error) {
	rs, err := lab.ParseBIRDRoutes(text)
	if err != nil {
		return route{}, false, err
	}
	var rt route
	for _, x := range rs {
		for _, h := range x.NextHops {
			if h.Via.IsValid() {
				rt.Prefix = x.Prefix.String()
				rt.Hops = append(rt.Hops, h.Via.String())
			}
		}
	}
	slices.Sort(rt.Hops)
	rt.Hops = slices.Compact(rt.Hops)
	return rt, len(rt.Hops) > 0, nil
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
		var up []string
		if r.isBIRD(n) {
			text, err := n.Exec(ctx, "birdc", "show", "protocols", "all")
			if err != nil {
				return nil, err
			}
			if up, err = parseBIRDEstablished(text); err != nil {
				return nil, fmt.Errorf("%s: birdc show protocols all: %w", n.Name, err)
			}
		} else {
			js, err := n.Exec(ctx, "vtysh", "-c", "show bgp summary json")
			if err != nil {
				return nil, err
			}
			if up, err = parseEstablished([]byte(js)); err != nil {
				return nil, fmt.Errorf("%s: show bgp summary: %w", n.Name, err)
			}
		}
		for _, a := range up {
			if slices.Contains(addrs, a) {
				out = append(out, n.Name+" "+a)
			}
		}
	}
	return out, nil
}

// parseBIRDEstablished reads `birdc show protocols all`: the neighbors of
// the BGP protocols whose session is established, sorted.
func parseBIRDEstablished(text string) ([]string, error) {
	ps, err := lab.ParseBIRDProtocols(text)
	if err != nil {
		return nil, err
	}
	var up []string
	for _, p := range ps {
		if p.Established() && p.NeighborAddress.IsValid() {
			up = append(up, p.NeighborAddress.String())
		}
	}
	slices.Sort(up)
	return up, nil
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
