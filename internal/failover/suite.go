package failover

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bgpgw/bgpgw/internal/clab"
	"github.com/bgpgw/bgpgw/internal/lab"
)

// AllFaults are the faults in the order the suite applies them (the
// tunnel flap last: the hold-down it builds up delays the next full state
// by most of a minute).
var AllFaults = []string{FaultDrain, FaultSIGTERM, FaultKillDaemon, FaultKillCharon, FaultSilent, FaultESPDrop,
	FaultUplinkDown, FaultPartnerCut, FaultRejoin, FaultTunnelFlaps}

// Spec says how to run the suite on one topology file: which gateway to
// break, where the traffic goes and which routers must converge.
type Spec struct {
	File string // *.clab.yml
	// Nodes is the directory below nodes/ with the node configurations
	// ("": the topology's name); a variant shares its base's.
	Nodes   string
	Gateway string // the instance the faults are applied to
	Uplink  string // its cloud-side interface
	OnPrem  string // traffic endpoint on the on-prem side (a host node)
	Cloud   string // traffic endpoint on the cloud side
	Routers []string
}

// Specs are the topologies of test/containerlab, by name. The -nobfd
// variants (NoBFD) run the same nodes with the on-prem routers without BFD,
// the -bird variant with BIRD instead of FRR on the on-prem router.
var Specs = map[string]Spec{
	"active-active":        {File: "active-active.clab.yml", Gateway: "gw1", Uplink: "cloud", OnPrem: "oh", Cloud: "ch", Routers: []string{"op", "cr"}},
	"active-standby":       {File: "active-standby.clab.yml", Gateway: "gw1", Uplink: "cloud", OnPrem: "oh", Cloud: "ch", Routers: []string{"op", "cr"}},
	"two-onprem":           {File: "two-onprem.clab.yml", Gateway: "gw1", Uplink: "cloud", OnPrem: "oha", Cloud: "ch", Routers: []string{"opa", "opb", "cr"}},
	"vnet-to-vnet":         {File: "vnet-to-vnet.clab.yml", Gateway: "gwa1", Uplink: "cloud", OnPrem: "chb", Cloud: "cha", Routers: []string{"cra", "crb"}},
	"active-active-nobfd":  {File: "active-active-nobfd.clab.yml", Nodes: "active-active", Gateway: "gw1", Uplink: "cloud", OnPrem: "oh", Cloud: "ch", Routers: []string{"op", "cr"}},
	"active-standby-nobfd": {File: "active-standby-nobfd.clab.yml", Nodes: "active-standby", Gateway: "gw1", Uplink: "cloud", OnPrem: "oh", Cloud: "ch", Routers: []string{"op", "cr"}},
	"two-onprem-nobfd":     {File: "two-onprem-nobfd.clab.yml", Nodes: "two-onprem", Gateway: "gw1", Uplink: "cloud", OnPrem: "oha", Cloud: "ch", Routers: []string{"opa", "opb", "cr"}},
	"active-active-bird":   {File: "active-active-bird.clab.yml", Nodes: "active-active", Gateway: "gw1", Uplink: "cloud", OnPrem: "oh", Cloud: "ch", Routers: []string{"op", "cr"}},
}

// Options configure a suite run.
type Options struct {
	Dir      string // test/containerlab
	BgpgwBin string
	ProbeBin string
	Flows    int           // per direction
	Interval time.Duration // between datagrams of a flow
	Before   time.Duration // traffic before the fault
	// After is how long the traffic runs at least after the fault is
	// applied (after a long fault ends; after a pair fault, once the
	// routers are back in their full state); it runs on until the routers
	// have converged, at most ConvergeWindow.
	After   time.Duration
	FlapFor time.Duration // how long the tunnel flaps
	CutFor  time.Duration // how long partner-cut keeps the pair apart (0: DefaultCutFor)
	Recover time.Duration // how long the pair may take to come back
	// Tries bounds the tries of one fault (0: DefaultTries): a try whose
	// data plane lost datagrams before the fault measures the lab's load,
	// not the fault, and one of a fault that must lose nothing (Lossless)
	// whose probe dropped datagrams cannot be judged; either is thrown
	// away (Result.Retried says why).
	Tries    int
	Logf     func(string, ...any)
	OnResult func(Result) // called after every result
	// LogDir, when set, receives every node's daemon logs after each fault
	// (LogDir/TOPOLOGY-STACK-FAULT/NODE-FILE).
	LogDir string
}

