package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/api"
)

// TestMain runs the tests in a private network namespace (only lo), so the
// daemon started in-process binds, connects and touches routes nowhere but
// there.
func TestMain(m *testing.M) { lab.RunInPrivateNetns(m) }

const lifecycleConfig = `
instance: {name: life1, mode: active-standby, role: standby}
bgp: {asn: 65515, router_id: 192.0.2.1, listen_port: %d, listen_addresses: [127.0.0.1]}
announce: [10.10.0.0/16]
ipsec: {mode: %s}
tunnels:
  - name: t1
    inside: {local: 127.0.0.1/8, remote: 127.0.0.2}
    peer_asn: 65010
    accept: [10.1.0.0/16]
api: {socket: %s}
kernel: {table: 4242, protocol: 250}
drain: {time: 200ms, state_file: %s}
`

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeConfig(t *testing.T, mode string) (path, socket string) {
	t.Helper()
	dir := t.TempDir()
	socket = filepath.Join(dir, "run", "bgpgw.sock")
	path = filepath.Join(dir, "bgpgw.yaml")
	state := filepath.Join(dir, "state", "drained")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, lifecycleConfig, freePort(t), mode, socket, state), 0o600))
	return path, socket
}

// startRun runs `bgpgw run` in-process and waits for its API.
func startRun(t *testing.T, ctx context.Context, path, socket string) (<-chan int, *lab.SyncBuffer, api.Status) {
	t.Helper()
	logs := &lab.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- execute(context.Background(), []string{"run", "--config", path}, io.Discard, logs) }()
	client := api.NewClient(socket)
	for {
		st, err := client.Status(ctx)
		if err == nil {
			return done, logs, st
		}
		select {
		case code := <-done:
			t.Fatalf("run exited with %d before answering:\n%s", code, logs.String())
		case <-ctx.Done():
			t.Fatalf("API never answered: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopRun sends SIGTERM and waits for run to return 0.
func stopRun(t *testing.T, ctx context.Context, done <-chan int, logs *lab.SyncBuffer) {
	t.Helper()
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		require.Equal(t, exitOK, code, logs.String())
	case <-ctx.Done():
		t.Fatalf("run did not exit after SIGTERM:\n%s", logs.String())
	}
}

func TestRunLifecycle(t *testing.T) {
	defer goleak.VerifyNone(t)
	path, socket := writeConfig(t, "none")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done, logs, st := startRun(t, ctx, path, socket)
	client := api.NewClient(socket)

	assert.Equal(t, api.Instance{Name: "life1", Mode: "active-standby", Role: "standby"}, st.Instance)
	require.Len(t, st.Peers, 1)
	assert.Equal(t, "t1", st.Peers[0].Name)
	assert.NotEqual(t, "established", st.Peers[0].State)
	require.Len(t, st.Tunnels, 1)
	assert.False(t, st.Tunnels[0].Carrying)
	assert.Contains(t, st.Tunnels[0].Reason, "BGP session not established")

	fi, err := os.Stat(socket)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "API socket mode")

	// A second daemon on the same socket refuses to start.
	var out2, err2 bytes.Buffer
	assert.Equal(t, exitError, execute(ctx, []string{"run", "--config", path}, &out2, &err2))
	assert.Contains(t, err2.String(), "another bgpgw is running")

	// role, drain and undrain through the CLI.
	var out bytes.Buffer
	require.Equal(t, exitOK, execute(ctx, []string{"role", "primary", "--socket", socket}, &out, &out), out.String())
	st, err = client.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, "primary", st.Instance.Role)
	assert.Equal(t, exitError, execute(ctx, []string{"role", "boss", "--socket", socket}, &out, &out))
	require.Equal(t, exitOK, execute(ctx, []string{"drain", "--socket", socket}, &out, &out), out.String())
	st, err = client.Status(ctx)
	require.NoError(t, err)
	assert.True(t, st.Drained)

	out.Reset()
	require.Equal(t, exitOK, execute(ctx, []string{"status", "--socket", socket}, &out, &out))
	assert.Contains(t, out.String(), "instance life1")
	assert.Contains(t, out.String(), "t1")

	// Drained survives a restart (SIGTERM while drained exits at once).
	stopRun(t, ctx, done, logs)
	_, err = os.Stat(socket)
	assert.True(t, os.IsNotExist(err), "socket left behind")
	done, logs, st = startRun(t, ctx, path, socket)
	assert.True(t, st.Drained)
	assert.Equal(t, "drained", st.DrainState)
	assert.Contains(t, logs.String(), "starting drained")
	require.Equal(t, exitOK, execute(ctx, []string{"undrain", "--config", path}, &out, &out), out.String())
	st, err = client.Status(ctx)
	require.NoError(t, err)
	assert.False(t, st.Drained)

	// SIGTERM when not drained: drain first (200ms here), then exit 0.
	stopRun(t, ctx, done, logs)
	assert.Contains(t, logs.String(), "stopping: draining first")
	assert.Contains(t, logs.String(), "drain complete, stopping")
	assert.Contains(t, logs.String(), "bgpgw stopped")
	_, err = os.Stat(socket)
	assert.True(t, os.IsNotExist(err), "socket left behind")
	// The SIGTERM drain is not remembered.
	_, err = os.Stat(filepath.Join(filepath.Dir(filepath.Dir(socket)), "state", "drained"))
	assert.True(t, os.IsNotExist(err))
}

