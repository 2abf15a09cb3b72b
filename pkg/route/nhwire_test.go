package route

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The messages the installer writes are the ones the kernel sends back in its dumps (same
// header, same attributes), so each object reads back as written.
func TestObjectMessages(t *testing.T) {
	for _, o := range []nhObject{
		{id: 3355443201, proto: testProto, family: unix.AF_INET, gw: netip.MustParseAddr(gwA), oif: 7},
		{id: 3355443202, proto: testProto, family: unix.AF_INET6, gw: netip.MustParseAddr("2001:db8::2"), oif: 7},
		{id: 3355443203, proto: testProto, family: unix.AF_UNSPEC, group: []uint32{3355443201, 5}},
		{id: 4, proto: testProto, family: unix.AF_INET, blackhole: true},
	} {
		for _, replace := range []bool{false, true} {
			r := objectRequest(o, replace)
			assert.Equal(t, uint16(unix.RTM_NEWNEXTHOP), r.typ)
			want := uint16(unix.NLM_F_CREATE | unix.NLM_F_EXCL)
			if replace {
				want = unix.NLM_F_CREATE | unix.NLM_F_REPLACE
			}
			assert.Equal(t, want, r.flags)
			got, err := parseNexthop(r.body)
			require.NoError(t, err)
			assert.Equal(t, o, got)
		}
	}

	// What the installer never makes reads as odd.
	group := func(entry []byte, attrs ...[]byte) []byte {
		b := appendU32Attr(nhHeader(unix.AF_UNSPEC, testProto), unix.NHA_ID, 9)
		b = appendAttr(b, unix.NHA_GROUP, entry)
		for _, a := range attrs {
			b = append(b, a...)
		}
		return b
	}
	entry := func(weight, high byte) []byte {
		return append(binary.NativeEndian.AppendUint32(nil, 5), weight, high, 0, 0)
	}
	for name, b := range map[string][]byte{
		"weight":      group(entry(3, 0)),
		"weight_high": group(entry(0, 1)),
		"resilient":   group(entry(0, 0), appendAttr(nil, unix.NHA_GROUP_TYPE, []byte{1, 0})),
		"res params":  group(entry(0, 0), appendAttr(nil, nhaResGroup, nil)),
		"encap":       appendAttr(appendU32Attr(nhHeader(unix.AF_INET, testProto), unix.NHA_ID, 9), unix.NHA_ENCAP_TYPE, []byte{1, 0}),
		"fdb":         appendAttr(appendU32Attr(nhHeader(unix.AF_INET, testProto), unix.NHA_ID, 9), nhaFDB, nil),
	} {
		o, err := parseNexthop(b)
		require.NoError(t, err, name)
		assert.True(t, o.odd, name)
	}
	for name, b := range map[string][]byte{
		"short":    {2, 0, 200},
		"no id":    nhHeader(unix.AF_INET, testProto),
		"bad size": appendAttr(appendU32Attr(nhHeader(unix.AF_UNSPEC, testProto), unix.NHA_ID, 9), unix.NHA_GROUP, []byte{1, 2, 3}),
		"bad attr": append(nhHeader(unix.AF_INET, testProto), 40, 0, 1, 0),
	} {
		_, err := parseNexthop(b)
		assert.Error(t, err, name)
	}
}

func TestRouteMessages(t *testing.T) {
	e := primaryEntry(parseRoute(t, "198.51.100.0/24 via 192.0.2.2"))
	add := routeRequest(1000, testProto, change{op: opAdd, r: e, nhid: 42})
	assert.Equal(t, uint16(unix.RTM_NEWROUTE), add.typ)
	assert.Equal(t, uint16(unix.NLM_F_CREATE|unix.NLM_F_EXCL), add.flags)
	assert.Equal(t, []byte{unix.AF_INET, 24, 0, 0, unix.RT_TABLE_UNSPEC, testProto, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST}, add.body[:8])
	r, err := parseKernelRoute(add.body)
	require.NoError(t, err)
	assert.Equal(t, kroute{entry: entry{Route: Route{Prefix: e.Prefix}, family: unix.AF_INET, typ: rtnUnicast}, table: 1000, proto: testProto, nhid: 42}, r)
	replace := routeRequest(testTable, testProto, change{op: opReplace, r: e, nhid: 42})
	assert.Equal(t, uint16(unix.NLM_F_CREATE|unix.NLM_F_REPLACE), replace.flags)
	assert.Equal(t, byte(testTable), replace.body[4])

	// A delete names the route's key, not its next hops.
	d := primaryEntry(parseRoute(t, "2001:db8:1::/48"))
	d.priority = 20
	del := routeRequest(testTable, testProto, change{op: opDel, r: d})
	assert.Equal(t, uint16(unix.RTM_DELROUTE), del.typ)
	assert.Equal(t, []byte{unix.AF_INET6, 48, 0, 0, testTable, testProto, unix.RT_SCOPE_NOWHERE, unix.RTN_UNICAST}, del.body[:8])
	r, err = parseKernelRoute(del.body)
	require.NoError(t, err)
	assert.Equal(t, 20, r.priority)
	assert.Zero(t, r.nhid)
	assert.True(t, r.extra, "no next hop")

	// The kernel's form of routes (compatibility mode copies an object's hops).
	msg := func(family, dstLen byte, attrs ...[]byte) []byte {
		b := []byte{family, dstLen, 0, 0, testTable, testProto, 0, unix.RTN_UNICAST, 0, 0, 0, 0}
		for _, a := range attrs {
			b = append(b, a...)
		}
		return b
	}
	v4 := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	hop := func(attrs ...[]byte) []byte {
		var body []byte
		for _, a := range attrs {
			body = append(body, a...)
		}
		b := binary.NativeEndian.AppendUint16(nil, uint16(unix.SizeofRtNexthop+len(body)))
		return append(append(b, 0, 0, 0, 0, 0, 0), body...)
	}
	for name, c := range map[string]struct {
		msg   []byte
		want  string
		nhid  uint32
		extra bool
	}{
		"through an object": {msg: msg(unix.AF_INET, 24, appendAttr(nil, unix.RTA_DST, v4("198.51.100.0")), appendU32Attr(nil, rtaNHID, 42),
			appendAttr(nil, unix.RTA_GATEWAY, v4(gwA)), appendU32Attr(nil, unix.RTA_OIF, 3)), want: "198.51.100.0/24", nhid: 42},
		"default, multipath": {msg: msg(unix.AF_INET, 0, appendAttr(nil, unix.RTA_MULTIPATH, append(hop(appendAttr(nil, unix.RTA_GATEWAY, v4(gwB))),
			hop(appendAttr(nil, unix.RTA_GATEWAY, v4(gwA)))...))), want: "0.0.0.0/0 via 192.0.2.2,192.0.2.3"},
		"device hop": {msg: msg(unix.AF_INET, 0, appendAttr(nil, unix.RTA_MULTIPATH, append(hop(appendAttr(nil, unix.RTA_GATEWAY, v4(gwB))), hop()...))),
			want: "0.0.0.0/0 via 192.0.2.3", extra: true},
		"preferred source": {msg: msg(unix.AF_INET, 24, appendAttr(nil, unix.RTA_DST, v4("198.51.100.0")), appendU32Attr(nil, rtaNHID, 42),
			appendAttr(nil, unix.RTA_PREFSRC, v4("192.0.2.1"))), want: "198.51.100.0/24", nhid: 42, extra: true},
		"v6 gateway of a v4 route": {msg: msg(unix.AF_INET, 24, appendAttr(nil, unix.RTA_DST, v4("198.51.100.0")),
			appendAttr(nil, unix.RTA_VIA, append([]byte{unix.AF_INET6, 0}, netip.MustParseAddr("2001:db8::2").AsSlice()...))), want: "198.51.100.0/24", extra: true},
		"IPv6 metric": {msg: msg(unix.AF_INET6, 48, appendAttr(nil, unix.RTA_DST, netip.MustParseAddr("2001:db8:1::").AsSlice()),
			appendU32Attr(nil, unix.RTA_PRIORITY, 1024), appendAttr(nil, unix.RTA_GATEWAY, netip.MustParseAddr("2001:db8::2").AsSlice())),
			want: "2001:db8:1::/48 via 2001:db8::2"},
	} {
		r, err := parseKernelRoute(c.msg)
		require.NoError(t, err, name)
		assert.Equal(t, c.want, r.Route.String(), name)
		assert.Equal(t, c.nhid, r.nhid, name)
		assert.Equal(t, c.extra, r.extra, name)
	}
	for name, b := range map[string][]byte{
		"short":       {2, 24},
		"family":      msg(unix.AF_BRIDGE, 0),
		"mask":        msg(unix.AF_INET, 33, appendAttr(nil, unix.RTA_DST, v4("198.51.100.0"))),
		"dst family":  msg(unix.AF_INET, 24, appendAttr(nil, unix.RTA_DST, netip.MustParseAddr("2001:db8::").AsSlice())),
		"bad hop len": msg(unix.AF_INET, 0, appendAttr(nil, unix.RTA_MULTIPATH, []byte{200, 0, 0, 0, 0, 0, 0, 0})),
	} {
		_, err := parseKernelRoute(b)
		assert.Error(t, err, name)
	}
}

func TestParseError(t *testing.T) {
	hdr := func(flags uint16) unix.NlMsghdr { return unix.NlMsghdr{Type: unix.NLMSG_ERROR, Flags: flags} }
	code := func(errno syscall.Errno) []byte { return binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno))) }
	request := make([]byte, unix.NLMSG_HDRLEN) // the request's header, capped
	binary.NativeEndian.PutUint32(request, 64)

	assert.NoError(t, parseError(hdr(0), code(0)))
	err := parseError(hdr(0), append(code(syscall.EEXIST), request...))
	assert.ErrorIs(t, err, syscall.EEXIST)
	assert.Equal(t, "file exists", err.Error())

	b := append(append(code(syscall.EINVAL), request...), appendAttr(nil, nlmsgerrAttrMsg, []byte("Nexthop has invalid gateway\x00"))...)
	err = parseError(hdr(unix.NLM_F_CAPPED|unix.NLM_F_ACK_TLVS), b)
	assert.ErrorIs(t, err, syscall.EINVAL)
	assert.Equal(t, "invalid argument: Nexthop has invalid gateway", err.Error())

	// Not capped: the whole request comes back before the attributes.
	whole := make([]byte, 24)
	binary.NativeEndian.PutUint32(whole, 24)
	b = append(append(code(syscall.ENETDOWN), whole...), appendAttr(nil, nlmsgerrAttrMsg, []byte("Carrier for nexthop device is down\x00"))...)
	err = parseError(hdr(unix.NLM_F_ACK_TLVS), b)
	assert.Equal(t, "network is down: Carrier for nexthop device is down", err.Error())

	assert.Error(t, parseError(hdr(0), []byte{1}))
}

