package bgppeer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Route is one UPDATE to send: prefixes of one address family with their
// path attributes. BuildUpdate turns it into a message.
type Route struct {
	Prefixes []netip.Prefix
	// NextHop is the NEXT_HOP attribute (IPv4 prefixes) or the next hop
	// in MP_REACH_NLRI (IPv6 prefixes). It is sent as given: nothing
	// checks that it is reachable, or anyone's.
	NextHop netip.Addr
	// ASPath is the AS_PATH's segments, sent with 4-octet AS numbers (the
	// session negotiates them); nil sends an empty AS_PATH. Seq and Set
	// build segments.
	ASPath []bgp.AsPathParamInterface
	// Origin is the ORIGIN attribute: bgp.BGP_ORIGIN_ATTR_TYPE_IGP (0,
	// the zero value), _EGP or _INCOMPLETE.
	Origin uint8
	// Attrs are the other path attributes (MED, communities, an unknown
	// attribute...), sent as given.
	Attrs []bgp.PathAttributeInterface
}

// maxSegment is the most AS numbers one AS_PATH segment holds (its count
// is one octet).
const maxSegment = 255

// Seq returns an AS_SEQUENCE of asns, split into as many segments as a
// path that long needs (255 AS numbers each).
func Seq(asns ...uint32) []bgp.AsPathParamInterface {
	var out []bgp.AsPathParamInterface
	for len(asns) > 0 {
		n := min(len(asns), maxSegment)
		out = append(out, bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, slices.Clone(asns[:n])))
		asns = asns[n:]
	}
	return out
}

// Set returns one AS_SET segment (at most 255 AS numbers).
func Set(asns ...uint32) bgp.AsPathParamInterface {
	return bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SET, slices.Clone(asns))
}

// BuildUpdate builds the UPDATE announcing r: IPv4 prefixes in the NLRI
// field with a NEXT_HOP attribute, IPv6 prefixes in MP_REACH_NLRI. The
// path attributes are in ascending type order (RFC 4271, 5: SHOULD).
func BuildUpdate(r Route) (*bgp.BGPMessage, error) {
	if len(r.Prefixes) == 0 {
		return nil, errors.New("bgppeer: an UPDATE without prefixes")
	}
	v6 := r.Prefixes[0].Addr().Is6()
	nlri, err := pathNLRI(r.Prefixes, v6)
	if err != nil {
		return nil, err
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(r.Origin),
		bgp.NewPathAttributeAsPath(r.ASPath),
	}
	if v6 {
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, nlri, r.NextHop)
		if err != nil {
			return nil, fmt.Errorf("bgppeer: MP_REACH_NLRI: %w", err)
		}
		attrs = append(attrs, mp)
		nlri = nil
	} else {
		nh, err := bgp.NewPathAttributeNextHop(r.NextHop)
		if err != nil {
			return nil, fmt.Errorf("bgppeer: NEXT_HOP %v: %w", r.NextHop, err)
		}
		attrs = append(attrs, nh)
	}
	attrs = append(attrs, r.Attrs...)
	slices.SortStableFunc(attrs, func(a, b bgp.PathAttributeInterface) int { return cmp.Compare(a.GetType(), b.GetType()) })
	return bgp.NewBGPUpdateMessage(nil, attrs, nlri), nil
}

// BuildWithdraw builds the UPDATE withdrawing prefixes: the IPv4 ones in
// the Withdrawn Routes field, the IPv6 ones in MP_UNREACH_NLRI.
func BuildWithdraw(prefixes ...netip.Prefix) (*bgp.BGPMessage, error) {
	var v4, v6 []netip.Prefix
	for _, p := range prefixes {
		if p.Addr().Is6() {
			v6 = append(v6, p)
		} else {
			v4 = append(v4, p)
		}
	}
	withdrawn, err := pathNLRI(v4, false)
	if err != nil {
		return nil, err
	}
	var attrs []bgp.PathAttributeInterface
	if len(v6) > 0 {
		nlri, err := pathNLRI(v6, true)
		if err != nil {
			return nil, err
		}
		mp, err := bgp.NewPathAttributeMpUnreachNLRI(bgp.RF_IPv6_UC, nlri)
		if err != nil {
			return nil, fmt.Errorf("bgppeer: MP_UNREACH_NLRI: %w", err)
		}
		attrs = append(attrs, mp)
	}
	return bgp.NewBGPUpdateMessage(withdrawn, attrs, nil), nil
}

