package pair

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// TestNoSecretsInLogs drives every logging and error path with a Debug
// logger and checks that neither the key (raw, hex or base64) nor any
// payload name ever shows up.
func TestNoSecretsInLogs(t *testing.T) {
	const payloadName = "PAYLOAD-DEVICE-NAME"
	var buf lab.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var errs []string

	// Config errors and a bind error.
	for _, cfg := range []Config{
		{Self: "gw-a", Key: testKey},
		{Self: "gw-a", Local: netip.MustParseAddrPort("127.0.0.1:1"), Remote: netip.MustParseAddrPort("127.0.0.1:2"), Key: testKey[:15]},
	} {
		cfg.Logger = log
		_, err := New(cfg)
		require.Error(t, err)
		errs = append(errs, err.Error())
	}
	taken := newPeer(t, loopback)
	c := mustNew(t, Config{Self: "gw-a", Local: taken.addr, Remote: taken.addr, Key: testKey, Logger: log})
	err := c.Run(context.Background())
	require.Error(t, err)
	errs = append(errs, err.Error())

	// A running channel fed bad datagrams, an unencodable state, good
	// messages and a partner restart.
	p := newPeer(t, loopback)
	local := freePort(t)
	c = mustNew(t, Config{Self: "gw-a", Partner: "gw-b", Local: local, Remote: p.addr, Key: testKey, Logger: log})
	c.Send(State{Devices: []string{payloadName}})
	start(t, c)
	p.read()
	good := func(inst string, epoch, seq uint64) []byte {
		return mustEncode(t, Message{State: State{Instance: inst, Devices: []string{payloadName}}, Epoch: epoch, Seq: seq})
	}
	bad, err := Encode(nil, Message{State: State{Instance: "gw-b", Devices: []string{payloadName}}}, []byte("another-key-of-enough-length"))
	require.NoError(t, err)
	p.send(local, good("gw-b", 1, 1))
	receive(t, c)
	for _, b := range [][]byte{bad, []byte(payloadName), good("gw-b", 1, 1), good("gw-a", 1, 2), good("gw-c", 1, 3),
		sign(append(rawBody(0, 1, 4, "gw-b", []string{payloadName}, nil), 0))} {
		p.send(local, b)
	}
	c.Send(State{Devices: []string{payloadName}, Carrying: []string{"not-a-device"}})
	p.send(local, good("gw-b", 2, 1))
	receive(t, c)
	eventually(t, func() bool {
		n := c.Counters()
		return n.BadAuth == 1 && n.Malformed == 2 && n.Replayed == 1 && n.WrongSender == 2 && n.SendErrors >= 1 &&
			strings.Contains(buf.String(), "pair: state does not encode") // logged after counting
	}, "all datagrams handled")
	// Another source address, if the host has it.
	if q, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}); err == nil {
		_, err = q.WriteToUDPAddrPort(good("gw-b", 3, 1), local)
		require.NoError(t, err)
		require.NoError(t, q.Close())
		eventually(t, func() bool { return c.Counters().WrongSender == 3 }, "other address counted")
	}

	// The log line for a drop is built from handle's reason and error, and
	// the limiter lets only the first through above: check them all here.
	h := mustNew(t, Config{Self: "gw-a", Partner: "gw-b", Local: local, Remote: p.addr, Key: testKey})
	for _, b := range [][]byte{good("gw-b", 1, 1), bad, []byte(payloadName), good("gw-b", 1, 1), good("gw-a", 1, 2),
		good("gw-c", 1, 3), sign(append(rawBody(0, 1, 4, "gw-b", []string{payloadName}, nil), 0))} {
		for _, src := range []netip.AddrPort{p.addr, netip.MustParseAddrPort("127.0.0.2:1")} {
			drop, err := h.handle(b, src, time.Now())
			errs = append(errs, drop)
			if err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	assert.Equal(t, Counters{Received: 1, BadAuth: 1, Malformed: 2, Replayed: 1, WrongSender: 9}, h.Counters())

	out := buf.String()
	t.Logf("log output:\n%s", out)
	assert.Contains(t, out, "pair: datagram dropped", "the drop was logged")
	all := out + strings.Join(errs, "\n")
	for _, secret := range []string{string(testKey), hex.EncodeToString(testKey), base64.StdEncoding.EncodeToString(testKey),
		string(testKey[:8]), payloadName} {
		assert.NotContains(t, all, secret)
	}
}
