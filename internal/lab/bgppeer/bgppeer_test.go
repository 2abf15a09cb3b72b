package bgppeer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// waitFor polls cond every 20 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		<-tick.C
	}
}

// Two speakers over a loopback TCP connection: the OPEN exchange, an
// announcement and a withdrawal in each family, and Close's NOTIFICATION.
func TestSessionLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	type res struct {
		s   *Speaker
		err error
	}
	srv := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- res{err: err}
			return
		}
		s, err := Open(ctx, c, Config{ASN: 65515, RouterID: addr("192.0.2.1"), HoldTime: 9 * time.Second})
		srv <- res{s, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	a, err := Open(ctx, c, Config{ASN: 4200000001, RouterID: addr("192.0.2.2")})
	require.NoError(t, err)
	defer a.Close()
	r := <-srv
	require.NoError(t, r.err)
	b := r.s
	defer b.Close()

	assert.Equal(t, 9*time.Second, a.Hold, "the smaller hold time")
	assert.Equal(t, 9*time.Second, b.Hold)
	assert.Equal(t, uint16(bgp.AS_TRANS), b.PeerOpen.MyAS, "a 4-octet AS goes in the capability")

	require.NoError(t, a.Announce(Route{Prefixes: []netip.Prefix{pfx("10.1.0.0/16")}, NextHop: addr("192.0.2.99"),
		ASPath: Seq(4200000001, 65020), Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeCommunities([]uint32{0xffffff01})}}))
	require.NoError(t, a.Announce(Route{Prefixes: []netip.Prefix{pfx("fd01:1::/48")}, NextHop: addr("fd00:21::2"), ASPath: Seq(4200000001)}))
	waitFor(t, 5*time.Second, "both routes at b", func() bool { return len(b.RIB()) == 2 })
	got := b.RIB()[pfx("10.1.0.0/16")]
	assert.Equal(t, "4200000001 65020", got.ASPath)
	assert.Equal(t, addr("192.0.2.99"), got.NextHop)
	assert.Equal(t, []uint32{0xffffff01}, got.Communities())
	assert.Equal(t, addr("fd00:21::2"), b.RIB()[pfx("fd01:1::/48")].NextHop)

	require.NoError(t, a.Withdraw(pfx("10.1.0.0/16"), pfx("fd01:1::/48")))
	waitFor(t, 5*time.Second, "withdrawn at b", func() bool { return len(b.RIB()) == 0 })
	assert.Equal(t, []netip.Prefix{pfx("10.1.0.0/16"), pfx("fd01:1::/48")}, b.Ever(), "Ever keeps the withdrawn")

	require.NoError(t, a.Close())
	select {
	case <-b.Done():
	case <-ctx.Done():
		t.Fatal("b did not see the session end")
	}
	n, ok := b.Notification()
	require.True(t, ok)
	assert.Equal(t, uint8(bgp.BGP_ERROR_CEASE), n.ErrorCode)
	assert.Equal(t, uint8(bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN), n.ErrorSubcode)
	assert.ErrorContains(t, b.Err(), "NOTIFICATION 6/2")
	assert.NoError(t, a.Close(), "twice")
}

// Every packet leaves with TTL 255 (GTSM): a listener that requires it
// (IP_MINTTL 255, checked on the SYN) accepts us, and not at TTL 254.
func TestTTL(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MINTTL, 255) })
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	remote := netip.MustParseAddrPort(ln.Addr().String())
	for ttl, ok := range map[int]bool{0: true, 255: true, 254: false} {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		c, err := dial(ctx, Config{Remote: remote, TTL: ttl}.withDefaults())
		cancel()
		if ok {
			if assert.NoError(t, err, "TTL %d", ttl) {
				_ = c.Close()
			}
		} else {
			assert.Error(t, err, "TTL %d", ttl)
		}
	}
}

// gobgpServer runs GoBGP on 127.0.0.1 with one passive session to
// 127.0.0.2 (AS 65010): GTSM, TCP-MD5, IPv4 and IPv6 unicast, hold time 3 s.
func gobgpServer(t *testing.T, password string) (*server.BgpServer, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	s := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), nil))
	go s.Serve()
	t.Cleanup(s.Stop)
	ctx := context.Background()
	require.NoError(t, s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65515, RouterId: "192.0.2.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}))
	fam := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}
	}
	require.NoError(t, s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:        &api.PeerConf{NeighborAddress: "127.0.0.2", PeerAsn: 65010, AuthPassword: password},
		Transport:   &api.Transport{PassiveMode: true, LocalAddress: "127.0.0.1"},
		Timers:      &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
		TtlSecurity: &api.TtlSecurity{Enabled: true, TtlMin: 255},
		AfiSafis:    []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
	}}))
	return s, port
}

func gobgpPaths(t *testing.T, s *server.BgpServer, fam bgp.Family) map[netip.Prefix]*apiutil.Path {
	out := map[netip.Prefix]*apiutil.Path{}
	err := s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
		func(n bgp.NLRI, paths []*apiutil.Path) {
			if p, ok := prefixOf(n); ok && len(paths) > 0 {
				out[p] = paths[0]
			}
		})
	require.NoError(t, err)
	return out
}

func gobgpEstablished(s *server.BgpServer) bool {
	up := false
	_ = s.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		up = p.State != nil && p.State.SessionState == api.PeerState_SESSION_STATE_ESTABLISHED
	})
	return up
}

