package route

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A, B and C are tunnels' gateways in these tests.
const (
	gwA = "192.0.2.2"
	gwB = "192.0.2.3"
	gwC = "192.0.2.4"
)

func TestNHSetAdds(t *testing.T) {
	i, f := newNHTest(t)
	var log strings.Builder
	i.logger = logTo(&log)
	got, err := nhSet(t, i, f, parseRoutes(t,
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.3,192.0.2.2",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::3,2001:db8::2",
		"0.0.0.0/0 via 192.0.2.3",
		"203.0.113.0/25 via 192.0.2.2,192.0.2.3",
	))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"nh new #1 blackhole", "nh del #1", // the probe
		"nh new #2 via 192.0.2.2 dev 2",
		"nh new #3 via 192.0.2.3 dev 2",
		"nh new #4 via 2001:db8::2 dev 2",
		"nh new #5 via 2001:db8::3 dev 2",
		"nh new #6 group #2/#3",
		"nh new #7 group #4/#5",
		"route add 0.0.0.0/0 nhid #3",
		"route add 198.51.100.0/24 nhid #2",
		"route add 203.0.113.0/24 nhid #6",
		"route add 203.0.113.0/25 nhid #6",
		"route add 2001:db8:1::/48 nhid #4",
		"route add 2001:db8:2::/48 nhid #7",
	}, f.takeCalls())
	want := parseRoutes(t,
		"0.0.0.0/0 via 192.0.2.3",
		"198.51.100.0/24 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"203.0.113.0/25 via 192.0.2.2,192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
	)
	assert.Equal(t, want, got)
	listed, err := i.List()
	require.NoError(t, err)
	assert.Equal(t, want, listed)

	// A second identical pass changes nothing; the way is decided and logged once.
	again, err := nhSet(t, i, f, want)
	require.NoError(t, err)
	assert.Empty(t, f.takeCalls())
	assert.Equal(t, want, again)
	assert.Equal(t, 1, strings.Count(log.String(), "routes go through kernel nexthop objects"))
}

// setup installs routes and forgets the calls it took.
func setup(t *testing.T, i *Installer, f *nhFake, routes ...string) {
	t.Helper()
	_, err := nhSet(t, i, f, parseRoutes(t, routes...))
	require.NoError(t, err)
	f.takeCalls()
}

func TestNHFastRemoval(t *testing.T) {
	i, f := newNHTest(t)
	all := []string{
		"198.51.100.0/25 via 192.0.2.2",   // A only
		"198.51.100.128/25 via 192.0.2.2", // A only
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"203.0.113.0/25 via 192.0.2.2,192.0.2.3,192.0.2.4",
		"198.18.0.0/24 via 192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
	}
	setup(t, i, f, all...)
	objects := len(f.objs)

	// Tunnel A fails: its gateway leaves every route. Before the table is read, its two
	// routes (known from the last pass) go, then its object, which shrinks both groups;
	// they already serve the routes that now want the gateways left: nothing else to do.
	dumps := f.routeDumps
	got, err := nhSet(t, i, f, parseRoutes(t,
		"203.0.113.0/24 via 192.0.2.3",
		"203.0.113.0/25 via 192.0.2.3,192.0.2.4",
		"198.18.0.0/24 via 192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
	))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"route delete 198.51.100.0/25 nhid #2",
		"route delete 198.51.100.128/25 nhid #2",
		"nh del #2",
	}, f.takeCalls())
	assert.Equal(t, []int{dumps}, f.dumpsBeforeDel[len(f.dumpsBeforeDel)-1:], "the deletion comes before any read of the table")
	assert.Equal(t, parseRoutes(t,
		"198.18.0.0/24 via 192.0.2.3",
		"203.0.113.0/24 via 192.0.2.3",
		"203.0.113.0/25 via 192.0.2.3,192.0.2.4",
		"2001:db8:1::/48 via 2001:db8::2",
	), got)
	assert.Len(t, f.objs, objects-1)

	// A comes back: one object, each group's members replaced (all their routes want A
	// back), and the routes through A alone added.
	got, err = nhSet(t, i, f, parseRoutes(t, all...))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"nh new #8 via 192.0.2.2 dev 2",
		"nh replace #6 group #8/#3", // members in the gateways' order
		"nh replace #7 group #8/#3/#4",
		"route add 198.51.100.0/25 nhid #8",
		"route add 198.51.100.128/25 nhid #8",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t,
		"198.18.0.0/24 via 192.0.2.3",
		"198.51.100.0/25 via 192.0.2.2",
		"198.51.100.128/25 via 192.0.2.2",
		"203.0.113.0/24 via 192.0.2.2,192.0.2.3",
		"203.0.113.0/25 via 192.0.2.2,192.0.2.3,192.0.2.4",
		"2001:db8:1::/48 via 2001:db8::2",
	), got)
	assert.Empty(t, f.unused(addrs(gwA, gwB, gwC, "2001:db8::2")...))
}

