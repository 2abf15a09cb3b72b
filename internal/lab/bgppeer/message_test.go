package bgppeer

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func longPath(n int) []uint32 {
	out := []uint32{65010}
	for i := 1; i < n; i++ {
		out = append(out, 64512+uint32(i%1000))
	}
	return out
}

// Every UPDATE BuildUpdate builds goes through GoBGP's parser and
// validator (as a receiving eBGP speaker runs them), serializes again to
// the same bytes, and DecodeUpdate reads back what was put in.
func TestBuildUpdateRoundTrip(t *testing.T) {
	unknown := bgp.NewPathAttributeUnknown(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 0xf0, []byte{1, 2, 3})
	aggr, err := bgp.NewPathAttributeAggregator(uint32(4200000001), addr("192.0.2.7"))
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		r        Route
		wantPath string
		wantType []bgp.BGPAttrType // in order
	}{{
		name:     "ipv4",
		r:        Route{Prefixes: []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.2.0.0/24")}, NextHop: addr("169.254.21.2"), ASPath: Seq(65010, 65020)},
		wantPath: "65010 65020",
		wantType: []bgp.BGPAttrType{bgp.BGP_ATTR_TYPE_ORIGIN, bgp.BGP_ATTR_TYPE_AS_PATH, bgp.BGP_ATTR_TYPE_NEXT_HOP},
	}, {
		name:     "ipv6",
		r:        Route{Prefixes: []netip.Prefix{pfx("fd01:1::/48")}, NextHop: addr("fd00:21::2"), ASPath: Seq(65010)},
		wantPath: "65010",
		wantType: []bgp.BGPAttrType{bgp.BGP_ATTR_TYPE_ORIGIN, bgp.BGP_ATTR_TYPE_AS_PATH, bgp.BGP_ATTR_TYPE_MP_REACH_NLRI},
	}, {
		name: "edge values, sorted by type",
		r: Route{Prefixes: []netip.Prefix{pfx("10.3.0.0/24")}, NextHop: addr("192.0.2.99"),
			ASPath: append(Seq(65010, 4200000001), Set(65020, 65021)), Origin: bgp.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE,
			Attrs: []bgp.PathAttributeInterface{
				unknown,
				bgp.NewPathAttributeLargeCommunities([]*bgp.LargeCommunity{bgp.NewLargeCommunity(65010, 1, 2)}),
				bgp.NewPathAttributeCommunities([]uint32{uint32(bgp.COMMUNITY_NO_EXPORT)}),
				bgp.NewPathAttributeMultiExitDisc(0xffffffff),
				bgp.NewPathAttributeLocalPref(1000),
				bgp.NewPathAttributeAtomicAggregate(),
				aggr,
				bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{
					bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, 65010, 7, true)}),
			}},
		wantPath: "65010 4200000001 {65020,65021}",
		wantType: []bgp.BGPAttrType{bgp.BGP_ATTR_TYPE_ORIGIN, bgp.BGP_ATTR_TYPE_AS_PATH, bgp.BGP_ATTR_TYPE_NEXT_HOP,
			bgp.BGP_ATTR_TYPE_MULTI_EXIT_DISC, bgp.BGP_ATTR_TYPE_LOCAL_PREF, bgp.BGP_ATTR_TYPE_ATOMIC_AGGREGATE,
			bgp.BGP_ATTR_TYPE_AGGREGATOR, bgp.BGP_ATTR_TYPE_COMMUNITIES, bgp.BGP_ATTR_TYPE_EXTENDED_COMMUNITIES,
			bgp.BGP_ATTR_TYPE_LARGE_COMMUNITY, 0xf0},
	}, {
		name:     "300 AS numbers in two segments",
		r:        Route{Prefixes: []netip.Prefix{pfx("10.4.2.0/24")}, NextHop: addr("169.254.21.2"), ASPath: Seq(longPath(300)...)},
		wantPath: joinASNs(longPath(300)),
		wantType: []bgp.BGPAttrType{bgp.BGP_ATTR_TYPE_ORIGIN, bgp.BGP_ATTR_TYPE_AS_PATH, bgp.BGP_ATTR_TYPE_NEXT_HOP},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := BuildUpdate(tc.r)
			require.NoError(t, err)
			raw, err := m.Serialize()
			require.NoError(t, err)
			parsed, err := bgp.ParseBGPMessage(raw)
			require.NoError(t, err)
			u := parsed.Body.(*bgp.BGPUpdate)
			rfs := map[bgp.Family]bgp.BGPAddPathMode{bgp.RF_IPv4_UC: bgp.BGP_ADD_PATH_NONE, bgp.RF_IPv6_UC: bgp.BGP_ADD_PATH_NONE}
			ok, err := bgp.ValidateUpdateMsg(u, rfs, true, false, false)
			require.NoError(t, err)
			require.True(t, ok)
			again, err := parsed.Serialize()
			require.NoError(t, err)
			assert.True(t, bytes.Equal(raw, again), "not byte-exact after a round trip through GoBGP's parser")

			var types []bgp.BGPAttrType
			for _, a := range u.PathAttributes {
				types = append(types, a.GetType())
			}
			assert.Equal(t, tc.wantType, types)
			ann, wd := DecodeUpdate(u)
			assert.Empty(t, wd)
			require.Len(t, ann, len(tc.r.Prefixes))
			for i, p := range ann {
				assert.Equal(t, tc.r.Prefixes[i], p.Prefix)
				assert.Equal(t, tc.r.NextHop, p.NextHop)
				assert.Equal(t, tc.wantPath, p.ASPath)
			}
		})
	}
}

