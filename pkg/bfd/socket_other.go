//go:build !linux

package bfd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

var errNoIPv6 = errors.New("IPv6 not available")

type listener struct {
	conn     *net.UDPConn
	multihop bool
}

type rxControl struct {
	ttl     int
	ifindex int
	dst     netip.Addr
	stamp   int64
}

func (*listener) pending() bool { return false }

func openListener(context.Context, bool, bool, uint16) (*listener, error) {
	return nil, fmt.Errorf("bfd: sockets: %w (Linux only)", errors.ErrUnsupported)
}

func openSender(context.Context, *SessionConfig) (*net.UDPConn, int, error) {
	return nil, 0, fmt.Errorf("bfd: sockets: %w (Linux only)", errors.ErrUnsupported)
}

func parseControl([]byte) rxControl { return rxControl{ttl: -1} }
