package lab

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Netns is a network namespace created by a Lab.
type Netns struct {
	lab  *Lab
	name string
}

// Netns creates the namespace "<prefix>-<name>", brings its loopback up and
// enables IPv4 forwarding inside it. Close deletes it, after killing any
// process still running in it.
func (l *Lab) Netns(name string) (*Netns, error) {
	if err := l.reserve("netns", name); err != nil {
		return nil, err
	}
	n := &Netns{lab: l, name: l.prefix + "-" + name}
	ctx := context.Background()
	if _, err := run(ctx, "netns "+n.name, "ip", "netns", "add", n.name); err != nil {
		return nil, err
	}
	l.addCleanup("delete netns "+n.name, n.destroy)
	if _, err := run(ctx, "netns "+n.name, "ip", "-n", n.name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if err := n.Sysctl(ctx, "net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	l.logf("lab: netns %s created", n.name)
	return n, nil
}

// Name is the namespace's full name, as used by `ip netns`.
func (n *Netns) Name() string { return n.name }

// Exec runs `ip netns exec NAME args...` with a bounded timeout and returns
// the combined output. The error includes the namespace, command and output.
func (n *Netns) Exec(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("netns %s: exec: no command", n.name)
	}
	return run(ctx, "netns "+n.name, "ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// Command returns an unstarted command that runs name inside the namespace.
// The command is killed when ctx is done; give ctx a deadline. Processes that
// should live for the whole lab are better started with Lab.Start.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.WaitDelay = time.Second
	return cmd
}

// IP runs `ip -n NAME args...` (e.g. "addr", "show").
func (n *Netns) IP(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "netns "+n.name, "ip", append([]string{"-n", n.name}, args...)...)
}

// AddRoute runs `ip route add args...` inside the namespace.
func (n *Netns) AddRoute(ctx context.Context, args ...string) error {
	_, err := n.IP(ctx, append([]string{"route", "add"}, args...)...)
	return err
}

var sysctlRE = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_-]+)+$`)

// Sysctl sets a namespaced sysctl (e.g. "net.ipv4.fib_multipath_hash_policy")
// inside the namespace by writing /proc/sys from a process running in it.
func (n *Netns) Sysctl(ctx context.Context, key, value string) error {
	if !sysctlRE.MatchString(key) {
		return fmt.Errorf("netns %s: invalid sysctl key %q", n.name, key)
	}
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	// Arguments are passed positionally, never interpolated into the script.
	_, err := n.Exec(ctx, "sh", "-c", `printf '%s\n' "$1" > "$2"`, "sh", value, path)
	return err
}

// Pids lists the processes currently running in the namespace.
func (n *Netns) Pids(ctx context.Context) ([]int, error) {
	out, err := run(ctx, "netns "+n.name, "ip", "netns", "pids", n.name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("netns %s: ip netns pids: bad pid %q", n.name, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// destroy kills whatever still runs in the namespace (processes started
// through the lab have been stopped gracefully before this) and deletes it.
// A namespace that is already gone is not an error.
func (n *Netns) destroy() error {
	ctx := context.Background()
	if !n.exists(ctx) {
		return nil
	}
	if pids, err := n.Pids(ctx); err == nil && len(pids) > 0 {
		n.lab.logf("lab: netns %s: killing leftover processes %v", n.name, pids)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		pctx, cancel := context.WithTimeout(ctx, stopTimeout)
		err := Poll(pctx, 20*time.Millisecond, func() (bool, error) {
			p, err := n.Pids(ctx)
			return len(p) == 0, err
		})
		cancel()
		if err != nil {
			n.lab.logf("lab: netns %s: processes still present before delete: %v", n.name, err)
		}
	}
	if _, err := run(ctx, "netns "+n.name, "ip", "netns", "del", n.name); err != nil {
		if !n.exists(ctx) {
			return nil
		}
		return err
	}
	n.lab.logf("lab: netns %s deleted", n.name)
	return nil
}

func (n *Netns) exists(ctx context.Context) bool {
	out, err := run(ctx, "netns list", "ip", "netns", "list")
	if err != nil {
		return true // unknown: let the delete report the error
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == n.name {
			return true
		}
	}
	return false
}

// Link connects a and b with a veth pair: interface aIf in a with address
// aAddr, bIf in b with bAddr (CIDR, e.g. "10.0.0.1/30"; "" for none). Both
// ends are brought up. The pair is created from inside a, so it never exists
// in the root namespace; it disappears when either namespace is deleted.
func (l *Lab) Link(a *Netns, aIf, aAddr string, b *Netns, bIf, bAddr string) error {
	for _, ifn := range []string{aIf, bIf} {
		if ifn == "" || len(ifn) > 15 || strings.ContainsAny(ifn, "/ \t\n") {
			return fmt.Errorf("lab: link %s:%s-%s:%s: invalid interface name %q (1-15 chars)", a.name, aIf, b.name, bIf, ifn)
		}
	}
	ctx := context.Background()
	if _, err := a.IP(ctx, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.name); err != nil {
		return fmt.Errorf("lab: link %s:%s-%s:%s: %w", a.name, aIf, b.name, bIf, err)
	}
	for _, end := range []struct {
		n         *Netns
		ifn, addr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if end.addr != "" {
			if _, err := end.n.IP(ctx, "addr", "add", end.addr, "dev", end.ifn); err != nil {
				return fmt.Errorf("lab: link %s:%s-%s:%s: %w", a.name, aIf, b.name, bIf, err)
			}
		}
		if _, err := end.n.IP(ctx, "link", "set", end.ifn, "up"); err != nil {
			return fmt.Errorf("lab: link %s:%s-%s:%s: %w", a.name, aIf, b.name, bIf, err)
		}
	}
	l.logf("lab: link %s:%s (%s) <-> %s:%s (%s)", a.name, aIf, aAddr, b.name, bIf, bAddr)
	return nil
}
