package route

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

const (
	testProto  = 200
	testTable  = 254
	protoStat  = 4 // RTPROT_STATIC: an administrator's route
	protoOther = 186
)

func newTest(t *testing.T) (*Installer, *fakeKernel) {
	t.Helper()
	f := newFake(t, testTable, testProto)
	opts := Options{Protocol: testProto, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	require.NoError(t, validate(&opts))
	return newInstaller(opts, f), f
}

// set runs Set and checks the invariants of every pass: the returned routes are the truth
// (what the fake now holds for us) and routes of others were not touched.
func set(t *testing.T, i *Installer, f *fakeKernel, routes []Route) ([]Route, error) {
	t.Helper()
	before := f.others()
	got, err := i.Set(routes)
	assert.Equal(t, f.ours(), nonNil(got), "Set must return what the kernel holds")
	assert.Equal(t, before, f.others(), "routes of others touched")
	return got, err
}

func nonNil(r []Route) []Route {
	if r == nil {
		return []Route{}
	}
	return r
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Protocol: 4},
		{Protocol: 256},
		{Protocol: -1},
		{Protocol: testProto, Table: -1},
		{Protocol: testProto, Table: 255},
		{Protocol: testProto, Table: 1 << 32},
	} {
		_, err := New(opts)
		assert.Error(t, err, "%+v", opts)
	}
	opts := Options{Protocol: 5}
	require.NoError(t, validate(&opts))
	assert.Equal(t, DefaultTable, opts.Table)
}

func TestSetAdds(t *testing.T) {
	i, f := newTest(t)
	want := parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
		"0.0.0.0/0 via 192.0.2.3",
	)
	got, err := set(t, i, f, want)
	require.NoError(t, err)
	assert.Equal(t, []string{
		"add 0.0.0.0/0 via 192.0.2.3",
		"add 198.51.100.0/24 via 192.0.2.2",
		"add 2001:db8:1::/48 via 2001:db8::2",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.3",
		"198.51.100.0/24 via 192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
	), got)

	listed, err := i.List()
	require.NoError(t, err)
	assert.Equal(t, got, listed)
}

func TestSetReplacesOnNextHopChange(t *testing.T) {
	i, f := newTest(t)
	_, err := set(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "2001:db8:1::/48 via 2001:db8::2"))
	require.NoError(t, err)
	f.takeCalls()

	got, err := set(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.3", "2001:db8:1::/48 via 2001:db8::3"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"replace 198.51.100.0/24 via 192.0.2.3",
		"replace 2001:db8:1::/48 via 2001:db8::3",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.3", "2001:db8:1::/48 via 2001:db8::3"), got)
}

func TestSetECMP(t *testing.T) {
	i, f := newTest(t)
	in := parseRoutes(t,
		"203.0.113.0/24 via 192.0.2.3,192.0.2.2,192.0.2.3",
		"2001:db8:2::/48 via 2001:db8::3,2001:db8::2",
	)
	inCopy := parseRoutes(t,
		"203.0.113.0/24 via 192.0.2.3,192.0.2.2,192.0.2.3",
		"2001:db8:2::/48 via 2001:db8::3,2001:db8::2",
	)
	got, err := set(t, i, f, in)
	require.NoError(t, err)
	assert.Equal(t, inCopy, in, "Set must not change its argument")
	assert.Equal(t, []string{
		"add 203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"add 2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t,
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
	), got)

	// The same hops in another order: nothing to do.
	_, err = set(t, i, f, parseRoutes(t, "203.0.113.0/24 via 192.0.2.3,192.0.2.2", "2001:db8:2::/48 via 2001:db8::2,2001:db8::3"))
	require.NoError(t, err)
	assert.Empty(t, f.takeCalls())

	// One hop fewer, then one more.
	_, err = set(t, i, f, parseRoutes(t, "203.0.113.0/24 via 192.0.2.3", "2001:db8:2::/48 via 2001:db8::2,2001:db8::3,2001:db8::4"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"replace 203.0.113.0/24 via 192.0.2.3",
		"replace 2001:db8:2::/48 via 2001:db8::2,2001:db8::3,2001:db8::4",
	}, f.takeCalls())
}

