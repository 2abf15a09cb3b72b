// Package filter holds bgpgw's import rules: which routes received from an
// on-prem device are refused, and why. It is pure (no I/O, no BGP
// library): the BGP adapter builds its import policy from these rules and
// explains each refused route with them, and the decision core's preview
// (`bgpgw plan`) applies them, so all three agree.
//
// A route from a tunnel peer is refused, first match wins, when:
//   - it is a default route or a split default (length 0 or 1);
//   - it overlaps a cloud-side prefix (the prefix itself, a more-specific
//     or a covering prefix): the cloud prefixes are bgpgw's to announce,
//     and a covering route would draw their traffic into a tunnel;
//   - it overlaps an address bgpgw's own sessions and tunnels run over
//     (a tunnel's outer addresses, a cloud-side peer's or the pair's
//     addresses): routed into a tunnel, the tunnel or session would carry
//     itself;
//   - it overlaps a tunnel's inside subnet;
//   - it is a martian: in 0.0.0.0/8, loopback, link-local, multicast or
//     reserved space (the prefix or a more-specific of it);
//   - it is not in the tunnel's accept-list;
//   - its AS path holds bgpgw's own AS (a loop);
//   - its AS path is longer than the tunnel's max_as_path.
package filter

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// Reason says why a route was refused: a stable keyword, for status and
// scripts.
type Reason string

// Reasons, in the order the rules are applied.
const (
	DefaultRoute  Reason = "default-route"
	Martian       Reason = "martian"
	CloudPrefix   Reason = "cloud-prefix"
	Underlay      Reason = "underlay"
	Inside        Reason = "inside"
	NotAccepted   Reason = "not-in-accept-list"
	ASLoop        Reason = "as-loop"
	ASPathTooLong Reason = "as-path-too-long"
	// Other: refused by the BGP speaker for a reason of its own.
	Other Reason = "other"
)

// Rule is one range refused from every tunnel peer.
type Rule struct {
	Prefix netip.Prefix // masked
	Reason Reason
	What   string // what the range is, for the explanation
	// Covering: prefixes covering Prefix are refused too; else only
	// Prefix and its more-specifics.
	Covering bool
}

// Matches reports whether the rule refuses p.
func (r Rule) Matches(p netip.Prefix) bool {
	if p.Addr().Is4() != r.Prefix.Addr().Is4() {
		return false
	}
	p = p.Masked()
	if p.Bits() >= r.Prefix.Bits() {
		return r.Prefix.Contains(p.Addr())
	}
	return r.Covering && p.Contains(r.Prefix.Addr())
}

// CoveringLengths are the prefix lengths, shorter than Prefix's, at which
// a covering prefix is refused (the lengths 0 and 1 are default routes).
func (r Rule) CoveringLengths() []int {
	if !r.Covering {
		return nil
	}
	var out []int
	for l := 2; l < r.Prefix.Bits(); l++ {
		out = append(out, l)
	}
	return out
}

var martians = []struct {
	prefix string
	what   string
}{
	{"0.0.0.0/8", "\"this network\" (RFC 1122)"},
	{"127.0.0.0/8", "loopback"},
	{"169.254.0.0/16", "link-local"},
	{"224.0.0.0/4", "multicast"},
	{"240.0.0.0/4", "reserved (class E) and broadcast"},
	{"::/128", "the unspecified address"},
	{"::1/128", "loopback"},
	{"fe80::/10", "link-local"},
	{"ff00::/8", "multicast"},
}

// Martians are the ranges no peer may send, whatever the configuration.
func Martians() []Rule {
	out := make([]Rule, 0, len(martians))
	for _, m := range martians {
		out = append(out, Rule{Prefix: netip.MustParsePrefix(m.prefix), Reason: Martian, What: m.what})
	}
	return out
}

