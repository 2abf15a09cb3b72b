package route

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nhKernel is what the installer asks of the kernel when it routes through nexthop objects;
// tests replace it with a fake.
type nhKernel interface {
	// objects returns every nexthop object of the namespace, of every protocol. Like a
	// route dump, it may return them with an error wrapping netlink.ErrDumpInterrupted.
	objects() ([]nhObject, error)
	// newObject creates o, failing with EEXIST if its id is taken, or with replace,
	// replaces the object with o's id (routes through it stay and follow it).
	newObject(o nhObject, replace bool) error
	// delObject deletes an object; the kernel deletes with it every route through it only
	// and removes it from its groups (a group left empty goes too). ENOENT if gone.
	delObject(id uint32) error
	// routes appends to into the routes of family in table tagged with protocol.
	routes(family, table, protocol int, into []kroute) ([]kroute, error)
	// apply makes the route changes in order, in as few round trips as it can, and
	// returns one answer per change (nil: done).
	apply(table, protocol int, changes []change) []error
	// device returns the index of the device on which gw is directly reachable (a route
	// lookup, as `ip route get`).
	device(gw netip.Addr) (int, error)
	close()
}

const (
	rtaNHID = 30 // RTA_NH_ID (Linux 5.3): the nexthop object of a route; not in x/sys v0.48
	// Not in x/sys v0.48 either: NHA_FDB (Linux 5.8), NHA_RES_GROUP (5.13).
	nhaFDB      = 11
	nhaResGroup = 12
	// nhGroupEntry is the size of struct nexthop_grp: id, weight, weight_high (6.12), pad.
	nhGroupEntry = 8
)

// nhObject is a kernel nexthop object, as the installer reads and writes it.
type nhObject struct {
	id     uint32
	proto  int
	family int        // AF_INET or AF_INET6 for a single nexthop; AF_UNSPEC for a group
	gw     netip.Addr // a single nexthop's gateway; invalid for a blackhole or a device only
	oif    int
	// group holds a group's members, each of weight 1; nil for a single nexthop.
	group     []uint32
	blackhole bool
	// odd is set for what the installer never creates: weights other than 1, a resilient
	// group, an encapsulation, an FDB nexthop.
	odd bool
}

func (o nhObject) isGroup() bool { return o.group != nil }

// kroute is one route of the table as read, with its nexthop object if it has one.
type kroute struct {
	entry
	table, proto int
	nhid         uint32 // 0: the route holds its next hops itself
}

// changeOp is a route change.
type changeOp int

const (
	opAdd changeOp = iota
	opReplace
	opDel
)

func (op changeOp) String() string {
	return [...]string{"add", "replace", "delete"}[op]
}

// change is one route change: add or replace the route to r.Prefix through object nhid, or
// delete the route with r's key (prefix, tos, metric, type), and only if it goes through
// object nhid when nhid is set.
type change struct {
	op   changeOp
	r    entry
	nhid uint32
}

// nlKernel is nhKernel on a netlink socket of its own.
type nlKernel struct{ c *nlConn }

func newNLKernel(ns netns.NsHandle) (*nlKernel, error) {
	c, err := dialNetlink(ns)
	if err != nil {
		return nil, err
	}
	return &nlKernel{c: c}, nil
}

func (k *nlKernel) close() { k.c.close() }

func (k *nlKernel) objects() ([]nhObject, error) {
	var out []nhObject
	err := k.c.dump(nlRequest{typ: unix.RTM_GETNEXTHOP, body: nhHeader(unix.AF_UNSPEC, 0)},
		func(typ uint16, data []byte) error {
			if typ != unix.RTM_NEWNEXTHOP {
				return nil
			}
			o, err := parseNexthop(data)
			if err != nil {
				return err
			}
			out = append(out, o)
			return nil
		})
	return out, err
}

func (k *nlKernel) newObject(o nhObject, replace bool) error {
	return k.c.do(objectRequest(o, replace), nil)
}