func TestSetDeletesRemovedAndOnlyOurs(t *testing.T) {
	i, f := newTest(t)
	// Routes of others: static in our table (also for prefixes we install, at another
	// metric), another daemon's, ours by protocol but in another table.
	f.seed(testTable, protoStat, 0, "192.0.2.0/24 via 192.0.2.254", "0.0.0.0/0 via 192.0.2.254")
	f.seed(testTable, protoStat, 50, "198.51.100.0/24 via 192.0.2.254")
	f.seed(testTable, protoOther, 0, "203.0.113.0/25 via 192.0.2.9")
	f.seed(100, testProto, 0, "203.0.113.128/25 via 192.0.2.9")

	_, err := set(t, i, f, parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
	))
	require.NoError(t, err)
	f.takeCalls()

	got, err := set(t, i, f, parseRoutes(t, "203.0.113.0/24 via 192.0.2.2,192.0.2.3"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"del 198.51.100.0/24",
		"del 2001:db8:1::/48",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, "203.0.113.0/24 via 192.0.2.2,192.0.2.3"), got)

	got, err = set(t, i, f, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"del 203.0.113.0/24"}, f.takeCalls())
	assert.Empty(t, got)
	assert.Len(t, f.others(), 5)
}

func TestSetIdempotent(t *testing.T) {
	i, f := newTest(t)
	want := parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
	)
	first, err := set(t, i, f, want)
	require.NoError(t, err)
	require.Len(t, f.takeCalls(), 4)

	second, err := set(t, i, f, want)
	require.NoError(t, err)
	assert.Empty(t, f.takeCalls(), "a second identical Set must change nothing")
	assert.Equal(t, first, second)
}

func TestSetPartialFailureReturnsTruth(t *testing.T) {
	i, f := newTest(t)
	_, err := set(t, i, f, parseRoutes(t,
		"198.51.100.0/25 via 192.0.2.2",   // to change: replace fails
		"198.51.100.128/25 via 192.0.2.2", // to change: replace works
		"203.0.113.0/25 via 192.0.2.2",    // to remove: delete fails
		"203.0.113.128/25 via 192.0.2.2",  // to remove: delete works
	))
	require.NoError(t, err)
	f.takeCalls()

	errReplace := errors.New("injected replace failure")
	errAdd := errors.New("injected add failure")
	errDel := errors.New("injected delete failure")
	f.fail["replace 198.51.100.0/25"] = errReplace
	f.fail["add 2001:db8:1::/48"] = errAdd
	f.fail["del 203.0.113.0/25"] = errDel

	got, err := set(t, i, f, parseRoutes(t,
		"198.51.100.0/25 via 192.0.2.3",
		"198.51.100.128/25 via 192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2", // to add: fails
		"2001:db8:2::/48 via 2001:db8::2", // to add: works
	))
	require.Error(t, err)
	for _, want := range []error{errReplace, errAdd, errDel} {
		assert.ErrorIs(t, err, want)
	}
	for _, pfx := range []string{"198.51.100.0/25", "2001:db8:1::/48", "203.0.113.0/25"} {
		assert.Contains(t, err.Error(), "route "+pfx+":")
	}
	assert.Len(t, strings.Split(err.Error(), "\n"), 3)
	assert.Equal(t, []string{
		"replace 198.51.100.0/25 via 192.0.2.3",
		"replace 198.51.100.128/25 via 192.0.2.3",
		"add 2001:db8:1::/48 via 2001:db8::2",
		"add 2001:db8:2::/48 via 2001:db8::2",
		"del 203.0.113.0/25",
		"del 203.0.113.128/25",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t,
		"198.51.100.0/25 via 192.0.2.2",
		"198.51.100.128/25 via 192.0.2.3",
		"203.0.113.0/25 via 192.0.2.2",
		"2001:db8:2::/48 via 2001:db8::2",
	), got)

	// The next pass, failures gone, finishes the job.
	clear(f.fail)
	_, err = set(t, i, f, parseRoutes(t,
		"198.51.100.0/25 via 192.0.2.3",
		"198.51.100.128/25 via 192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2",
	))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"replace 198.51.100.0/25 via 192.0.2.3",
		"add 2001:db8:1::/48 via 2001:db8::2",
		"del 203.0.113.0/25",
	}, f.takeCalls())
}

