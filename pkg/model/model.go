// Package model holds bgpgw's own value types that cross the boundary
// between the decision core and the adapters: what is announced to a BGP
// peer and what is routed in the kernel. It imports nothing but the
// standard library, so the core speaks in these types without depending on
// GoBGP or netlink; the BGP adapter (pkg/bgp) and the route installer
// (pkg/route) take them as they are.
package model

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Well-known communities.
const (
	CommunityGracefulShutdown  uint32 = 0xFFFF0000 // 65535:0, RFC 8326
	CommunityNoExport          uint32 = 0xFFFFFF01 // RFC 1997: not beyond this AS
	CommunityNoAdvertise       uint32 = 0xFFFFFF02 // RFC 1997: to no peer
	CommunityNoExportSubconfed uint32 = 0xFFFFFF03 // RFC 1997: to no external peer
)

// Announcement is one prefix as announced to a peer.
type Announcement struct {
	Prefix  netip.Prefix
	Prepend int // extra copies of the local AS on the AS path
	// ASPath is the path a learned route arrived with, passed on after the
	// prepends (the speaker adds the local AS itself, eBGP's rule); empty
	// for bgpgw's own prefixes.
	ASPath      []ASSegment
	MED         uint32
	HasMED      bool
	Communities []uint32 // sorted
}

// Equal reports whether two announcements carry the same attributes.
func (a Announcement) Equal(b Announcement) bool {
	return a.Prefix == b.Prefix && a.Prepend == b.Prepend && a.MED == b.MED &&
		a.HasMED == b.HasMED && slices.Equal(a.Communities, b.Communities) &&
		slices.EqualFunc(a.ASPath, b.ASPath, ASSegment.Equal)
}

// ASSegment is one segment of an AS path (RFC 4271 section 4.3).
type ASSegment struct {
	Set  bool // AS_SET; else AS_SEQUENCE
	ASNs []uint32
}

// Equal reports whether two segments are the same.
func (s ASSegment) Equal(o ASSegment) bool { return s.Set == o.Set && slices.Equal(s.ASNs, o.ASNs) }

// PathLen is an AS path's length as BGP's decision process counts it
// (RFC 4271 section 9.1.2.2): each AS in a sequence, each set as one.
func PathLen(path []ASSegment) int {
	n := 0
	for _, s := range path {
		if s.Set {
			n++
		} else {
			n += len(s.ASNs)
		}
	}
	return n
}

// PathString formats an AS path the way routers show it: "65010 {65020 65021}".
func PathString(path []ASSegment) string {
	var b strings.Builder
	for i, s := range path {
		if i > 0 {
			b.WriteByte(' ')
		}
		if s.Set {
			b.WriteByte('{')
		}
		for k, as := range s.ASNs {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatUint(uint64(as), 10))
		}
		if s.Set {
			b.WriteByte('}')
		}
	}
	return b.String()
}

// Learned is one route accepted from a tunnel peer, with the attributes
// that decide what happens to it: its AS path (passed on, and the shorter
// path wins between tunnels) and its communities (RFC 1997's well-known
// ones are honoured; none is passed on).
type Learned struct {
	Prefix      netip.Prefix
	ASPath      []ASSegment
	Communities []uint32 // sorted
}

// HasCommunity reports whether l carries community c.
func (l Learned) HasCommunity(c uint32) bool {
	_, ok := slices.BinarySearch(l.Communities, c)
	return ok
}

// Exportable reports whether l may be announced to another AS: not with
// NO_EXPORT, NO_ADVERTISE or NO_EXPORT_SUBCONFED (RFC 1997; every peer
// bgpgw passes routes to is eBGP).
func (l Learned) Exportable() bool {
	return !l.HasCommunity(CommunityNoExport) && !l.HasCommunity(CommunityNoAdvertise) &&
		!l.HasCommunity(CommunityNoExportSubconfed)
}

// Prefixes lists the prefixes of routes, in their order.
func Prefixes(routes []Learned) []netip.Prefix {
	out := make([]netip.Prefix, len(routes))
	for i, r := range routes {
		out[i] = r.Prefix
	}
	return out
}

// Route is one prefix and the next hops it is routed to.
type Route struct {
	Prefix netip.Prefix
	// NextHops are the gateways: one gives a plain route, several an ECMP multipath route.
	// The installer sorts and deduplicates them; the routes it returns hold them sorted.
	NextHops []netip.Addr
}

// String formats r like "198.51.100.0/24 via 192.0.2.2,192.0.2.3".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix.String())
	if len(r.NextHops) > 0 {
		b.WriteString(" via ")
		for k, nh := range r.NextHops {
			if k > 0 {
				b.WriteByte(',')
			}
			b.WriteString(nh.String())
		}
	}
	return b.String()
}
