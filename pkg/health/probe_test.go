package health

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests need no root: they open sockets on 127.0.0.1 (ephemeral ports) and run
// commands. Under `make test` they run in TestMain's private network namespace too; the ICMP
// probe's test, which adds a route, is in icmp_test.go.

func newProbe(t *testing.T, kind Kind, target string, args ...string) Probe {
	t.Helper()
	p, err := NewProbe(Check{Name: "t", Kind: kind, Target: target, Args: args, Interval: 2 * time.Second, Timeout: time.Second})
	require.NoError(t, err)
	return p
}

// runProbe runs p with a deadline well above any probe's expected duration.
func runProbe(p Probe) (error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err := p(ctx)
	return err, time.Since(start)
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			close(accepted)
		}
	}()
	err, _ = runProbe(newProbe(t, KindTCP, ln.Addr().String()))
	assert.NoError(t, err)
	<-accepted

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	closed.Close()
	err, _ = runProbe(newProbe(t, KindTCP, addr))
	assert.EqualError(t, err, "connect: connection refused")
}

func TestProbeHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(strings.Repeat("x", 1<<20))) // discarded
		case "/redirect":
			http.Redirect(w, r, "/fail", http.StatusFound) // not followed
		case "/slow":
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()

	for _, tc := range []struct{ path, want string }{
		{"/ok", ""},
		{"/redirect", ""},
		{"/fail", "HTTP status 500 Internal Server Error"},
	} {
		err, _ := runProbe(newProbe(t, KindHTTP, srv.URL+tc.path))
		if tc.want == "" {
			assert.NoError(t, err, tc.path)
		} else {
			assert.EqualError(t, err, tc.want, tc.path)
		}
	}

	// The client's timeout is the check's timeout (1s), whatever the context's.
	err, took := runProbe(newProbe(t, KindHTTP, srv.URL+"/slow"))
	assert.Error(t, err)
	assert.Less(t, took, 2*time.Second)
	r := &Runner{clock: RealClock(), log: slog.New(slog.DiscardHandler)}
	res := r.result(&probeCheck{Check: Check{Name: "slow", Timeout: time.Second}}, err)
	assert.Equal(t, "timeout after 1s", res.Detail)

	srv.Close()
	err, _ = runProbe(newProbe(t, KindHTTP, srv.URL+"/ok"))
	assert.EqualError(t, err, "connect: connection refused")
}

func TestProbeCommand(t *testing.T) {
	err, _ := runProbe(newProbe(t, KindCommand, "true"))
	assert.NoError(t, err)
	err, _ = runProbe(newProbe(t, KindCommand, "false"))
	assert.EqualError(t, err, "exit status 1")

	// Output is kept up to 200 bytes, on one line.
	err, _ = runProbe(newProbe(t, KindCommand, "sh", "-c", `echo "first line"; printf 'y%.0s' $(seq 500); exit 3`))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "exit status 3: first line yyy"), err.Error())
	assert.True(t, strings.HasSuffix(err.Error(), "y…"), err.Error())
	assert.LessOrEqual(t, len(err.Error()), len("exit status 3: ")+maxDetail+len("…"))

	// Cancelling kills the command and its children, at once.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	p := newProbe(t, KindCommand, "sh", "-c", "sleep 30 & sleep 30; wait")
	go func() { done <- p(ctx) }()
	cancel()
	select {
	case err := <-done:
		assert.Error(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("the command was not killed")
	}
}
