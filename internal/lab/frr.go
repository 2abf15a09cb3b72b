package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FRRDir is where the FRR daemons are installed (Debian's frr package).
const FRRDir = "/usr/lib/frr"

// frrRunDir is FRR's compiled-in state directory; with -N NAME each daemon
// keeps its pid file and vty socket, and zebra its zserv.api socket, in
// frrRunDir/NAME.
const frrRunDir = "/var/run/frr"

// FRRStartTimeout bounds how long StartFRR waits for all daemons to answer
// vtysh.
const FRRStartTimeout = 30 * time.Second

// FRR is one FRR instance (a set of daemons sharing an FRR pathspace)
// running in a lab namespace.
type FRR struct {
	lab      *Lab
	ns       *Netns
	instance string // FRR pathspace: "<prefix>-<name>"
	dir      string // config and logs
	daemons  []string

	mu      sync.Mutex
	stopped bool
}

// StartFRR writes config to Dir()/frr-NAME/frr.conf (owned by user frr) and
// starts the given FRR daemons (default zebra and bgpd; zebra always first)
// in n, each as `DAEMON -d -N <prefix>-NAME -P 0 -f frr.conf --log
// file:DAEMON.log`. It returns when every daemon answers vtysh, or fails after
// FRRStartTimeout with the daemons' log tails in the error. Each daemon reads
// the whole file and logs "No such command" for lines of the other daemons;
// that is harmless. -P 0 disables the TCP vty, so several instances could
// share a namespace (they would still need distinct bgpd listen ports).
func (l *Lab) StartFRR(n *Netns, name string, config string, daemons ...string) (*FRR, error) {
	if err := l.reserve("frr", name); err != nil {
		return nil, err
	}
	if len(daemons) == 0 {
		daemons = []string{"zebra", "bgpd"}
	}
	daemons = orderDaemons(daemons)
	f := &FRR{lab: l, ns: n, instance: l.prefix + "-" + name, dir: filepath.Join(l.dir, "frr-"+name), daemons: daemons}
	what := fmt.Sprintf("netns %s: frr %s", n.name, f.instance)
	for _, d := range daemons {
		if _, err := os.Stat(filepath.Join(FRRDir, d)); err != nil || !nameRE.MatchString(d) {
			return nil, fmt.Errorf("%s: daemon %q not found in %s (apt-get install -y frr): %v", what, d, FRRDir, err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return nil, fmt.Errorf("%s: vtysh: %w", what, err)
	}
	uid, gid, err := frrIDs()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := f.writeFiles(config, uid, gid); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	run := f.runDir()
	if err := os.Mkdir(run, 0o755); err != nil {
		return nil, fmt.Errorf("%s: state dir: %w", what, err)
	}
	l.addCleanup("stop "+what, f.Stop) // also removes run
	if err := os.Chown(run, uid, gid); err != nil {
		return nil, fmt.Errorf("%s: state dir: %w", what, err)
	}
	for _, d := range daemons {
		if err := f.startDaemon(d); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", what, err, f.LogTail(20))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), FRRStartTimeout)
	defer cancel()
	err = Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		out, err := f.Vtysh(ctx, "show daemons")
		if err != nil {
			return false, err
		}
		up := strings.Fields(out)
		for _, d := range daemons {
			if !slices.Contains(up, d) {
				return false, fmt.Errorf("daemons answering: %v, want %v", up, daemons)
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: waiting for daemons: %w\n%s", what, err, f.LogTail(20))
	}
	l.logf("lab: %s started (%s), dir %s", what, strings.Join(daemons, ","), f.dir)
	return f, nil
}

// orderDaemons removes duplicates and puts zebra first: the other daemons
// connect to its zserv socket.
func orderDaemons(in []string) []string {
	var out []string
	if slices.Contains(in, "zebra") {
		out = append(out, "zebra")
	}
	for _, d := range in {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

func frrIDs() (uid, gid int, err error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("user frr (apt-get install -y frr): %w", err)
	}
	g, err := user.LookupGroup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("group frr: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(g.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("frr ids: %w", err)
	}
	return uid, gid, nil
}

// writeFiles creates the instance directory with frr.conf and an empty
// vtysh.conf (so vtysh does not complain about /etc/frr/NAME/vtysh.conf),
// all owned by frr.
func (f *FRR) writeFiles(config string, uid, gid int) error {
	vtyDir := filepath.Join(f.dir, "etc", f.instance)
	if err := os.MkdirAll(vtyDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(f.confPath(), []byte(config), 0o640); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(vtyDir, "vtysh.conf"), nil, 0o640); err != nil {
		return err
	}
	return filepath.WalkDir(f.dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

func (f *FRR) confPath() string { return filepath.Join(f.dir, "frr.conf") }
func (f *FRR) runDir() string   { return filepath.Join(frrRunDir, f.instance) }

// startDaemon runs the daemon with -d; its start-up output goes to a file,
// not a pipe, so the daemonized child cannot hold our end open.
func (f *FRR) startDaemon(d string) error {
	out, err := os.OpenFile(filepath.Join(f.dir, d+".start.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), CmdTimeout)
	defer cancel()
	args := []string{"netns", "exec", f.ns.name, filepath.Join(FRRDir, d),
		"-d", "-N", f.instance, "-P", "0", "-f", f.confPath(),
		"--log", "file:" + filepath.Join(f.dir, d+".log")}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start %s: %s: %w", d, cmdline("ip", args), err)
	}
	return nil
}

// Name is the FRR pathspace (-N) of this instance, "<prefix>-<name>".
func (f *FRR) Name() string { return f.instance }

// Dir is the instance's directory (frr.conf and logs).
func (f *FRR) Dir() string { return f.dir }

// Vtysh runs vtysh in the instance's namespace and pathspace, one -c per
// command, and returns its standard output. Errors include stderr and stdout.
func (f *FRR) Vtysh(ctx context.Context, cmds ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CmdTimeout)
	defer cancel()
	args := []string{"netns", "exec", f.ns.name, "vtysh", "--config_dir", filepath.Join(f.dir, "etc"), "-N", f.instance}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("netns %s: frr %s: vtysh %q: %w%s", f.ns.name, f.instance, cmds, err,
			outputSuffix(stderr.String()+"\n"+stdout.String()))
	}
	return stdout.String(), nil
}

// JSON runs one vtysh command (which should end in "json") and decodes its
// output into out.
func (f *FRR) JSON(ctx context.Context, cmd string, out any) error {
	s, err := f.Vtysh(ctx, cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		if len(s) > 300 {
			s = s[:300] + "..."
		}
		return fmt.Errorf("frr %s: %q: decode: %w: %s", f.instance, cmd, err, s)
	}
	return nil
}

// Stop terminates the instance's daemons (SIGTERM, then SIGKILL after a
// bounded wait) and removes its state directory under /var/run/frr. It is
// idempotent; Lab.Close calls it.
func (f *FRR) Stop() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil
	}
	f.stopped = true
	var errs []error
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids := frrPids(f.instance)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %v %d: %w", sig, pid, err))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		err := Poll(ctx, 20*time.Millisecond, func() (bool, error) { return len(frrPids(f.instance)) == 0, nil })
		cancel()
		if err == nil {
			break
		}
		if sig == syscall.SIGKILL {
			errs = append(errs, fmt.Errorf("pids %v still running after SIGKILL", frrPids(f.instance)))
		} else {
			f.lab.logf("lab: frr %s: daemons did not exit on SIGTERM within %v, sending SIGKILL", f.instance, stopTimeout)
		}
	}
	if err := os.RemoveAll(f.runDir()); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns %s: frr %s: stop: %w", f.ns.name, f.instance, err)
	}
	f.lab.logf("lab: netns %s: frr %s stopped", f.ns.name, f.instance)
	return nil
}

// frrPids finds running FRR daemons of a pathspace by their command line
// (FRRDir/DAEMON ... -N instance ...). Daemonized FRR processes are not our
// children; scanning /proc also catches one that never wrote its pid file.
func frrPids(instance string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a zombie
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(args[0], FRRDir+"/") {
			continue
		}
		for i := 1; i+1 < len(args); i++ {
			if args[i] == "-N" && args[i+1] == instance {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// Pids lists the instance's running daemon processes.
func (f *FRR) Pids() []int { return frrPids(f.instance) }

// LogTail returns the last n lines of each of the instance's log files
// (daemon logs and start-up output), for failure messages.
func (f *FRR) LogTail(n int) string {
	files, _ := filepath.Glob(filepath.Join(f.dir, "*.log"))
	var b strings.Builder
	for _, path := range files {
		if t := tailFile(path, n); t != "" {
			fmt.Fprintf(&b, "==> %s (frr %s) <==\n%s\n", filepath.Base(path), f.instance, t)
		}
	}
	return b.String()
}

// tailFile returns the last n lines of a file, or "" if it is empty or unreadable.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
