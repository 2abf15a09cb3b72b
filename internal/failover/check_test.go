package failover

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// outage is a result whose directions had the given outages (ms, one
// datagram per ms).
func outage(topo, stack, fault string, o2c, c2o int) Result {
	d := func(name string, ms int) Direction {
		if ms == 0 {
			return dir(name, flow(0, 6000))
		}
		return dir(name, flow(0, 6000, [2]uint64{2001, 2000 + uint64(ms)}))
	}
	return result(topo, stack, fault, d(DirOnPremToCloud, o2c), d(DirCloudToOnPrem, c2o))
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Result
		want []string // substrings of the violations, in order
	}{
		{"unplanned within 1 s", outage("aa", StackBgpgw, FaultSilent, 1000, 300), nil},
		{"unplanned over 1 s", outage("aa", StackBgpgw, FaultSilent, 300, 1001),
			[]string{"cloud->on-prem: outage 1.00 s > 1.00 s"}},
		{"planned lost one", outage("aa", StackBgpgw, FaultDrain, 0, 1),
			[]string{"cloud->on-prem: planned fault lost 1 datagrams"}},
		{"planned lost none", outage("aa", StackBgpgw, FaultSIGTERM, 0, 0), nil},
		{"planned, the probe dropped as many: still a loss", func() Result {
			r := outage("aa", StackBgpgw, FaultDrain, 0, 3)
			r.Directions[1].ProbeDrops = 3
			return r
		}(), []string{"cloud->on-prem: planned fault lost 3 datagrams (the probe's own sockets dropped 3 datagrams meanwhile)"}},
		{"planned, the probe dropped only fins", func() Result {
			r := outage("aa", StackBgpgw, FaultDrain, 0, 0)
			r.Directions[1].ProbeDrops = 5
			return r
		}(), nil},
		{"planned loss, the lab's counters beside it", func() Result {
			r := outage("aa", StackBgpgw, FaultSIGTERM, 4, 0)
			r.LabDrops = map[string]int64{"gw2 udp-rcvbuf": 4}
			return r
		}(), []string{"on-prem->cloud: planned fault lost 4 datagrams (the lab's data plane dropped meanwhile: gw2 udp-rcvbuf 4)"}},
		{"not recovered", func() Result {
			r := outage("aa", StackBgpgw, FaultUplinkDown, 10, 10)
			r.Recovered = false
			return r
		}(), []string{"did not recover"}},
		{"stale routes", func() Result {
			r := outage("aa", StackBgpgw, FaultKillDaemon, 10, 10)
			r.StaleRoutes = 3
			return r
		}(), []string{"3 stale kernel routes"}},
		{"error", func() Result {
			r := outage("aa", StackBgpgw, FaultSilent, 10, 10)
			r.Error = "boom"
			return r
		}(), []string{"not measured: boom"}},
		{"no traffic", func() Result {
			r := NewResult("aa", StackBgpgw, FaultSilent)
			r.Recovered = true
			return r
		}(), []string{"no traffic measured"}},
		{"partner cut lost one", outage("aa", StackBgpgw, FaultPartnerCut, 1, 0),
			[]string{"on-prem->cloud: partner-cut lost 1 datagrams (it must lose none)"}},
		{"rejoin lost none", outage("aa", StackBgpgw, FaultRejoin, 0, 0), nil},
		{"rejoin lost some, probe drops beside", func() Result {
			r := outage("aa", StackHandBuilt, FaultRejoin, 0, 20)
			r.Directions[1].ProbeDrops = 2
			return r
		}(), []string{"cloud->on-prem: rejoin lost 20 datagrams (it must lose none) (the probe's own sockets dropped 2 datagrams meanwhile)"}},
		{"nothing sent", func() Result {
			r := outage("aa", StackBgpgw, FaultDrain, 0, 0)
			r.Directions[0] = Direction{Name: DirOnPremToCloud}
			return r
		}(), []string{"on-prem->cloud: no datagrams sent"}},
	} {
		got := Check(tc.r)
		if assert.Len(t, got, len(tc.want), "%s: %q", tc.name, got) {
			for i, w := range tc.want {
				assert.Contains(t, got[i], w, tc.name)
			}
		}
	}
}

func TestFailuresOnlyBgpgw(t *testing.T) {
	rep := Report{Results: []Result{
		outage("aa", StackHandBuilt, FaultSilent, 7000, 7000),
		outage("aa-nobfd", StackBgpgwNoTakeover, FaultSilent, 3900, 300),
		outage("aa-nobfd", StackBgpgwNoTakeover, FaultRejoin, 0, 1),
		outage("as", StackBgpgw, FaultDrain, 2, 0),
		outage("aa", StackBgpgw, FaultSilent, 100, 100),
		outage("aa", StackBgpgw, FaultRejoin, 0, 5),
	}}
	assert.Equal(t, []string{
		"as drain bgpgw: on-prem->cloud: planned fault lost 2 datagrams",
		"aa rejoin bgpgw: cloud->on-prem: rejoin lost 5 datagrams (it must lose none)",
	}, Failures(rep))
}

