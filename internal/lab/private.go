package lab

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

const privateNetnsEnv = "BGPGW_TEST_PRIVATE_NETNS"

// RunInPrivateNetns is for a package's TestMain: it re-executes the test
// binary under `unshare --net`, so the tests run in a network namespace of
// their own with only lo (brought up), and exits with the tests' code.
// Everything the tests bind, connect to or route stays there.
func RunInPrivateNetns(m *testing.M) {
	if os.Getenv(privateNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "these tests need root: they run in a private network namespace")
			os.Exit(1)
		}
		cmd := exec.Command("unshare", append([]string{"--net", "--", os.Args[0]}, os.Args[1:]...)...)
		cmd.Env = append(os.Environ(), privateNetnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "cannot run tests in a private network namespace:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "ip link set lo up: %v: %s\n", err, out)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
