package server

// bgpgw's regression test of its patch (third_party/gobgp/BGPGW.md):
// WithdrawAll withdraws from the peers given everything they were sent,
// without resetting their sessions, and leaves the other peers alone.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

func TestWithdrawAll(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	start := func(asn uint32, addr string, peers map[string]uint32) *BgpServer {
		s := NewBgpServer(LoggerOption(slog.New(slog.DiscardHandler), nil))
		go s.Serve()
		err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: asn, RouterId: addr, ListenPort: int32(port), ListenAddresses: []string{addr}}})
		for peer, peerASN := range peers {
			if err == nil {
				err = s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
					Conf:      &api.PeerConf{NeighborAddress: peer, PeerAsn: peerASN},
					Transport: &api.Transport{LocalAddress: addr, RemotePort: uint32(port)},
					Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 9, KeepaliveInterval: 3}},
				}})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	a := start(65000, "127.0.0.1", map[string]uint32{"127.0.0.2": 65001, "127.0.0.3": 65002})
	b := start(65001, "127.0.0.2", map[string]uint32{"127.0.0.1": 65000})
	c := start(65002, "127.0.0.3", map[string]uint32{"127.0.0.1": 65000})

	const n = 500
	var paths []*apiutil.Path
	for i := range n {
		nlri, _ := bgp.NewIPAddrPrefix(netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)))
		nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		paths = append(paths, &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri,
			Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), nh}})
	}
	if _, err := a.AddPath(apiutil.AddPathRequest{Paths: paths}); err != nil {
		t.Fatal(err)
	}
	count := func(s *BgpServer) int {
		k := 0
		_ = s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
			func(bgp.NLRI, []*apiutil.Path) { k++ })
		return k
	}
	uptime := func(peer string) (up time.Time) {
		_ = a.ListPeer(ctx, &api.ListPeerRequest{Address: peer}, func(p *api.Peer) {
			if p.State.SessionState == api.PeerState_SESSION_STATE_ESTABLISHED && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
				up = p.Timers.State.Uptime.AsTime()
			}
		})
		return up
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond) // GoBGP's state is polled
		defer tick.Stop()
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			<-tick.C
		}
	}
	wait("both peers have every path", func() bool { return count(b) == n && count(c) == n })
	upB, upC := uptime("127.0.0.2"), uptime("127.0.0.3")

	if err := a.WithdrawAll(ctx, []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	wait("b has nothing", func() bool { return count(b) == 0 })
	if got := count(c); got != n {
		t.Errorf("c holds %d paths, want all %d: WithdrawAll touched another peer", got, n)
	}
	if !uptime("127.0.0.2").Equal(upB) || !uptime("127.0.0.3").Equal(upC) {
		t.Error("a session was reset")
	}
	if err := a.WithdrawAll(ctx, []string{"127.0.0.9"}); err == nil {
		t.Error("WithdrawAll of an unknown peer: no error")
	}
}
