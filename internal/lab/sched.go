package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// autogroupPath is the kernel's switch for autogroup scheduling.
const autogroupPath = "/proc/sys/kernel/sched_autogroup_enabled"

// AutogroupOff turns the kernel's autogroup scheduling off for a lab run
// and returns the function that puts it back as it was (a no-op when it was
// off already, or the kernel has none).
//
// With autogroup, every session is a scheduling group of its own, and every
// lab daemon (charon, FRR's daemons, bgpgw: each daemonizes with setsid) is
// alone in its group. Against a CPU-bound process in another session, such
// a mostly idle group waits for the CPU for hundreds of milliseconds:
// measured in the failover suite with two spinning shells on the two cores,
// BFD at 100 ms x 3 went falsely Down on both gateways at once and planned
// faults lost thousands of datagrams; with autogroup off, plain per-task
// fairness, the same runs lost nothing. The lab stands in for separate
// hosts, each with its own CPU; this keeps a third process on the machine
// from breaking that.
func AutogroupOff() (restore func() error, err error) {
	data, err := os.ReadFile(autogroupPath)
	if errors.Is(err, fs.ErrNotExist) {
		return func() error { return nil }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: autogroup: %w", err)
	}
	was := strings.TrimSpace(string(data))
	if was == "0" {
		return func() error { return nil }, nil
	}
	if err := os.WriteFile(autogroupPath, []byte("0\n"), 0o644); err != nil {
		return nil, fmt.Errorf("lab: autogroup off: %w", err)
	}
	return func() error {
		if err := os.WriteFile(autogroupPath, []byte(was+"\n"), 0o644); err != nil {
			return fmt.Errorf("lab: autogroup back to %s: %w", was, err)
		}
		return nil
	}, nil
}
