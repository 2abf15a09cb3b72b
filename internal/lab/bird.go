package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// BIRDStartTimeout bounds how long StartBIRD waits for the daemon to answer
// on its control socket.
const BIRDStartTimeout = 30 * time.Second

// BIRD is one BIRD 2 daemon (Debian's bird2 package) running in a lab
// namespace, with its configuration, control socket, pid file and logs in
// its own directory below the lab's.
type BIRD struct {
	lab  *Lab
	ns   *Netns
	name string // "<prefix>-<name>", for messages
	dir  string
	proc *Process

	mu      sync.Mutex
	stopped bool
}

// StartBIRD writes config to Dir()/bird-NAME/bird.conf, preceded by a
// `log` line that sends everything BIRD logs to bird.log there, and runs
// `bird -f -c bird.conf -s bird.ctl -P bird.pid` in n: in the foreground
// (-f), so the lab holds it as its own process and stops it at Close, also
// when a test fails. Its start-up output (a configuration error, say) goes
// to bird.out. It returns when the daemon answers `show status` on its
// control socket, or fails after BIRDStartTimeout with the log tails in the
// error. The configuration may hold a TCP-MD5 password: the file is mode
// 0600 and never logged.
func (l *Lab) StartBIRD(ctx context.Context, n *Netns, name, config string) (*BIRD, error) {
	if err := l.reserve("bird", name); err != nil {
		return nil, err
	}
	b := &BIRD{lab: l, ns: n, name: l.prefix + "-" + name, dir: filepath.Join(l.dir, "bird-"+name)}
	what := fmt.Sprintf("netns %s: bird %s", n.name, b.name)
	for _, c := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%s: %s not found (apt-get install -y bird2): %w", what, c, err)
		}
	}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	text := fmt.Sprintf("# internal/lab: everything BIRD logs goes to bird.log beside this file.\nlog %q all;\n\n%s",
		filepath.Join(b.dir, "bird.log"), config)
	if err := os.WriteFile(b.ConfPath(), []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p, err := l.Start(n, filepath.Join(b.dir, "bird.out"), "bird", "-f",
		"-c", b.ConfPath(), "-s", b.Socket(), "-P", filepath.Join(b.dir, "bird.pid"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	b.proc = p
	l.addCleanup("stop "+what, b.Stop)
	wctx, cancel := context.WithTimeout(ctx, BIRDStartTimeout)
	defer cancel()
	err = Poll(wctx, 100*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, Fatal(errors.New("bird exited"))
		}
		out, err := b.Birdc(wctx, "show", "status")
		return err == nil && strings.Contains(out, "Daemon is up and running"), err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: waiting for the control socket: %w\n%s", what, err, b.LogTail(20))
	}
	l.logf("lab: %s started, dir %s", what, b.dir)
	return b, nil
}

// Name is the instance's name, "<prefix>-<name>".
func (b *BIRD) Name() string { return b.name }

// Dir is the instance's directory (bird.conf, bird.ctl, logs).
func (b *BIRD) Dir() string { return b.dir }

// ConfPath is the configuration file BIRD runs with.
func (b *BIRD) ConfPath() string { return filepath.Join(b.dir, "bird.conf") }

// Socket is the daemon's control socket (birdc -s).
func (b *BIRD) Socket() string { return filepath.Join(b.dir, "bird.ctl") }

// Proc is the daemon's process: signal it to kill BIRD in a test.
func (b *BIRD) Proc() *Process { return b.proc }

// Birdc runs one birdc command (its words as arguments, e.g. "show",
// "protocols", "all") in the instance's namespace against its control
// socket and returns the output without birdc's "BIRD ... ready." banner.
// birdc exits non-zero when BIRD answers with an error (also "Network not
// found"); the error then carries the output, which is returned as well.
func (b *BIRD) Birdc(ctx context.Context, words ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CmdTimeout)
	defer cancel()
	args := append([]string{"netns", "exec", b.ns.name, "birdc", "-s", b.Socket()}, words...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	out := StripBirdcBanner(stdout.String())
	if err != nil {
		return out, fmt.Errorf("netns %s: bird %s: birdc %q: %w%s", b.ns.name, b.name, strings.Join(words, " "), err,
			outputSuffix(stderr.String()+"\n"+out))
	}
	return out, nil
}

// Protocols runs `show protocols all` and parses it.
func (b *BIRD) Protocols(ctx context.Context) ([]BIRDProtocol, error) {
	out, err := b.Birdc(ctx, "show", "protocols", "all")
	if err != nil {
		return nil, err
	}
	ps, err := ParseBIRDProtocols(out)
	if err != nil {
		return nil, fmt.Errorf("bird %s: show protocols all: %w", b.name, err)
	}
	return ps, nil
}

// Protocol returns one protocol of `show protocols all`, or false.
func (b *BIRD) Protocol(ctx context.Context, name string) (BIRDProtocol, bool, error) {
	ps, err := b.Protocols(ctx)
	if err != nil {
		return BIRDProtocol{}, false, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, true, nil
		}
	}
	return BIRDProtocol{}, false, nil
}

// Routes runs `show route ARGS...` (e.g. "protocol", "gw1"; "for",
// "10.10.0.10", "export", "kernel4") and parses it. A lookup that finds
// nothing ("Network not found") is no routes, not an error.
func (b *BIRD) Routes(ctx context.Context, args ...string) ([]BIRDRoute, error) {
	out, err := b.Birdc(ctx, append([]string{"show", "route"}, args...)...)
	if err != nil && !strings.Contains(out, birdNotFound) {
		return nil, err
	}
	rs, err := ParseBIRDRoutes(out)
	if err != nil {
		return nil, fmt.Errorf("bird %s: show route %s: %w", b.name, strings.Join(args, " "), err)
	}
	return rs, nil
}

// BFDSessions runs `show bfd sessions` and parses it.
func (b *BIRD) BFDSessions(ctx context.Context) ([]BIRDBFDSession, error) {
	out, err := b.Birdc(ctx, "show", "bfd", "sessions")
	if err != nil {
		return nil, err
	}
	ss, err := ParseBIRDBFDSessions(out)
	if err != nil {
		return nil, fmt.Errorf("bird %s: show bfd sessions: %w", b.name, err)
	}
	return ss, nil
}

// Stop terminates the daemon (SIGTERM: BIRD sends a Cease to its BGP
// peers; SIGKILL after a bounded wait). It is idempotent; Lab.Close calls
// it. A daemon that has already exited (killed by a test) is fine.
func (b *BIRD) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped || b.proc == nil {
		return nil
	}
	b.stopped = true
	if err := b.proc.stop(); err != nil {
		return fmt.Errorf("bird %s: %w", b.name, err)
	}
	b.lab.logf("lab: netns %s: bird %s stopped", b.ns.name, b.name)
	return nil
}

// LogTail returns the last n lines of the daemon's log and of its
// start-up output, for failure messages.
func (b *BIRD) LogTail(n int) string {
	var s strings.Builder
	for _, f := range []string{"bird.log", "bird.out"} {
		if t := tailFile(filepath.Join(b.dir, f), n); t != "" {
			fmt.Fprintf(&s, "==> %s (bird %s) <==\n%s\n", f, b.name, t)
		}
	}
	return s.String()
}

// CheckBIRDConfig parses a BIRD configuration file without running it
// (`bird -p -c PATH`) and returns BIRD's complaint as the error. It needs
// no root and no namespace.
func CheckBIRDConfig(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, CmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bird", "-p", "-c", path)
	cmd.WaitDelay = time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bird -p -c %s: %w%s", path, err, outputSuffix(string(out)))
	}
	return nil
}