func TestFaultClasses(t *testing.T) {
	for _, f := range AllFaults {
		assert.Equal(t, f == FaultDrain || f == FaultSIGTERM, Planned(f), f)
		assert.Equal(t, f == FaultPartnerCut || f == FaultRejoin, PairFault(f), f)
		assert.Equal(t, Planned(f) || PairFault(f), Lossless(f), f)
		assert.Equal(t, Planned(f), NewResult("aa", StackBgpgw, f).Planned, "%s: Result.Planned is planned maintenance only", f)
	}
	assert.True(t, NoBFD("active-active-nobfd"))
	assert.False(t, NoBFD("active-active"))
	assert.True(t, IsBgpgw(StackBgpgw))
	assert.True(t, IsBgpgw(StackBgpgwNoTakeover))
	assert.False(t, IsBgpgw(StackHandBuilt))
}

func goal(t *testing.T, goals []Goal, name string) Goal {
	t.Helper()
	for _, g := range goals {
		if strings.HasPrefix(g.Name, name) {
			return g
		}
	}
	t.Fatalf("no goal %q in %+v", name, goals)
	return Goal{}
}

func TestGoals(t *testing.T) {
	planned := func(topo, fault string, lost int, drainMs float64) Result {
		r := outage(topo, StackBgpgw, fault, 0, lost)
		r.DrainMs = drainMs
		return r
	}
	killed := func(topo string, ms, stale int) Result {
		r := outage(topo, StackBgpgw, FaultKillDaemon, ms, ms/2)
		r.StaleRoutes = stale
		return r
	}
	for _, tc := range []struct {
		name    string
		goal    string
		results []Result
		met     bool
		figure  string
	}{
		{"planned met", "planned", []Result{planned("aa", FaultDrain, 0, 1200), planned("as", FaultSIGTERM, 0, 2999)},
			true, "0 lost, drain 3.00 s (as sigterm), 2 runs"},
		{"planned lost one", "planned", []Result{planned("aa", FaultDrain, 0, 1200), planned("as", FaultSIGTERM, 1, 100)},
			false, "1 lost (as sigterm), drain 1.20 s (aa drain), 2 runs"},
		{"drain 3 s", "planned", []Result{planned("aa", FaultDrain, 0, 3000)},
			false, "0 lost, drain 3.00 s (aa drain), 1 run"},
		{"drain unknown", "planned", []Result{planned("aa", FaultDrain, 0, -1)},
			false, "0 lost, drain time not measured, 1 run"},
		{"silent at the limit", "instance goes silent", []Result{
			outage("aa", StackBgpgw, FaultSilent, 100, 50), outage("as", StackBgpgw, FaultSilent, 60, 100)},
			true, "100 ms / 100 ms (aa), 2 runs"},
		{"silent worst topology over", "instance goes silent", []Result{
			outage("aa", StackBgpgw, FaultSilent, 50, 60), outage("vv", StackBgpgw, FaultSilent, 60, 101)},
			false, "60 ms / 101 ms (vv), 2 runs"},
		{"charon killed", "charon killed", []Result{
			outage("aa", StackBgpgw, FaultKillCharon, 90, 80), outage("two-onprem-nobfd", StackBgpgw, FaultKillCharon, 95, 100)},
			true, "95 ms / 100 ms (two-onprem-nobfd), 2 runs"},
		{"silent one direction missing", "instance goes silent", []Result{func() Result {
			r := outage("aa", StackBgpgw, FaultSilent, 100, 100)
			r.Directions = r.Directions[:1]
			return r
		}()}, false, "100 ms / - (aa), 1 run"},
		{"killed met", "bgpgw process killed", []Result{killed("aa", 99, 0)},
			true, "99 ms / 49 ms (aa), 0 stale routes, 1 run"},
		{"killed at 0.1 s", "bgpgw process killed", []Result{killed("aa", 100, 0)},
			false, "100 ms / 50 ms (aa), 0 stale routes, 1 run"},
		{"killed stale", "bgpgw process killed", []Result{killed("aa", 10, 0), killed("as", 10, 1)},
			false, "10 ms / 5 ms (aa), 1 stale route, 2 runs"},
		{"killed stale unchecked", "bgpgw process killed", []Result{killed("aa", 10, -1)},
			false, "10 ms / 5 ms (aa), stale routes not checked, 1 run"},
		{"esp met", "tunnel data plane", []Result{outage("aa", StackBgpgw, FaultESPDrop, 180, 20)},
			true, "180 ms / 20 ms (aa), 1 run"},
		{"uplink strict", "instance loses", []Result{outage("aa", StackBgpgw, FaultUplinkDown, 50, 0)},
			false, "50 ms / 0 ms (aa), 1 run"},
		{"uplink met", "instance loses", []Result{outage("aa", StackBgpgw, FaultUplinkDown, 49, 0)},
			true, "49 ms / 0 ms (aa), 1 run"},
		{"not measured", "instance loses", []Result{outage("aa", StackHandBuilt, FaultUplinkDown, 1, 1)},
			false, "not measured"},
		{"failed run", "instance loses", []Result{outage("aa", StackBgpgw, FaultUplinkDown, 1, 1), func() Result {
			r := outage("as", StackBgpgw, FaultUplinkDown, 1, 1)
			r.Error = "x"
			return r
		}()}, false, "1 ms / 1 ms (aa), 1 run; 1 failed run"},
		// The no-BFD variants have rows of their own.
		{"silent with BFD only", "instance goes silent (power loss)", []Result{
			outage("active-active", StackBgpgw, FaultSilent, 90, 95), outage("active-active-nobfd", StackBgpgw, FaultSilent, 3900, 300)},
			true, "90 ms / 95 ms (active-active), 1 run"},
		{"silent without BFD", "instance goes silent, on-prem device without BFD", []Result{
			outage("active-active", StackBgpgw, FaultSilent, 150, 150), outage("active-active-nobfd", StackBgpgw, FaultSilent, 3900, 300)},
			false, "3.90 s / 300 ms (active-active-nobfd), 1 run"},
		{"silent without BFD met", "instance goes silent, on-prem device without BFD", []Result{
			outage("active-standby-nobfd", StackBgpgw, FaultSilent, 90, 60)},
			true, "90 ms / 60 ms (active-standby-nobfd), 1 run"},
		{"esp without BFD at the probe's detection", "tunnel data plane blackholed, IKE still up, on-prem", []Result{
			outage("active-active", StackBgpgw, FaultESPDrop, 900, 900), outage("two-onprem-nobfd", StackBgpgw, FaultESPDrop, 320, 310)},
			true, "320 ms / 310 ms (two-onprem-nobfd), 1 run"},
		{"esp with BFD only", "tunnel data plane blackholed, IKE still up", []Result{
			outage("active-active", StackBgpgw, FaultESPDrop, 190, 150), outage("two-onprem-nobfd", StackBgpgw, FaultESPDrop, 320, 310)},
			true, "190 ms / 150 ms (active-active), 1 run"},
		{"partner cut", "partner link cut", []Result{
			outage("active-active", StackBgpgw, FaultPartnerCut, 0, 0), outage("two-onprem-nobfd", StackBgpgw, FaultPartnerCut, 0, 0)},
			true, "0 lost, 2 runs"},
		{"rejoin lost", "failed instance rejoins", []Result{
			outage("active-active", StackBgpgw, FaultRejoin, 2, 0), outage("two-onprem", StackBgpgw, FaultRejoin, 3, 4)},
			false, "9 lost (worst: two-onprem rejoin), 2 runs"},
		{"rejoin other stacks only", "failed instance rejoins", []Result{
			outage("active-active", StackHandBuilt, FaultRejoin, 0, 0)}, false, "not measured"},
	} {
		g := goal(t, Goals(tc.results), tc.goal)
		assert.Equal(t, tc.met, g.Met, tc.name)
		assert.Equal(t, tc.figure, g.Figure, tc.name)
	}
}