// Never returns the rules refusing routes from every tunnel peer for cfg:
// the cloud prefixes, the addresses bgpgw's sessions and tunnels run over,
// the tunnels' inside subnets, then the martians (an inside subnet is
// usually link-local: its own rule names it).
func Never(cfg *config.Config) []Rule {
	var out []Rule
	for _, p := range cfg.Announce {
		out = append(out, Rule{Prefix: p.Masked(), Reason: CloudPrefix, What: "cloud prefix " + p.String(), Covering: true})
	}
	host := func(a netip.Addr, what string) {
		if a.IsValid() {
			out = append(out, Rule{Prefix: netip.PrefixFrom(a, a.BitLen()), Reason: Underlay, What: what + " " + a.String(), Covering: true})
		}
	}
	for _, t := range cfg.Tunnels {
		host(t.LocalAddress, "tunnel "+t.Name+" local address")
		host(t.RemoteAddress, "tunnel "+t.Name+" remote address")
	}
	for _, cp := range cfg.CloudPeers {
		host(cp.Address, "cloud peer "+cp.Name+" address")
		host(cp.LocalAddress, "cloud peer "+cp.Name+" local address")
	}
	if cfg.Pair.Enabled {
		host(cfg.Pair.Partner, "pair partner address")
		host(cfg.Pair.LocalAddress, "pair local address")
	}
	for _, t := range cfg.Tunnels {
		if t.InsideLocal.IsValid() {
			out = append(out, Rule{Prefix: t.InsideLocal.Masked(), Reason: Inside, What: "tunnel " + t.Name + " inside subnet " + t.InsideLocal.Masked().String(), Covering: true})
		}
	}
	return dedup(append(out, Martians()...))
}

// dedup drops a rule whose range an earlier rule already refuses in full.
func dedup(rules []Rule) []Rule {
	var out []Rule
	for _, r := range rules {
		if slices.ContainsFunc(out, func(o Rule) bool {
			return o.Matches(r.Prefix) && r.Prefix.Bits() >= o.Prefix.Bits() && (!r.Covering || o.Covering)
		}) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// Rejection is why a route was refused.
type Rejection struct {
	Reason Reason
	Detail string
}

// Refused returns the rule of never (or the default-route rule) that
// refuses p, if one does.
func Refused(never []Rule, p netip.Prefix) (Rejection, bool) {
	if p.Bits() <= 1 {
		if p.Bits() == 0 {
			return Rejection{DefaultRoute, "a default route"}, true
		}
		return Rejection{DefaultRoute, "half of a split default route"}, true
	}
	for _, r := range never {
		if !r.Matches(p) {
			continue
		}
		switch {
		case p.Masked() == r.Prefix:
			return Rejection{r.Reason, "is " + r.What}, true
		case p.Bits() > r.Prefix.Bits():
			return Rejection{r.Reason, "inside " + r.What}, true
		default:
			return Rejection{r.Reason, "covers " + r.What}, true
		}
	}
	return Rejection{}, false
}

// Import is one tunnel peer's import policy.
type Import struct {
	Never     []Rule
	Accept    []config.PrefixRange
	LocalAS   uint32
	MaxASPath int // 0: no limit
}

// Check returns why a route is refused, if it is.
func (im Import) Check(p netip.Prefix, path []model.ASSegment) (Rejection, bool) {
	if r, ok := Refused(im.Never, p); ok {
		return r, true
	}
	if !slices.ContainsFunc(im.Accept, func(r config.PrefixRange) bool { return r.Contains(p) }) {
		return Rejection{NotAccepted, "not in the tunnel's accept-list"}, true
	}
	for _, s := range path {
		if slices.Contains(s.ASNs, im.LocalAS) {
			return Rejection{ASLoop, fmt.Sprintf("AS path holds bgpgw's AS %d", im.LocalAS)}, true
		}
	}
	if n := model.PathLen(path); im.MaxASPath > 0 && n > im.MaxASPath {
		return Rejection{ASPathTooLong, fmt.Sprintf("AS path length %d over max_as_path %d", n, im.MaxASPath)}, true
	}
	return Rejection{}, false
}

// ForTunnel returns tunnel t's import policy under cfg.
func ForTunnel(cfg *config.Config, never []Rule, t config.Tunnel) Import {
	return Import{Never: never, Accept: t.Accept, LocalAS: cfg.BGP.ASN, MaxASPath: t.MaxASPath}
}