func (k *nlKernel) delObject(id uint32) error {
	b := appendU32Attr(nhHeader(unix.AF_UNSPEC, 0), unix.NHA_ID, id)
	return k.c.do(nlRequest{typ: unix.RTM_DELNEXTHOP, body: b}, nil)
}

func (k *nlKernel) routes(family, table, protocol int, into []kroute) ([]kroute, error) {
	out := into
	err := k.c.dump(nlRequest{typ: unix.RTM_GETROUTE, body: routeHeader(family, table, protocol, true)},
		func(typ uint16, data []byte) error {
			if typ != unix.RTM_NEWROUTE {
				return nil
			}
			r, err := parseKernelRoute(data)
			if err != nil {
				return err
			}
			// Kernels without strict dump checking send every route: filter here too.
			if r.table == table && r.proto == protocol && r.family == family {
				out = append(out, r)
			}
			return nil
		})
	// A table that holds no route at all does not exist yet: the strict dump says ENOENT.
	if errors.Is(err, unix.ENOENT) {
		return into, nil
	}
	return out, err
}

func (k *nlKernel) apply(table, protocol int, changes []change) []error {
	reqs := make([]nlRequest, len(changes))
	for n, c := range changes {
		reqs[n] = routeRequest(table, protocol, c)
	}
	return k.c.batch(reqs)
}

func (k *nlKernel) device(gw netip.Addr) (int, error) {
	family := unix.AF_INET
	if gw.Is6() {
		family = unix.AF_INET6
	}
	b := []byte{byte(family), byte(gw.BitLen()), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = appendAttr(b, unix.RTA_DST, gw.AsSlice())
	var got *kroute
	var oif int
	err := k.c.do(nlRequest{typ: unix.RTM_GETROUTE, body: b}, func(typ uint16, data []byte) error {
		if typ != unix.RTM_NEWROUTE {
			return nil
		}
		r, err := parseKernelRoute(data)
		if err != nil {
			return err
		}
		got = &r
		return walkAttrs(data[unix.SizeofRtMsg:], func(t uint16, v []byte) error {
			if t == unix.RTA_OIF && len(v) == 4 {
				oif = int(binary.NativeEndian.Uint32(v))
			}
			return nil
		})
	})
	switch {
	case err != nil:
		return 0, err
	case got == nil || oif == 0:
		return 0, errors.New("the kernel found no route to it")
	case got.typ == unix.RTN_LOCAL:
		return 0, errors.New("it is an address of this host")
	case got.typ != rtnUnicast:
		return 0, fmt.Errorf("the kernel routes it as type %d, not unicast", got.typ)
	case len(got.NextHops) > 0:
		return 0, fmt.Errorf("it is not on a directly connected subnet (the kernel routes it via %s)", hopsString(got.NextHops))
	}
	return oif, nil
}

func nhHeader(family, proto int) []byte {
	return []byte{byte(family), 0, byte(proto), 0, 0, 0, 0, 0} // struct nhmsg
}

// objectRequest is the RTM_NEWNEXTHOP creating (or replacing) o.
func objectRequest(o nhObject, replace bool) nlRequest {
	flags := uint16(unix.NLM_F_CREATE | unix.NLM_F_EXCL)
	if replace {
		flags = unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	}
	family := o.family
	if o.isGroup() {
		family = unix.AF_UNSPEC
	}
	b := appendU32Attr(nhHeader(family, o.proto), unix.NHA_ID, o.id)
	switch {
	case o.blackhole:
		b = appendAttr(b, unix.NHA_BLACKHOLE, nil)
	case o.isGroup():
		g := make([]byte, 0, nhGroupEntry*len(o.group))
		for _, id := range o.group {
			g = binary.NativeEndian.AppendUint32(g, id)
			g = append(g, 0, 0, 0, 0) // weight 0 means 1
		}
		b = appendAttr(b, unix.NHA_GROUP, g)
		b = appendAttr(b, unix.NHA_GROUP_TYPE, binary.NativeEndian.AppendUint16(nil, 0)) // multipath
	default:
		b = appendU32Attr(b, unix.NHA_OIF, uint32(o.oif))
		b = appendAttr(b, unix.NHA_GATEWAY, o.gw.AsSlice())
	}
	return nlRequest{typ: unix.RTM_NEWNEXTHOP, flags: flags, body: b}
}

// parseNexthop reads an RTM_NEWNEXTHOP message.
func parseNexthop(data []byte) (nhObject, error) {
	if len(data) < 8 {
		return nhObject{}, errors.New("short nexthop message")
	}
	o := nhObject{family: int(data[0]), proto: int(data[2])}
	err := walkAttrs(data[8:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.NHA_ID:
			if len(v) != 4 {
				return errors.New("bad nexthop id")
			}
			o.id = binary.NativeEndian.Uint32(v)
		case unix.NHA_GROUP:
			if len(v)%nhGroupEntry != 0 {
				return errors.New("bad nexthop group")
			}
			o.group = make([]uint32, 0, len(v)/nhGroupEntry)
			for ; len(v) > 0; v = v[nhGroupEntry:] {
				o.group = append(o.group, binary.NativeEndian.Uint32(v))
				if v[4] != 0 || v[5] != 0 { // weight, weight_high: 0 is weight 1
					o.odd = true
				}
			}
		case unix.NHA_GROUP_TYPE:
			if len(v) < 2 || binary.NativeEndian.Uint16(v) != 0 {
				o.odd = true
			}
		case unix.NHA_BLACKHOLE:
			o.blackhole = true
		case unix.NHA_OIF:
			if len(v) == 4 {
				o.oif = int(binary.NativeEndian.Uint32(v))
			}
		case unix.NHA_GATEWAY:
			a, ok := netip.AddrFromSlice(v)
			if !ok {
				return errors.New("bad nexthop gateway")
			}
			o.gw = a
		case unix.NHA_ENCAP, unix.NHA_ENCAP_TYPE, nhaFDB, nhaResGroup:
			o.odd = true
		}
		return nil
	})
	if err == nil && o.id == 0 {
		err = errors.New("nexthop without id")
	}
	return o, err
}