// Run runs every fault of faults on topology for stack, in one deployment,
// clearing each fault and waiting for the pair's full state before the
// next.
func Run(ctx context.Context, opts Options, topology, stack string, faults []string) ([]Result, error) {
	spec, ok := Specs[topology]
	if !ok {
		return nil, fmt.Errorf("unknown topology %q", topology)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	topo, err := clab.Load(filepath.Join(opts.Dir, spec.File))
	if err != nil {
		return nil, err
	}
	l, err := lab.New(logf)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := l.Close(); err != nil {
			logf("failover: lab cleanup: %v", err)
		}
	}()
	d, err := clab.Deploy(ctx, l, topo, clab.Options{Logf: logf,
		Env: map[string]string{"GATEWAY": stack, "BGPGW_BIN": opts.BgpgwBin}})
	if err != nil {
		return nil, fmt.Errorf("%s (%s): deploy: %w", topology, stack, err)
	}
	r := &runner{opts: opts, spec: spec, d: d, l: l, logf: logf, topology: topology, stack: stack,
		nodes: cmp.Or(spec.Nodes, topology)}
	if err := r.resolve(ctx); err != nil {
		return nil, err
	}
	if err := r.waitFull(ctx, nil); err != nil {
		return nil, fmt.Errorf("%s (%s): the pair did not reach its full state after deploy: %w", topology, stack, err)
	}
	var out []Result
	for _, f := range faults {
		res := r.one(ctx, f)
		out = append(out, res)
		if opts.OnResult != nil {
			opts.OnResult(res)
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

type runner struct {
	opts              Options
	spec              Spec
	d                 *clab.Deployment
	l                 *lab.Lab
	logf              func(string, ...any)
	topology, stack   string
	onprem, cloud     string // host addresses
	nodes             string // the node configurations' directory below nodes/
	full              routes // router->destination: the routes in full state
	gw                *gateway
	onpremNS, cloudNS *lab.Netns
	routers           []*clab.Node
	destinations      []string
}

// resolve finds the hosts' addresses and the gateway's node.
func (r *runner) resolve(ctx context.Context) error {
	var err error
	if r.onprem, err = r.hostAddr(r.spec.OnPrem); err != nil {
		return err
	}
	if r.cloud, err = r.hostAddr(r.spec.Cloud); err != nil {
		return err
	}
	r.destinations = []string{r.onprem, r.cloud}
	gw := r.d.Node(r.spec.Gateway)
	if gw == nil {
		return fmt.Errorf("%s: no node %s", r.topology, r.spec.Gateway)
	}
	if r.gw, err = r.gateway(gw); err != nil {
		return err
	}
	for _, name := range r.spec.Routers {
		n := r.d.Node(name)
		if n == nil {
			return fmt.Errorf("%s: no router node %s", r.topology, name)
		}
		r.routers = append(r.routers, n)
	}
	r.onpremNS, r.cloudNS = r.d.Node(r.spec.OnPrem).NS, r.d.Node(r.spec.Cloud).NS
	return nil
}

func (r *runner) gateway(n *clab.Node) (*gateway, error) {
	g := &gateway{node: n, dir: r.nodes + "/" + n.Name, stack: r.stack, uplink: r.spec.Uplink,
		flapFor: r.opts.FlapFor}
	var err error
	g.partner, err = pairPartner(filepath.Join(r.opts.Dir, "nodes", g.dir, "bgpgw.yaml"))
	return g, err
}

// hostAddr is the first address of a host node's ip.batch.
func (r *runner) hostAddr(node string) (string, error) {
	path := filepath.Join(r.opts.Dir, "nodes", r.nodes, node, "ip.batch")
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) >= 3 && w[0] == "addr" && w[1] == "add" {
			return strings.Split(w[2], "/")[0], nil
		}
	}
	return "", fmt.Errorf("%s: no address", path)
}

// gatewayAddrs are the gateway node's IPv4 addresses (a router's next hop
// through it is one of them).
func (r *runner) gatewayAddrs(ctx context.Context, g *gateway) ([]string, error) {
	out, err := g.node.Exec(ctx, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				addrs = append(addrs, strings.Split(f[i+1], "/")[0])
			}
		}
	}
	return addrs, nil
}

