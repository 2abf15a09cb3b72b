package main

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// forceReadBuffer sets the socket's receive buffer to n bytes, above
// net.core.rmem_max when the process may (SO_RCVBUFFORCE needs
// CAP_NET_ADMIN; the lab runs as root), else as far as rmem_max allows. A
// large buffer keeps a receiver that the scheduler delays from dropping
// datagrams of its own; socketDrops counts those it still drops. forced
// says whether SO_RCVBUFFORCE was allowed.
func forceReadBuffer(c *net.UDPConn, n int) (forced bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return false, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return false, err
	}
	if serr != nil {
		return false, c.SetReadBuffer(n)
	}
	return true, nil
}

// socketDrops returns the number of datagrams the kernel dropped on this
// socket because its receive buffer was full (sk_drops, SO_MEMINFO's
// SK_MEMINFO_DROPS; the drops column of /proc/net/udp): datagrams that
// crossed the network and were lost by the probe itself.
func socketDrops(c *net.UDPConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mem [unix.SK_MEMINFO_VARS]uint32
	var serr error
	if err := rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(mem))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			serr = e
		} else if size < (unix.SK_MEMINFO_DROPS+1)*4 {
			serr = fmt.Errorf("SO_MEMINFO: %d bytes, no drop counter", size)
		}
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("socket drops: %w", serr)
	}
	return uint64(mem[unix.SK_MEMINFO_DROPS]), nil
}