// routeHeader is a struct rtmsg for a dump (filtering on table and protocol) or a change.
func routeHeader(family, table, protocol int, dump bool) []byte {
	t := byte(unix.RT_TABLE_UNSPEC)
	if table < 256 {
		t = byte(table)
	}
	b := []byte{byte(family), 0, 0, 0, t, byte(protocol), 0, 0, 0, 0, 0, 0}
	if dump {
		return appendU32Attr(b, unix.RTA_TABLE, uint32(table))
	}
	return b
}

// routeRequest is the RTM_NEWROUTE or RTM_DELROUTE making c.
func routeRequest(table, protocol int, c change) nlRequest {
	b := routeHeader(c.r.family, table, protocol, false)
	b[1] = byte(c.r.Prefix.Bits())
	b = appendU32Attr(b, unix.RTA_TABLE, uint32(table))
	b = appendAttr(b, unix.RTA_DST, c.r.Prefix.Addr().AsSlice())
	if c.op == opDel {
		b[3], b[6], b[7] = byte(c.r.tos), unix.RT_SCOPE_NOWHERE, byte(c.r.typ)
		if c.r.priority != 0 {
			b = appendU32Attr(b, unix.RTA_PRIORITY, uint32(c.r.priority))
		}
		if c.nhid != 0 { // only the route through that object
			b = appendU32Attr(b, rtaNHID, c.nhid)
		}
		return nlRequest{typ: unix.RTM_DELROUTE, body: b}
	}
	b[6], b[7] = unix.RT_SCOPE_UNIVERSE, rtnUnicast
	b = appendU32Attr(b, rtaNHID, c.nhid)
	flags := uint16(unix.NLM_F_CREATE | unix.NLM_F_EXCL)
	if c.op == opReplace {
		flags = unix.NLM_F_CREATE | unix.NLM_F_REPLACE
	}
	return nlRequest{typ: unix.RTM_NEWROUTE, flags: flags, body: b}
}