// one runs one fault with traffic both ways and measures it. A fault
// written FAULT@NODE is applied to that gateway instead of Spec.Gateway.
func (r *runner) one(ctx context.Context, fault string) Result {
	g := r.gw
	if name, node, ok := strings.Cut(fault, "@"); ok {
		fault = name
		n := r.d.Node(node)
		var err error
		if n != nil {
			g, err = r.gateway(n)
		}
		if n == nil || err != nil {
			res := NewResult(r.topology, r.stack, fault)
			res.Error = "no node " + node
			if err != nil {
				res.Error = err.Error()
			}
			return res
		}
	}
	tries := cmp.Or(r.opts.Tries, DefaultTries)
	var retried []string
	var res Result
	for try := 1; ; try++ {
		res = NewResult(r.topology, r.stack, fault)
		if g != r.gw {
			res.Notes = "on " + g.node.Name
		}
		r.logf("failover %s (%s): %s on %s (try %d of %d)", r.topology, r.stack, fault, g.node.Name, try, tries)
		if err := r.measure(ctx, g, fault, &res); err != nil {
			res.Error = err.Error()
			r.logf("failover %s (%s): %s: %v", r.topology, r.stack, fault, err)
			break
		}
		why := ""
		if lossy := res.LossBeforeFault(); lossy != "" {
			why = "lossy before the fault: " + lossy
		} else if p := res.ProbeLoss(); p != "" {
			why = "the probe's own loss: " + p
		}
		// A try that also left the pair broken (not recovered, stale
		// routes) is kept: that is the gateway's, whatever the lab did.
		if why == "" || !res.Recovered || res.StaleRoutes > 0 {
			break
		}
		r.logf("failover %s (%s): %s: try %d not measured: %s", r.topology, r.stack, fault, try, why)
		if try >= tries || ctx.Err() != nil {
			res.Error = fmt.Sprintf("%s (try %d of %d)", why, try, tries)
			break
		}
		retried = append(retried, fmt.Sprintf("try %d: %s", try, why))
	}
	res.Retried = retried
	r.saveLogs(fault)
	return res
}

// convergencePoll is the pause between two rounds of the convergence poll
// (a round, vtysh or birdc on every router, takes 100-200 ms here).
const convergencePoll = 50 * time.Millisecond

// DefaultTries is Options.Tries when unset.
const DefaultTries = 3

// DefaultInterval is the probe's interval between the datagrams of a flow
// in the suite's runs.
const DefaultInterval = time.Millisecond

// saveLogs copies the nodes' daemon logs to Options.LogDir.
func (r *runner) saveLogs(fault string) {
	if r.opts.LogDir == "" {
		return
	}
	dir := filepath.Join(r.opts.LogDir, r.topology+"-"+r.stack+"-"+fault)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.logf("failover: logs: %v", err)
		return
	}
	for _, n := range r.d.Nodes() {
		for _, f := range []string{"bgpgw.log", "charon.log", "frr/bgpd.log", "frr/bfdd.log", "frr/zebra.log", "bird.log"} {
			data, err := n.ReadFile("/run/lab/log/" + f)
			if err != nil || len(data) == 0 {
				continue
			}
			_ = os.WriteFile(filepath.Join(dir, n.Name+"-"+strings.ReplaceAll(f, "/", "-")), data, 0o644)
		}
	}
}

