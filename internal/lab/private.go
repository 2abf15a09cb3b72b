package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const privateNetnsEnv = "BGPGW_PRIVATE_NETNS"

// EnterPrivateNetns makes the running program continue in a network
// namespace of its own, with only lo (brought up): unless it already runs
// in one, it re-executes itself under `unshare --net` and exits with the
// child's exit code. Everything the program then binds, connects to or
// routes stays in that namespace, which disappears with it.
func EnterPrivateNetns() {
	if os.Getenv(privateNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "needs root: runs in a private network namespace")
			os.Exit(1)
		}
		cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), privateNetnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "cannot run in a private network namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "ip link set lo up: %v: %s\n", err, out)
		os.Exit(1)
	}
}

// RunInPrivateNetns is for a package's TestMain: the tests run in a
// private network namespace (see EnterPrivateNetns). Without root the test
// binary fails at once, saying why: no test is skipped.
func RunInPrivateNetns(m *testing.M) {
	if os.Getenv(privateNetnsEnv) == "" && os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: needs root: these tests run in a private network namespace (unshare --net); "+
			"`make check` runs the tests that need no root\n", filepath.Base(os.Args[0]))
		os.Exit(1)
	}
	EnterPrivateNetns()
	os.Exit(m.Run())
}
