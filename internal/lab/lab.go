// Package lab builds throwaway network labs from Linux network namespaces on
// the local machine, for integration tests and demos.
//
// A Lab owns everything it creates: network namespaces (named
// "<prefix>-<name>", where the prefix is "bgw" plus six random hex digits and
// unique to the run), veth links between them, long-running processes, FRR
// instances (one FRR pathspace per instance), BIRD instances (a control
// socket each, in their own directory) and a temporary directory for
// configuration and logs. Close removes all of it, and is safe to call more
// than once; ForTest registers Close with t.Cleanup so a failing test cleans
// up too.
//
// The lab never touches the machine's own (root) network namespace: every
// address, route and interface is created inside a lab namespace. Using a Lab
// requires root and iproute2; FRR instances need FRR installed under
// /usr/lib/frr and vtysh, BIRD instances bird and birdc (bird2).
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// CmdTimeout bounds every short command the lab runs (ip, vtysh, FRR daemon
// start-up). A shorter deadline on the caller's context takes precedence.
const CmdTimeout = 15 * time.Second

// stopTimeout bounds how long a process gets to exit after SIGTERM, and again
// after SIGKILL.
const stopTimeout = 5 * time.Second

// Lab is one run's set of namespaces, links, processes and FRR instances.
type Lab struct {
	logf   func(format string, args ...any)
	prefix string
	dir    string

	mu       sync.Mutex
	closed   bool
	cleanups []cleanup // run in reverse order by Close
	names    map[string]bool
}

type cleanup struct {
	what string
	fn   func() error
}

// New checks that the caller is root and that iproute2 is installed, then
// creates a temporary directory and a random run prefix. logf receives
// progress messages; nil discards them.
func New(logf func(format string, args ...any)) (*Lab, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := checkPrereqs(); err != nil {
		return nil, err
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("lab: random prefix: %w", err)
	}
	prefix := "bgw" + hex.EncodeToString(b[:])
	dir, err := os.MkdirTemp("", prefix+"-")
	if err != nil {
		return nil, fmt.Errorf("lab: temp dir: %w", err)
	}
	// FRR daemons drop privileges to user frr and must be able to reach
	// their configuration below this directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("lab: chmod %s: %w", dir, err)
	}
	l := &Lab{logf: logf, prefix: prefix, dir: dir, names: map[string]bool{}}
	l.addCleanup("remove temp dir "+dir, func() error {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
		return nil
	})
	logf("lab %s: created, dir %s", prefix, dir)
	return l, nil
}

func checkPrereqs() error {
	if os.Geteuid() != 0 {
		return errors.New("lab: must run as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("lab: iproute2 'ip' not found (apt-get install -y iproute2): %w", err)
	}
	return nil
}

// ForTest returns a new Lab whose Close runs in t.Cleanup. It fails the test
// (it never skips) when the lab cannot be built here, e.g. not root or tools
// missing.
func ForTest(t testing.TB) *Lab {
	t.Helper()
	l, err := New(t.Logf)
	if err != nil {
		t.Fatalf("lab: this test builds network namespaces and needs root with iproute2 installed: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return l
}

// Dir is the run's temporary directory; Close removes it.
func (l *Lab) Dir() string { return l.dir }

// Prefix is the run's unique name prefix, e.g. "bgw1a2b3c".
func (l *Lab) Prefix() string { return l.prefix }

// Close stops every process and FRR instance started through the lab,
// deletes its namespaces (and with them its links) and removes the temp dir.
// Resources are released in the reverse order of creation. Close keeps going
// after an error and returns all errors joined; calling it again is a no-op.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	cs := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()

	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", cs[i].what, err))
		}
	}
	l.logf("lab %s: closed", l.prefix)
	return errors.Join(errs...)
}

// addCleanup registers fn to run at Close.
func (l *Lab) addCleanup(what string, fn func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, cleanup{what: what, fn: fn})
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,19}$`)

// reserve checks a caller-chosen name (kind "netns" or "frr") and marks it
// used; it is an error to create the same one twice.
func (l *Lab) reserve(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab: invalid %s name %q: want 1-20 of [a-z0-9_-], starting with a letter or digit", kind, name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("lab: %s %q: lab is closed", kind, name)
	}
	if l.names[kind+"/"+name] {
		return fmt.Errorf("lab: %s %q already exists in this lab", kind, name)
	}
	l.names[kind+"/"+name] = true
	return nil
}

// run executes a short command with a bounded context and returns its
// combined output. what names the object it acts on (e.g. "netns bgw..-r1")
// for the error message.
func run(ctx context.Context, what string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, CmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w%s", what, cmdline(name, args), err, outputSuffix(string(out)))
	}
	return string(out), nil
}

// outputSuffix formats command output for an error message.
func outputSuffix(out string) string {
	if out = strings.TrimSpace(out); out == "" {
		return ""
	}
	return ": " + out
}

func cmdline(name string, args []string) string {
	return strings.TrimSpace(name + " " + strings.Join(args, " "))
}

// Fatal wraps err so that Poll returns it at once instead of polling on
// (the process being waited for has exited, say).
func Fatal(err error) error { return fatalError{err} }

type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }
func (f fatalError) Unwrap() error { return f.err }

// Poll calls cond every interval (and once right away) until it returns true
// or ctx is done. A cond error does not stop polling, unless wrapped with
// Fatal; if ctx ends first, the returned error wraps ctx.Err() and the last
// cond error.
func Poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		if err != nil {
			var f fatalError
			if errors.As(err, &f) {
				return f.err
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("poll: %w; last error: %w", ctx.Err(), lastErr)
			}
			return fmt.Errorf("poll: condition not met: %w", ctx.Err())
		case <-t.C:
		}
	}
}