func TestValidateShippedExamples(t *testing.T) {
	files, err := filepath.Glob("../../configs/*/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		var out, errs bytes.Buffer
		assert.Equal(t, exitOK, execute(context.Background(), []string{"validate", "--config", f}, &out, &errs), "%s: %s", f, errs.String())
		assert.Contains(t, out.String(), "valid")
	}
}

func TestExitCodes(t *testing.T) {
	defer goleak.VerifyNone(t)
	good, socket := writeConfig(t, "none")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("instance: {name: x, mode: sideways}\nbgp: {asn: 0}\n"), 0o600))
	xfrm := filepath.Join(t.TempDir(), "xfrm.yaml")
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(xfrm), "psk"), []byte("k"), 0o600))
	require.NoError(t, os.WriteFile(xfrm, []byte(`
instance: {name: x1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1}
announce: [10.10.0.0/16]
ipsec: {mode: xfrm}
tunnels:
  - {name: t1, local_address: 203.0.113.1, remote_address: 198.51.100.1, psk_file: psk,
     ike_proposals: [aes256gcm16-prfsha384-ecp384], esp_proposals: [aes256gcm16-ecp384],
     inside: {local: 169.254.21.1/30, remote: 169.254.21.2}, peer_asn: 65010}
api: {socket: `+socket+`.x}
`), 0o600))

	rows := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"validate", "--config", good}, exitOK, "valid"},
		{[]string{"validate", "--config", bad}, exitConfig, "instance.mode"},
		{[]string{"validate", "--config", bad}, exitConfig, "bgp.asn"},
		{[]string{"validate", "--config", bad}, exitConfig, "tunnels: list at least one tunnel"},
		{[]string{"validate", "--config", "/nonexistent.yaml"}, exitConfig, "no such file"},
		{[]string{"run", "--config", bad}, exitConfig, "instance.mode"},
		{[]string{"validate", "--config", xfrm}, exitOK, "valid"},
		{[]string{"status", "--socket", socket}, exitError, "is it running?"},
		// No daemon to ask: 3, never 1 ("changes") nor 0.
		{[]string{"plan", "--config", good, "--socket", socket}, exitPlanFailed, "is it running?"},
		{[]string{"plan"}, exitError, "required flag"},
		{[]string{"validate"}, exitError, "required flag"},
		{[]string{"version"}, exitOK, "bgpgw"},
	}
	for _, r := range rows {
		var out bytes.Buffer
		code := execute(context.Background(), r.args, &out, &out)
		assert.Equal(t, r.code, code, "%v: %s", r.args, out.String())
		assert.Contains(t, out.String(), r.want, strings.Join(r.args, " "))
	}
}

// TestRunNotifiesSystemd runs the daemon under a fake systemd notify
// socket: READY=1 once sessions are configured, watchdog pings from the
// loop, STOPPING=1 when SIGTERM starts the drain.
func TestRunNotifiesSystemd(t *testing.T) {
	defer goleak.VerifyNone(t)
	path, socket := writeConfig(t, "none")
	notify := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	require.NoError(t, err)
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", notify)
	t.Setenv("WATCHDOG_USEC", "200000") // pings every 100 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	waitMsg := func(want string) {
		t.Helper()
		for {
			select {
			case m, ok := <-msgs:
				require.True(t, ok, "notify socket closed before %q", want)
				if m == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q from the daemon", want)
			}
		}
	}
	done, logs, _ := startRun(t, ctx, path, socket)
	waitMsg("READY=1")
	waitMsg("WATCHDOG=1")
	stopRun(t, ctx, done, logs)
	waitMsg("STOPPING=1")
}