// Against GoBGP itself: the session comes up only with the right TCP-MD5
// key, stays up past the hold time on our KEEPALIVEs, GoBGP
// installs what we send with every attribute, and we record what it sends.
func TestAgainstGoBGP(t *testing.T) {
	const key = "bgppeer-test-key"
	s, port := gobgpServer(t, key)
	cfg := Config{Local: addr("127.0.0.2"), Remote: netip.AddrPortFrom(addr("127.0.0.1"), uint16(port)),
		ASN: 65010, RouterID: addr("192.0.2.2"), Password: key}

	// A SYN without the right key never reaches GoBGP.
	for name, bad := range map[string]Config{
		"no TCP-MD5 key": func(c Config) Config { c.Password = ""; return c }(cfg),
		"wrong key":      func(c Config) Config { c.Password = "not-the-key"; return c }(cfg),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond) // a refused SYN is sent again after 1 s
		sp, err := Dial(ctx, bad)
		cancel()
		if !assert.Error(t, err, name) {
			_ = sp.Close()
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// GoBGP originates one route: we must receive it.
	nlri, err := bgp.NewIPAddrPrefix(pfx("10.10.0.0/16"))
	require.NoError(t, err)
	nh, err := bgp.NewPathAttributeNextHop(addr("127.0.0.1"))
	require.NoError(t, err)
	_, err = s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{Family: bgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), nh}}}})
	require.NoError(t, err)

	sp, err := Dial(ctx, cfg)
	require.NoError(t, err)
	defer sp.Close()
	established := time.Now()
	assert.Equal(t, 3*time.Second, sp.Hold)

	unknown := bgp.NewPathAttributeUnknown(bgp.BGP_ATTR_FLAG_OPTIONAL|bgp.BGP_ATTR_FLAG_TRANSITIVE, 0xf0, []byte{0xde, 0xad})
	require.NoError(t, sp.Announce(Route{Prefixes: []netip.Prefix{pfx("10.1.0.0/16"), pfx("10.1.1.0/24")},
		NextHop: addr("192.0.2.99"), ASPath: append(Seq(65010, 4200000001), Set(65020, 65021)),
		Origin: bgp.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeMultiExitDisc(0xffffffff),
			bgp.NewPathAttributeCommunities([]uint32{0xffffff01}), unknown}}))
	require.NoError(t, sp.Announce(Route{Prefixes: []netip.Prefix{pfx("fd01:1::/48")}, NextHop: addr("fd00:21::2"), ASPath: Seq(65010)}))

	waitFor(t, 5*time.Second, "GoBGP installs both IPv4 routes", func() bool { return len(gobgpPaths(t, s, bgp.RF_IPv4_UC)) == 3 })
	p := gobgpPaths(t, s, bgp.RF_IPv4_UC)[pfx("10.1.1.0/24")]
	require.NotNil(t, p)
	var seen []string
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeAsPath:
			seen = append(seen, "path "+bgp.AsPathString(a))
		case *bgp.PathAttributeNextHop:
			seen = append(seen, "nh "+a.Value.String())
		case *bgp.PathAttributeOrigin:
			seen = append(seen, "origin "+strconv.Itoa(int(a.Value)))
		case *bgp.PathAttributeMultiExitDisc:
			seen = append(seen, "med "+strconv.FormatUint(uint64(a.Value), 10))
		case *bgp.PathAttributeCommunities:
			seen = append(seen, "communities "+strconv.Itoa(len(a.Value)))
		case *bgp.PathAttributeUnknown:
			seen = append(seen, "unknown "+strconv.Itoa(int(a.GetType())))
		}
	}
	assert.ElementsMatch(t, []string{"path 65010 4200000001 {65020,65021}", "nh 192.0.2.99", "origin 2",
		"med 4294967295", "communities 1", "unknown 240"}, seen)
	waitFor(t, 5*time.Second, "GoBGP installs the IPv6 route", func() bool { return len(gobgpPaths(t, s, bgp.RF_IPv6_UC)) == 1 })

	waitFor(t, 5*time.Second, "GoBGP's route reaches us", func() bool { _, ok := sp.RIB()[pfx("10.10.0.0/16")]; return ok })
	got := sp.RIB()[pfx("10.10.0.0/16")]
	assert.Equal(t, "65515", got.ASPath)
	assert.Equal(t, addr("127.0.0.1"), got.NextHop)
	assert.NotContains(t, sp.Ever(), pfx("10.1.0.0/16"), "GoBGP does not send a route back to where it came from")

	require.NoError(t, sp.Withdraw(pfx("10.1.0.0/16")))
	waitFor(t, 5*time.Second, "GoBGP drops the withdrawn route", func() bool { return len(gobgpPaths(t, s, bgp.RF_IPv4_UC)) == 2 })

	// Our KEEPALIVEs hold the session past GoBGP's hold time (3 s).
	waitFor(t, 6*time.Second, "the session outlives the hold time", func() bool {
		return time.Since(established) > 3500*time.Millisecond && gobgpEstablished(s)
	})
	select {
	case <-sp.Done():
		t.Fatalf("session ended: %v", sp.Err())
	default:
	}
	require.NoError(t, sp.Close())
	waitFor(t, 5*time.Second, "GoBGP sees the session end", func() bool { return !gobgpEstablished(s) })
	assert.GreaterOrEqual(t, len(sp.Messages()), 3, "OPEN, KEEPALIVE, UPDATE at least")
}