func TestGoalsHandBuiltBeside(t *testing.T) {
	goals := Goals([]Result{
		outage("aa", StackBgpgw, FaultSilent, 90, 80),
		outage("aa", StackHandBuilt, FaultSilent, 330, 310),
		outage("as", StackHandBuilt, FaultSilent, 320, 340),
	})
	assert.Len(t, goals, 10)
	g := goal(t, goals, "instance goes silent")
	assert.True(t, g.Met)
	assert.Equal(t, "90 ms / 80 ms (aa), 1 run", g.Figure)
	assert.Equal(t, "330 ms / 340 ms (as), 2 runs", g.HandBuilt)
	assert.Equal(t, "60-90 s", g.Azure)
	assert.Equal(t, "not measured", goal(t, goals, "planned").HandBuilt)
	assert.Equal(t, "not measured", g.NoTakeover)
}

// TestGoalsNoTakeoverBeside: bgpgw without takeover is judged like the
// others, beside bgpgw, and never makes a goal met or missed.
func TestGoalsNoTakeoverBeside(t *testing.T) {
	goals := Goals([]Result{
		outage("active-active-nobfd", StackBgpgw, FaultSilent, 80, 60),
		outage("active-active-nobfd", StackBgpgwNoTakeover, FaultSilent, 3880, 310),
		outage("active-active-nobfd", StackHandBuilt, FaultSilent, 3920, 330),
	})
	g := goal(t, goals, "instance goes silent, on-prem device without BFD")
	assert.True(t, g.Met)
	assert.Equal(t, "80 ms / 60 ms (active-active-nobfd), 1 run", g.Figure)
	assert.Equal(t, "3.88 s / 310 ms (active-active-nobfd), 1 run", g.NoTakeover)
	assert.Equal(t, "3.92 s / 330 ms (active-active-nobfd), 1 run", g.HandBuilt)
	assert.Equal(t, "not measured", goal(t, goals, "instance goes silent (power loss)").NoTakeover)
}

