package health

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// icmpProbe pings target with one echo request per probe, from a raw socket of its own: a raw
// socket sees every ICMP packet the host receives, so replies are matched by source,
// identifier, sequence number and a random payload.
func icmpProbe(target string) (Probe, error) {
	addr, err := netip.ParseAddr(target)
	if err != nil {
		return nil, fmt.Errorf("icmp target: %w", err)
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() || addr.IsMulticast() {
		return nil, fmt.Errorf("icmp target %s is not a unicast address", addr)
	}
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	p := &pinger{addr: addr, id: int(binary.BigEndian.Uint16(idb[:]))}
	return p.probe, nil
}

type pinger struct {
	addr netip.Addr
	id   int
	seq  atomic.Uint32
}

func (p *pinger) probe(ctx context.Context) error {
	network, laddr, proto := "ip4:icmp", "0.0.0.0", protoICMP
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if p.addr.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", protoICMPv6
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	conn, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		return fmt.Errorf("open raw ICMP socket: %w", err)
	}
	defer conn.Close()
	// Wake the read below when ctx ends, deadline or not.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(d)
	}

	seq := int(uint16(p.seq.Add(1)))
	payload := make([]byte, 16)
	_, _ = rand.Read(payload)
	req := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: payload}}
	b, err := req.Marshal(nil) // the kernel computes the ICMPv6 checksum
	if err != nil {
		return err
	}
	dst := &net.IPAddr{IP: p.addr.AsSlice(), Zone: p.addr.Zone()}
	if _, err := conn.WriteTo(b, dst); err != nil {
		return shortErr(err)
	}

	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, os.ErrDeadlineExceeded): // ctx's deadline, a hair before ctx.Err
				return context.DeadlineExceeded
			}
			return shortErr(err)
		}
		src, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == replyType && body.ID == p.id && body.Seq == seq && bytes.Equal(body.Data, payload) &&
				sameIP(src.IP, p.addr) {
				return nil
			}
		case *icmp.DstUnreach:
			if p.quotes(body.Data, seq) {
				return fmt.Errorf("destination unreachable (code %d) from %s", m.Code, src.IP)
			}
		case *icmp.TimeExceeded:
			if p.quotes(body.Data, seq) {
				return fmt.Errorf("time exceeded from %s", src.IP)
			}
		}
	}
}

// quotes tells whether the original datagram quoted in an ICMP error is our echo request.
func (p *pinger) quotes(orig []byte, seq int) bool {
	var hlen int
	switch {
	case p.addr.Is4() && len(orig) >= 20 && orig[0]>>4 == 4:
		hlen = int(orig[0]&0x0f) * 4
	case p.addr.Is6() && len(orig) >= 40 && orig[0]>>4 == 6 && orig[6] == protoICMPv6:
		hlen = 40
	default:
		return false
	}
	if len(orig) < hlen+8 {
		return false
	}
	dst, _ := netip.AddrFromSlice(orig[16:20])
	if p.addr.Is6() {
		dst, _ = netip.AddrFromSlice(orig[24:40])
	}
	echo := orig[hlen:]
	return dst == p.addr.WithZone("") &&
		int(binary.BigEndian.Uint16(echo[4:6])) == p.id && int(binary.BigEndian.Uint16(echo[6:8])) == seq
}

func sameIP(ip net.IP, want netip.Addr) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && a.Unmap() == want.WithZone("")
}
