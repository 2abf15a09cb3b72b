// Command guestrun runs a command in a QEMU guest booted with Debian's own
// kernel, the host's root read-only over 9p (internal/guest), and exits
// with the command's exit code:
//
//	go run ./test/guestrun [-timeout 10m] [-cpus 2] [-mem 2048] [-accel tcg] [-dir DIR] [-copy FILE]... -- COMMAND [ARG]...
//
// The command's output streams to standard output as it runs. -copy puts a
// host file into the scratch directory, which the guest sees at the same
// path as the host; "{scratch}" in the command's arguments is replaced with
// that path. A guest that cannot boot, crashes or reaches the time limit
// exits 125 with the reason, the console's end and the output so far.
//
//	go run ./test/guestrun -- sh -c 'modprobe xfrm_interface && ip link add x1 type xfrm if_id 1 && ip -d link show x1'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bgpgw/bgpgw/internal/guest"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(s string) error { *f = append(*f, s); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var opts guest.Options
	var copies files
	flag.DurationVar(&opts.Timeout, "timeout", guest.DefaultTimeout, "time limit of the whole run")
	flag.IntVar(&opts.CPUs, "cpus", 0, "guest CPUs (0: 2, at most the host's)")
	flag.IntVar(&opts.MemoryMiB, "mem", 0, "guest memory in MiB (0: 2048)")
	flag.StringVar(&opts.Accel, "accel", "tcg", "QEMU accelerator: tcg or kvm")
	flag.StringVar(&opts.Dir, "dir", "", "working directory in the guest (default: the scratch directory)")
	flag.StringVar(&opts.Kernel, "kernel", "", "kernel image (default: the newest /boot/vmlinuz-* with modules)")
	flag.Var(&copies, "copy", "host file to copy into the scratch directory (repeatable)")
	verbose := flag.Bool("v", false, "print the runner's progress on stderr")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: guestrun [flags] -- COMMAND [ARG]...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		return 2
	}
	opts.Output = os.Stdout
	if *verbose {
		opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	m, err := guest.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 125
	}
	defer func() {
		if err := m.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "guestrun:", err)
		}
	}()
	for _, c := range copies {
		if err := copyFile(c, filepath.Join(m.Scratch(), filepath.Base(c))); err != nil {
			fmt.Fprintln(os.Stderr, "guestrun:", err)
			return 125
		}
	}
	argv := flag.Args()
	for i, a := range argv {
		argv[i] = strings.ReplaceAll(a, "{scratch}", m.Scratch())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := m.Run(ctx, argv...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 125
	}
	fmt.Fprintf(os.Stderr, "guestrun: exit %d after %v (boot %v)\n", res.ExitCode, res.Duration.Round(1e6), res.Boot.Round(1e6))
	return res.ExitCode
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return errors.New(from + ": not a regular file")
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}
