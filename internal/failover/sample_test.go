package failover

import (
	"time"
)

// t0 is the start of the sample traffic; the faults come 2 s later.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()

const sec = int64(time.Second)

// flow is a flow of sent datagrams at 1 ms from t0 that lost runs.
func flow(id, sent int, runs ...[2]uint64) Flow {
	f := Flow{Flow: id, StartNs: t0, IntervalNs: int64(time.Millisecond), Sent: sent, LossRuns: runs}
	for _, r := range runs {
		n := int(r[1] - r[0] + 1)
		f.Lost += n
		f.OutageMs = max(f.OutageMs, float64(n))
	}
	return f
}

// dir is a direction made of flows.
func dir(name string, flows ...Flow) Direction {
	d := Direction{Name: name, Flows: flows}
	for _, f := range flows {
		d.Sent += f.Sent
		d.Lost += f.Lost
		d.OutageMs = max(d.OutageMs, f.OutageMs)
	}
	return d
}

// result is a measured result with the fault 2 s into the traffic.
func result(topo, stack, fault string, dirs ...Direction) Result {
	r := NewResult(topo, stack, fault)
	r.Directions = dirs
	r.FaultAtNs = t0 + 2*sec
	r.Recovered = true
	return r
}

// sample is a report with passing, failing and failed runs, listed out of
// order.
func sample() Report {
	silentHB := result("active-active", StackHandBuilt, FaultSilent,
		dir(DirOnPremToCloud, flow(0, 6000, [2]uint64{2001, 2320}), flow(1, 6000, [2]uint64{2002, 2318})),
		dir(DirCloudToOnPrem, flow(0, 6000, [2]uint64{2001, 2310}), flow(1, 6000, [2]uint64{2001, 2330})))
	silentHB.ConvergedMs = 1900
	silentHB.ClearedAtNs = t0 + 4*sec

	silent := result("active-active", StackBgpgw, FaultSilent,
		dir(DirOnPremToCloud, flow(0, 6000, [2]uint64{2001, 2150}), flow(1, 6000, [2]uint64{2003, 2140}, [2]uint64{4500, 4500})),
		dir(DirCloudToOnPrem, flow(0, 6000, [2]uint64{2001, 2090}), flow(1, 6000)))
	silent.ConvergedMs = 820.4
	silent.LabDrops = map[string]int64{"gw2 udp-rcvbuf": 12}
	silent.Directions[0].ProbeDrops = 1 // an unplanned fault: shown, judged by its outage
	silent.ClearedAtNs = t0 + 4*sec

	drain := result("active-active", StackBgpgw, FaultDrain,
		dir(DirOnPremToCloud, flow(0, 6000)), dir(DirCloudToOnPrem, flow(0, 6000)))
	drain.DrainMs, drain.ConvergedMs = 1210, 1300
	drain.Retried = []string{"try 1: on-prem->cloud lost 40 datagrams before the fault (from 1.20 s before it)"}
	drainHB := result("active-active", StackHandBuilt, FaultDrain,
		dir(DirOnPremToCloud, flow(0, 6000)), dir(DirCloudToOnPrem, flow(0, 6000)))
	drainHB.DrainMs, drainHB.ConvergedMs = 2050, 2100

	kill := result("active-standby", StackBgpgw, FaultKillDaemon,
		dir(DirOnPremToCloud, flow(0, 6000, [2]uint64{2001, 3500})), dir(DirCloudToOnPrem, flow(0, 6000, [2]uint64{2001, 2060})))
	kill.StaleRoutes, kill.Recovered = 2, false
	kill.Notes = "left: 10.1.0.0/16 dev ipsec0 | 10.2.0.0/16 dev ipsec0"

	esp := NewResult("active-standby", StackBgpgw, FaultESPDrop)
	esp.Error = "charon did not start"

	// Without BFD on the on-prem router and without takeover: the hold time.
	silentNT := result("active-active-nobfd", StackBgpgwNoTakeover, FaultSilent,
		dir(DirOnPremToCloud, flow(0, 9000, [2]uint64{2001, 5900})), dir(DirCloudToOnPrem, flow(0, 9000, [2]uint64{2001, 2300})))
	silentNT.ConvergedMs = 3950
	silentNT.ClearedAtNs = t0 + 7*sec

	// The pair faults: a harmless cut, a rejoin that lost datagrams.
	cut := result("active-active", StackBgpgw, FaultPartnerCut,
		dir(DirOnPremToCloud, flow(0, 9000)), dir(DirCloudToOnPrem, flow(0, 9000)))
	cut.ConvergedMs, cut.ClearedAtNs = 150, t0+5*sec
	rejoin := result("active-active", StackBgpgw, FaultRejoin,
		dir(DirOnPremToCloud, flow(0, 9000, [2]uint64{4501, 4503})), dir(DirCloudToOnPrem, flow(0, 9000)))
	rejoin.ConvergedMs = 2600

	return Report{Machine: "lab-vm (Linux 6.18, 2 CPUs)", Started: time.Unix(0, t0).UTC(),
		Results: []Result{silentHB, drain, silent, kill, drainHB, esp, silentNT, cut, rejoin}}
}