func TestSetNeverOverwritesForeignRoute(t *testing.T) {
	i, f := newTest(t)
	// The machine's default route and a static route, at the key our routes would take.
	f.seed(testTable, 3, 0, "0.0.0.0/0 via 192.0.2.254")
	f.seed(testTable, protoStat, 0, "198.51.100.0/24 via 192.0.2.254", "2001:db8:1::/48 via 2001:db8::fe")

	got, err := set(t, i, f, parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.2",
		"198.51.100.0/24 via 192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
		"203.0.113.0/24 via 192.0.2.2",
	))
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EEXIST)
	for _, pfx := range []string{"0.0.0.0/0", "198.51.100.0/24", "2001:db8:1::/48"} {
		assert.Contains(t, err.Error(), "route "+pfx+":")
	}
	assert.Equal(t, parseRoutes(t, "203.0.113.0/24 via 192.0.2.2"), got)
	assert.Len(t, f.others(), 3)
}

func TestSetInvalidRoutesKeepKernelRoute(t *testing.T) {
	i, f := newTest(t)
	_, err := set(t, i, f, parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2",
		"192.0.2.0/25 via 192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2",
	))
	require.NoError(t, err)
	f.takeCalls()

	got, err := set(t, i, f, []Route{
		{}, // no prefix
		{Prefix: netip.MustParsePrefix("198.51.100.0/24")},                                                          // no next hop
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHops: []netip.Addr{netip.MustParseAddr("192.0.2.3")}}, // given twice
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHops: []netip.Addr{netip.MustParseAddr("192.0.2.4")}},
		{Prefix: netip.MustParsePrefix("192.0.2.5/25"), NextHops: []netip.Addr{netip.MustParseAddr("192.0.2.3")}},       // host bits
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), NextHops: []netip.Addr{netip.MustParseAddr("192.0.2.3")}},    // family
		{Prefix: netip.MustParsePrefix("2001:db8:2::/48"), NextHops: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}, // link-local
		{Prefix: netip.MustParsePrefix("2001:db8:3::/48"), NextHops: []netip.Addr{{}}},                                  // invalid hop
		{Prefix: netip.MustParsePrefix("2001:db8:4::/48"), NextHops: []netip.Addr{netip.IPv6Unspecified()}},             // unspecified
		// A valid one is still installed; a v4-mapped hop of a v4 route is unmapped.
		{Prefix: netip.MustParsePrefix("198.51.100.0/25"), NextHops: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.9")}},
	})
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 8, err.Error())
	assert.ErrorIs(t, err, errDuplicate)
	assert.Equal(t, []string{"add 198.51.100.0/25 via 192.0.2.9"}, f.takeCalls(),
		"the kernel routes of invalid entries are kept")
	assert.Len(t, got, 6)
}

func TestSetCleansOwnRoutesAtOtherKeys(t *testing.T) {
	i, f := newTest(t)
	// Left by another version: ours at a non-default metric, next to the one we keep, and
	// alone for a prefix (then we add ours first, then delete the old one); one with a
	// preferred source (replaced, as the installer never sets one).
	f.seed(testTable, testProto, 0, "198.51.100.0/24 via 192.0.2.2")
	f.seed(testTable, testProto, 10, "198.51.100.0/24 via 192.0.2.3")
	f.seed(testTable, testProto, 20, "2001:db8:1::/48 via 2001:db8::2")
	f.seed(testTable, testProto, 0, "203.0.113.0/24 via 192.0.2.2")
	f.routes[len(f.routes)-1].Src = netip.MustParseAddr("192.0.2.1").AsSlice()

	got, err := set(t, i, f, parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
		"203.0.113.0/24 via 192.0.2.2",
	))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"del 198.51.100.0/24 metric 10",
		"replace 203.0.113.0/24 via 192.0.2.2",
		"add 2001:db8:1::/48 via 2001:db8::2",
		"del 2001:db8:1::/48 metric 20",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
	), got)
	for _, r := range f.routes {
		assert.Nil(t, r.Src, describe(&r))
	}
}

