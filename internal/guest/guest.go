// Package guest runs a command inside a throwaway virtual machine: Debian's
// own kernel (linux-image-amd64) under QEMU, with the host's root file system
// as the guest's root, read-only over 9p, and a writable scratch directory
// shared with the host. It is test tooling: this machine's kernel lacks
// kernel ESP, XFRM interfaces, VTI and netem, Debian's has them, and every
// binary of the host (charon, FRR, test binaries) runs unchanged inside.
//
// A Machine owns a temporary directory holding the initramfs it builds (a
// static busybox, the virtio and 9p modules, an init script) and the scratch
// directory, which the guest sees at the same path as the host. Each Run
// boots a fresh guest, runs one command in it with tmpfs over /run, /tmp and
// /var/tmp, returns its output and exit code, and powers the guest off; it
// enforces a time limit and never leaves a QEMU process behind. Close
// removes the directory. Guests are serialised host-wide by a lock file: two
// at once would share two cores.
//
// KVM does not work on this machine (the CPU models abort or hang right
// after the real-mode setup), so guests run under TCG, several times slower
// than the host: functional proof of the kernel data plane, not timing.
package guest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// QEMU is the emulator binary (Debian package qemu-system-x86).
const QEMU = "qemu-system-x86_64"

// Busybox is the static busybox the initramfs runs (Debian package
// busybox-static).
const Busybox = "/bin/busybox"

// DefaultTimeout bounds a Run whose Options give no Timeout.
const DefaultTimeout = 10 * time.Minute

// guestPath is the PATH of the command in the guest.
const guestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options configure a Machine. The zero value boots the newest Debian
// kernel in /boot under TCG with 2 CPUs and 2 GiB.
type Options struct {
	// Kernel is the kernel image; "" picks the newest /boot/vmlinuz-*
	// whose modules are under /lib/modules.
	Kernel string
	// Accel is QEMU's accelerator: "tcg" (the default) or "kvm".
	Accel string
	// CPUs and MemoryMiB size the guest; 0 means 2 CPUs (at most the
	// host's) and 2048 MiB.
	CPUs, MemoryMiB int
	// Timeout bounds each Run, from QEMU's start to its exit; 0 means
	// DefaultTimeout. A deadline of Run's context that comes first wins.
	Timeout time.Duration
	// Env is added to the command's environment (KEY=VALUE), which
	// otherwise holds only PATH, HOME=/tmp and TERM=dumb.
	Env []string
	// Dir is the command's working directory in the guest; "" means the
	// scratch directory. A host path under /tmp is hidden by the guest's
	// tmpfs, unless it is below the scratch directory.
	Dir string
	// Output, if set, receives the command's output as it runs.
	Output io.Writer
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
}

// Result is the outcome of one Run.
type Result struct {
	// Output is the command's standard output and error, interleaved.
	Output []byte
	// ExitCode is the command's exit status (-1 if it did not finish).
	ExitCode int
	// Boot is how long the guest took to reach the command (guest clock).
	Boot time.Duration
	// Duration is the whole run, from QEMU's start to its exit.
	Duration time.Duration
	// Console is the end of the guest's serial console (kernel messages,
	// the init script's own), for diagnosis.
	Console string
}

// Machine boots guests for Run. Create it with New, release it with Close.
type Machine struct {
	opts    Options
	logf    func(format string, args ...any)
	qemu    string
	kernel  string
	version string
	dir     string // temporary directory: initramfs, logs, scratch
	scratch string
}

// New checks that QEMU, a Debian kernel with its modules and a static
// busybox are installed, and builds the initramfs. Its error names what is
// missing and the package that brings it.
func New(opts Options) (*Machine, error) {
	m := &Machine{opts: opts, logf: opts.Logf}
	if m.logf == nil {
		m.logf = func(string, ...any) {}
	}
	var err error
	if m.qemu, err = exec.LookPath(QEMU); err != nil {
		return nil, fmt.Errorf("guest: %s not found (Debian package qemu-system-x86; scripts/install-deps.sh installs it): %w", QEMU, err)
	}
	if m.kernel, m.version, err = findKernel(opts.Kernel); err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	if err := checkStatic(Busybox); err != nil {
		return nil, fmt.Errorf("guest: %s: %w (Debian package busybox-static)", Busybox, err)
	}
	switch opts.Accel {
	case "", "tcg", "kvm":
	default:
		return nil, fmt.Errorf("guest: accelerator %q: want tcg or kvm", opts.Accel)
	}
	modDir := filepath.Join("/lib/modules", m.version)
	dep, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("guest: modules of kernel %s: %w (run depmod %s)", m.version, err, m.version)
	}
	builtin, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	mods, err := moduleOrder(dep, builtin, bootModules)
	if err != nil {
		return nil, fmt.Errorf("guest: kernel %s: %w", m.version, err)
	}
	if m.dir, err = os.MkdirTemp("", "bgpgw-guest-"); err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	m.scratch = filepath.Join(m.dir, "scratch")
	if err := m.build(modDir, mods); err != nil {
		_ = os.RemoveAll(m.dir)
		return nil, fmt.Errorf("guest: initramfs: %w", err)
	}
	m.logf("guest: kernel %s, initramfs with %d modules in %s", m.kernel, len(mods), m.dir)
	return m, nil
}

