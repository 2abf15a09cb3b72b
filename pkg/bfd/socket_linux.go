//go:build linux

package bfd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// tosInternetControl is the IP precedence BFD is sent with (CS6, as FRR).
const tosInternetControl = 0xc0

var errNoIPv6 = errors.New("IPv6 not available")

// listener is a socket receiving control packets on 3784 or 4784.
type listener struct {
	conn     *net.UDPConn
	multihop bool
}

// rxControl is what the control messages of a received datagram say.
type rxControl struct {
	ttl     int // -1 if the kernel did not say
	ifindex int
	dst     netip.Addr
	stamp   int64 // kernel receive time, Unix nanoseconds; 0 if none
}

// sockopts runs set on the socket's descriptor before bind.
func sockopts(set func(fd int) error) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = set(int(fd)) }); err != nil {
			return err
		}
		return serr
	}
}

// openListener binds the wildcard address of one family to port and asks
// for the TTL (hop limit), the interface, the destination address and the
// kernel's receive timestamp of every datagram.
func openListener(ctx context.Context, v6, multihop bool, port uint16) (*listener, error) {
	network, addr := "udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), port).String()
	if v6 {
		network, addr = "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), port).String()
	}
	lc := net.ListenConfig{Control: sockopts(func(fd int) error {
		stamp := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		if v6 {
			return errors.Join(stamp,
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1),
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1))
		}
		return errors.Join(stamp,
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVTTL, 1),
			unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1))
	})}
	pc, err := lc.ListenPacket(ctx, network, addr)
	if err != nil {
		if v6 && (errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EADDRNOTAVAIL)) {
			err = fmt.Errorf("%w: %w", errNoIPv6, err)
		}
		return nil, fmt.Errorf("bfd: listen %s %s: %w", network, addr, err)
	}
	return &listener{conn: pc.(*net.UDPConn), multihop: multihop}, nil
}

// openSender opens a session's sending socket: bound to the local address
// (IP_FREEBIND, so it may not exist yet) and a random source port in
// 49152-65535 (RFC 5881 section 4, RFC 5883 section 4), TTL (hop limit)
// 255, precedence CS6, and bound to the interface if one is configured. It
// returns the interface index (0 if none).
func openSender(ctx context.Context, cfg *SessionConfig) (*net.UDPConn, int, error) {
	v6 := cfg.Peer.Is6()
	ifindex := 0
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, 0, fmt.Errorf("interface %q: %w", cfg.Interface, err)
		}
		ifindex = ifi.Index
	}
	local := cfg.Local
	switch {
	case !local.IsValid() && v6:
		local = netip.IPv6Unspecified()
	case !local.IsValid():
		local = netip.IPv4Unspecified()
	case v6 && local.IsLinkLocalUnicast() && cfg.Interface != "":
		local = local.WithZone(cfg.Interface)
	}
	network := "udp4"
	if v6 {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: sockopts(func(fd int) error {
		var errs []error
		if v6 {
			errs = append(errs,
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255),
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tosInternetControl),
				unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1))
		} else {
			errs = append(errs,
				unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, 255),
				unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, tosInternetControl),
				unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1))
		}
		if cfg.Interface != "" {
			errs = append(errs, unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, cfg.Interface))
		}
		return errors.Join(errs...)
	})}
	var err error
	for range 64 {
		port := uint16(49152 + rand.IntN(16384))
		addr := net.JoinHostPort(local.String(), strconv.Itoa(int(port)))
		var pc net.PacketConn
		pc, err = lc.ListenPacket(ctx, network, addr)
		if err == nil {
			return pc.(*net.UDPConn), ifindex, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	return nil, 0, fmt.Errorf("open sending socket: %w", err)
}

// parseControl reads the TTL or hop limit, the receiving interface and the
// destination address from a datagram's control messages, without
// allocating.
func parseControl(oob []byte) rxControl {
	ctl := rxControl{ttl: -1}
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		// struct cmsghdr: size_t cmsg_len; int cmsg_level; int cmsg_type.
		var l int
		if hdr == 16 {
			l = int(binary.NativeEndian.Uint64(oob))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		level := int32(binary.NativeEndian.Uint32(oob[hdr-8:]))
		typ := int32(binary.NativeEndian.Uint32(oob[hdr-4:]))
		if l < hdr || l > len(oob) {
			break
		}
		data := oob[hdr:l]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_TTL && len(data) >= 4,
			level == unix.IPPROTO_IPV6 && typ == unix.IPV6_HOPLIMIT && len(data) >= 4:
			ctl.ttl = int(int32(binary.NativeEndian.Uint32(data)))
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: int ifindex; in_addr spec_dst; in_addr addr.
			ctl.ifindex = int(int32(binary.NativeEndian.Uint32(data)))
			ctl.dst = netip.AddrFrom4([4]byte(data[8:12]))
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && len(data) >= 16:
			// struct timespec (64-bit time_t).
			ctl.stamp = int64(binary.NativeEndian.Uint64(data))*1e9 + int64(binary.NativeEndian.Uint64(data[8:]))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo: in6_addr addr; unsigned ifindex.
			ctl.dst = netip.AddrFrom16([16]byte(data[:16])).Unmap()
			ctl.ifindex = int(binary.NativeEndian.Uint32(data[16:]))
		}
		next := unix.CmsgSpace(l - hdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return ctl
}

// pending reports whether a datagram waits in the listener's receive queue.
func (l *listener) pending() bool {
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}
