package guest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// bootModules are the modules the initramfs loads before it can mount the
// host's root: the virtio PCI transport and 9p over virtio. Everything else
// (XFRM interfaces, ESP, netem, nftables...) is loaded on demand after the
// switch to the host's root, by the host's own modprobe from /lib/modules.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p"}

// moduleOrder returns the files (relative to the modules directory) to
// insmod, in order, so that every module comes after the modules it depends
// on, for the modules named in want. dep is the text of modules.dep and
// builtin that of modules.builtin: a module built into the kernel is not
// loaded. Names compare with '-' and '_' alike, as modprobe does.
func moduleOrder(dep, builtin []byte, want []string) ([]string, error) {
	deps := map[string][]string{} // file -> its dependencies' files
	byName := map[string]string{} // module name -> file
	sc := bufio.NewScanner(bytes.NewReader(dep))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || file == "" {
			continue
		}
		deps[file] = strings.Fields(rest)
		byName[modName(file)] = file
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	built := map[string]bool{}
	for _, line := range strings.Split(string(builtin), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			built[modName(line)] = true
		}
	}
	var (
		order []string
		seen  = map[string]bool{}
		visit func(file string, depth int) error
	)
	visit = func(file string, depth int) error {
		if seen[file] {
			return nil
		}
		if depth > 64 {
			return fmt.Errorf("modules.dep: dependency loop at %s", file)
		}
		ds, ok := deps[file]
		if !ok {
			return fmt.Errorf("modules.dep: %s is a dependency but has no line of its own", file)
		}
		// modules.dep lists a module's dependencies so that the last
		// one loads first; visiting them in reverse keeps that order.
		for i := len(ds) - 1; i >= 0; i-- {
			if err := visit(ds[i], depth+1); err != nil {
				return err
			}
		}
		seen[file] = true
		order = append(order, file)
		return nil
	}
	for _, m := range want {
		name := normName(m)
		file, ok := byName[name]
		switch {
		case ok:
			if err := visit(file, 0); err != nil {
				return nil, err
			}
		case built[name]:
		default:
			return nil, fmt.Errorf("module %s is neither in modules.dep nor built in", m)
		}
	}
	return order, nil
}

// modName is the module name of a path in modules.dep or modules.builtin:
// "kernel/fs/9p/9p.ko" (or .ko.xz, .ko.zst...) is "9p".
func modName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return normName(base)
}

func normName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// cpioWriter writes an archive in the "newc" format, the one the kernel
// unpacks as an initramfs.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioCharDev = 0o020000
)

func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	pad(&b, b.Len())
	b.Write(data)
	pad(&b, len(data))
	_, c.err = c.w.Write(b.Bytes())
}

// pad adds the zero bytes that align what was written (n bytes) to 4.
func pad(b *bytes.Buffer, n int) {
	if r := n % 4; r != 0 {
		b.Write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string)                      { c.entry(name, cpioDir|0o755, 0, 0, nil) }
func (c *cpioWriter) file(name string, m uint32, d []byte) { c.entry(name, cpioFile|m, 0, 0, d) }

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}

// initramfs is what goes into the guest's initramfs.
type initramfs struct {
	busybox    string   // a static busybox
	modulesDir string   // /lib/modules/VERSION
	modules    []string // files below modulesDir, in load order
	init       string   // the /init script
}

// write writes the archive: /init, /bin/busybox, /dev/console (the kernel
// opens it for init before anything is mounted) and the modules.
func (r initramfs) write(w io.Writer) error {
	bb, err := os.ReadFile(r.busybox)
	if err != nil {
		return err
	}
	c := &cpioWriter{w: w}
	for _, d := range []string{"bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"} {
		c.dir(d)
	}
	c.entry("dev/console", cpioCharDev|0o600, 5, 1, nil)
	c.file("bin/busybox", 0o755, bb)
	c.file("init", 0o755, []byte(r.init))
	made := map[string]bool{}
	for _, m := range r.modules {
		parts := strings.Split(path.Dir(m), "/")
		for i := range parts {
			d := "lib/modules/" + strings.Join(parts[:i+1], "/")
			if !made[d] {
				made[d] = true
				c.dir(d)
			}
		}
		data, err := os.ReadFile(filepath.Join(r.modulesDir, m))
		if err != nil {
			return err
		}
		c.file("lib/modules/"+m, 0o644, data)
	}
	return c.close()
}

// checkStatic fails unless the file at p is an ELF executable without a
// program interpreter: the initramfs has no libraries.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: the initramfs has no shared libraries")
		}
	}
	return nil
}