func TestDumpInterrupted(t *testing.T) {
	i, f := newTest(t)
	f.seed(testTable, testProto, 0, "198.51.100.0/24 via 192.0.2.2")

	// Interrupted once: read again, no error.
	f.interrupt = 1
	got, err := i.List()
	require.NoError(t, err)
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"), got)

	// Always interrupted: List returns what it read with the error; Set changes nothing.
	f.interrupt = 1000
	got, err = i.List()
	assert.ErrorIs(t, err, netlink.ErrDumpInterrupted)
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"), got)

	got, err = i.Set(nil)
	assert.ErrorIs(t, err, netlink.ErrDumpInterrupted)
	assert.Nil(t, got)
	assert.Empty(t, f.takeCalls())

	// Flush deletes what it read and reports the interruption.
	n, err := i.Flush()
	assert.ErrorIs(t, err, netlink.ErrDumpInterrupted)
	assert.Equal(t, 1, n)
	assert.Empty(t, f.ours())
}

func TestListError(t *testing.T) {
	i, f := newTest(t)
	f.listErr = syscall.ENOBUFS
	got, err := i.Set(parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"))
	assert.ErrorIs(t, err, syscall.ENOBUFS)
	assert.Nil(t, got)
	_, err = i.List()
	assert.ErrorIs(t, err, syscall.ENOBUFS)
	_, err = i.Flush()
	assert.ErrorIs(t, err, syscall.ENOBUFS)
	assert.Empty(t, f.takeCalls())
}

func TestFlush(t *testing.T) {
	i, f := newTest(t)
	f.seed(testTable, protoStat, 0, "192.0.2.0/24 via 192.0.2.254")
	f.seed(100, testProto, 0, "203.0.113.128/25 via 192.0.2.9")
	f.seed(testTable, testProto, 0,
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2",
	)
	errDel := errors.New("injected delete failure")
	f.fail["del 2001:db8:2::/48"] = errDel
	f.fail["del 203.0.113.0/24"] = syscall.ESRCH // gone meanwhile: not an error, not counted

	n, err := i.Flush()
	assert.ErrorIs(t, err, errDel)
	assert.Contains(t, err.Error(), "route 2001:db8:2::/48:")
	assert.NotContains(t, err.Error(), "203.0.113.0/24")
	assert.Equal(t, 2, n)
	assert.Equal(t, []string{
		"del 198.51.100.0/24",
		"del 203.0.113.0/24",
		"del 2001:db8:1::/48",
		"del 2001:db8:2::/48",
	}, f.takeCalls())

	clear(f.fail)
	n, err = i.Flush()
	require.NoError(t, err)
	assert.Equal(t, 2, n) // 2001:db8:2::/48 and the fake still holds 203.0.113.0/24
	assert.Empty(t, f.ours())
	assert.Len(t, f.others(), 2)

	n, err = i.Flush()
	require.NoError(t, err)
	assert.Zero(t, n)
}

func TestClosed(t *testing.T) {
	i, f := newTest(t)
	i.Close()
	i.Close()
	assert.True(t, f.closed)
	_, err := i.Set(nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = i.List()
	assert.ErrorIs(t, err, ErrClosed)
	_, err = i.Flush()
	assert.ErrorIs(t, err, ErrClosed)
}

// TestSetTransitions goes through desired states in random order: after every pass the
// kernel holds exactly the desired routes, and a second pass changes nothing.
func TestSetTransitions(t *testing.T) {
	states := map[string][]string{
		"empty": nil,
		"v4":    {"198.51.100.0/24 via 192.0.2.2", "203.0.113.0/24 via 192.0.2.3"},
		"v4-moved": {
			"198.51.100.0/24 via 192.0.2.3", "203.0.113.0/24 via 192.0.2.3", "0.0.0.0/0 via 192.0.2.2",
		},
		"ecmp": {
			"198.51.100.0/24 via 192.0.2.2,192.0.2.3", "203.0.113.0/24 via 192.0.2.3,192.0.2.2",
			"2001:db8:1::/48 via 2001:db8::2,2001:db8::3",
		},
		"v6": {"2001:db8:1::/48 via 2001:db8::2", "2001:db8:2::/48 via 2001:db8::3", "::/0 via 2001:db8::2"},
		"mixed": {
			"198.51.100.0/25 via 192.0.2.2", "198.51.100.128/25 via 192.0.2.2,192.0.2.3",
			"2001:db8:1::/48 via 2001:db8::3", "2001:db8:1::/64 via 2001:db8::2",
		},
	}
	var names []string
	for name := range states {
		names = append(names, name)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	i, f := newTest(t)
	f.seed(testTable, protoStat, 0, "192.0.2.0/24 via 192.0.2.254", "198.51.100.0/24 via 192.0.2.254")
	for range 30 {
		name := names[rng.IntN(len(names))]
		want := parseRoutes(t, states[name]...)
		got, err := set(t, i, f, want)
		if name == "v4" || name == "v4-moved" || name == "ecmp" {
			// 198.51.100.0/24 sits where the static route is: never installed.
			require.ErrorIs(t, err, syscall.EEXIST, name)
			want = want[1:]
		} else {
			require.NoError(t, err, name)
		}
		norm, _, _ := normalize(want)
		assert.Equal(t, routesOf(entriesOf(norm)), got, name)
		f.takeCalls()
		_, err = set(t, i, f, want)
		require.NoError(t, err)
		assert.Empty(t, f.takeCalls(), "second pass of %s", name)
	}
}

func entriesOf(m map[netip.Prefix]Route) []entry {
	var out []entry
	for _, r := range m {
		out = append(out, primaryEntry(r))
	}
	return out
}

func TestRouteString(t *testing.T) {
	assert.Equal(t, "198.51.100.0/24 via 192.0.2.2,192.0.2.3", parseRoute(t, "198.51.100.0/24 via 192.0.2.2,192.0.2.3").String())
	assert.Equal(t, "2001:db8::/32", Route{Prefix: netip.MustParsePrefix("2001:db8::/32")}.String())
}

func TestFromKernel(t *testing.T) {
	i := &Installer{table: testTable, proto: testProto}
	// The kernel reports a default route without destination, and a route of another
	// protocol is not ours.
	e, ours, err := i.fromKernel(&netlink.Route{Family: netlink.FAMILY_V6, Table: testTable, Protocol: testProto,
		Type: rtnUnicast, Priority: ip6DefaultMetric, Gw: netip.MustParseAddr("2001:db8::2").AsSlice()})
	require.NoError(t, err)
	assert.True(t, ours)
	assert.Equal(t, parseRoute(t, "::/0 via 2001:db8::2"), e.Route)
	assert.True(t, e.isPrimary())
	assert.True(t, e.matches(e.Route))

	_, ours, err = i.fromKernel(&netlink.Route{Family: netlink.FAMILY_V4, Table: testTable, Protocol: protoStat})
	require.NoError(t, err)
	assert.False(t, ours)

	// A device route of ours has no next hop and is never right.
	e, ours, err = i.fromKernel(&netlink.Route{Family: netlink.FAMILY_V4, Table: testTable, Protocol: testProto,
		Type: rtnUnicast, LinkIndex: 3, Dst: ipNet(netip.MustParsePrefix("198.51.100.0/24"))})
	require.NoError(t, err)
	assert.True(t, ours)
	assert.True(t, e.extra)
	assert.Empty(t, e.NextHops)
}