// The fast path's knowledge of the routes through an object comes from the last pass: a
// route moved since (behind the installer's back) is not deleted with it, and a route the
// last pass did not know goes with the object.
func TestNHFastRemovalStaleHint(t *testing.T) {
	i, f := newNHTest(t)
	setup(t, i, f, "198.51.100.0/25 via 192.0.2.2", "198.51.100.128/25 via 192.0.2.2", "203.0.113.0/24 via 192.0.2.3")
	for k, r := range f.rts {
		if r.Prefix == netip.MustParsePrefix("198.51.100.128/25") {
			f.rts[k].nhid = ourBase + 3 // now through B's object
		}
	}
	f.seedRoute(testTable, testProto, 0, "198.18.0.0/24 nhid 3355443202") // through A's, unknown
	got, err := nhSet(t, i, f, parseRoutes(t, "198.51.100.128/25 via 192.0.2.3", "203.0.113.0/24 via 192.0.2.3"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"route delete 198.51.100.0/25 nhid #2",
		"route delete 198.51.100.128/25 nhid #2", // not through A any more: stays
		"nh del #2",                              // takes 198.18.0.0/24 with it
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, "198.51.100.128/25 via 192.0.2.3", "203.0.113.0/24 via 192.0.2.3"), got)
}

func TestNHGroupShrinkGrow(t *testing.T) {
	i, f := newNHTest(t)
	setup(t, i, f, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.2,192.0.2.3", "203.0.113.128/25 via 192.0.2.2,192.0.2.3")
	// #2 A, #3 B, #4 the group.

	// The ECMP routes leave A, which still carries another route: the group's members are
	// replaced, its routes follow at once.
	_, err := nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.3", "203.0.113.128/25 via 192.0.2.3"))
	require.NoError(t, err)
	assert.Equal(t, []string{"nh replace #4 group #3"}, f.takeCalls())

	// Back to both, then to three gateways.
	_, err = nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.2,192.0.2.3", "203.0.113.128/25 via 192.0.2.2,192.0.2.3"))
	require.NoError(t, err)
	assert.Equal(t, []string{"nh replace #4 group #2/#3"}, f.takeCalls())
	_, err = nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.2,192.0.2.3,192.0.2.4", "203.0.113.128/25 via 192.0.2.2,192.0.2.3,192.0.2.4"))
	require.NoError(t, err)
	assert.Equal(t, []string{"nh new #5 via 192.0.2.4 dev 2", "nh replace #4 group #2/#3/#5"}, f.takeCalls())

	// The group's routes part ways: the one that changes moves alone, the group stays.
	got, err := nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.2,192.0.2.3,192.0.2.4", "203.0.113.128/25 via 192.0.2.3,192.0.2.4"))
	require.NoError(t, err)
	assert.Equal(t, []string{"nh new #6 group #3/#5", "route replace 203.0.113.128/25 nhid #6"}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.2,192.0.2.3,192.0.2.4", "203.0.113.128/25 via 192.0.2.3,192.0.2.4"), got)

	// C goes (its deletion leaves the second group with B alone, as now wanted), and the
	// first group's route wants A alone: its members are replaced.
	_, err = nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/25 via 192.0.2.2", "203.0.113.128/25 via 192.0.2.3"))
	require.NoError(t, err)
	assert.Equal(t, []string{"nh del #5", "nh replace #4 group #2"}, f.takeCalls())
	assert.Empty(t, f.unused(addrs(gwA, gwB)...))
}

func TestNHDeviceChange(t *testing.T) {
	i, f := newNHTest(t)
	routes := []string{"198.51.100.0/24 via 192.0.2.2", "203.0.113.0/24 via 192.0.2.2,192.0.2.3"}
	setup(t, i, f, routes...)

	// The tunnel's interface was made again: the object follows, and every route with it.
	f.devs[netip.MustParseAddr(gwA)] = 3
	_, err := nhSet(t, i, f, parseRoutes(t, routes...))
	require.NoError(t, err)
	assert.Equal(t, []string{"nh replace #2 via 192.0.2.2 dev 3"}, f.takeCalls())

	// If the kernel refuses the move, a new object takes the routes, and the group its
	// members; the old object goes.
	f.devs[netip.MustParseAddr(gwA)] = 4
	f.fail["nh replace 192.0.2.2"] = errInjected
	got, err := nhSet(t, i, f, parseRoutes(t, routes...))
	require.ErrorIs(t, err, errInjected)
	assert.Contains(t, err.Error(), "nexthop object 3355443202 via 192.0.2.2: move from device 3 to 4")
	assert.Equal(t, []string{
		"nh replace #2 via 192.0.2.2 dev 4", // refused
		"nh new #5 via 192.0.2.2 dev 4",
		"nh replace #4 group #5/#3",
		"route replace 198.51.100.0/24 nhid #5",
		"nh del #2",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, routes...), got)

	// A gateway no device reaches: its routes fail, and stay as they are.
	delete(f.devs, netip.MustParseAddr(gwA))
	got, err = nhSet(t, i, f, parseRoutes(t, routes...))
	require.ErrorIs(t, err, syscall.ENETUNREACH)
	assert.Contains(t, err.Error(), "route 198.51.100.0/24: gateway 192.0.2.2: ")
	assert.Contains(t, err.Error(), "route 203.0.113.0/24: gateway 192.0.2.2: ")
	assert.Len(t, strings.Split(err.Error(), "\n"), 2)
	assert.Empty(t, f.takeCalls())
	assert.Equal(t, parseRoutes(t, routes...), got)
}

func TestNHStaleCleanup(t *testing.T) {
	i, f := newNHTest(t)
	a, b, nine := netip.MustParseAddr(gwA), netip.MustParseAddr(gwB), netip.MustParseAddr("192.0.2.9")
	// Left by a previous run: the object of a gateway still wanted, one of a gateway gone
	// with a route through it, a group, a blackhole; and a route holding its gateway itself.
	f.seedObject(nhObject{id: ourBase + 100, proto: testProto, gw: a, oif: 2})
	f.seedObject(nhObject{id: ourBase + 101, proto: testProto, gw: nine, oif: 2})
	f.seedObject(nhObject{id: ourBase + 102, proto: testProto, group: []uint32{ourBase + 100, ourBase + 101}})
	f.seedObject(nhObject{id: ourBase + 103, proto: testProto, family: unix.AF_INET, blackhole: true})
	f.seedRoute(testTable, testProto, 0, "10.9.0.0/16 nhid 3355443301")
	f.seedRoute(testTable, testProto, 0, "198.51.100.0/24 via 192.0.2.2")
	// Others: a static route through a static object (for a prefix we want too, at another
	// metric), an object of another protocol in our block of ids, another daemon's route in
	// our table, ours in another table.
	f.seedObject(nhObject{id: 7, proto: protoStat, gw: b, oif: 2})
	f.seedObject(nhObject{id: ourBase + 2, proto: protoOther, gw: b, oif: 2})
	f.seedRoute(testTable, protoStat, 50, "198.18.0.0/24 nhid 7")
	f.seedRoute(testTable, protoOther, 0, "203.0.113.0/24 via 192.0.2.3")
	f.seedRoute(100, testProto, 0, "203.0.113.0/24 via 192.0.2.3")

	got, err := nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "198.18.0.0/24 via 192.0.2.3"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"nh new #1 blackhole", "nh del #1",
		"nh del #101", // the gateway gone, with its route
		"nh new #3 via 192.0.2.3 dev 2",
		"route add 198.18.0.0/24 nhid #3",
		"route replace 198.51.100.0/24 nhid #100",
		"nh del #102",
		"nh del #103",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, "198.18.0.0/24 via 192.0.2.3", "198.51.100.0/24 via 192.0.2.2"), got)
	assert.Empty(t, f.unused(a, b))
}

