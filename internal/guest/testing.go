package guest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// ForTest returns a Machine whose Close runs in t.Cleanup. When no guest
// can run here (QEMU, the kernel or busybox missing) it fails the test,
// naming what is missing: it never skips.
func ForTest(t testing.TB, opts Options) *Machine {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	m, err := New(opts)
	if err != nil {
		t.Fatalf("this test runs in a QEMU guest, which cannot run here: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("guest cleanup: %v", err)
		}
	})
	return m
}

// BuildTest compiles the tests of package pkg (an import path or a
// directory) into the binary out, with the build tags given.
func BuildTest(ctx context.Context, pkg, out string, tags ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args := []string{"test", "-c", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(append(args, pkg), " "), err, b)
	}
	return nil
}

// RunTest runs argv in a guest of m and fails t unless it exits 0: with the
// guest's reason when the guest itself failed, with the command's output
// otherwise. The output also goes to t.Log, line by line, as it comes.
func RunTest(ctx context.Context, t testing.TB, m *Machine, argv ...string) *Result {
	t.Helper()
	lw := &lineLogger{logf: t.Logf}
	res, err := m.run(ctx, lw, argv)
	lw.flush()
	if err != nil {
		t.Fatalf("%v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("in the guest, %s exited %d after %v (its whole output is logged above); the end of it:\n%s\nconsole:\n%s",
			argv[0], res.ExitCode, res.Duration.Round(time.Millisecond), lastLines(res.Output, 40), res.Console)
	}
	t.Logf("guest: %s passed in %v (boot %v)", argv[0], res.Duration.Round(time.Millisecond), res.Boot.Round(time.Millisecond))
	return res
}

// lineLogger hands whole lines to logf.
type lineLogger struct {
	mu   sync.Mutex
	logf func(format string, args ...any)
	buf  bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.Reset()
			l.buf.WriteString(line)
			return len(p), nil
		}
		l.logf("guest| %s", strings.TrimRight(line, "\n"))
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.logf("guest| %s", l.buf.String())
		l.buf.Reset()
	}
}
