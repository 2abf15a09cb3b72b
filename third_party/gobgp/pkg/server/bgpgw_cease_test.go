package server

// bgpgw's regression test of its patch (third_party/gobgp/BGPGW.md):
// ResetPeerCease sends a Cease NOTIFICATION of the given subcode with an
// RFC 8203 communication, the peer is told why, and the session comes back.

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

func TestResetPeerCeaseBFDDown(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	start := func(asn, peerASN uint32, addr, peer string) *BgpServer {
		s := NewBgpServer(LoggerOption(slog.New(slog.DiscardHandler), nil))
		go s.Serve()
		err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: asn, RouterId: addr, ListenPort: int32(port), ListenAddresses: []string{addr}}})
		if err == nil {
			err = s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
				Conf:      &api.PeerConf{NeighborAddress: peer, PeerAsn: peerASN},
				Transport: &api.Transport{LocalAddress: addr, RemotePort: uint32(port)},
				Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 9, KeepaliveInterval: 3, IdleHoldTimeAfterReset: 1}},
			}})
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	a := start(65000, 65001, "127.0.0.1", "127.0.0.2")
	b := start(65001, 65000, "127.0.0.2", "127.0.0.1")

	state := func(s *BgpServer, peer string) (st api.PeerState_SessionState, msg string) {
		_ = s.ListPeer(ctx, &api.ListPeerRequest{Address: peer}, func(p *api.Peer) {
			st, msg = p.State.SessionState, p.State.DisconnectMessage
		})
		return st, msg
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
	established := func() bool {
		st, _ := state(a, "127.0.0.2")
		return st == api.PeerState_SESSION_STATE_ESTABLISHED
	}
	wait("the session", established)
	told := make(chan string, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = b.WatchEvent(wctx, WatchEventMessageCallbacks{OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
		if ev.Peer.State.DisconnectReason == api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED {
			select {
			case told <- ev.Peer.State.DisconnectMessage:
			default:
			}
		}
	}}, WatchPeer())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ResetPeerCease(ctx, "127.0.0.2", bgp.BGP_ERROR_SUB_BFD_DOWN, "bgpgw: BFD Down"); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-told:
		// GoBGP's receiving side names the code and subcode, not the
		// communication (bgpgw's integration test reads it from FRR).
		if !strings.Contains(msg, "code 6(cease) subcode 10(BFD down)") {
			t.Errorf("the peer's disconnect message is %q, want Cease, BFD down", msg)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the peer was not told why the session closed")
	}
	wait("the session back", established)
}
