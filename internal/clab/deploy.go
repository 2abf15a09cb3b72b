package clab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// DefaultExecTimeout bounds each exec command of a node when
// Options.ExecTimeout is zero.
const DefaultExecTimeout = 2 * time.Minute

// holderTimeout bounds how long a node's holder takes to set up its mounts.
const holderTimeout = 10 * time.Second

// basePath is the PATH of every node, as in a Debian container.
const basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options tune a deployment.
type Options struct {
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
	// Env is added to every node's environment, over the topology's env
	// (e.g. BGPGW_BIN, GATEWAY).
	Env map[string]string
	// ExecTimeout bounds each exec command; zero means DefaultExecTimeout.
	ExecTimeout time.Duration
}

// Deployment is a topology running in a lab.
type Deployment struct {
	Topology *Topology
	nodes    []*Node
}

// Node is one running node: a network namespace plus a mount and UTS
// namespace kept by a holder process.
type Node struct {
	Name   string
	NS     *lab.Netns
	Config NodeConfig
	// Env is the node's environment: PATH, HOME, HOSTNAME and CLAB_INTFS,
	// then the topology's env, then Options.Env.
	Env map[string]string

	holder *lab.Process
	dir    string // on the host: holder and exec logs
}

// Node returns the node called name, or nil.
func (d *Deployment) Node(name string) *Node {
	for _, n := range d.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Nodes returns the nodes in the order of the topology file.
func (d *Deployment) Nodes() []*Node { return slices.Clone(d.nodes) }

// Deploy builds topo in l: a network namespace per node ("<prefix>-<node>"),
// a holder process per node that owns the node's mount and UTS namespaces
// (a private tmpfs on /run, the binds mounted, the hostname set), a veth
// pair per link (interfaces up, no addresses), and then every node's exec
// commands in order, inside the node, with its environment; nodes run
// theirs concurrently. A failing command fails Deploy with the node, the
// command and its output. Everything created is registered with l, so
// l.Close removes it, also after an error.
func Deploy(ctx context.Context, l *lab.Lab, topo *Topology, opts Options) (*Deployment, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	timeout := opts.ExecTimeout
	if timeout <= 0 {
		timeout = DefaultExecTimeout
	}
	start := time.Now()
	for _, nc := range topo.Nodes {
		for _, b := range nc.Binds {
			if err := checkBind(b); err != nil {
				return nil, fmt.Errorf("clab %s: node %s: bind %s: %w", topo.Name, nc.Name, b, err)
			}
		}
	}
	d := &Deployment{Topology: topo}
	for _, nc := range topo.Nodes {
		n, err := startNode(ctx, l, topo, nc, opts.Env)
		if err != nil {
			return nil, fmt.Errorf("clab %s: node %s: %w", topo.Name, nc.Name, err)
		}
		d.nodes = append(d.nodes, n)
	}
	for _, ln := range topo.Links {
		a, b := d.Node(ln.A.Node), d.Node(ln.B.Node)
		if err := l.Link(a.NS, ln.A.Interface, "", b.NS, ln.B.Interface, ""); err != nil {
			return nil, fmt.Errorf("clab %s: link %s - %s: %w", topo.Name, ln.A, ln.B, err)
		}
	}
	logf("clab %s: %d nodes and %d links in place (%v); running exec commands", topo.Name, len(d.nodes), len(topo.Links),
		time.Since(start).Round(time.Millisecond))

	errs := make([]error, len(d.nodes))
	var wg sync.WaitGroup
	for i, n := range d.nodes {
		wg.Go(func() {
			for j, c := range n.Config.Exec {
				t0 := time.Now()
				out, err := n.run(ctx, timeout, filepath.Join(n.dir, fmt.Sprintf("exec-%d.log", j+1)), c.Args)
				if err != nil {
					errs[i] = fmt.Errorf("clab %s: node %s: exec %q: %w%s", topo.Name, n.Name, c.Line, err, outputTail(out, 60))
					return
				}
				logf("clab %s: node %s: exec %q done (%v)", topo.Name, n.Name, c.Line, time.Since(t0).Round(time.Millisecond))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	logf("clab %s: deployed in %v", topo.Name, time.Since(start).Round(time.Millisecond))
	return d, nil
}

// checkBind checks that the source exists and that the target can be
// mounted without touching the host's file system: it exists already
// (of the same type as the source) or lies below /run, which is a private
// tmpfs in every node.
func checkBind(b Bind) error {
	src, err := os.Stat(b.Source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if underRun(b.Target) {
		return nil
	}
	dst, err := os.Stat(b.Target)
	if err != nil {
		return fmt.Errorf("target %s does not exist on this host, and the runner creates bind targets only below /run (a private tmpfs in every node)", b.Target)
	}
	if src.IsDir() != dst.IsDir() {
		return fmt.Errorf("source and target %s must both be directories or both files", b.Target)
	}
	return nil
}

func underRun(p string) bool {
	for _, dir := range []string{"/run", "/var/run"} {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return p != dir
		}
	}
	return false
}

// holderScript sets up a node's mount and UTS namespaces and then keeps
// them alive. Arguments: hostname, then SOURCE TARGET MODE per bind.
const holderScript = `set -e
mount -t tmpfs -o mode=0755 tmpfs /run
[ -L /var/run ] || mount -t tmpfs -o mode=0755 tmpfs /var/run
hostname "$1"
shift
while [ $# -ge 3 ]; do
  src=$1 dst=$2 mode=$3
  shift 3
  if [ ! -e "$dst" ]; then
    if [ -d "$src" ]; then
      mkdir -p "$dst"
    else
      mkdir -p "$(dirname "$dst")"
      : > "$dst"
    fi
  fi
  mount --bind "$src" "$dst"
  if [ "$mode" = ro ]; then
    mount -o remount,bind,ro "$dst"
  fi
done
echo holder ready
exec sleep infinity
`

// startNode creates the node's network namespace and starts its holder.
func startNode(ctx context.Context, l *lab.Lab, topo *Topology, nc NodeConfig, extra map[string]string) (*Node, error) {
	ns, err := l.Netns(nc.Name)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: nc.Name, NS: ns, Config: nc, dir: filepath.Join(l.Dir(), "clab-"+nc.Name)}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	n.Env = map[string]string{
		"PATH":       basePath,
		"HOME":       "/root",
		"HOSTNAME":   nc.Name,
		"CLAB_INTFS": strconv.Itoa(len(topo.Interfaces(nc.Name))),
	}
	maps.Copy(n.Env, nc.Env)
	maps.Copy(n.Env, extra)

	args := []string{"-m", "-u", "--propagation", "private", "sh", "-c", holderScript, "holder", nc.Name}
	for _, b := range nc.Binds {
		mode := "rw"
		if b.ReadOnly {
			mode = "ro"
		}
		args = append(args, b.Source, b.Target, mode)
	}
	log := filepath.Join(n.dir, "holder.log")
	n.holder, err = l.Start(ns, log, "unshare", args...)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, holderTimeout)
	defer cancel()
	err = lab.Poll(hctx, 10*time.Millisecond, func() (bool, error) {
		data, _ := os.ReadFile(log)
		if strings.Contains(string(data), "holder ready") {
			return true, nil
		}
		if n.holder.Exited() {
			return false, fmt.Errorf("mount namespace holder exited: %s", strings.TrimSpace(string(data)))
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// Pid is the holder's process id: `nsenter -t PID -m -u -n` enters the node.
func (n *Node) Pid() int { return n.holder.Pid() }

// Exec runs a command inside the node (its network, mount and UTS
// namespaces) with the node's environment, bounded by lab.CmdTimeout, and
// returns its combined output. The error names the node and command and
// carries the output.
func (n *Node) Exec(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("node %s: exec: no command", n.Name)
	}
	f, err := os.CreateTemp(n.dir, "cmd-*.log")
	if err != nil {
		return "", fmt.Errorf("node %s: %w", n.Name, err)
	}
	path := f.Name()
	_ = f.Close()
	defer os.Remove(path)
	out, err := n.run(ctx, lab.CmdTimeout, path, args)
	if err != nil {
		return out, fmt.Errorf("node %s: %s: %w%s", n.Name, strings.Join(args, " "), err, outputTail(out, 60))
	}
	return out, nil
}

// run runs args in the node with output to the file logPath (a file, not
// a pipe: a daemon the command leaves behind must not hold our end open)
// and returns the output.
func (n *Node) run(ctx context.Context, timeout time.Duration, logPath string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(n.holder.Pid()), "-m", "-u", "-n", "--"}, args...)...)
	cmd.Env = n.environ()
	cmd.Dir = "/"
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = f, f
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	out, _ := os.ReadFile(logPath)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return string(out), err
}

func (n *Node) environ() []string {
	env := make([]string, 0, len(n.Env))
	for _, k := range slices.Sorted(maps.Keys(n.Env)) {
		env = append(env, k+"="+n.Env[k])
	}
	return env
}

// ReadFile reads a file as the node sees it (through /proc/PID/root of
// its holder), e.g. a log below /run.
func (n *Node) ReadFile(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("node %s: read %s: want an absolute path", n.Name, path)
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(n.holder.Pid()), "root", path))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return data, nil
}

// outputTail formats the last lines of a command's output for an error.
func outputTail(out string, lines int) string {
	out = strings.TrimRight(out, "\n")
	if out == "" {
		return ""
	}
	l := strings.Split(out, "\n")
	if len(l) > lines {
		l = append([]string{"..."}, l[len(l)-lines:]...)
	}
	return "\n" + strings.Join(l, "\n")
}