func joinASNs(asns []uint32) string {
	var out []string
	for _, a := range asns {
		out = append(out, strconv.FormatUint(uint64(a), 10))
	}
	return strings.Join(out, " ")
}

func TestBuildUpdateSplitsLongPaths(t *testing.T) {
	segs := Seq(longPath(600)...)
	require.Len(t, segs, 3)
	assert.Equal(t, []int{255, 255, 90}, []int{len(segs[0].GetAS()), len(segs[1].GetAS()), len(segs[2].GetAS())})
	assert.Empty(t, Seq())
}

func TestBuildUpdateRefuses(t *testing.T) {
	_, err := BuildUpdate(Route{})
	assert.Error(t, err, "no prefixes")
	_, err = BuildUpdate(Route{Prefixes: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::/8")}, NextHop: addr("192.0.2.1")})
	assert.Error(t, err, "mixed families")
	_, err = BuildUpdate(Route{Prefixes: []netip.Prefix{pfx("10.0.0.0/8")}})
	assert.Error(t, err, "IPv4 without a NEXT_HOP")
}

func TestBuildWithdraw(t *testing.T) {
	m, err := BuildWithdraw(pfx("10.1.0.0/16"), pfx("fd01:1::/48"), pfx("10.2.0.0/24"))
	require.NoError(t, err)
	raw, err := m.Serialize()
	require.NoError(t, err)
	parsed, err := bgp.ParseBGPMessage(raw)
	require.NoError(t, err)
	ann, wd := DecodeUpdate(parsed.Body.(*bgp.BGPUpdate))
	assert.Empty(t, ann)
	slices.SortFunc(wd, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	assert.Equal(t, []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.2.0.0/24"), pfx("fd01:1::/48")}, wd)
}

func TestReadMessage(t *testing.T) {
	m, err := BuildUpdate(Route{Prefixes: []netip.Prefix{pfx("10.1.0.0/16")}, NextHop: addr("192.0.2.1"), ASPath: Seq(65010)})
	require.NoError(t, err)
	raw, err := m.Serialize()
	require.NoError(t, err)
	ka, err := bgp.NewBGPKeepAliveMessage().Serialize()
	require.NoError(t, err)
	r := bytes.NewReader(append(slices.Clone(raw), ka...))
	got, err := readMessage(r)
	require.NoError(t, err)
	assert.Equal(t, uint8(bgp.BGP_MSG_UPDATE), got.Type)
	assert.Equal(t, raw, got.Raw)
	require.NotNil(t, got.Update())
	got, err = readMessage(r)
	require.NoError(t, err)
	assert.Equal(t, uint8(bgp.BGP_MSG_KEEPALIVE), got.Type)
	assert.Nil(t, got.Update())
	_, err = readMessage(r)
	assert.Error(t, err, "end of stream")

	bad := slices.Clone(raw)
	bad[0] = 0
	_, err = readMessage(bytes.NewReader(bad))
	assert.ErrorContains(t, err, "marker")

	// A body GoBGP cannot parse is recorded, not fatal: an ORIGIN of 4
	// bytes.
	garbled := slices.Clone(raw)
	i := bytes.Index(garbled, []byte{0x40, 0x01, 0x01})
	require.Positive(t, i)
	garbled[i+2] = 4
	got, err = readMessage(bytes.NewReader(garbled))
	require.NoError(t, err)
	assert.Error(t, got.ParseErr)
	assert.Nil(t, got.Msg)
}

func TestConfigHidesKey(t *testing.T) {
	c := Config{ASN: 65010, Password: "sekrit-md5", Remote: netip.MustParseAddrPort("169.254.21.1:179")}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, c)
		assert.NotContains(t, out, "sekrit", f)
		assert.Contains(t, out, "redacted", f)
	}
}