func TestFormatMs(t *testing.T) {
	for ms, want := range map[float64]string{-1: "-", 0: "0 ms", 0.25: "0.3 ms", 12: "12 ms", 999.94: "999.9 ms", 1000: "1.00 s", 7215: "7.21 s"} {
		assert.Equal(t, want, FormatMs(ms), "%v", ms)
	}
}

// TestLossBeforeFault: a loss run that began more than CleanGuard before the
// fault makes the try lossy before it, wherever the run ends; later runs
// are the fault's. The runs' measured start times win over the planned
// schedule (a sender that gave up slots sent seq n later than planned).
func TestLossBeforeFault(t *testing.T) {
	clean := outage("aa", StackBgpgw, FaultSilent, 300, 300) // runs start at the fault
	assert.Empty(t, clean.LossBeforeFault())

	early := result("aa", StackBgpgw, FaultDrain,
		dir(DirOnPremToCloud, flow(0, 6000, [2]uint64{1001, 1010}, [2]uint64{2001, 2005}), flow(1, 6000, [2]uint64{1500, 2500})),
		dir(DirCloudToOnPrem, flow(0, 6000)))
	assert.Equal(t, "on-prem->cloud lost 1011 datagrams before the fault (from 1.00 s before it)", early.LossBeforeFault())

	// Within the guard: datagrams on their way when the fault hit.
	guard := result("aa", StackBgpgw, FaultKillCharon,
		dir(DirOnPremToCloud, flow(0, 6000, [2]uint64{1960, 2100})), dir(DirCloudToOnPrem, flow(0, 6000)))
	assert.Empty(t, guard.LossBeforeFault())

	// Seq 1001 was planned 1 s before the fault but sent 10 ms after it.
	late := result("aa", StackBgpgw, FaultDrain,
		dir(DirOnPremToCloud, flow(0, 6000, [2]uint64{1001, 1010})), dir(DirCloudToOnPrem, flow(0, 6000)))
	late.Directions[0].Flows[0].LossRunStartNs = []int64{t0 + 2*sec + 10e6}
	assert.Empty(t, late.LossBeforeFault())
	late.Directions[0].Flows[0].LossRunStartNs = []int64{t0 + 2*sec - 60e6}
	assert.Contains(t, late.LossBeforeFault(), "lost 10 datagrams before the fault (from 60 ms before it)")
}

// TestProbeLoss: a planned fault's try with missing datagrams and drops by
// the probe's own sockets cannot be judged (which ones it dropped is not
// known); an unplanned fault's, or one with nothing missing, can.
func TestProbeLoss(t *testing.T) {
	r := outage("aa", StackBgpgw, FaultDrain, 0, 3)
	assert.Empty(t, r.ProbeLoss())
	r.Directions[0].ProbeDrops = 2
	assert.Equal(t, "3 datagrams missing while the probe's own sockets dropped 2", r.ProbeLoss())
	clean := outage("aa", StackBgpgw, FaultSIGTERM, 0, 0)
	clean.Directions[1].ProbeDrops = 5 // fins
	assert.Empty(t, clean.ProbeLoss())
	unplanned := outage("aa", StackBgpgw, FaultSilent, 300, 300)
	unplanned.Directions[1].ProbeDrops = 5
	assert.Empty(t, unplanned.ProbeLoss())
	rejoin := outage("aa", StackBgpgw, FaultRejoin, 2, 0) // must lose nothing, as planned faults
	rejoin.Directions[1].ProbeDrops = 1
	assert.Equal(t, "2 datagrams missing while the probe's own sockets dropped 1", rejoin.ProbeLoss())
}
