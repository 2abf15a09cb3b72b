// Tests of the systemd unit: `systemd-analyze verify` accepts it, and it keeps the
// settings bgpgw relies on.
package systemd_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/config"
)

const (
	unitName      = "bgpgw.service"
	installedBin  = "/usr/local/bin/bgpgw"
	wantExecStart = "ExecStart=" + installedBin + " run --config /etc/bgpgw/bgpgw.yaml"
)

func readUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(unitName)
	require.NoError(t, err)
	return string(b)
}

// systemdAnalyze returns the path of systemd-analyze, installing the systemd
// package with apt-get when it is missing. It never skips.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("systemd-analyze"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Fatal("systemd-analyze is missing and installing it (apt-get install -y systemd) needs root")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Fatal("systemd-analyze is missing and there is no apt-get to install the systemd package")
	}
	apt := func(args ...string) error {
		// Wait for the dpkg lock rather than fail if another test package runs apt too.
		cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New("apt-get " + strings.Join(args, " ") + ": " + err.Error() + "\n" + string(out))
		}
		return nil
	}
	install := []string{"install", "-y", "--no-install-recommends", "systemd"}
	if err := apt(install...); err != nil {
		t.Logf("%v; updating the package lists and retrying", err)
		if err := apt("update"); err != nil {
			t.Fatalf("systemd-analyze is missing and cannot be installed: %v", err)
		}
		if err := apt(install...); err != nil {
			t.Fatalf("systemd-analyze is missing and cannot be installed: %v", err)
		}
	}
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("installed the systemd package but systemd-analyze is still missing: %v", err)
	}
	return p
}

// buildBgpgw builds the daemon into dir and returns the binary's path.
func buildBgpgw(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bgpgw")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/bgpgw/bgpgw/cmd/bgpgw")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// withExecStart returns the unit with the ExecStart binary replaced by bin and
// every other byte unchanged.
func withExecStart(t *testing.T, unit, bin string) string {
	t.Helper()
	lines := strings.SplitAfter(unit, "\n")
	found := 0
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "ExecStart=") {
			found++
			require.Equal(t, wantExecStart, strings.TrimRight(l, "\n"))
			lines[i] = strings.Replace(l, installedBin, bin, 1)
		}
	}
	require.Equal(t, 1, found, "want exactly one ExecStart= line")
	return strings.Join(lines, "")
}

// noise is the only output of `systemd-analyze verify` tolerated: another unit
// referenced by ours (network-online.target, strongswan.service) missing on the
// machine running the test. Everything else, including any line naming
// bgpgw.service, is a problem.
var noise = regexp.MustCompile(`^Unit (\S+) not found\.$`)

// verify runs `systemd-analyze verify` on the unit text, saved as bgpgw.service
// in a directory of its own, and returns the lines that are not noise, the
// whole output and the exit error.
func verify(t *testing.T, analyze, unit string) (problems []string, output string, err error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, unitName)
	require.NoError(t, os.WriteFile(path, []byte(unit), 0o644))
	cmd := exec.Command(analyze, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" {
			continue
		}
		if m := noise.FindStringSubmatch(l); m != nil && m[1] != unitName {
			t.Logf("ignored: %s", l)
			continue
		}
		problems = append(problems, l)
	}
	return problems, string(out), err
}

func TestUnitVerifies(t *testing.T) {
	analyze := systemdAnalyze(t)
	if out, err := exec.Command(analyze, "--version").Output(); err == nil {
		t.Logf("%s", bytes.SplitN(out, []byte("\n"), 2)[0])
	}
	dir := t.TempDir()
	bin := buildBgpgw(t, dir)
	orig := readUnit(t)
	unit := withExecStart(t, orig, bin)
	require.Equal(t, strings.Count(orig, "\n"), strings.Count(unit, "\n"))

	problems, out, err := verify(t, analyze, unit)
	require.NoError(t, err, "systemd-analyze verify failed:\n%s", out)
	assert.Empty(t, problems, "systemd-analyze verify printed:\n%s", out)

	// Control: verify exits 0 on unknown keys and bad values and only prints a
	// warning, so the check above rests on reading the output. Make sure a broken
	// copy of the unit is caught.
	broken := strings.Replace(unit, "WatchdogSec=10s", "WatchdogSecc=10s", 1)
	broken = strings.Replace(broken, "KillMode=mixed", "KillMode=bogus", 1)
	problems, out, _ = verify(t, analyze, broken)
	require.Len(t, problems, 2, "systemd-analyze verify on a broken unit printed:\n%s", out)
	assert.Contains(t, problems[0], "WatchdogSecc")
	assert.Contains(t, problems[1], "kill mode")
	for _, p := range problems {
		assert.Contains(t, p, unitName)
	}
}

// settings parses the unit into "Section.Key" -> values, in order.
func settings(t *testing.T, unit string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	section := ""
	for _, l := range strings.Split(unit, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			require.True(t, ok, "not a key=value line: %q", l)
			require.False(t, strings.HasSuffix(l, `\`), "continuation lines are not parsed here: %q", l)
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

// TestUnitSettings pins what bgpgw needs from its unit; verify only checks syntax.
func TestUnitSettings(t *testing.T) {
	s := settings(t, readUnit(t))
	one := func(key string) string {
		t.Helper()
		require.Len(t, s[key], 1, key)
		return s[key][0]
	}
	for key, want := range map[string]string{
		"Service.Type":                    "notify",
		"Service.NotifyAccess":            "main",
		"Service.ExecStart":               strings.TrimPrefix(wantExecStart, "ExecStart="),
		"Service.Restart":                 "on-failure",
		"Service.WatchdogSec":             "10s",
		"Service.KillMode":                "mixed",
		"Service.CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
		"Service.AmbientCapabilities":     "CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_NET_RAW",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ReadWritePaths":          "/run/bgpgw /var/lib/bgpgw",
		"Service.RuntimeDirectory":        "bgpgw",
		"Service.RuntimeDirectoryMode":    "0750",
		"Service.StateDirectory":          "bgpgw",
		"Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"Install.WantedBy":                "multi-user.target",
	} {
		assert.Equal(t, want, one(key), key)
	}
	assert.Contains(t, one("Service.ExecReload"), "kill -HUP $MAINPID", "systemctl reload sends SIGHUP")

	// The API socket and the drain state file live in the writable directories.
	assert.Equal(t, "/run/bgpgw/", filepath.Dir(config.DefaultSocket)+"/")
	assert.Equal(t, "/var/lib/bgpgw/", filepath.Dir(config.DefaultDrainState)+"/")

	// The stop timeout leaves room for the default drain.
	stop, err := time.ParseDuration(one("Service.TimeoutStopSec"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, stop, 10*config.DefaultDrainTime)
}
