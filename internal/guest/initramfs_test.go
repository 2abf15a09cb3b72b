package guest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestModuleOrder(t *testing.T) {
	dep := []byte(`kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`)
	builtin := []byte("kernel/fs/ext4/ext4.ko\n")
	got, err := moduleOrder(dep, builtin, []string{"virtio_pci", "9pnet_virtio", "9p", "ext4", "virtio_rng"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		"kernel/drivers/virtio/virtio_pci.ko",
		"kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet_virtio.ko",
		"kernel/fs/netfs/netfs.ko", "kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko",
		"kernel/drivers/char/hw_random/virtio-rng.ko.xz",
	}
	assert.Equal(t, want, got, "load order")
	// Every module comes after its dependencies.
	pos := map[string]int{}
	for i, f := range got {
		pos[f] = i
	}
	for _, line := range strings.Split(string(dep), "\n") {
		file, rest, _ := strings.Cut(line, ":")
		if i, ok := pos[file]; ok {
			for _, d := range strings.Fields(rest) {
				if pos[d] > i {
					t.Errorf("%s loads before its dependency %s", file, d)
				}
			}
		}
	}

	if _, err := moduleOrder(dep, builtin, []string{"xfrm_interface"}); err == nil {
		t.Error("a module that is neither in modules.dep nor built in: no error")
	}
	if _, err := moduleOrder([]byte("a.ko: b.ko\n"), nil, []string{"a"}); err == nil {
		t.Error("a dependency without its own line: no error")
	}
	if _, err := moduleOrder([]byte("a.ko: b.ko\nb.ko: a.ko\n"), nil, []string{"a"}); err == nil {
		t.Error("a dependency loop: no error")
	}
}

// TestInitramfsArchive writes an archive and reads it back with an
// independent cpio reader (busybox's, the same code family as the
// kernel's unpacker reads).
func TestInitramfsArchive(t *testing.T) {
	dir := t.TempDir()
	modDir := filepath.Join(dir, "modules")
	for _, f := range []string{"kernel/a/x.ko", "kernel/b/c/y.ko"} {
		p := filepath.Join(modDir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("module "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bb := filepath.Join(dir, "bb")
	if err := os.WriteFile(bb, []byte("odd-length busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	r := initramfs{busybox: bb, modulesDir: modDir, modules: []string{"kernel/a/x.ko", "kernel/b/c/y.ko"}, init: "#!/bin/busybox sh\n"}
	if err := r.write(&buf); err != nil {
		t.Fatal(err)
	}
	got := readCpio(t, buf.Bytes())
	want := map[string]string{
		"init": "#!/bin/busybox sh\n", "bin/busybox": "odd-length busybox",
		"lib/modules/kernel/a/x.ko": "module kernel/a/x.ko", "lib/modules/kernel/b/c/y.ko": "module kernel/b/c/y.ko",
	}
	for name, data := range want {
		if e, ok := got[name]; !ok || e.data != data {
			t.Errorf("%s: got %+v, want %q", name, e, data)
		}
	}
	if e := got["dev/console"]; e.mode != cpioCharDev|0o600 || e.rdev != [2]int{5, 1} {
		t.Errorf("dev/console: %+v, want a character device 5,1", e)
	}
	for _, d := range []string{"lib/modules/kernel", "lib/modules/kernel/b", "lib/modules/kernel/b/c", "newroot", "proc"} {
		if got[d].mode&0o170000 != cpioDir {
			t.Errorf("directory %s missing: %+v", d, got[d])
		}
	}
	if _, ok := got["TRAILER!!!"]; !ok {
		t.Error("no trailer")
	}
	// busybox's cpio lists the same archive.
	if _, err := os.Stat(Busybox); err == nil {
		cmd := exec.Command(Busybox, "cpio", "-t")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "lib/modules/kernel/b/c/y.ko") {
			t.Errorf("busybox cpio -t: %v\n%s", err, out)
		}
	}
}

type cpioEntry struct {
	mode uint32
	rdev [2]int
	data string
}

// readCpio parses a newc archive.
func readCpio(t *testing.T, b []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	field := func(h []byte, i int) int {
		v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("header field %d: %v", i, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; off < len(b); {
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, h[:6])
		}
		size, nameLen := field(h, 6), field(h, 11)
		name := string(b[off+110 : off+110+nameLen-1])
		dataOff := align(off + 110 + nameLen)
		out[name] = cpioEntry{mode: uint32(field(h, 1)), rdev: [2]int{field(h, 9), field(h, 10)},
			data: string(b[dataOff : dataOff+size])}
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			break
		}
	}
	return out
}

func TestStage2Quoting(t *testing.T) {
	dir := t.TempDir()
	argv := []string{"printf", "%s|", "it's", "a b", "$HOME", "`x`"}
	script := stage2Script("/ctl", dir, []string{"A=x y'z"}, argv)
	// Run the part between the parentheses with the host's sh.
	start, end := strings.Index(script, "(\n"), strings.Index(script, ") >")
	body := script[start+2 : end]
	out, err := exec.Command("sh", "-c", body).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s\nscript:\n%s", err, out, body)
	}
	if want := "it's|a b|$HOME|`x`|"; string(out) != want {
		t.Errorf("output %q, want %q", out, want)
	}
	out, err = exec.Command("sh", "-c", strings.Replace(body, "exec printf", "printf %s \"$A\"; exec printf", 1)).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "x y'z") {
		t.Errorf("env: %q %v", out, err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.1.0-9-amd64", "6.1.0-10-amd64", -1},
		{"6.1.0-57-amd64", "6.1.0-57-amd64", 0},
		{"6.12.0-1-amd64", "6.1.0-57-amd64", 1},
	} {
		if got := compareVersions(c.a, c.b); got != c.want {
			t.Errorf("compareVersions(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// TestNewNamesWhatIsMissing: without QEMU on PATH, New fails and names the
// package to install.
func TestNewNamesWhatIsMissing(t *testing.T) {
	path := os.Getenv("PATH")
	t.Setenv("PATH", t.TempDir())
	_, err := New(Options{})
	if err == nil || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Fatalf("New without QEMU: %v, want an error naming qemu-system-x86", err)
	}
	t.Setenv("PATH", path)
	_, err = New(Options{Kernel: "/nonexistent/vmlinuz-1"})
	if err == nil || !strings.Contains(err.Error(), "kernel") && !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Errorf("New with a missing kernel: %v, want an error naming the kernel (or QEMU, not installed)", err)
	}
}
