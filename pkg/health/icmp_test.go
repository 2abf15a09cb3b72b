//go:build !nonetns

package health

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Needs root: runs in TestMain's private network namespace (main_test.go), where it adds a
// route through lo. Left out of `make check` (-tags nonetns).

func TestProbeICMP(t *testing.T) {
	err, _ := runProbe(newProbe(t, KindICMP, "127.0.0.1"))
	assert.NoError(t, err)

	if hasAddr(t, "::1") {
		err, _ = runProbe(newProbe(t, KindICMP, "::1"))
		assert.NoError(t, err)
	} else {
		t.Log("no ::1 on lo: IPv6 echo not tested")
	}

	// No route: fails at once.
	err, took := runProbe(newProbe(t, KindICMP, "192.0.2.1"))
	assert.ErrorContains(t, err, "network is unreachable")
	assert.Less(t, took, time.Second)

	// Routed, but nobody answers (the packets loop back through lo to an address that is not
	// local, and are dropped): the probe waits until its context ends.
	out, err := exec.Command("ip", "route", "replace", "203.0.113.0/24", "dev", "lo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = newProbe(t, KindICMP, "203.0.113.1")(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// Concurrent probes each get their own reply.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		p := newProbe(t, KindICMP, "127.0.0.1")
		wg.Go(func() { errs[i], _ = runProbe(p) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
}

func hasAddr(t *testing.T, addr string) bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	want := netip.MustParseAddr(addr)
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == want {
			return true
		}
	}
	return false
}
