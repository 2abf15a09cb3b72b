// Package bfdlab holds what the BFD interop tests and the BFD benchmark
// share: running a bfd.Manager inside a lab namespace, reading FRR bfdd's
// peers and counters, and dropping BFD packets with nftables.
package bfdlab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/bfd"
)

// netnsPath is where `ip netns` keeps its namespaces (iproute2's NETNS_RUN_DIR).
const netnsPath = "/run/netns"

// inNetns runs fn on an OS thread moved into the named network namespace.
// The thread is locked and never unlocked, so it exits with the goroutine
// instead of going back to the scheduler in the wrong namespace. It is
// never the main thread: a namespace's processes are found by their main
// thread (`ip netns pids`), and the lab kills those when it deletes it.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Keep the main thread busy (and untouched) while another
			// goroutine, which cannot land on it, does the work.
			errc <- inNetns(ns, fn)
			runtime.UnlockOSThread()
			return
		}
		f, err := os.Open(filepath.Join(netnsPath, ns))
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", ns, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		_ = f.Close()
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// InNetns runs fn on an OS thread inside the namespace and returns its
// error. Sockets fn creates stay in that namespace for their lifetime.
func InNetns(ns *lab.Netns, fn func() error) error { return inNetns(ns.Name(), fn) }

// RunManager runs m.Run(ctx) inside the namespace, so that its listening
// sockets are there; the channel receives Run's result.
func RunManager(ctx context.Context, ns *lab.Netns, m *bfd.Manager) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- InNetns(ns, func() error { return m.Run(ctx) }) }()
	return errc
}

// Add adds a session to m from inside the namespace (its sending socket
// is created there).
func Add(ctx context.Context, ns *lab.Netns, m *bfd.Manager, cfg bfd.SessionConfig) error {
	return InNetns(ns, func() error { return m.Add(ctx, cfg) })
}

// FRRPeer is one entry of FRR 8.4's `show bfd peers json`.
type FRRPeer struct {
	Multihop               bool   `json:"multihop"`
	Peer                   string `json:"peer"`
	Local                  string `json:"local"`
	Interface              string `json:"interface"`
	ID                     uint32 `json:"id"`
	RemoteID               uint32 `json:"remote-id"`
	Status                 string `json:"status"`
	Uptime                 int    `json:"uptime"`
	Diagnostic             string `json:"diagnostic"`
	RemoteDiagnostic       string `json:"remote-diagnostic"`
	ReceiveInterval        int    `json:"receive-interval"`
	TransmitInterval       int    `json:"transmit-interval"`
	DetectMultiplier       int    `json:"detect-multiplier"`
	RemoteReceiveInterval  int    `json:"remote-receive-interval"`
	RemoteTransmitInterval int    `json:"remote-transmit-interval"`
	RemoteDetectMultiplier int    `json:"remote-detect-multiplier"`
}

// DetectionTime is FRR's detection time for this peer, computed as FRR
// does from the JSON: the peer's multiplier times the larger of FRR's
// receive interval and the peer's transmit interval.
func (p FRRPeer) DetectionTime() time.Duration {
	return time.Duration(p.RemoteDetectMultiplier*max(p.ReceiveInterval, p.RemoteTransmitInterval)) * time.Millisecond
}

// FRRCounters is one entry of `show bfd peers counters json`.
type FRRCounters struct {
	Multihop     bool   `json:"multihop"`
	Peer         string `json:"peer"`
	ControlIn    uint64 `json:"control-packet-input"`
	ControlOut   uint64 `json:"control-packet-output"`
	SessionUp    uint64 `json:"session-up"`
	SessionDown  uint64 `json:"session-down"`
	Notification uint64 `json:"zebra-notifications"`
}

// Peers returns FRR's BFD peers by peer address.
func Peers(ctx context.Context, f *lab.FRR) (map[string]FRRPeer, error) {
	var ps []FRRPeer
	if err := f.JSON(ctx, "show bfd peers json", &ps); err != nil {
		return nil, err
	}
	out := make(map[string]FRRPeer, len(ps))
	for _, p := range ps {
		out[p.Peer] = p
	}
	return out, nil
}

// Counters returns FRR's BFD counters by peer address.
func Counters(ctx context.Context, f *lab.FRR) (map[string]FRRCounters, error) {
	var cs []FRRCounters
	if err := f.JSON(ctx, "show bfd peers counters json", &cs); err != nil {
		return nil, err
	}
	out := make(map[string]FRRCounters, len(cs))
	for _, c := range cs {
		out[c.Peer] = c
	}
	return out, nil
}

// nftTable is the nftables table the drop rules live in.
const nftTable = "bgpgw_bfd_drop"

// DropBFD drops every BFD control packet the namespace sends (UDP
// destination ports 3784 and 4784, output hook) until UndropBFD.
func DropBFD(ctx context.Context, ns *lab.Netns) error {
	_, err := ns.Exec(ctx, "nft", fmt.Sprintf("add table inet %[1]s; "+
		"add chain inet %[1]s out { type filter hook output priority 0; policy accept; }; "+
		"add rule inet %[1]s out udp dport { %d, %d } counter drop", nftTable, bfd.SingleHopPort, bfd.MultihopPort))
	return err
}

// UndropBFD removes the rule DropBFD added.
func UndropBFD(ctx context.Context, ns *lab.Netns) error {
	_, err := ns.Exec(ctx, "nft", "delete table inet "+nftTable)
	return err
}

// PreciseLog makes the FRR instance's daemons also log to a file of their
// own with microsecond timestamps (the --log target the lab starts them
// with keeps whole seconds), and returns its path.
func PreciseLog(ctx context.Context, f *lab.FRR) (string, error) {
	path := filepath.Join(f.Dir(), "precise.log")
	_, err := f.Vtysh(ctx, "configure terminal", "log timestamp precision 6", "log file "+path+" debugging")
	return path, err
}

// LogDown is a state change to down that bfdd logged (with `debug bfd
// peer` in its configuration).
type LogDown struct {
	At   time.Time
	Line string
}

// DownsInLog returns the "-> down" state changes bfdd logged for peer in
// the log at path (see PreciseLog) after byte offset from, with their
// timestamps.
func DownsInLog(path string, from int64, peer string) ([]LogDown, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if _, err := fh.Seek(from, 0); err != nil {
		return nil, err
	}
	const stamp = "2006/01/02 15:04:05.000000"
	var out []LogDown
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "state-change") || !strings.Contains(line, "-> down") ||
			!strings.Contains(line, "peer:"+peer+" ") || len(line) < len(stamp) {
			continue
		}
		at, err := time.ParseInLocation(stamp, line[:len(stamp)], time.Local)
		if err != nil {
			return nil, fmt.Errorf("timestamp in %q: %w", line, err)
		}
		out = append(out, LogDown{At: at, Line: line})
	}
	return out, sc.Err()
}

// LogSize is the current size of the file at path, an offset for DownsInLog.
func LogSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