func TestMessageFraming(t *testing.T) {
	b := appendMsg(nil, nlRequest{typ: unix.RTM_GETNEXTHOP, flags: unix.NLM_F_DUMP, body: []byte{1, 2, 3}}, 7, false)
	assert.Len(t, b, unix.NLMSG_HDRLEN+4, "padded to 4 bytes")
	assert.Equal(t, uint32(unix.NLMSG_HDRLEN+3), binary.NativeEndian.Uint32(b))
	assert.Equal(t, uint16(unix.RTM_GETNEXTHOP), binary.NativeEndian.Uint16(b[4:]))
	assert.Equal(t, uint16(unix.NLM_F_REQUEST|unix.NLM_F_DUMP), binary.NativeEndian.Uint16(b[6:]))
	assert.Equal(t, uint32(7), binary.NativeEndian.Uint32(b[8:]))
	b = appendMsg(b, nlRequest{typ: unix.RTM_NEWROUTE}, 8, true)
	assert.Equal(t, uint16(unix.NLM_F_REQUEST|unix.NLM_F_ACK), binary.NativeEndian.Uint16(b[unix.NLMSG_HDRLEN+4+6:]))

	var seen []uint16
	require.NoError(t, walkAttrs(appendAttr(appendU32Attr(nil, 1, 5), 2|unix.NLA_F_NESTED, []byte{9}), func(typ uint16, v []byte) error {
		seen = append(seen, typ)
		return nil
	}))
	assert.Equal(t, []uint16{1, 2}, seen)
	assert.Error(t, walkAttrs([]byte{3, 0, 1, 0}, func(uint16, []byte) error { return nil }))
}
