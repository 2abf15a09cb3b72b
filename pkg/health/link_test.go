//go:build !nonetns

package health

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/bgpgw/bgpgw/internal/lab"
	"github.com/bgpgw/bgpgw/pkg/route"
)

var _ LinkWatcher = (*route.LinkWatcher)(nil)

// waitOper waits until the kernel reports the link's operational state.
func waitOper(t *testing.T, h *netlink.Handle, name string, want netlink.LinkOperState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, lab.Poll(ctx, 5*time.Millisecond, func() (bool, error) {
		l, err := h.LinkByName(name)
		if err != nil {
			return false, err
		}
		return l.Attrs().OperState == want, nil
	}), "link %s %s", name, want)
}

// arrivals reads results until each check of want has had the wanted OK, and returns when
// each such result arrived.
func arrivals(t *testing.T, r *Runner, want map[string]bool) map[string]time.Time {
	t.Helper()
	got := make(map[string]time.Time)
	for len(got) < len(want) {
		res := next(t, r)
		if ok, found := want[res.Check]; found && ok == res.OK {
			got[res.Check] = time.Now()
		}
	}
	return got
}

// TestLinkCheckLatency runs link checks on the real route.LinkWatcher and measures the time
// from a link going down in the kernel to its result reaching the consumer. Needs root (a
// network namespace with veths): left out of `make check` (-tags nonetns).
func TestLinkCheckLatency(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns := lab.NewNetnsHandle(t)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "x0"}, PeerName: "x1"}))
	x0, err := h.LinkByName("x0")
	require.NoError(t, err)
	x1, err := h.LinkByName("x1")
	require.NoError(t, err)
	require.NoError(t, h.LinkSetUp(x0))
	require.NoError(t, h.LinkSetUp(x1))
	waitOper(t, h, "x0", netlink.OperUp)
	waitOper(t, h, "x1", netlink.OperUp)

	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	links := route.NewLinkWatcher(route.LinkOptions{Netns: ns, Logger: log})
	r, err := NewRunner([]Check{link("x0", "x0"), link("x1", "x1"), link("gone", "nosuch0")}, links, nil, log)
	require.NoError(t, err)
	stop := start(t, r)
	defer stop()

	initial := collect(t, r, 3)
	for _, res := range initial {
		assert.WithinDuration(t, time.Now(), res.At, wait)
	}
	assert.Equal(t, []bool{true, true, false}, []bool{initial["x0"].OK, initial["x1"].OK, initial["gone"].OK})
	assert.Equal(t, "no such link", initial["gone"].Detail)

	// x0 set down (administratively): its result; x1, its peer, loses its carrier: the kernel
	// reports it LOWERLAYERDOWN through its link watch, a step later.
	const rounds = 20
	var own, peer []time.Duration
	for range rounds {
		start := time.Now()
		require.NoError(t, h.LinkSetDown(x0))
		got := arrivals(t, r, map[string]bool{"x0": false, "x1": false})
		own = append(own, got["x0"].Sub(start))
		peer = append(peer, got["x1"].Sub(start))
		require.NoError(t, h.LinkSetUp(x0))
		arrivals(t, r, map[string]bool{"x0": true, "x1": true})
	}
	stats := func(d []time.Duration) string {
		slices.Sort(d)
		return "min " + d[0].String() + ", median " + d[len(d)/2].String() + ", max " + d[len(d)-1].String()
	}
	t.Logf("link set down to its result (%d rounds): %s", rounds, stats(own))
	t.Logf("link set down to its veth peer's result: %s", stats(peer))

	// Deleted: down.
	require.NoError(t, h.LinkDel(x0))
	res := next(t, r)
	res2 := next(t, r)
	assert.ElementsMatch(t, []string{"x0 link x0 down", "x1 link x1 down"},
		[]string{res.Check + " " + res.Detail, res2.Check + " " + res2.Detail})
}
