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
	"strings"
)

// Well-known communities.
const (
	CommunityGracefulShutdown uint32 = 0xFFFF0000 // 65535:0, RFC 8326
)

// Announcement is one prefix as announced to a peer.
type Announcement struct {
	Prefix      netip.Prefix
	Prepend     int // extra copies of the local AS on the AS path
	MED         uint32
	HasMED      bool
	Communities []uint32 // sorted
}

// Equal reports whether two announcements carry the same attributes.
func (a Announcement) Equal(b Announcement) bool {
	return a.Prefix == b.Prefix && a.Prepend == b.Prepend && a.MED == b.MED &&
		a.HasMED == b.HasMED && slices.Equal(a.Communities, b.Communities)
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
