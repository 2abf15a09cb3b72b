package guest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// qemuPids lists the QEMU processes whose command line names dir.
func qemuPids(t *testing.T, dir string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), QEMU) && strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestGuestBoot boots Debian's kernel and runs one shell command that
// checks the guest from inside: the kernel is Debian's, the host's root is
// there and read-only, /tmp is the guest's own and writable, the scratch
// directory is shared at the host's path, the environment is passed, the
// kernel loads an XFRM interface module on demand; its exit code comes back.
func TestGuestBoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := ForTest(t, Options{Env: []string{"GREETING=hello 'guest'"}, Timeout: 2 * time.Minute})
	version := strings.TrimPrefix(filepath.Base(m.Kernel()), "vmlinuz-")
	script := `set -u
uname -r
echo "greeting=$GREETING"
echo "cwd=$(pwd)"
if touch /usr/guest-was-here 2>/dev/null; then echo "root writable"; else echo "root read-only"; fi
echo tmpfile > "$TMP_FILE" && echo "tmp writable"
echo from-guest > "$SCRATCH_FILE"
test -x /usr/lib/ipsec/charon && echo "host binaries present"
unshare -n sh -c "ip link add bgw-x1 type xfrm if_id 7 && ip -d link show bgw-x1 | grep -o 'if_id 0x7'"
exit 3
`
	scratchFile := filepath.Join(m.Scratch(), "from-guest")
	tmpFile := "/tmp/" + filepath.Base(m.dir) + "-tmp"
	m.opts.Env = append(m.opts.Env, "SCRATCH_FILE="+scratchFile, "TMP_FILE="+tmpFile)
	res, err := m.Run(ctx, "sh", "-c", script)
	require.NoError(t, err)
	out := string(res.Output)
	t.Logf("guest output:\n%s", out)
	assert.Equal(t, 3, res.ExitCode, "the command's exit code")
	for _, want := range []string{version, "greeting=hello 'guest'", "cwd=" + m.Scratch(), "root read-only",
		"tmp writable", "host binaries present", "if_id 0x7"} {
		assert.Contains(t, out, want)
	}
	b, err := os.ReadFile(scratchFile)
	require.NoError(t, err, "the guest wrote into the scratch directory")
	assert.Equal(t, "from-guest\n", string(b))
	_, err = os.Stat(tmpFile)
	assert.True(t, os.IsNotExist(err), "the guest's /tmp is its own")
	_, err = os.Stat("/usr/guest-was-here")
	assert.True(t, os.IsNotExist(err), "the host's root is read-only to the guest")
	assert.Positive(t, res.Boot)
	assert.Less(t, res.Boot, res.Duration)
	t.Logf("boot %v, whole run %v", res.Boot.Round(time.Millisecond), res.Duration.Round(time.Millisecond))
	assert.Empty(t, qemuPids(t, m.dir), "no QEMU left")
}

// TestGuestTimeLimit: a command that outlives the time limit ends the run
// with an error that says so and holds the output so far; QEMU is gone and
// Close removes everything.
func TestGuestTimeLimit(t *testing.T) {
	ctx := context.Background()
	m, err := New(Options{Timeout: 20 * time.Second, Logf: t.Logf})
	require.NoError(t, err, "this test runs in a QEMU guest, which cannot run here")
	dir := m.dir
	defer m.Close()
	start := time.Now()
	res, err := m.Run(ctx, "sh", "-c", "echo before-the-limit; exec sleep 3600")
	took := time.Since(start)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "time limit 20s reached")
	assert.Contains(t, err.Error(), "before-the-limit", "the output so far is in the error")
	assert.Contains(t, string(res.Output), "before-the-limit")
	assert.Equal(t, -1, res.ExitCode)
	assert.Less(t, took, 30*time.Second)
	assert.Empty(t, qemuPids(t, dir), "no QEMU left after the time limit")
	require.NoError(t, m.Close())
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "Close removed %s", dir)
	_, err = m.Run(ctx, "true")
	assert.ErrorContains(t, err, "closed")
}

// TestGuestStops: a guest that powers off before the command ends (as a
// crash would) is an error naming it, with the console; a context ended by
// the caller stops the guest too.
func TestGuestStops(t *testing.T) {
	m := ForTest(t, Options{Timeout: 2 * time.Minute})
	res, err := m.Run(context.Background(), "sh", "-c", "echo going-down; echo o > /proc/sysrq-trigger; exec sleep 3600")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the guest stopped before the command finished")
	assert.Contains(t, string(res.Output), "going-down")

	// The caller ends the context once the command runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = m.run(ctx, cancelOn{"running", cancel}, []string{"sh", "-c", "echo running; exec sleep 3600"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "context ended")
	assert.Empty(t, qemuPids(t, m.dir), "no QEMU left")
}

// cancelOn calls cancel once the output holds marker.
type cancelOn struct {
	marker string
	cancel func()
}

func (c cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.marker) {
		c.cancel()
	}
	return len(p), nil
}