func (m *Machine) build(modDir string, mods []string) error {
	if err := os.MkdirAll(filepath.Join(m.scratch, ".guest"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(m.initrd())
	if err != nil {
		return err
	}
	err = initramfs{busybox: Busybox, modulesDir: modDir, modules: mods, init: initScript(mods, m.scratch)}.write(f)
	return errors.Join(err, f.Close())
}

// Scratch is the directory shared read-write with the guest, at the same
// path inside: put the files the command needs here (a test binary), and
// read what it leaves here after Run.
func (m *Machine) Scratch() string { return m.scratch }

// Kernel is the kernel image the guests boot.
func (m *Machine) Kernel() string { return m.kernel }

// Close removes the machine's directory, scratch included.
func (m *Machine) Close() error {
	if m.dir == "" {
		return nil
	}
	err := os.RemoveAll(m.dir)
	m.dir = ""
	return err
}

func (m *Machine) initrd() string     { return filepath.Join(m.dir, "initramfs.cpio") }
func (m *Machine) control() string    { return filepath.Join(m.scratch, ".guest") }
func (m *Machine) consoleLog() string { return filepath.Join(m.dir, "console.log") }

// Run boots a guest, runs argv in it and powers it off. The error is nil
// when the command ran to its end, whatever its exit code (in Result); it
// says why otherwise (no QEMU, no boot, the time limit, a crash), with the
// command's output so far and the end of the console. QEMU is gone when Run
// returns.
func (m *Machine) Run(ctx context.Context, argv ...string) (*Result, error) {
	return m.run(ctx, m.opts.Output, argv)
}

func (m *Machine) run(ctx context.Context, out io.Writer, argv []string) (*Result, error) {
	res := &Result{ExitCode: -1}
	if len(argv) == 0 {
		return res, errors.New("guest: no command")
	}
	if m.dir == "" {
		return res, errors.New("guest: machine closed")
	}
	timeout := cmp.Or(m.opts.Timeout, DefaultTimeout)
	unlock, err := lockHost(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	ctl := m.control()
	for _, f := range []string{"output", "exit", "started"} {
		if err := os.Remove(filepath.Join(ctl, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, fmt.Errorf("guest: %w", err)
		}
	}
	dir := cmp.Or(m.opts.Dir, m.scratch)
	if err := os.WriteFile(filepath.Join(ctl, "stage2"), []byte(stage2Script(ctl, dir, m.env(), argv)), 0o755); err != nil {
		return res, fmt.Errorf("guest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(ctl, "output"), nil, 0o644); err != nil {
		return res, fmt.Errorf("guest: %w", err)
	}

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	qlog := filepath.Join(m.dir, "qemu.log")
	cmd := exec.Command(m.qemu, m.qemuArgs()...)
	qf, err := os.Create(qlog)
	if err != nil {
		return res, fmt.Errorf("guest: %w", err)
	}
	defer qf.Close()
	cmd.Stdout, cmd.Stderr = qf, qf
	// QEMU dies with us, whatever ends us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("guest: start %s: %w", QEMU, err)
	}
	m.logf("guest: booting %s (%s, %d CPUs, %d MiB), time limit %v: %s", filepath.Base(m.kernel), m.accel(),
		m.cpus(), m.mem(), timeout, strings.Join(argv, " "))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tail := newTailer(filepath.Join(ctl, "output"), out)
	var waitErr, why error
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
wait:
	for {
		select {
		case waitErr = <-done:
			break wait
		case <-ticker.C:
			tail.poll()
		case <-rctx.Done():
			why = fmt.Errorf("time limit %v reached", timeout)
			if ctx.Err() != nil {
				why = fmt.Errorf("context ended: %w", ctx.Err())
			}
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			waitErr = <-done
			break wait
		}
	}
	res.Duration = time.Since(start)
	tail.poll()
	res.Output, _ = os.ReadFile(filepath.Join(ctl, "output"))
	res.Console = tailFile(m.consoleLog(), 40)
	if b, err := os.ReadFile(filepath.Join(ctl, "started")); err == nil {
		if s, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil {
			res.Boot = time.Duration(s * float64(time.Second))
		}
	}
	if why == nil {
		b, err := os.ReadFile(filepath.Join(ctl, "exit"))
		code, cerr := strconv.Atoi(strings.TrimSpace(string(b)))
		switch {
		case err != nil || cerr != nil:
			why = fmt.Errorf("the guest stopped before the command finished (QEMU: %v)", cmp.Or[error](waitErr, errors.New("exited")))
		default:
			res.ExitCode = code
		}
	}
	if why != nil {
		return res, fmt.Errorf("guest: %w after %v\nQEMU:\n%s\nconsole:\n%s\ncommand output:\n%s", why,
			res.Duration.Round(time.Millisecond), tailFile(qlog, 20), res.Console, lastLines(res.Output, 60))
	}
	m.logf("guest: %s exited %d after %v (boot %v)", argv[0], res.ExitCode, res.Duration.Round(time.Millisecond),
		res.Boot.Round(time.Millisecond))
	return res, nil
}

func (m *Machine) accel() string { return cmp.Or(m.opts.Accel, "tcg") }
func (m *Machine) cpus() int     { return cmp.Or(m.opts.CPUs, min(2, runtime.NumCPU())) }
func (m *Machine) mem() int      { return cmp.Or(m.opts.MemoryMiB, 2048) }

func (m *Machine) env() []string {
	env := []string{"PATH=" + guestPath, "HOME=/tmp", "TERM=dumb"}
	return append(env, m.opts.Env...)
}

// qemuArgs is QEMU's command line: no devices but the serial console (to a
// file) and the two 9p shares, no network, no reboot (a panic ends QEMU).
func (m *Machine) qemuArgs() []string {
	cpu := "max"
	if m.accel() == "kvm" {
		cpu = "host"
	}
	esc := func(p string) string { return strings.ReplaceAll(p, ",", ",,") }
	return []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "pc", "-accel", m.accel(), "-cpu", cpu,
		"-smp", strconv.Itoa(m.cpus()), "-m", strconv.Itoa(m.mem()),
		"-kernel", m.kernel, "-initrd", m.initrd(),
		"-append", "console=ttyS0 quiet panic=-1 mitigations=off random.trust_cpu=on rdinit=/init",
		"-serial", "file:" + m.consoleLog(),
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + esc(m.scratch) + ",mount_tag=scratch,security_model=passthrough,multidevs=remap",
	}
}

// findKernel returns the kernel image and its version: the one asked for, or
// the newest /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep.
func findKernel(want string) (image, version string, err error) {
	if want != "" {
		version = strings.TrimPrefix(filepath.Base(want), "vmlinuz-")
		if _, err := os.Stat(want); err != nil {
			return "", "", fmt.Errorf("kernel: %w", err)
		}
		return want, version, nil
	}
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	var found []string
	for _, img := range images {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return "", "", errors.New("no /boot/vmlinuz-* with its modules in /lib/modules " +
			"(Debian package linux-image-amd64; scripts/install-deps.sh installs it)")
	}
	slices.SortFunc(found, compareVersions)
	v := found[len(found)-1]
	return filepath.Join("/boot", "vmlinuz-"+v), v, nil
}

// compareVersions orders kernel versions by their numbers: 6.1.0-10 before 6.1.0-9 would be wrong.
func compareVersions(a, b string) int {
	fa, fb := strings.FieldsFunc(a, notDigit), strings.FieldsFunc(b, notDigit)
	for i := 0; i < len(fa) && i < len(fb); i++ {
		na, _ := strconv.Atoi(fa[i])
		nb, _ := strconv.Atoi(fb[i])
		if c := cmp.Compare(na, nb); c != 0 {
			return c
		}
	}
	return cmp.Or(cmp.Compare(len(fa), len(fb)), strings.Compare(a, b))
}

func notDigit(r rune) bool { return r < '0' || r > '9' }

// tailFile returns the last n lines of a file ("" if unreadable).
func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	return lastLines(b, n)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// tailer copies what a file gains to w.
type tailer struct {
	path string
	w    io.Writer
	off  int64
}

func newTailer(path string, w io.Writer) *tailer { return &tailer{path: path, w: w} }

func (t *tailer) poll() {
	if t.w == nil {
		return
	}
	f, err := os.Open(t.path)
	if err != nil {
		return
	}
	defer f.Close()
	var b bytes.Buffer
	n, _ := io.Copy(&b, io.NewSectionReader(f, t.off, 1<<40))
	t.off += n
	_, _ = t.w.Write(b.Bytes())
}