func TestNHFlush(t *testing.T) {
	i, f := newNHTest(t)
	setup(t, i, f, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/24 via 192.0.2.2,192.0.2.3", "2001:db8:1::/48 via 2001:db8::2")
	f.seedRoute(testTable, testProto, 0, "198.18.0.0/24 via 192.0.2.3")
	f.seedRoute(testTable, protoStat, 0, "198.18.1.0/24 via 192.0.2.3")
	f.seedObject(nhObject{id: 9, proto: protoStat, gw: netip.MustParseAddr(gwB), oif: 2})
	others := f.others()

	n, err := i.Flush()
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	assert.Equal(t, []string{
		"route delete 198.18.0.0/24",
		"route delete 198.51.100.0/24",
		"route delete 203.0.113.0/24",
		"route delete 2001:db8:1::/48",
		"nh del #5", // the group first
		"nh del #2",
		"nh del #3",
		"nh del #4",
	}, f.takeCalls())
	assert.Empty(t, f.ours())
	assert.Empty(t, f.unused())
	assert.Equal(t, others, f.others())

	n, err = i.Flush()
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Empty(t, f.takeCalls())
}

func TestNHFallback(t *testing.T) {
	for name, refuse := range map[string]func(*nhFake){
		"no nexthop objects":  func(f *nhFake) { f.refuse = syscall.EOPNOTSUPP },
		"object refused":      func(f *nhFake) { f.fail["nh new #1"] = syscall.EINVAL },
		"object not accepted": func(f *nhFake) { f.fail["nh new #1"] = syscall.EOPNOTSUPP },
	} {
		t.Run(name, func(t *testing.T) {
			i, k, f := newBothTest(t)
			var log strings.Builder
			i.logger = logTo(&log)
			refuse(f)
			got, err := set(t, i, k, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2,192.0.2.3"))
			require.NoError(t, err)
			assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2,192.0.2.3"), got)
			assert.Equal(t, []string{"add 198.51.100.0/24 via 192.0.2.2,192.0.2.3"}, k.takeCalls())
			assert.Contains(t, log.String(), "the kernel refuses nexthop objects")
			f.takeCalls()

			// Decided for good: nothing more is asked of nexthop objects.
			clear(f.fail)
			f.refuse = nil
			_, err = i.Flush()
			require.NoError(t, err)
			assert.Empty(t, f.takeCalls())
			assert.Equal(t, []string{"del 198.51.100.0/24"}, k.takeCalls())
			assert.Equal(t, 1, strings.Count(log.String(), "refuses"))
		})
	}

	// Another error is not a refusal: reported, and tried again at the next call.
	i, k, f := newBothTest(t)
	f.refuse = syscall.EPERM
	_, err := i.Set(nil)
	require.ErrorIs(t, err, syscall.EPERM)
	_, err = i.List()
	require.ErrorIs(t, err, syscall.EPERM)
	f.refuse = nil
	_, err = nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"))
	require.NoError(t, err)
	assert.Empty(t, k.calls)
	assert.Contains(t, f.calls, "route add 198.51.100.0/24 nhid #2")
}

func TestNHIDs(t *testing.T) {
	i, f := newNHTest(t)
	// Ids of our block taken by others are skipped; one taken by another user between the
	// dump and the create is skipped then.
	f.seedObject(nhObject{id: ourBase + 1, proto: protoOther, gw: netip.MustParseAddr(gwB), oif: 2})
	f.seedObject(nhObject{id: ourBase + 2, proto: protoOther, gw: netip.MustParseAddr(gwB), oif: 2})
	f.steal = []uint32{ourBase + 4}
	_, err := i.Set(parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"nh new #3 blackhole", "nh del #3",
		"nh new #4 via 192.0.2.2 dev 2", // taken meanwhile
		"nh new #5 via 192.0.2.2 dev 2",
		"route add 198.51.100.0/24 nhid #5",
	}, f.takeCalls())
}

func TestNHPartialFailureReturnsTruth(t *testing.T) {
	i, f := newNHTest(t)
	setup(t, i, f,
		"198.51.100.0/25 via 192.0.2.2",   // to change: replace fails
		"198.51.100.128/25 via 192.0.2.2", // to change: replace works
		"203.0.113.0/25 via 192.0.2.2",    // to remove: delete fails
		"203.0.113.128/25 via 192.0.2.2",  // to remove: delete works
	)
	f.fail["replace 198.51.100.0/25"] = errInjected
	f.fail["add 2001:db8:1::/48"] = errInjected
	f.fail["delete 203.0.113.0/25"] = errInjected
	f.fail["nh new 192.0.2.4"] = errInjected

	got, err := nhSet(t, i, f, parseRoutes(t,
		"198.51.100.0/25 via 192.0.2.3",
		"198.51.100.128/25 via 192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",                 // to add: fails
		"2001:db8:2::/48 via 2001:db8::2",                 // to add: works
		"192.0.2.128/25 via 192.0.2.2,192.0.2.4",          // C's object fails
		"198.18.0.0/24 via 192.0.2.4",                     // C's object fails
		"198.18.1.0/24 via 192.0.2.2,192.0.2.3,192.0.2.9", // works
	))
	require.Error(t, err)
	assert.ErrorIs(t, err, errInjected)
	for _, pfx := range []string{"198.51.100.0/25", "2001:db8:1::/48", "203.0.113.0/25", "192.0.2.128/25", "198.18.0.0/24"} {
		assert.Contains(t, err.Error(), "route "+pfx+":")
	}
	assert.Len(t, strings.Split(err.Error(), "\n"), 5, err.Error())
	assert.Contains(t, err.Error(), "route 198.18.0.0/24: gateway 192.0.2.4: create its nexthop object: injected failure")
	assert.Equal(t, parseRoutes(t,
		"198.18.1.0/24 via 192.0.2.2,192.0.2.3,192.0.2.9",
		"198.51.100.0/25 via 192.0.2.2",
		"198.51.100.128/25 via 192.0.2.3",
		"203.0.113.0/25 via 192.0.2.2",
		"2001:db8:2::/48 via 2001:db8::2",
	), got)

	// The next pass, failures gone, finishes the job.
	clear(f.fail)
	f.takeCalls()
	_, err = nhSet(t, i, f, parseRoutes(t,
		"198.51.100.0/25 via 192.0.2.3",
		"198.51.100.128/25 via 192.0.2.3",
		"2001:db8:1::/48 via 2001:db8::2",
		"2001:db8:2::/48 via 2001:db8::2",
	))
	require.NoError(t, err)
	assert.Equal(t, []string{
		// A is named no more: the routes through it go, then its object (the route to
		// 198.51.100.0/25, which moves to B, is added back below); so does 192.0.2.9's.
		"route delete 198.51.100.0/25 nhid #2",
		"route delete 203.0.113.0/25 nhid #2",
		"nh del #2",
		"nh del #5",
		"route add 198.51.100.0/25 nhid #3",
		"route add 2001:db8:1::/48 nhid #6",
		"route delete 198.18.1.0/24", // through the group, left with B alone
		"nh del #7",
	}, f.takeCalls())
}

func TestNHInvalidEntriesKeepKernelRoute(t *testing.T) {
	i, f := newNHTest(t)
	setup(t, i, f, "198.51.100.0/24 via 192.0.2.2", "203.0.113.0/24 via 192.0.2.2,192.0.2.3", "2001:db8:1::/48 via 2001:db8::2")
	got, err := nhSet(t, i, f, []Route{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24")},                      // no next hop
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHops: addrs(gwA)}, // given twice
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHops: addrs(gwB)},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), NextHops: addrs("2001:db8::2", gwA)}, // family
		{Prefix: netip.MustParsePrefix("198.18.0.0/24"), NextHops: addrs("::ffff:192.0.2.3")},   // unmapped: valid
	})
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 3, err.Error())
	assert.Equal(t, []string{"route add 198.18.0.0/24 nhid #3"}, f.takeCalls(), "the kernel routes of invalid entries are kept")
	assert.Len(t, got, 4)
}

