//go:build !nonetns

package route

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

var (
	scaleTunnels  = flag.Int("routescale.tunnels", 100, "BenchmarkRouteScale: tunnels (veth pairs)")
	scalePrefixes = flag.Int("routescale.prefixes", 1000, "BenchmarkRouteScale: learned prefixes per tunnel")
	scaleECMP     = flag.Int("routescale.ecmp", 100, "BenchmarkRouteScale: of each tunnel's prefixes, how many are ECMP with the next tunnel")
	scaleRuns     = flag.Int("routescale.runs", 20, "BenchmarkRouteScale: tunnel failures and returns per way of routing")
	scaleInstalls = flag.Int("routescale.installs", 4, "BenchmarkRouteScale: installs of the whole set from empty per way")
	scaleOut      = flag.String("routescale.out", "../../bench/out/route-scale.json", "BenchmarkRouteScale: the report")
)

// BenchmarkRouteScale measures the installer at the size of issue #17: 100 veth "tunnels" in a
// private namespace, 1,000 learned prefixes each (100 of them ECMP with the next tunnel), so
// 100,000 routes; then, over repeated runs, a tunnel failing (its gateway leaves every route:
// 900 routes go, 200 lose it from their ECMP set) and coming back, both through nexthop
// objects and per route (the fallback), in the same run. Figures:
//
//   - down: from the Set call to the kernel holding no route through the tunnel: through
//     objects, the deletion of its object returning (the kernel's answer comes once the routes
//     are gone; checked by a dump at that moment in a first, untimed run); per route, the last
//     change of the pass returning. Every timed run is checked by a dump after Set.
//   - up: from the Set call to the last change of the pass returning (the routes back; checked
//     by a dump after Set).
//   - set: the whole Set call, for down, up, a pass with nothing to change, and the install
//     of the whole set into an empty table.
//
// The Go heap is collected before each timed call. Run it with
//
//	go test -run '^$' -bench '^BenchmarkRouteScale$' -benchtime 1x ./pkg/route/
//
// (flags after the package: -routescale.runs, -routescale.out...). It prints a table and
// writes bench/out/route-scale.json. Timing goals are read there, never asserted.
func BenchmarkRouteScale(b *testing.B) {
	for range b.N {
		routeScale(b)
	}
}