// parseKernelRoute reads an RTM_NEWROUTE message. A route through a nexthop object gets its
// next hops from the object (the kernel's copy of them in the message, sent in its
// compatibility mode, is ignored).
func parseKernelRoute(data []byte) (kroute, error) {
	if len(data) < unix.SizeofRtMsg {
		return kroute{}, errors.New("short route message")
	}
	family := int(data[0])
	if family != netlink.FAMILY_V4 && family != netlink.FAMILY_V6 {
		return kroute{}, fmt.Errorf("unexpected address family %d", family)
	}
	r := kroute{table: int(data[4]), proto: int(data[5])}
	r.family, r.tos, r.typ = family, int(data[3]), int(data[7])
	dstLen := int(data[1])
	// own: something of the route itself the installer never sets (a source prefix, a
	// preferred source, an encapsulation...); odd: something of its next hops.
	own, odd := data[2] != 0, false
	var dst netip.Addr
	var hops []netip.Addr
	addHop := func(v []byte) {
		a, ok := netip.AddrFromSlice(v)
		if !ok || (family == netlink.FAMILY_V4) != (len(v) == 4) {
			odd = true
			return
		}
		hops = append(hops, a)
	}
	err := walkAttrs(data[unix.SizeofRtMsg:], func(typ uint16, v []byte) error {
		switch typ {
		case unix.RTA_TABLE:
			if len(v) == 4 {
				r.table = int(binary.NativeEndian.Uint32(v))
			}
		case unix.RTA_DST:
			a, ok := netip.AddrFromSlice(v)
			if !ok {
				return errors.New("bad route destination")
			}
			dst = a
		case unix.RTA_PRIORITY:
			if len(v) == 4 {
				r.priority = int(binary.NativeEndian.Uint32(v))
			}
		case rtaNHID:
			if len(v) == 4 {
				r.nhid = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_GATEWAY:
			addHop(v)
		case unix.RTA_VIA:
			odd = true
			if len(v) > 2 {
				addHop(v[2:])
			}
		case unix.RTA_MULTIPATH:
			return walkMultipath(v, addHop, &odd)
		case unix.RTA_PREFSRC, unix.RTA_SRC, unix.RTA_ENCAP, unix.RTA_NEWDST:
			own = true
		}
		return nil
	})
	if err != nil {
		return kroute{}, err
	}
	if !dst.IsValid() { // the default route has no destination attribute
		dst = netip.IPv4Unspecified()
		if family == netlink.FAMILY_V6 {
			dst = netip.IPv6Unspecified()
		}
	}
	if (dst.Is4() != (family == netlink.FAMILY_V4)) || dstLen > dst.BitLen() {
		return kroute{}, fmt.Errorf("bad destination %s/%d", dst, dstLen)
	}
	r.Prefix = netip.PrefixFrom(dst, dstLen)
	r.extra = own
	if r.nhid == 0 {
		slices.SortFunc(hops, netip.Addr.Compare)
		r.NextHops = hops
		r.extra = own || odd || len(hops) == 0
	}
	return r, nil
}

// walkMultipath reads the hops of RTA_MULTIPATH (struct rtnexthop, then its attributes).
func walkMultipath(b []byte, addHop func([]byte), odd *bool) error {
	for len(b) >= unix.SizeofRtNexthop {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < unix.SizeofRtNexthop || l > len(b) {
			return errors.New("malformed multipath attribute")
		}
		gw := false
		err := walkAttrs(b[unix.SizeofRtNexthop:l], func(typ uint16, v []byte) error {
			switch typ {
			case unix.RTA_GATEWAY:
				gw = true
				addHop(v)
			case unix.RTA_VIA:
				gw, *odd = true, true
				if len(v) > 2 {
					addHop(v[2:])
				}
			case unix.RTA_ENCAP, unix.RTA_NEWDST:
				*odd = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !gw {
			*odd = true // a hop through a device only
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return nil
}
