// Package sdnotify tells systemd about the daemon's state: readiness, shutdown, a
// status line and watchdog pings (the sd_notify protocol, see sd_notify(3)).
//
// It speaks the protocol directly with the standard library: one datagram per
// message to the unix socket named by NOTIFY_SOCKET (a path, or "@name" for an
// abstract socket). Outside systemd NOTIFY_SOCKET is unset and every method is a
// no-op that returns nil, so callers need no special case.
//
// Usage in a daemon:
//
//	n := sdnotify.New()
//	// ... configure sessions ...
//	_ = n.Ready()
//	if d := n.WatchdogInterval(); d > 0 {
//		// ping from the main loop, not from a goroutine of its own, so that a
//		// hung loop stops the pings and systemd restarts the service
//		tick := time.NewTicker(d)
//		...
//		case <-tick.C: _ = n.Watchdog()
//	}
//	// on SIGTERM:
//	_ = n.Stopping()
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Notifier sends notifications to systemd. The zero value and a nil *Notifier
// are valid no-op notifiers. It is safe for concurrent use.
type Notifier struct {
	socket   string        // NOTIFY_SOCKET; "" when not under systemd
	watchdog time.Duration // WATCHDOG_USEC when it applies to this process, else 0
}

// New reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment.
// The watchdog is on when WATCHDOG_USEC is a positive number and WATCHDOG_PID is
// unset or is this process's pid. The environment is left unchanged.
func New() *Notifier {
	n := &Notifier{socket: os.Getenv("NOTIFY_SOCKET")}
	usec, err := strconv.ParseUint(os.Getenv("WATCHDOG_USEC"), 10, 63)
	if err != nil || usec == 0 || n.socket == "" {
		return n
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil || pid != os.Getpid() {
			return n
		}
	}
	if usec > uint64(time.Duration(1<<63-1)/time.Microsecond) {
		return n
	}
	n.watchdog = time.Duration(usec) * time.Microsecond
	return n
}

// Enabled reports whether the process runs under systemd with notifications on
// (NOTIFY_SOCKET is set).
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// Ready tells systemd that start-up is complete ("READY=1").
func (n *Notifier) Ready() error { return n.send("READY=1") }

// Stopping tells systemd that the daemon is shutting down ("STOPPING=1").
func (n *Notifier) Stopping() error { return n.send("STOPPING=1") }

// Status sets the one-line status shown by `systemctl status` ("STATUS=msg").
// Newlines in msg, which would end the field, are replaced by spaces.
func (n *Notifier) Status(msg string) error {
	return n.send("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(msg))
}

// WatchdogInterval is how often to call Watchdog: half of WATCHDOG_USEC, or 0
// when the watchdog is off (no WatchdogSec=, not under systemd, or WATCHDOG_PID
// names another process).
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog / 2
}

// Watchdog pings the watchdog ("WATCHDOG=1"). It sends nothing when the
// watchdog is off for this process.
func (n *Notifier) Watchdog() error {
	if n == nil || n.watchdog == 0 {
		return nil
	}
	return n.send("WATCHDOG=1")
}

// send writes one datagram to NOTIFY_SOCKET.
func (n *Notifier) send(msg string) error {
	if !n.Enabled() {
		return nil
	}
	// Only unix sockets: an absolute path or "@name" (abstract namespace; Go's
	// net package turns the leading '@' into the NUL byte). systemd 256+ may also
	// pass "vsock:...", used for virtual machines, which a gateway daemon does not
	// run in as its guest init.
	if !strings.HasPrefix(n.socket, "/") && !strings.HasPrefix(n.socket, "@") {
		return fmt.Errorf("sdnotify: unsupported NOTIFY_SOCKET %q", n.socket)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
