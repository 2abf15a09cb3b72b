package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ninepOpts are the 9p mount options: 9P2000.L over virtio, with large
// messages (the default 8 KiB makes every binary slow to load).
const ninepOpts = "trans=virtio,version=9p2000.L,msize=262144"

// initScript is the initramfs's /init (busybox sh): it loads the boot
// modules, mounts the host's root read-only with tmpfs over run, tmp and
// var/tmp, mounts the scratch share at its host path, and switches to the
// host's root, where stage2 (in the scratch directory) runs the command. A
// failure prints why on the console and powers off.
func initScript(modules []string, scratch string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
bb=/bin/busybox
fail() { $bb echo "guest init: $*"; $bb echo o > /proc/sysrq-trigger; exit 1; }
$bb mount -t proc proc /proc || fail "mount /proc"
$bb mount -t sysfs sys /sys || fail "mount /sys"
$bb mount -t devtmpfs dev /dev || fail "mount /dev"
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "$bb insmod /lib/modules/%[1]s || fail \"insmod %[1]s\"\n", m)
	}
	fmt.Fprintf(&b, `$bb mount -t 9p -o ro,%[1]s,cache=loose hostroot /newroot || fail "mount the host's root (9p)"
$bb mount -t tmpfs -o mode=0755 run /newroot/run || fail "tmpfs /run"
$bb mount -t tmpfs -o mode=1777 tmp /newroot/tmp || fail "tmpfs /tmp"
$bb mount -t tmpfs -o mode=1777 vartmp /newroot/var/tmp || fail "tmpfs /var/tmp"
$bb mkdir -p /newroot%[2]s || fail "mkdir %[2]s"
$bb mount -t 9p -o %[1]s scratch /newroot%[2]s || fail "mount the scratch share (9p)"
$bb mount --move /dev /newroot/dev || fail "move /dev"
$bb mount --move /sys /newroot/sys || fail "move /sys"
$bb mount --move /proc /newroot/proc || fail "move /proc"
exec $bb switch_root /newroot /bin/sh %[3]s
`, ninepOpts, shellQuote(scratch), shellQuote(filepath.Join(scratch, ".guest", "stage2")))
	return b.String()
}

// stage2Script runs as the guest's init (the host's /bin/sh), in the host's
// root: it finishes the mounts, brings lo up, runs argv in dir with env,
// its output to ctl/output, writes its exit code to ctl/exit and powers
// off (busybox's poweroff -f is the reboot system call itself: as init, a
// shell that exited would panic the kernel first). Running the command in the foreground keeps the shell reaping the
// orphans the command leaves (daemons).
func stage2Script(ctl, dir string, env, argv []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/sh
ctl=%s
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
echo guest > /proc/sys/kernel/hostname
ip link set lo up
cut -d' ' -f1 /proc/uptime > "$ctl/started"
`, shellQuote(ctl))
	b.WriteString("(\n")
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&b, "  export %s=%s\n", k, shellQuote(v))
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	fmt.Fprintf(&b, "  cd %s || exit 126\n  exec %s\n", shellQuote(dir), strings.Join(quoted, " "))
	b.WriteString(`) > "$ctl/output" 2>&1 < /dev/null
echo $? > "$ctl/exit.part" && mv "$ctl/exit.part" "$ctl/exit"
sync
exec /bin/busybox poweroff -f
`)
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lockPath is the host-wide lock that serialises guests.
func lockPath() string {
	if st, err := os.Stat("/run/lock"); err == nil && st.IsDir() {
		return "/run/lock/bgpgw-guest.lock"
	}
	return filepath.Join(os.TempDir(), "bgpgw-guest.lock")
}

// lockHost waits, until ctx ends, for no other guest of this package to run
// on the host, and returns the function that lets the next one run.
func lockHost(ctx context.Context) (unlock func(), err error) {
	p := lockPath()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("guest: lock %s: %w", p, err)
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("guest: lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("guest: waiting for another guest to finish (lock %s): %w", p, ctx.Err())
		case <-t.C:
		}
	}
}
