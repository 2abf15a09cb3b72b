package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is a long-running process started in a namespace by Lab.Start.
type Process struct {
	logf func(format string, args ...any)
	name string // for messages: "netns X: cmd"
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

// Start starts name with args inside n as a long-running process, in its own
// process group, with stdout and stderr appended to logFile (relative paths
// are below Dir()). Close sends the process group SIGTERM, then SIGKILL if it
// has not exited within a bounded wait.
func (l *Lab) Start(n *Netns, logFile string, name string, args ...string) (*Process, error) {
	if !filepath.IsAbs(logFile) {
		logFile = filepath.Join(l.dir, logFile)
	}
	desc := fmt.Sprintf("netns %s: %s", n.name, cmdline(name, args))
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", desc, err)
	}
	defer f.Close() // the child has its own copy
	// `ip netns exec` execs the program itself, so the pid is the program's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%s: lab is closed", desc)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", desc, err)
	}
	p := &Process{logf: l.logf, name: desc, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.addCleanup("stop "+desc, p.stop)
	l.logf("lab: started %s (pid %d, log %s)", desc, p.Pid(), logFile)
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (not its group). Signalling a process that
// has exited is an error.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: signal %v: %w", p.name, sig, err)
	}
	return nil
}

// Wait waits for the process to exit or ctx to be done. It returns the
// process's exit error (nil for exit status 0), or ctx's error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s: %w", p.name, p.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: wait: %w", p.name, ctx.Err())
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop terminates the process group: SIGTERM, then SIGKILL after
// stopTimeout. An already exited process is fine; anything the process left
// behind in the namespace is killed when the namespace is deleted.
func (p *Process) stop() error {
	pgid := p.cmd.Process.Pid
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if p.Exited() {
			// Stray group members are killed with the namespace.
			return nil
		}
		if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("%s: kill %v: %w", p.name, sig, err)
		}
		select {
		case <-p.done:
			return nil
		case <-time.After(stopTimeout):
			if sig == syscall.SIGTERM {
				p.logf("lab: %s: no exit %v after SIGTERM, sending SIGKILL", p.name, stopTimeout)
			}
		}
	}
	return fmt.Errorf("%s: still running after SIGKILL", p.name)
}