func TestNHCleansOwnRoutesAtOtherKeys(t *testing.T) {
	i, f := newNHTest(t)
	f.seedRoute(testTable, testProto, 0, "198.51.100.0/24 via 192.0.2.2")
	f.seedRoute(testTable, testProto, 10, "198.51.100.0/24 via 192.0.2.3")
	f.seedRoute(testTable, testProto, 20, "2001:db8:1::/48 via 2001:db8::2")
	got, err := nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "2001:db8:1::/48 via 2001:db8::2"))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"nh new #1 blackhole", "nh del #1",
		"nh new #2 via 192.0.2.2 dev 2",
		"nh new #3 via 2001:db8::2 dev 2",
		"route replace 198.51.100.0/24 nhid #2",
		"route add 2001:db8:1::/48 nhid #3",
		"route delete 198.51.100.0/24 metric 10",
		"route delete 2001:db8:1::/48 metric 20",
	}, f.takeCalls())
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2", "2001:db8:1::/48 via 2001:db8::2"), got)
}

func TestNHDumpInterrupted(t *testing.T) {
	i, f := newNHTest(t)
	setup(t, i, f, "198.51.100.0/24 via 192.0.2.2")
	f.interrupt = 1 // read again: fine
	_, err := nhSet(t, i, f, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"))
	require.NoError(t, err)

	f.interrupt = 1000
	got, err := i.Set(nil)
	assert.ErrorIs(t, err, netlink.ErrDumpInterrupted)
	assert.Nil(t, got)
	assert.Empty(t, f.takeCalls(), "nothing changed on an inconsistent view of the objects")
	listed, err := i.List()
	assert.ErrorIs(t, err, netlink.ErrDumpInterrupted)
	assert.Equal(t, parseRoutes(t, "198.51.100.0/24 via 192.0.2.2"), listed)
	n, err := i.Flush()
	assert.ErrorIs(t, err, netlink.ErrDumpInterrupted)
	assert.Equal(t, 1, n)
	assert.Empty(t, f.ours())
}

func TestNHClosed(t *testing.T) {
	i, f := newNHTest(t)
	i.Close()
	i.Close()
	assert.True(t, f.closed)
	_, err := i.Set(nil)
	assert.ErrorIs(t, err, ErrClosed)
}

// TestNHTransitions goes through desired states in random order, tunnels failing and coming
// back, gateways changing device: after every pass the kernel holds exactly the desired
// routes, no object of ours is left unused, and a second pass changes nothing.
func TestNHTransitions(t *testing.T) {
	states := map[string][]string{
		"empty": nil,
		"all": {
			"198.51.100.0/24 via 192.0.2.2", "198.51.101.0/24 via 192.0.2.3", "198.51.102.0/24 via 192.0.2.4",
			"203.0.113.0/25 via 192.0.2.2,192.0.2.3", "203.0.113.128/25 via 192.0.2.2,192.0.2.3,192.0.2.4",
			"2001:db8:1::/48 via 2001:db8::2", "2001:db8:2::/48 via 2001:db8::2,2001:db8::3",
		},
		"A down": {
			"198.51.101.0/24 via 192.0.2.3", "198.51.102.0/24 via 192.0.2.4",
			"203.0.113.0/25 via 192.0.2.3", "203.0.113.128/25 via 192.0.2.3,192.0.2.4",
			"2001:db8:1::/48 via 2001:db8::3", "2001:db8:2::/48 via 2001:db8::3",
		},
		"B down": {
			"198.51.100.0/24 via 192.0.2.2", "198.51.102.0/24 via 192.0.2.4",
			"203.0.113.0/25 via 192.0.2.2", "203.0.113.128/25 via 192.0.2.2,192.0.2.4",
			"2001:db8:1::/48 via 2001:db8::2", "2001:db8:2::/48 via 2001:db8::2",
		},
		"moved": {
			"198.51.100.0/24 via 192.0.2.3", "198.51.101.0/24 via 192.0.2.2,192.0.2.4",
			"203.0.113.0/25 via 192.0.2.2,192.0.2.3", "203.0.113.128/25 via 192.0.2.3",
			"0.0.0.0/0 via 192.0.2.9", "::/0 via 2001:db8::4",
		},
	}
	var names []string
	for name := range states {
		names = append(names, name)
	}
	slices.Sort(names)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	i, f := newNHTest(t)
	f.seedRoute(testTable, protoStat, 0, "192.0.2.0/24 via 192.0.2.254")
	f.seedObject(nhObject{id: 7, proto: protoStat, gw: netip.MustParseAddr(gwB), oif: 2})
	for range 40 {
		name := names[rng.IntN(len(names))]
		if rng.IntN(4) == 0 {
			f.devs[netip.MustParseAddr(gwB)] = 2 + rng.IntN(2)
		}
		want := parseRoutes(t, states[name]...)
		got, err := nhSet(t, i, f, want)
		require.NoError(t, err, name)
		norm, _, _ := normalize(want)
		assert.Equal(t, routesOf(entriesOf(norm)), got, name)
		var gws []netip.Addr
		for _, r := range want {
			gws = append(gws, r.NextHops...)
		}
		assert.Empty(t, f.unused(gws...), name)
		for _, o := range f.objs {
			if o.proto == testProto && o.gw.IsValid() {
				assert.Equal(t, f.devs[o.gw], o.oif, "%s: object on the wrong device", name)
			}
		}
		f.takeCalls()
		_, err = nhSet(t, i, f, want)
		require.NoError(t, err)
		assert.Empty(t, f.takeCalls(), "second pass of %s", name)
	}
}
