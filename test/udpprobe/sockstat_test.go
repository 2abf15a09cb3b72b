package main

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSocketDrops: a receiver that does not read while 500 datagrams
// arrive into a small buffer drops some; every datagram sent over loopback
// is then either read or counted by socketDrops.
func TestSocketDrops(t *testing.T) {
	rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if d, err := socketDrops(rc); err != nil || d != 0 {
		t.Fatalf("new socket: drops %d, %v", d, err)
	}
	sc, err := net.DialUDP("udp", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	const sent = 500
	buf := make([]byte, 64)
	for range sent {
		if _, err := sc.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	received := 0
	deadline := time.Now().Add(5 * time.Second)
	for {
		drops, err := socketDrops(rc)
		if err != nil {
			t.Fatal(err)
		}
		if received+int(drops) == sent {
			if drops == 0 {
				t.Fatalf("a 4 KiB buffer took %d datagrams unread", sent)
			}
			t.Logf("received %d, dropped by the socket %d", received, drops)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d + dropped %d != sent %d", received, drops, sent)
		}
		_ = rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := rc.Read(buf); err == nil {
			received++
		} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatal(err)
		}
	}
}

// TestForceReadBuffer: as root the buffer goes past net.core.rmem_max;
// otherwise the call still succeeds, capped.
func TestForceReadBuffer(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	forced, err := forceReadBuffer(c, rcvBuf)
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && !forced {
		t.Error("as root SO_RCVBUFFORCE was refused")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if os.Geteuid() == 0 && got < rcvBuf {
		t.Errorf("as root: SO_RCVBUF %d, want >= %d", got, rcvBuf)
	}
	t.Logf("SO_RCVBUF %d", got)
}