func (r *runner) measure(ctx context.Context, g *gateway, fault string, res *Result) error {
	// A fault on a pair that is not whole (the previous one did not come
	// back) would measure nothing: say so instead.
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	err := r.waitFull(pctx, r.full)
	pcancel()
	if err != nil {
		return fmt.Errorf("the pair is not in its full state before the fault: %w", err)
	}
	gwAddrs, err := r.gatewayAddrs(ctx, g)
	if err != nil {
		return err
	}
	if fault == FaultRejoin {
		// The instance fails first; what is measured is its coming back.
		if err := r.settleWithout(ctx, g, gwAddrs); err != nil {
			xctx, xcancel := context.WithTimeout(ctx, time.Minute)
			defer xcancel()
			return errors.Join(fmt.Errorf("before the rejoin: %w", err), g.clear(xctx, fault))
		}
	}
	o := r.opts
	// long is how long the fault itself lasts; the traffic runs for it,
	// and then until the routers have converged (at most ConvergeWindow),
	// and a while more (see fault and pairFault), when it is ended.
	long := time.Duration(0)
	switch fault {
	case FaultTunnelFlaps:
		long = o.FlapFor + flapPeriod
	case FaultPartnerCut:
		long = r.cutFor()
	}
	total := o.Before + long + ConvergeWindow + o.After + time.Minute
	before, err := r.readCounters(ctx)
	if err != nil {
		return err
	}
	up, err := r.l.StartTraffic(ctx, o.ProbeBin, r.onpremNS, r.cloudNS, r.cloud, 40000, o.Flows, o.Interval, total)
	if err != nil {
		return err
	}
	down, err := r.l.StartTraffic(ctx, o.ProbeBin, r.cloudNS, r.onpremNS, r.onprem, 41000, o.Flows, o.Interval, total)
	if err != nil {
		return err
	}
	// stopTraffic ends the senders now: total is only their bound.
	stopTraffic := func() error {
		ru, errU := up.Finish(ctx)
		rd, errD := down.Finish(ctx)
		if errU == nil && errD == nil {
			res.Directions = []Direction{NewDirection(DirOnPremToCloud, ru), NewDirection(DirCloudToOnPrem, rd)}
		}
		return errors.Join(errU, errD)
	}
	if err := errors.Join(up.WaitReceiving(ctx), down.WaitReceiving(ctx)); err != nil {
		_ = stopTraffic()
		return fmt.Errorf("traffic does not flow before the fault: %w", err)
	}
	if err := sleepCtx(ctx, o.Before); err != nil {
		return err
	}

	faultAt := time.Now()
	res.FaultAtNs = faultAt.UnixNano()
	var faultErr error
	if PairFault(fault) {
		faultErr = r.pairFault(ctx, g, fault, res, faultAt)
	} else {
		faultErr = r.fault(ctx, g, fault, res, faultAt, gwAddrs, long)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	trafficErr := stopTraffic()
	if after, err := r.readCounters(ctx); err != nil {
		r.logf("failover %s (%s): %v", r.topology, r.stack, err)
	} else if d := delta(before, after); len(d) > 0 {
		res.LabDrops = d
		r.logf("failover %s (%s): %s: the lab dropped packets: %s", r.topology, r.stack, fault, FormatDrops(d))
	}
	if faultErr != nil {
		return fmt.Errorf("apply: %w", faultErr)
	}
	if trafficErr != nil {
		return trafficErr
	}

	cleared := time.Now()
	if !PairFault(fault) { // the pair faults ended within the traffic
		res.ClearedAtNs = cleared.UnixNano()
	}
	xctx, xcancel := context.WithTimeout(ctx, time.Minute)
	defer xcancel()
	if err := g.clear(xctx, fault); err != nil {
		return fmt.Errorf("clear: %w", err)
	}
	if err := r.waitFull(ctx, r.full); err != nil {
		res.Notes = strings.TrimSpace(res.Notes + " did not return to full state: " + err.Error())
		return nil
	}
	res.Recovered = true
	switch {
	case !PairFault(fault):
		res.Notes = strings.TrimSpace(fmt.Sprintf("%s full state again %.1f s after the fault was cleared", res.Notes, time.Since(cleared).Seconds()))
	case res.ConvergedMs < 0:
		res.Notes = strings.TrimSpace(fmt.Sprintf("%s full state only after the traffic ended (%s after the pair was whole)", res.Notes, ConvergeWindow))
	}
	if IsBgpgw(r.stack) {
		n, err := r.staleRoutes(ctx, g)
		if err != nil {
			return err
		}
		res.StaleRoutes = n
	}
	return nil
}

// ConvergeWindow bounds how long the traffic runs after a fault (after the
// tunnel flaps, after a pair fault heals) waiting for the routers to
// converge: a router without BFD notices a silent instance at its BGP hold
// time (9 s here).
const ConvergeWindow = 30 * time.Second

// convergedTail is how long the traffic runs on after the routers have
// converged.
const convergedTail = 2 * time.Second

// fault applies one of the faults other than the pair's while the traffic
// runs, watching the routers converge (without gwAddrs). The traffic runs
// After more once the fault is applied, and on until convergedTail after
// the routers have converged, at most ConvergeWindow: an outage is not cut
// short by the end of the traffic. long is how long the fault itself
// lasts (the tunnel flaps for a minute).
func (r *runner) fault(ctx context.Context, g *gateway, fault string, res *Result, faultAt time.Time, gwAddrs []string, long time.Duration) error {
	o := r.opts
	// Convergence is watched while the fault runs (the flap takes a minute).
	convCh := make(chan time.Duration, 1)
	cctx, ccancel := context.WithTimeout(ctx, long+ConvergeWindow)
	defer ccancel()
	go func() {
		conv := time.Duration(-1)
		_ = lab.Poll(cctx, convergencePoll, func() (bool, error) {
			hops, err := r.nextHops(cctx, true)
			if err == nil && r.converged(hops, gwAddrs) {
				conv = time.Since(faultAt)
				r.logf("failover %s (%s): %s: converged after %s: %v", r.topology, r.stack, fault, conv.Round(time.Millisecond), hops)
				return true, nil
			}
			return false, err
		})
		convCh <- conv
	}()
	actx, acancel := context.WithTimeout(ctx, long+time.Minute)
	drainTime, faultErr := g.apply(actx, fault)
	acancel()
	if faultErr == nil && res.Planned {
		res.DrainMs = ms(drainTime)
	}
	end := time.Now().Add(o.After)
	var conv time.Duration
	select {
	case conv = <-convCh: // converged, or gave up at long + ConvergeWindow
	case <-ctx.Done():
		return ctx.Err()
	}
	if conv >= 0 {
		res.ConvergedMs = ms(conv)
		if t := faultAt.Add(conv + convergedTail); t.After(end) {
			end = t
		}
	}
	return cmp.Or(faultErr, sleepCtx(ctx, time.Until(end)))
}

// staleRoutes counts bgpgw's kernel routes (its protocol number) that its
// status does not list.
func (r *runner) staleRoutes(ctx context.Context, g *gateway) (int, error) {
	st, err := g.sh(ctx, bgpgwCmd+`status --json --config "$BGPGW_CONF"`)
	if err != nil {
		return 0, err
	}
	var status struct {
		Routes []struct {
			Prefix string `json:"prefix"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(st), &status); err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	known := map[string]bool{}
	for _, rt := range status.Routes {
		known[strings.TrimSuffix(rt.Prefix, "/32")] = true
	}
	out, err := g.node.Exec(ctx, "ip", "-4", "route", "show", "table", "all", "proto", "201")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// ECMP routes continue on "nexthop via ..." lines.
		if f := strings.Fields(line); len(f) > 0 && f[0] != "nexthop" && !known[strings.TrimSuffix(f[0], "/32")] {
			n++
		}
	}
	return n, nil
}