func pathNLRI(prefixes []netip.Prefix, v6 bool) ([]bgp.PathNLRI, error) {
	var out []bgp.PathNLRI
	for _, p := range prefixes {
		if !p.IsValid() || p.Addr().Is6() != v6 || p.Addr().Is4In6() {
			return nil, fmt.Errorf("bgppeer: prefix %v: want all of one family (IPv6: %v)", p, v6)
		}
		n, err := bgp.NewIPAddrPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("bgppeer: prefix %v: %w", p, err)
		}
		out = append(out, bgp.PathNLRI{NLRI: n})
	}
	return out, nil
}

// Path is one route the other side announced.
type Path struct {
	Prefix netip.Prefix
	// NextHop is the NEXT_HOP attribute (IPv4) or MP_REACH_NLRI's next
	// hop (IPv6).
	NextHop netip.Addr
	// ASPath is the AS_PATH as GoBGP prints it: "65515", "65010
	// {65020,65021}"; "" when empty or absent.
	ASPath string
	// Attrs are the UPDATE's path attributes but MP_REACH_NLRI and
	// MP_UNREACH_NLRI.
	Attrs []bgp.PathAttributeInterface
}

// Communities returns the path's COMMUNITIES attribute values.
func (p Path) Communities() []uint32 {
	for _, a := range p.Attrs {
		if c, ok := a.(*bgp.PathAttributeCommunities); ok {
			return c.Value
		}
	}
	return nil
}

// DecodeUpdate returns what an UPDATE announces and withdraws, in both
// address families.
func DecodeUpdate(u *bgp.BGPUpdate) (announced []Path, withdrawn []netip.Prefix) {
	for _, w := range u.WithdrawnRoutes {
		if p, ok := prefixOf(w.NLRI); ok {
			withdrawn = append(withdrawn, p)
		}
	}
	var (
		nh    netip.Addr
		mp    *bgp.PathAttributeMpReachNLRI
		attrs []bgp.PathAttributeInterface
		path  string
	)
	for _, a := range u.PathAttributes {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			mp = a
			continue
		case *bgp.PathAttributeMpUnreachNLRI:
			for _, w := range a.Value {
				if p, ok := prefixOf(w.NLRI); ok {
					withdrawn = append(withdrawn, p)
				}
			}
			continue
		case *bgp.PathAttributeNextHop:
			nh = a.Value
		case *bgp.PathAttributeAsPath:
			path = bgp.AsPathString(a)
		}
		attrs = append(attrs, a)
	}
	for _, n := range u.NLRI {
		if p, ok := prefixOf(n.NLRI); ok {
			announced = append(announced, Path{Prefix: p, NextHop: nh, ASPath: path, Attrs: attrs})
		}
	}
	if mp != nil {
		for _, n := range mp.Value {
			if p, ok := prefixOf(n.NLRI); ok {
				announced = append(announced, Path{Prefix: p, NextHop: mp.Nexthop, ASPath: path, Attrs: attrs})
			}
		}
	}
	return announced, withdrawn
}

func prefixOf(n bgp.NLRI) (netip.Prefix, bool) {
	if p, ok := n.(*bgp.IPAddrPrefix); ok {
		return p.Prefix, true
	}
	return netip.Prefix{}, false
}

// Message is one BGP message received, as it came and as GoBGP's parser
// read it.
type Message struct {
	At   time.Time
	Type uint8  // bgp.BGP_MSG_OPEN, _UPDATE, _NOTIFICATION, _KEEPALIVE, _ROUTE_REFRESH
	Raw  []byte // header included
	// Msg is the parsed message; nil when ParseErr is set.
	Msg      *bgp.BGPMessage
	ParseErr error
}

// Update returns the message's UPDATE body, or nil.
func (m Message) Update() *bgp.BGPUpdate {
	if m.Msg == nil {
		return nil
	}
	u, _ := m.Msg.Body.(*bgp.BGPUpdate)
	return u
}

// readMessage reads one message: an error only when the stream is broken
// (closed, or a header that is not BGP's); a body GoBGP cannot parse is
// returned in Message.ParseErr.
func readMessage(r io.Reader) (Message, error) {
	hdr := make([]byte, bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return Message{}, err
	}
	for _, b := range hdr[:16] {
		if b != 0xff {
			return Message{}, errors.New("bgppeer: received a header without the all-ones marker")
		}
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > bgp.BGP_MAX_EXTENDED_MESSAGE_LENGTH {
		return Message{}, fmt.Errorf("bgppeer: received a message of length %d", n)
	}
	raw := make([]byte, n)
	copy(raw, hdr)
	if _, err := io.ReadFull(r, raw[bgp.BGP_HEADER_LENGTH:]); err != nil {
		return Message{}, err
	}
	m := Message{At: time.Now(), Type: hdr[18], Raw: raw}
	m.Msg, m.ParseErr = bgp.ParseBGPMessage(raw)
	if m.ParseErr != nil {
		m.Msg = nil
	}
	return m, nil
}
