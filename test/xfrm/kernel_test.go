//go:build guest

package xfrm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// In the guest (TCG) every command costs a few hundred milliseconds, a Go
// binary over a second: what the tests read again and again (routes, XFRM
// states and policies, interfaces, bgpgw's status) they read in process,
// through netlink handles in the lab's namespaces and bgpgw's API socket.

// kernel reads one lab namespace's kernel state.
type kernel struct {
	name string
	h    *netlink.Handle
}

// kern returns the netlink reader of n, opened once.
func (x *xlab) kern(n *lab.Netns) *kernel {
	x.t.Helper()
	if k, ok := x.kernels[n.Name()]; ok {
		return k
	}
	ns, err := netns.GetFromName(n.Name())
	if err != nil {
		x.t.Fatalf("open netns %s: %v", n.Name(), err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		x.t.Fatalf("netlink in %s: %v", n.Name(), err)
	}
	x.t.Cleanup(h.Close) // before the lab deletes the namespace
	k := &kernel{name: n.Name(), h: h}
	x.kernels[n.Name()] = k
	return k
}

func (k *kernel) linkName(index int) string {
	l, err := k.h.LinkByIndex(index)
	if err != nil {
		return fmt.Sprintf("if%d", index)
	}
	return l.Attrs().Name
}

func family(prefix string) int {
	if strings.Contains(prefix, ":") {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// routeDevs returns the devices through which the main table routes prefix
// (exactly that prefix), sorted; nil without such a route.
func (k *kernel) routeDevs(prefix string) ([]string, error) {
	_, dst, err := net.ParseCIDR(prefix)
	if err != nil {
		return nil, err
	}
	rs, err := k.h.RouteListFiltered(family(prefix), &netlink.Route{Dst: dst, Table: 254},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("%s: routes of %s: %w", k.name, prefix, err)
	}
	if len(rs) == 0 {
		return nil, nil
	}
	var devs []string
	if rs[0].LinkIndex > 0 {
		devs = append(devs, k.linkName(rs[0].LinkIndex))
	}
	for _, h := range rs[0].MultiPath {
		devs = append(devs, k.linkName(h.LinkIndex))
	}
	slices.Sort(devs)
	return devs, nil
}

// routes returns the routes of table in both families, with protocol proto
// unless it is 0, as "PREFIX via GATEWAY dev DEV" (several next hops joined
// by ","), sorted.
func (k *kernel) routes(table, proto int) ([]string, error) {
	filter, mask := &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE
	if proto != 0 {
		filter.Protocol, mask = netlink.RouteProtocol(proto), mask|netlink.RT_FILTER_PROTOCOL
	}
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := k.h.RouteListFiltered(fam, filter, mask)
		if err != nil {
			return nil, fmt.Errorf("%s: routes of table %d: %w", k.name, table, err)
		}
		for _, r := range rs {
			dst := "default"
			if r.Dst != nil {
				dst = r.Dst.String()
			}
			var hops []string
			if r.Gw != nil {
				hops = append(hops, r.Gw.String()+" dev "+k.linkName(r.LinkIndex))
			}
			for _, h := range r.MultiPath {
				hops = append(hops, h.Gw.String()+" dev "+k.linkName(h.LinkIndex))
			}
			if len(hops) == 0 {
				hops = append(hops, "dev "+k.linkName(r.LinkIndex))
			}
			out = append(out, dst+" via "+strings.Join(hops, ","))
		}
	}
	slices.Sort(out)
	return out, nil
}

// ownRoutes is bgpgw's routes in the main table (proto 201).
func (k *kernel) ownRoutes() ([]string, error) { return k.routes(254, 201) }

// spis lists the SPIs of the ESP states, sorted, as "0x" and 8 digits.
func (k *kernel) spis() ([]string, error) {
	ss, err := k.h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("%s: XFRM states: %w", k.name, err)
	}
	var spis []string
	for _, s := range ss {
		if s.Proto == netlink.XFRM_PROTO_ESP {
			spis = append(spis, fmt.Sprintf("0x%08x", uint32(s.Spi)))
		}
	}
	slices.Sort(spis)
	return spis, nil
}

// states lists the ESP states as "SPI if_id N aead NAME", sorted.
func (k *kernel) states() ([]string, error) {
	ss, err := k.h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("%s: XFRM states: %w", k.name, err)
	}
	var out []string
	for _, s := range ss {
		aead := "none"
		if s.Aead != nil {
			aead = s.Aead.Name
		}
		out = append(out, fmt.Sprintf("0x%08x if_id %d %s aead %s", uint32(s.Spi), s.Ifid, s.Mode, aead))
	}
	slices.Sort(out)
	return out, nil
}

