//go:build !nonetns

package bgp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// tcpListeners returns the local ports in LISTEN state in this network
// namespace (the tests run in a private one: only what they open).
func tcpListeners(t *testing.T) []int {
	t.Helper()
	var ports []int
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			_, port, ok := strings.Cut(fields[1], ":")
			require.True(t, ok, "bad line in %s: %q", f, sc.Text())
			p, err := strconv.ParseUint(port, 16, 16)
			require.NoError(t, err)
			ports = append(ports, int(p))
		}
		require.NoError(t, sc.Err())
		require.NoError(t, fh.Close())
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

func grpcGlobal(port int, grpcListen string) Global {
	return Global{ASN: 65515, RouterID: netip.MustParseAddr("192.0.2.1"), ListenPort: port,
		ListenAddresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, GRPCListen: grpcListen}
}

func TestGRPCAPI(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bgpPort, grpcPort := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", grpcPort)
	a, err := NewGoBGP(ctx, grpcGlobal(bgpPort, addr), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	closed := false
	defer func() {
		if !closed {
			a.Close()
		}
	}()
	require.NoError(t, a.SetPeers(ctx, []PeerConfig{{Name: "onprem", Kind: KindTunnel,
		Address: netip.MustParseAddr("127.0.0.2"), Port: bgpPort, PeerASN: 65010, MaxPrefixes: 10,
		HoldTime: 9 * time.Second, Keepalive: 3 * time.Second, ConnectRetry: time.Second}}))
	assert.Equal(t, []int{min(bgpPort, grpcPort), max(bgpPort, grpcPort)}, tcpListeners(t),
		"BGP and gRPC listen, nothing else")

	// GoBGP's own API client lists the peer bgpgw configured.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	stream, err := api.NewGoBgpServiceClient(conn).ListPeer(ctx, &api.ListPeerRequest{})
	require.NoError(t, err)
	var peers []string
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		peers = append(peers, r.Peer.Conf.NeighborAddress+" "+r.Peer.Conf.Description)
	}
	assert.Equal(t, []string{"127.0.0.2 onprem"}, peers)
	g, err := api.NewGoBgpServiceClient(conn).GetBgp(ctx, &api.GetBgpRequest{})
	require.NoError(t, err)
	assert.Equal(t, uint32(65515), g.Global.Asn)
	require.NoError(t, conn.Close())

	// Close stops the gRPC server: the port is released.
	a.Close()
	closed = true
	waitFor(t, "gRPC port released after Close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	assert.Empty(t, tcpListeners(t))
}

func TestGRPCOffListensNowhere(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx := context.Background()
	bgpPort := freePort(t)
	a, err := NewGoBGP(ctx, grpcGlobal(bgpPort, ""), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer a.Close()
	assert.Equal(t, []int{bgpPort}, tcpListeners(t), "only BGP listens")
	// GoBGP's usual gRPC port in particular is closed.
	_, err = net.DialTimeout("tcp", "127.0.0.1:50051", time.Second)
	assert.Error(t, err)
}

func TestGRPCListenErrors(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	ctx := context.Background()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	_, err = NewGoBGP(ctx, grpcGlobal(freePort(t), busy.Addr().String()), slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bgp.grpc_listen "+busy.Addr().String())
	assert.Contains(t, err.Error(), "address already in use")

	_, err = NewGoBGP(ctx, grpcGlobal(freePort(t), "192.0.2.1:50051"), slog.New(slog.DiscardHandler))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a loopback address")

	// Nothing was left listening by the failed starts.
	assert.Equal(t, []int{busy.Addr().(*net.TCPAddr).Port}, tcpListeners(t))
}
