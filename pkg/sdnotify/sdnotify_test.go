package sdnotify_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/sdnotify"
)

// fakeSystemd listens on a unixgram socket like systemd's notification socket
// and points NOTIFY_SOCKET at it.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
}

func listen(t *testing.T, name string) *fakeSystemd {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", name)
	return &fakeSystemd{t: t, conn: conn}
}

func listenPath(t *testing.T) *fakeSystemd {
	return listen(t, filepath.Join(t.TempDir(), "notify"))
}

// next returns the next datagram, failing after a second.
func (f *fakeSystemd) next() string {
	f.t.Helper()
	require.NoError(f.t, f.conn.SetReadDeadline(time.Now().Add(time.Second)))
	buf := make([]byte, 4096)
	n, err := f.conn.Read(buf)
	require.NoError(f.t, err, "no datagram")
	return string(buf[:n])
}

// none asserts that nothing else arrives.
func (f *fakeSystemd) none() {
	f.t.Helper()
	require.NoError(f.t, f.conn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	buf := make([]byte, 4096)
	n, err := f.conn.Read(buf)
	var ne net.Error
	require.True(f.t, errors.As(err, &ne) && ne.Timeout(), "unexpected datagram %q (err %v)", buf[:n], err)
}

func unsetenv(t *testing.T, keys ...string) {
	for _, k := range keys {
		t.Setenv(k, "") // restores the old value at the end of the test
		require.NoError(t, os.Unsetenv(k))
	}
}

func TestDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(*testing.T) *fakeSystemd
	}{
		{"path", listenPath},
		{"abstract", func(t *testing.T) *fakeSystemd {
			return listen(t, fmt.Sprintf("@bgpgw-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.listen(t)
			t.Setenv("WATCHDOG_USEC", "10000000")
			t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
			n := sdnotify.New()
			require.True(t, n.Enabled())
			assert.Equal(t, 5*time.Second, n.WatchdogInterval())

			require.NoError(t, n.Ready())
			assert.Equal(t, "READY=1", f.next())
			require.NoError(t, n.Status("2 tunnels, 3 peers established"))
			assert.Equal(t, "STATUS=2 tunnels, 3 peers established", f.next())
			require.NoError(t, n.Status("line one\nline two\r\nthree"))
			assert.Equal(t, "STATUS=line one line two three", f.next())
			require.NoError(t, n.Watchdog())
			assert.Equal(t, "WATCHDOG=1", f.next())
			require.NoError(t, n.Stopping())
			assert.Equal(t, "STOPPING=1", f.next())
			f.none()
		})
	}
}

func TestNoopWithoutSystemd(t *testing.T) {
	unsetenv(t, "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
	for name, n := range map[string]*sdnotify.Notifier{"New": sdnotify.New(), "nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			assert.False(t, n.Enabled())
			assert.Zero(t, n.WatchdogInterval())
			assert.NoError(t, n.Ready())
			assert.NoError(t, n.Status("x"))
			assert.NoError(t, n.Watchdog())
			assert.NoError(t, n.Stopping())
		})
	}
	// WATCHDOG_USEC alone (no socket to ping) does not turn the watchdog on.
	t.Setenv("WATCHDOG_USEC", "10000000")
	assert.Zero(t, sdnotify.New().WatchdogInterval())
}

func TestWatchdogSettings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		usec, pid string // "-" means unset
		want      time.Duration
	}{
		{"pid is ours", "4000000", strconv.Itoa(os.Getpid()), 2 * time.Second},
		{"pid unset", "4000000", "-", 2 * time.Second},
		{"pid is another process", "4000000", strconv.Itoa(os.Getpid() + 1), 0},
		{"pid garbage", "4000000", "abc", 0},
		{"usec unset", "-", "-", 0},
		{"usec zero", "0", "-", 0},
		{"usec garbage", "10s", "-", 0},
		{"usec negative", "-5", "-", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := listenPath(t)
			unsetenv(t, "WATCHDOG_USEC", "WATCHDOG_PID")
			if tc.usec != "-" {
				t.Setenv("WATCHDOG_USEC", tc.usec)
			}
			if tc.pid != "-" {
				t.Setenv("WATCHDOG_PID", tc.pid)
			}
			n := sdnotify.New()
			assert.Equal(t, tc.want, n.WatchdogInterval())
			require.NoError(t, n.Watchdog())
			require.NoError(t, n.Ready())
			if tc.want > 0 {
				assert.Equal(t, "WATCHDOG=1", f.next())
			}
			// With the watchdog off, Watchdog sent nothing: the next datagram is READY.
			assert.Equal(t, "READY=1", f.next())
			f.none()
		})
	}
}

func TestSendErrors(t *testing.T) {
	unsetenv(t, "WATCHDOG_USEC", "WATCHDOG_PID")
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	assert.Error(t, sdnotify.New().Ready(), "socket does not exist")

	t.Setenv("NOTIFY_SOCKET", "vsock:2:1234")
	err := sdnotify.New().Ready()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unsupported NOTIFY_SOCKET")
}
