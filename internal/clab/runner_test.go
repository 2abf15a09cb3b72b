package clab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// writeTopology writes a topology file and the files it binds into a
// fresh directory and loads it.
func writeTopology(t *testing.T, text string, files map[string]string) *Topology {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	path := filepath.Join(dir, "t.clab.yml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	topo, err := Load(path)
	require.NoError(t, err)
	return topo
}

// TestDeployRunner checks the runner itself on a two-node topology:
// namespaces and links, binds (read-only), a private /run, the hostname,
// the environment's precedence, exec commands in order, a daemon left
// behind by a command, and the teardown.
func TestDeployRunner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.New(t.Logf)
	require.NoError(t, err, "needs root")
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = l.Close()
		}
	})
	marker := "/run/" + l.Prefix() // private to the nodes: never on the host
	topo := writeTopology(t, `
name: runner
topology:
  defaults:
    kind: linux
    binds: [files:/run/lab/files:ro]
    env: {WHO: defaults, ONLY: defaults}
  nodes:
    a:
      env: {WHO: a}
      exec:
        - ip addr add 10.99.0.1/30 dev eth1
        - sh /run/lab/files/check.sh `+marker+`
        - sh -c "sleep 600 > /dev/null 2>&1 & echo $! > /run/daemon.pid"
    b:
      exec: [ip addr add 10.99.0.2/30 dev eth1]
  links:
    - endpoints: [a:eth1, b:eth1]
`, map[string]string{"files/check.sh": `set -e
echo "$WHO $ONLY $EXTRA $(hostname) $CLAB_INTFS" > "$1"
if touch /run/lab/files/x 2>/dev/null; then echo "bind is writable"; exit 1; fi
`})
	d, err := Deploy(ctx, l, topo, Options{Logf: t.Logf, Env: map[string]string{"EXTRA": "extra", "ONLY": "options"}})
	require.NoError(t, err)

	a, b := d.Node("a"), d.Node("b")
	require.NotNil(t, a)
	require.NotNil(t, b)
	assert.Nil(t, d.Node("c"))
	assert.Len(t, d.Nodes(), 2)
	assert.Equal(t, l.Prefix()+"-a", a.NS.Name())

	out, err := a.ReadFile(marker)
	require.NoError(t, err)
	assert.Equal(t, "a options extra a 1\n", string(out), "node env over defaults, Options.Env over both; hostname; CLAB_INTFS")
	_, err = os.Stat(marker)
	assert.True(t, errors.Is(err, os.ErrNotExist), "the node's /run is not the host's")
	_, err = b.ReadFile(marker)
	assert.Error(t, err, "nor another node's")

	got, err := a.Exec(ctx, "sh", "-c", `echo "$WHO $(hostname)"`)
	require.NoError(t, err)
	assert.Equal(t, "a a\n", got)
	got, err = a.Exec(ctx, "ping", "-c", "1", "-W", "5", "10.99.0.2")
	require.NoError(t, err, "the link works")
	assert.Contains(t, got, "1 received")
	_, err = b.Exec(ctx, "false")
	assert.ErrorContains(t, err, "node b: false: exit status 1")

	pidText, err := a.ReadFile("/run/daemon.pid")
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, 0), "the daemon a command started outlives it")

	holders := []int{a.Pid(), b.Pid()}
	closed = true
	require.NoError(t, l.Close())
	for _, p := range append(holders, pid) {
		// Killed; a process whose parent was not us may linger as a
		// zombie until init reaps it.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := lab.Poll(pctx, 20*time.Millisecond, func() (bool, error) { return gone(p), nil })
		cancel()
		assert.NoError(t, err, "process %d is gone after Close", p)
	}
	for _, ns := range []string{a.NS.Name(), b.NS.Name()} {
		_, err := os.Stat("/run/netns/" + ns)
		assert.True(t, errors.Is(err, os.ErrNotExist), "netns %s is gone", ns)
	}
}

// gone reports whether a process has exited (a zombie counts).
func gone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// TestDeployFailures: a failing exec names the node, the command and its
// output; a bind whose target cannot be created without touching the host
// is refused before anything starts.
func TestDeployFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo := writeTopology(t, `
name: failing
topology:
  nodes:
    ok: {kind: linux, exec: [sh -c "echo fine"]}
    bad:
      kind: linux
      exec: ["sh -c 'echo first'", "sh -c 'echo boom >&2; exit 3'", "sh -c 'echo never'"]
`, nil)
	l := lab.ForTest(t)
	_, err := Deploy(ctx, l, topo, Options{Logf: t.Logf})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `node bad: exec "sh -c 'echo boom >&2; exit 3'": exit status 3`)
	assert.Contains(t, err.Error(), "boom")
	assert.NotContains(t, err.Error(), "never")

	topo = writeTopology(t, `
name: badbind
topology:
  nodes:
    n: {kind: linux, binds: ["files:/nonexistent-clab-target/x"]}
`, map[string]string{"files/f": "x"})
	_, err = Deploy(ctx, lab.ForTest(t), topo, Options{})
	assert.ErrorContains(t, err, "creates bind targets only below /run")

	topo = writeTopology(t, `
name: nosource
topology:
  nodes:
    n: {kind: linux, binds: ["missing:/run/x"]}
`, nil)
	_, err = Deploy(ctx, lab.ForTest(t), topo, Options{})
	assert.ErrorContains(t, err, "source")

	topo = writeTopology(t, `
name: timeout
topology:
  nodes:
    n: {kind: linux, exec: [sleep 30]}
`, nil)
	start := time.Now()
	_, err = Deploy(ctx, lab.ForTest(t), topo, Options{ExecTimeout: 300 * time.Millisecond})
	assert.ErrorContains(t, err, "deadline exceeded")
	assert.Less(t, time.Since(start), 10*time.Second)
}