type scaleFigures struct {
	Runs  int     `json:"runs"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Ms holds every run's figure, in the order of the runs.
	Ms []float64 `json:"ms"`
}

type scaleMode struct {
	Mode    string       `json:"mode"`
	Install scaleFigures `json:"install_set"`
	DownOut scaleFigures `json:"down_out"`
	// DownKernel is, through objects, the part of DownOut spent on the kernel's requests:
	// from the first (the deletion of the routes through the tunnel's object) to the answer
	// to the object's deletion.
	DownKernel *scaleFigures `json:"down_kernel,omitempty"`
	DownSet    scaleFigures  `json:"down_set"`
	UpBack     scaleFigures  `json:"up_back"`
	UpSet      scaleFigures  `json:"up_set"`
	NoopSet    scaleFigures  `json:"noop_set"`
	// RoutesOut is the number of routes that stop going through the failed tunnel.
	RoutesOut int `json:"routes_out"`
	// ProofRoutesLeft is the routes through the failed tunnel a dump found the moment the
	// deletion of its object returned (through objects only; 0 expected).
	ProofRoutesLeft *int `json:"proof_routes_left,omitempty"`
}

type scaleReport struct {
	Tunnels    int         `json:"tunnels"`
	Prefixes   int         `json:"prefixes_per_tunnel"`
	ECMP       int         `json:"ecmp_per_tunnel"`
	Routes     int         `json:"routes"`
	GoalMs     float64     `json:"goal_down_out_ms"`
	Kernel     string      `json:"kernel"`
	CPUs       int         `json:"cpus"`
	LoadBefore string      `json:"loadavg_before"`
	LoadAfter  string      `json:"loadavg_after"`
	Modes      []scaleMode `json:"modes"`
}

// timedNH stamps the kernel changes made through objects.
type timedNH struct {
	nhKernel
	watch     uint32
	begin     time.Time // when the pass's first change was asked (reset by the caller)
	deleted   time.Time // when the kernel answered the watched object's deletion
	last      time.Time
	changes   int
	onDeleted func()
}

func (k *timedNH) started() {
	if k.begin.IsZero() {
		k.begin = time.Now()
	}
}

func (k *timedNH) newObject(o nhObject, replace bool) error {
	k.started()
	err := k.nhKernel.newObject(o, replace)
	k.last, k.changes = time.Now(), k.changes+1
	return err
}

func (k *timedNH) delObject(id uint32) error {
	k.started()
	err := k.nhKernel.delObject(id)
	k.last, k.changes = time.Now(), k.changes+1
	if id == k.watch {
		k.deleted = k.last
		if k.onDeleted != nil {
			k.onDeleted()
		}
	}
	return err
}

func (k *timedNH) apply(table, protocol int, changes []change) []error {
	if len(changes) > 0 {
		k.started()
	}
	errs := k.nhKernel.apply(table, protocol, changes)
	if len(changes) > 0 {
		k.last, k.changes = time.Now(), k.changes+len(changes)
	}
	return errs
}

// timedHandle stamps the per-route changes.
type timedHandle struct {
	handle
	last    time.Time
	changes int
}

func (h *timedHandle) stamp(err error) error {
	h.last, h.changes = time.Now(), h.changes+1
	return err
}
func (h *timedHandle) routeAdd(r *netlink.Route) error     { return h.stamp(h.handle.routeAdd(r)) }
func (h *timedHandle) routeReplace(r *netlink.Route) error { return h.stamp(h.handle.routeReplace(r)) }
func (h *timedHandle) routeDel(r *netlink.Route) error     { return h.stamp(h.handle.routeDel(r)) }

func routeScale(b *testing.B) {
	tunnels, per, ecmp := *scaleTunnels, *scalePrefixes, *scaleECMP
	require.True(b, tunnels >= 2 && tunnels <= 250 && per*tunnels <= 1<<20 && ecmp <= per)
	report := scaleReport{Tunnels: tunnels, Prefixes: per, ECMP: ecmp, Routes: tunnels * per, GoalMs: 10,
		Kernel: kernelRelease(), CPUs: runtime.NumCPU(), LoadBefore: loadavg()}
	l := newTunnelLab(b, tunnels)
	gw := func(n int) netip.Addr { return netip.MustParseAddr(gw4(n)) }
	all := make([]Route, 0, tunnels*per)
	for n := 1; n <= tunnels; n++ {
		for k := range per {
			j := (n-1)*per + k
			pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 9), byte(j >> 1), byte(j&1) << 7}), 25)
			hops := []netip.Addr{gw(n)}
			if k < ecmp {
				hops = append(hops, gw(n%tunnels+1))
			}
			all = append(all, Route{Prefix: pfx, NextHops: hops})
		}
	}
	without := func(t int) []Route {
		out := make([]Route, 0, len(all))
		for _, r := range all {
			hops := slices.DeleteFunc(slices.Clone(r.NextHops), func(a netip.Addr) bool { return a == gw(t) })
			if len(hops) > 0 {
				out = append(out, Route{Prefix: r.Prefix, NextHops: hops})
			}
		}
		return out
	}
	verifier, err := New(Options{Protocol: testProto, Netns: l.ns})
	require.NoError(b, err)
	defer verifier.Close()
	// through counts our routes in the kernel, and those through gateway g.
	through := func(g netip.Addr) (total, via int) {
		rs, err := verifier.List()
		require.NoError(b, err)
		for _, r := range rs {
			if slices.Contains(r.NextHops, g) {
				via++
			}
		}
		return len(rs), via
	}

	for _, perRoute := range []bool{false, true} {
		i, err := New(Options{Protocol: testProto, Netns: l.ns, perRoute: perRoute})
		require.NoError(b, err)
		m := scaleMode{Mode: "nexthop objects"}
		if perRoute {
			m.Mode = "per route (fallback)"
		}
		_, err = i.Flush()
		require.NoError(b, err)
		var tnh *timedNH
		var th *timedHandle
		if perRoute {
			th = &timedHandle{handle: i.h}
			i.h = th
		} else {
			tnh = &timedNH{nhKernel: i.nh}
			i.nh = tnh
		}
		lastChange := func() time.Time {
			if perRoute {
				return th.last
			}
			return tnh.last
		}
		timed := func(routes []Route) (start time.Time, took time.Duration) {
			runtime.GC()
			start = time.Now()
			_, err := i.Set(routes)
			took = time.Since(start)
			require.NoError(b, err)
			return start, took
		}

		var install []time.Duration
		for range *scaleInstalls {
			_, err := i.Flush()
			require.NoError(b, err)
			_, took := timed(all)
			install = append(install, took)
		}
		total, _ := through(gw(1))
		require.Equal(b, len(all), total)

		if !perRoute {
			// The proof: the moment the deletion of tunnel 1's object returns, a dump
			// finds no route through it.
			tnh.watch = objectOf(b, l, gw(1))
			left := -1
			tnh.onDeleted = func() { _, left = through(gw(1)) }
			_, err := i.Set(without(1))
			require.NoError(b, err)
			require.Zero(b, left)
			m.ProofRoutesLeft = &left
			tnh.onDeleted = nil
			_, err = i.Set(all)
			require.NoError(b, err)
		}

		var downOut, downKernel, downSet, upBack, upSet, noop []time.Duration
		for r := range *scaleRuns {
			t := 1 + (r*37)%tunnels
			down := without(t)
			if !perRoute {
				tnh.watch, tnh.deleted, tnh.begin = objectOf(b, l, gw(t)), time.Time{}, time.Time{}
			}
			_, before := through(gw(t))
			start, took := timed(down)
			out := lastChange().Sub(start)
			if !perRoute {
				require.False(b, tnh.deleted.IsZero(), "tunnel %d's object was not deleted", t)
				out = tnh.deleted.Sub(start)
				downKernel = append(downKernel, tnh.deleted.Sub(tnh.begin))
			}
			total, via := through(gw(t))
			require.Zero(b, via)
			require.Equal(b, len(down), total)
			m.RoutesOut = before
			downOut, downSet = append(downOut, out), append(downSet, took)

			start, took = timed(all)
			upBack, upSet = append(upBack, lastChange().Sub(start)), append(upSet, took)
			total, via = through(gw(t))
			require.Equal(b, len(all), total)
			require.Equal(b, before, via)

			changes := changesOf(tnh, th)
			_, took = timed(all)
			require.Equal(b, changes, changesOf(tnh, th), "a pass with nothing to change changed something")
			noop = append(noop, took)
		}
		m.Install, m.DownOut, m.DownSet = figures(install), figures(downOut), figures(downSet)
		m.UpBack, m.UpSet, m.NoopSet = figures(upBack), figures(upSet), figures(noop)
		if !perRoute {
			f := figures(downKernel)
			m.DownKernel = &f
		}
		report.Modes = append(report.Modes, m)
		_, err = i.Flush()
		require.NoError(b, err)
		i.Close()
	}
	report.LoadAfter = loadavg()

	var t strings.Builder
	fmt.Fprintf(&t, "\n%d tunnels x %d prefixes (%d ECMP with the next tunnel each) = %d routes; %s, %d CPUs; loadavg before %s, after %s\n",
		tunnels, per, ecmp, report.Routes, report.Kernel, report.CPUs, report.LoadBefore, report.LoadAfter)
	fmt.Fprintf(&t, "a tunnel failing takes %d routes off it (goal: out of the kernel in < %.0f ms)\n", report.Modes[0].RoutesOut, report.GoalMs)
	fmt.Fprintf(&t, "%-22s %-32s %10s %10s %10s %5s\n", "way", "measure", "p50 ms", "p99 ms", "max ms", "runs")
	for _, m := range report.Modes {
		for _, row := range []struct {
			name string
			f    scaleFigures
		}{
			{"down: routes out", m.DownOut}, {"down: of which kernel requests", ptrOr(m.DownKernel)}, {"down: whole Set", m.DownSet},
			{"up: routes back", m.UpBack}, {"up: whole Set", m.UpSet},
			{"nothing to change: Set", m.NoopSet}, {"install from empty: Set", m.Install},
		} {
			if row.f.Runs == 0 {
				continue
			}
			fmt.Fprintf(&t, "%-22s %-32s %10.3f %10.3f %10.3f %5d\n", m.Mode, row.name, row.f.P50ms, row.f.P99ms, row.f.MaxMs, row.f.Runs)
		}
	}
	fmt.Print(t.String())
	js, err := json.MarshalIndent(report, "", "  ")
	require.NoError(b, err)
	require.NoError(b, os.MkdirAll(filepath.Dir(*scaleOut), 0o755))
	require.NoError(b, os.WriteFile(*scaleOut, append(js, '\n'), 0o644))
	b.ReportMetric(report.Modes[0].DownOut.P50ms, "nh-down-out-p50-ms")
	b.ReportMetric(report.Modes[1].DownOut.P50ms, "perroute-down-out-p50-ms")
}

func ptrOr(f *scaleFigures) scaleFigures {
	if f == nil {
		return scaleFigures{}
	}
	return *f
}

// objectOf returns the id of our object of gateway g.
func objectOf(b *testing.B, l *tunnelLab, g netip.Addr) uint32 {
	k, err := newNLKernel(l.ns)
	require.NoError(b, err)
	defer k.close()
	objs, err := k.objects()
	require.NoError(b, err)
	for _, o := range objs {
		if o.proto == testProto && o.gw == g && !o.isGroup() {
			return o.id
		}
	}
	b.Fatalf("no object of ours for %s", g)
	return 0
}

func changesOf(k *timedNH, h *timedHandle) int {
	if k != nil {
		return k.changes
	}
	return h.changes
}

func figures(ds []time.Duration) scaleFigures {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	s := slices.Sorted(slices.Values(ds))
	rank := func(q float64) float64 { return ms(s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]) }
	f := scaleFigures{Runs: len(s), P50ms: rank(0.5), P99ms: rank(0.99), MaxMs: rank(1)}
	for _, d := range ds {
		f.Ms = append(f.Ms, ms(d))
	}
	return f
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