// policies lists the policies (socket policies left out) as "DIR
// SRC>DST if_id 0xN", sorted. It reads ip xfrm policy: netlink's parser
// shows the selector ::/0 as 0.0.0.0/0.
func (k *kernel) policies(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-n", k.name, "xfrm", "policy").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: ip xfrm policy: %w: %s", k.name, err, out)
	}
	return parsePolicies(string(out))
}

// parsePolicies reads ip xfrm policy's output: one block per policy, each
// starting with "src" at the beginning of a line.
func parsePolicies(out string) ([]string, error) {
	var blocks []string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "src "):
			blocks = append(blocks, line)
		case len(blocks) > 0 && strings.TrimSpace(line) != "":
			blocks[len(blocks)-1] += "\n" + line
		}
	}
	var ps []string
	for _, b := range blocks {
		f := strings.Fields(b)
		if len(f) < 6 || f[0] != "src" || f[2] != "dst" {
			return nil, fmt.Errorf("unexpected ip xfrm policy output:\n%s", b)
		}
		if f[4] == "socket" {
			continue
		}
		if f[4] != "dir" {
			return nil, fmt.Errorf("unexpected ip xfrm policy output:\n%s", b)
		}
		id := "0x0"
		if i := slices.Index(f, "if_id"); i >= 0 && i+1 < len(f) {
			id = f[i+1]
		}
		ps = append(ps, fmt.Sprintf("%s %s>%s if_id %s", f[5], f[1], f[3], id))
	}
	slices.Sort(ps)
	return ps, nil
}

// xfrmLinks lists the XFRM interfaces as "NAME if_id N", sorted.
func (k *kernel) xfrmLinks() ([]string, error) {
	ls, err := k.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("%s: links: %w", k.name, err)
	}
	var out []string
	for _, l := range ls {
		if x, ok := l.(*netlink.Xfrmi); ok {
			out = append(out, fmt.Sprintf("%s if_id %d", x.Name, x.Ifid))
		}
	}
	slices.Sort(out)
	return out, nil
}

// link returns the link called name with its addresses, "" if missing.
func (k *kernel) link(name string) (netlink.Link, []string, error) {
	l, err := k.h.LinkByName(name)
	if err != nil {
		return nil, nil, err
	}
	as, err := k.h.AddrList(l, netlink.FAMILY_ALL)
	var addrs []string
	for _, a := range as {
		addrs = append(addrs, a.IPNet.String())
	}
	return l, addrs, err
}

// setSysctls writes namespaced sysctls (key, value pairs) in n with one
// process: nsenter, cheaper than ip netns exec (which remounts /sys).
func setSysctls(ctx context.Context, n *lab.Netns, kv ...[2]string) error {
	args := []string{"--net=/run/netns/" + n.Name(), "sysctl", "-q", "-w"}
	for _, p := range kv {
		args = append(args, p[0]+"="+p[1])
	}
	if out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: sysctl: %w: %s", n.Name(), err, out)
	}
	return nil
}

// ipBatch runs ip commands (one per line, without "ip") in n with one
// process.
func ipBatch(ctx context.Context, n *lab.Netns, lines ...string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", n.Name(), "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netns %s: ip -batch: %w: %s\n%s", n.Name(), err, out, strings.Join(lines, "\n"))
	}
	return nil
}

// nftCounters reads the named counters of n's table inet NAME (rules with a
// comment and a counter), by comment.
func nftCounters(ctx context.Context, n *lab.Netns, table string) (map[string]uint64, error) {
	out, err := n.Exec(ctx, "nft", "-j", "list", "table", "inet", table)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Comment string           `json:"comment"`
				Expr    []map[string]any `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft -j: %w: %s", err, out)
	}
	c := map[string]uint64{}
	for _, e := range doc.Nftables {
		if e.Rule == nil || e.Rule.Comment == "" {
			continue
		}
		for _, x := range e.Rule.Expr {
			if m, ok := x["counter"].(map[string]any); ok {
				if p, ok := m["packets"].(float64); ok {
					c[e.Rule.Comment] = uint64(p)
				}
			}
		}
	}
	return c, nil
}
