package core

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// inputs is the test's own record of the inputs, to check the output against.
type inputs struct {
	established, ipsec map[string]bool
	bfd                map[string]*bfdModel // per peer that got a BFD event
	checkOK            map[string]bool      // the core's view after rise/fall, tracked by the test
	runs               map[string][2]int
	drainOn            bool // drain asked for (SetDrain on, or restored), not yet undrained
	partner            PartnerView
	partnerEverUp      bool            // the partner has been up since the start
	partnerSeen        map[string]bool // devices the partner has said it carries
}

// bfdModel is the test's own reading of the BFD rules for one peer.
type bfdModel struct {
	session BFDState // the simulated session's state, as last reported
	wasUp   bool     // Up since created or AdminDown: a Down counts
	down    bool     // a counted Down not yet followed by Up or AdminDown
	gen     uint64   // resets decided
	reason  string   // of the last reset
}

// bfdUp reports whether the rules let peer carry traffic.
func (m inputs) bfdUp(peer string) bool {
	b, ok := m.bfd[peer]
	return !ok || !b.down
}

// TestTransitionsInRandomOrder applies random inputs and checks the
// invariants after every step:
//   - nothing is announced over a tunnel that is down, whose session is not
//     established, whose BFD is down or whose tunnel check fails;
//   - nothing is announced while an instance check fails;
//   - while draining everything carries the GRACEFUL_SHUTDOWN community;
//     once drained nothing is announced and every session is held down;
//   - the standby always announces with its prepend and MED;
//   - routes point only at tunnels that carry traffic, and cloud peers get
//     only prefixes learned over such tunnels;
//
// and, after time passes with no event (every hold-down and the drain time
// over), liveness (checkLiveness): not drained and healthy means announced,
// routed and passed on to the cloud peers. The inputs include reloads (to
// the same or a changed configuration) and a drain restored from disk.
func TestTransitionsInRandomOrder(t *testing.T) {
	for _, name := range []string{"active-active", "active-standby", "pair"} {
		live := 0
		for seed := uint64(1); seed <= 20; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", name, seed), func(t *testing.T) {
				live += runRandom(t, loadConfig(t, name), seed)
			})
		}
		t.Logf("%s: %d liveness checks found a healthy tunnel", name, live)
		// The liveness check must have had something to check.
		if live < 20 {
			t.Errorf("%s: only %d liveness checks found a healthy tunnel", name, live)
		}
	}
}

// runRandom returns how many liveness checks found a healthy tunnel to
// check.
func runRandom(t *testing.T, cfg *config.Config, seed uint64) (live int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	// Reloads switch between the file's configuration, one that announces
	// one more prefix, and ones that change the first tunnel's BFD session:
	// turned off, other timers (kept), multihop (a new session).
	configs := []*config.Config{cfg, withExtraPrefix(cfg),
		withBFD(cfg, func(b *config.BFD) { b.Enabled = false }),
		withBFD(cfg, func(b *config.BFD) { b.MinRx, b.MinTx, b.Multiplier = time.Second, time.Second, 5 }),
		withBFD(cfg, func(b *config.BFD) { b.Multihop = true })}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(cfg, now)
	role := cfg.Instance.Role
	m := inputs{established: map[string]bool{}, ipsec: map[string]bool{}, bfd: map[string]*bfdModel{},
		checkOK: map[string]bool{}, runs: map[string][2]int{}, partnerSeen: map[string]bool{}}
	for _, tn := range cfg.Tunnels {
		m.ipsec[tn.Name] = true
	}
	learnedPool := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.1.1.0/24"), netip.MustParsePrefix("10.1.2.0/24")}
	// Each prefix is sent with one of these AS paths and communities.
	variants := []model.Learned{
		{ASPath: []model.ASSegment{{ASNs: []uint32{65010}}}},
		{ASPath: []model.ASSegment{{ASNs: []uint32{65020, 65010}}}},
		{ASPath: []model.ASSegment{{ASNs: []uint32{65020}}, {Set: true, ASNs: []uint32{65030, 65031}}}},
		{ASPath: []model.ASSegment{{ASNs: []uint32{65010}}}, Communities: []uint32{model.CommunityNoExport}},
		{ASPath: []model.ASSegment{{ASNs: []uint32{65010}}}, Communities: []uint32{model.CommunityNoAdvertise}},
	}
	learned := map[string][]model.Learned{}
	var history []string

	for step := 0; step < 300; step++ {
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		tn := cfg.Tunnels[rng.IntN(len(cfg.Tunnels))].Name
		var ev string
		settle := false
		switch rng.IntN(12) {
		case 0, 1:
			up := rng.IntN(3) > 0
			var l []model.Learned
			for _, p := range learnedPool {
				if up && rng.IntN(2) == 0 {
					v := variants[rng.IntN(len(variants))]
					v.Prefix = p
					l = append(l, v)
				}
			}
			c.SessionState(now, tn, up, l)
			m.established[tn], learned[tn] = up, l
			ev = fmt.Sprintf("session %s %v %v", tn, up, l)
		case 2:
			up := rng.IntN(3) > 0
			c.TunnelState(now, tn, up)
			m.ipsec[tn] = up
			ev = fmt.Sprintf("tunnel %s %v", tn, up)
		case 3:
			e := randomBFD(rng, cfg, m)
			c.BFD(now, e)
			m.applyBFD(cfg, e)
			ev = fmt.Sprintf("bfd %s %s->%s remote %s diag %q", e.Peer, e.Old, e.New, e.Remote, e.Diag)
		case 4, 5:
			if len(cfg.Health) == 0 {
				continue
			}
			ch := cfg.Health[rng.IntN(len(cfg.Health))]
			ok := rng.IntN(3) > 0
			c.CheckResult(now, ch.Name, ok)
			r := m.runs[ch.Name]
			if ok {
				r = [2]int{r[0] + 1, 0}
				if r[0] >= ch.Rise {
					m.checkOK[ch.Name] = true
				}
			} else {
				r = [2]int{0, r[1] + 1}
				if r[1] >= ch.Fall {
					m.checkOK[ch.Name] = false
				}
			}
			m.runs[ch.Name] = r
			ev = fmt.Sprintf("check %s %v", ch.Name, ok)
		case 6:
			on := rng.IntN(2) == 0
			c.SetDrain(now, on, false)
			m.drainOn = on
			ev = fmt.Sprintf("drain %v", on)
		case 7:
			if cfg.Instance.Mode != config.ActiveStandby {
				continue
			}
			role = []config.Role{config.RolePrimary, config.RoleStandby}[rng.IntN(2)]
			c.SetRole(now, role)
			ev = "role " + string(role)
		case 8:
			// A reload: the same tunnels and checks under the same names,
			// so their states carry over.
			next := configs[rng.IntN(len(configs))]
			c.Reconfigure(now, next)
			m.reloadBFD(cfg, next)
			cfg = next
			ev = fmt.Sprintf("reload (%d prefixes)", len(cfg.Announce))
		case 9:
			// A drain restored from disk at start: drained at once.
			c.SetDrain(now, true, true)
			m.drainOn = true
			ev = "drain restored"
		case 11:
			// The partner: lost or up, carrying some devices, draining,
			// failing its checks.
			v := PartnerView{Up: rng.IntN(2) == 0, Heard: rng.IntN(4) > 0, Epoch: uint64(rng.IntN(3)),
				Draining: rng.IntN(5) == 0, ChecksOK: rng.IntN(5) > 0}
			for _, d := range []string{"site-a", "site-b"} {
				if rng.IntN(4) > 0 {
					v.Devices = append(v.Devices, d)
					if rng.IntN(2) == 0 {
						v.Carrying = append(v.Carrying, d)
					}
				}
			}
			if !v.Heard {
				v.Up, v.Devices, v.Carrying = false, nil, nil
			}
			c.Partner(now, v)
			m.partner, m.partnerEverUp = v, m.partnerEverUp || v.Up
			for _, d := range v.Carrying {
				m.partnerSeen[d] = true
			}
			ev = fmt.Sprintf("partner %+v", v)
		case 10:
			// Time passes with no event: past every hold-down and the
			// drain time.
			now = now.Add(cfg.HoldDown.Max + cfg.Drain.Time + time.Second)
			settle = true
			ev = "settle"
		}
		history = append(history, fmt.Sprintf("+%s %s", now.Format("15:04:05.000"), ev))
		c.Tick(now)
		out := c.Output(now)
		if err := checkInvariants(cfg, m, learned, role, out); err != nil {
			t.Fatalf("step %d: %v\nhistory:\n%s", step, err, joinLines(history))
		}
		if settle {
			n, err := checkLiveness(cfg, m, learned, out)
			if err != nil {
				t.Fatalf("step %d: %v\nhistory:\n%s", step, err, joinLines(history))
			}
			live += n
		}
	}
	return live
}

// randomBFD is a BFD event for a random peer (now and then one that does
// not exist): mostly a transition from the state last reported, sometimes
// from any state; the peer sometimes says AdminDown.
func randomBFD(rng *rand.Rand, cfg *config.Config, m inputs) BFDEvent {
	peers := append(cfg.PeerNames(), "nosuch")
	e := BFDEvent{Peer: peers[rng.IntN(len(peers))], Old: BFDDown}
	if b, ok := m.bfd[e.Peer]; ok {
		e.Old = b.session
	}
	if rng.IntN(8) == 0 {
		e.Old = BFDState(rng.IntN(4))
	}
	e.New = []BFDState{BFDUp, BFDUp, BFDUp, BFDDown, BFDDown, BFDDown, BFDInit, BFDAdminDown}[rng.IntN(8)]
	e.Remote = e.New
	if rng.IntN(5) == 0 && e.New != BFDUp {
		e.Remote = BFDAdminDown
	}
	e.Diag = []string{"Control Detection Time Expired", "Neighbor Signaled Session Down", "Path Down"}[rng.IntN(3)]
	return e
}

// applyBFD follows the BFD rules for event e, for a peer with a BFD session
// in cfg (events for any other peer change nothing).
func (m inputs) applyBFD(cfg *config.Config, e BFDEvent) {
	if _, ok := bfdSession(cfg, e.Peer); !ok {
		return
	}
	b := m.bfd[e.Peer]
	if b == nil {
		b = &bfdModel{}
		m.bfd[e.Peer] = b
	}
	b.session = e.New
	switch {
	case e.New == BFDUp:
		b.wasUp, b.down = true, false
	case e.Remote == BFDAdminDown || e.New == BFDAdminDown:
		b.wasUp, b.down = false, false // not a failure; not relied upon
	case b.wasUp && e.Old == BFDUp:
		b.down, b.gen, b.reason = true, b.gen+1, "BFD down: "+e.Diag
	}
}

// reloadBFD forgets the state of the BFD sessions the reload from cur to
// next removes or replaces (the resets decided stay).
func (m inputs) reloadBFD(cur, next *config.Config) {
	for peer, b := range m.bfd {
		was, _ := bfdSession(cur, peer)
		if s, ok := bfdSession(next, peer); !ok || s != was {
			m.bfd[peer] = &bfdModel{session: BFDDown, gen: b.gen, reason: b.reason}
		}
	}
}

// bfdSession names the BFD session cfg runs for peer, if any.
func bfdSession(cfg *config.Config, peer string) (string, bool) {
	for _, t := range cfg.Tunnels {
		if t.Name == peer && t.BFD.Enabled {
			return fmt.Sprint(t.InsideLocal.Addr(), t.InsideRemote, t.BFD.Multihop), true
		}
	}
	for _, p := range cfg.CloudPeers {
		if p.Name == peer && p.BFD.Enabled {
			return fmt.Sprint(p.LocalAddress, p.Address, p.Multihop > 1 || p.BFD.Multihop), true
		}
	}
	return "", false
}

// withBFD is cfg with the first tunnel's BFD settings changed by change.
func withBFD(cfg *config.Config, change func(*config.BFD)) *config.Config {
	c := *cfg
	c.Tunnels = slices.Clone(cfg.Tunnels)
	change(&c.Tunnels[0].BFD)
	return &c
}

// withExtraPrefix is cfg announcing one more cloud-side prefix.
func withExtraPrefix(cfg *config.Config) *config.Config {
	c := *cfg
	c.Announce = append(slices.Clone(cfg.Announce), netip.MustParsePrefix("10.99.0.0/16"))
	return &c
}

// checkLiveness is the other half of the invariants, once every hold-down
// and the drain time have passed: a core that never announced anything
// would pass checkInvariants. Once drained and the drain time over, it is
// drained; not drained (by the inputs, not the core's word) and every
// instance check passing, a healthy tunnel (IPsec, session, BFD and its
// checks up) announces every cloud-side prefix, carries the routes to what
// it learned, and the cloud peers are sent those prefixes. It returns how
// many healthy tunnels it checked.
func checkLiveness(cfg *config.Config, m inputs, learned map[string][]model.Learned, out Output) (int, error) {
	if m.drainOn {
		if out.Drain != Drained {
			return 0, fmt.Errorf("drain asked for and the drain time over, but the core is %q", out.Drain)
		}
		return 0, nil
	}
	if out.Drain != Normal {
		return 0, fmt.Errorf("not drained (undrained or never drained), but the core is %q", out.Drain)
	}
	tunnelCheck := map[string]bool{}
	for _, ch := range cfg.Health {
		if !m.checkOK[ch.Name] {
			if ch.Scope == config.ScopeInstance {
				return 0, nil // instance check failing: nothing is owed
			}
			tunnelCheck[ch.Tunnel] = true
		}
	}
	checked := 0
	routes := map[netip.Prefix][]netip.Addr{}
	for _, r := range out.Routes {
		routes[r.Prefix] = r.NextHops
	}
	viaHealthy := map[netip.Prefix]bool{}
	healthy := map[string]bool{}
	for _, tn := range cfg.Tunnels {
		n := tn.Name
		healthy[n] = m.established[n] && m.ipsec[n] && m.bfdUp(n) && !tunnelCheck[n]
	}
	shortest := shortestPaths(cfg, healthy, learned)
	for _, tn := range cfg.Tunnels {
		n := tn.Name
		if !healthy[n] {
			continue
		}
		checked++
		var got []netip.Prefix
		for _, a := range out.Announcements[n] {
			got = append(got, a.Prefix)
		}
		for _, p := range cfg.Announce {
			if !slices.Contains(got, p) {
				return 0, fmt.Errorf("healthy tunnel %s, past every hold-down, does not announce %s (announces %v)", n, p, got)
			}
		}
		for _, l := range learned[n] {
			p := l.Prefix
			viaHealthy[p] = true
			if !slices.Contains(routes[p], tn.InsideRemote) && model.PathLen(l.ASPath) == shortest[p].length {
				return 0, fmt.Errorf("healthy tunnel %s learned %s with a shortest AS path, but the route is %v", n, p, routes[p])
			}
		}
	}
	if err := checkPairLiveness(cfg, m, out); err != nil {
		return 0, err
	}
	for _, cp := range cfg.CloudPeers {
		var got []netip.Prefix
		for _, a := range out.Announcements[cp.Name] {
			got = append(got, a.Prefix)
		}
		for p := range viaHealthy {
			if p.Addr().Is4() == cp.Address.Is4() && shortest[p].route.Exportable() && !slices.Contains(got, p) {
				return 0, fmt.Errorf("cloud peer %s is not sent %s, learned over a healthy tunnel (sent %v)", cp.Name, p, got)
			}
		}
	}
	return checked, nil
}

// shortestPath is the model's best path of a learned prefix: the tunnels
// whose AS path is shortest, and the first such route in the
// configuration's order.
type shortestPath struct {
	length  int
	tunnels []string
	route   model.Learned
}

func shortestPaths(cfg *config.Config, healthy map[string]bool, learned map[string][]model.Learned) map[netip.Prefix]shortestPath {
	out := map[netip.Prefix]shortestPath{}
	for _, tn := range cfg.Tunnels {
		if !healthy[tn.Name] {
			continue
		}
		for _, l := range learned[tn.Name] {
			n := model.PathLen(l.ASPath)
			b, ok := out[l.Prefix]
			switch {
			case !ok || n < b.length:
				out[l.Prefix] = shortestPath{length: n, tunnels: []string{tn.Name}, route: l}
			case n == b.length:
				b.tunnels = append(b.tunnels, tn.Name)
				out[l.Prefix] = b
			}
		}
	}
	return out
}

// checkPairLiveness: settled (past the start grace), a device this
// instance carries is taken over exactly when the partner has it (or has
// never said) and is lost or, having said it carried it since the start,
// is draining, failing its checks or not carrying it.
func checkPairLiveness(cfg *config.Config, m inputs, out Output) error {
	if !cfg.Pair.Enabled || cfg.Pair.Takeover == config.TakeoverOff {
		return nil
	}
	v := m.partner
	taken := map[string]bool{}
	for _, tk := range out.Takeovers {
		taken[tk.Device] = true
	}
	for _, d := range out.Self.Carrying {
		has := !v.Heard || slices.Contains(v.Devices, d)
		want := has && !v.Up
		if v.Up && m.partnerSeen[d] {
			want = has && (v.Draining || !v.ChecksOK || !slices.Contains(v.Carrying, d))
		}
		if taken[d] != want {
			return fmt.Errorf("settled: device %s taken over %v, want %v (partner %+v)", d, taken[d], want, v)
		}
	}
	return nil
}

func checkInvariants(cfg *config.Config, m inputs, learned map[string][]model.Learned, role config.Role, out Output) error {
	instanceOK := true
	tunnelCheck := map[string]bool{}
	for _, ch := range cfg.Health {
		if ch.Scope == config.ScopeInstance && !m.checkOK[ch.Name] {
			instanceOK = false
		}
		if ch.Scope == config.ScopeTunnel && !m.checkOK[ch.Name] {
			tunnelCheck[ch.Tunnel] = true
		}
	}
	healthy := map[string]bool{}
	for _, tn := range cfg.Tunnels {
		n := tn.Name
		healthy[n] = m.established[n] && m.ipsec[n] && m.bfdUp(n) && !tunnelCheck[n]
		if !m.ipsec[n] && !slices.Contains(out.ShutDown, n) {
			return fmt.Errorf("tunnel %s is down but its BGP session is not held down (shut down: %v)", n, out.ShutDown)
		}
		if len(out.Announcements[n]) > 0 && !healthy[n] {
			return fmt.Errorf("announcing over failed tunnel %s", n)
		}
		if len(out.Announcements[n]) > 0 && !instanceOK {
			return fmt.Errorf("announcing over %s while an instance check fails", n)
		}
	}
	for peer, anns := range out.Announcements {
		for _, a := range anns {
			if out.Drain == Draining && !slices.Contains(a.Communities, model.CommunityGracefulShutdown) {
				return fmt.Errorf("draining, but %s to %s lacks GRACEFUL_SHUTDOWN", a.Prefix, peer)
			}
			if out.Drain == Drained {
				return fmt.Errorf("drained, but %s announced to %s", a.Prefix, peer)
			}
			if role == config.RoleStandby && (a.Prepend < cfg.Standby.Prepend || a.MED != cfg.Standby.MED) {
				return fmt.Errorf("standby announces %s to %s without prepend/MED: %+v", a.Prefix, peer, a)
			}
		}
	}
	if err := checkResets(cfg, m, out); err != nil {
		return err
	}
	if out.Drain == Drained && len(out.ShutDown) != len(cfg.PeerNames()) {
		return fmt.Errorf("drained, but sessions not all held down: %v", out.ShutDown)
	}
	viaHealthy := map[netip.Prefix]bool{}
	for _, tn := range cfg.Tunnels {
		if healthy[tn.Name] {
			for _, l := range learned[tn.Name] {
				viaHealthy[l.Prefix] = true
			}
		}
	}
	// Between the tunnels that carry (healthy, past their hold-downs: the
	// check above keeps the routes to them), the shortest AS paths win.
	carrying := map[string]bool{}
	for _, ts := range out.Tunnels {
		carrying[ts.Name] = ts.Carrying && healthy[ts.Name]
	}
	best := shortestPaths(cfg, carrying, learned)
	for _, r := range out.Routes {
		for _, nh := range r.NextHops {
			for _, tn := range cfg.Tunnels {
				if tn.InsideRemote == nh && !healthy[tn.Name] {
					return fmt.Errorf("route %s via failed tunnel %s", r.Prefix, tn.Name)
				}
				if tn.InsideRemote == nh && !slices.Contains(best[r.Prefix].tunnels, tn.Name) {
					return fmt.Errorf("route %s via tunnel %s, whose AS path is not the shortest (%+v)", r.Prefix, tn.Name, best[r.Prefix])
				}
			}
		}
	}
	taken := map[string]bool{}
	for _, tk := range out.Takeovers {
		taken[tk.Device] = true
	}
	for _, cp := range cfg.CloudPeers {
		for _, a := range out.Announcements[cp.Name] {
			if !viaHealthy[a.Prefix] && !halfOf(a.Prefix, viaHealthy) {
				return fmt.Errorf("cloud peer %s gets %s, not learned over a healthy tunnel nor half of such a prefix", cp.Name, a.Prefix)
			}
			b := best[a.Prefix]
			if !viaHealthy[a.Prefix] {
				b = best[netip.PrefixFrom(a.Prefix.Addr(), a.Prefix.Bits()-1).Masked()]
			}
			if !b.route.Exportable() {
				return fmt.Errorf("cloud peer %s gets %s, learned with communities %x (RFC 1997: not to another AS)", cp.Name, a.Prefix, b.route.Communities)
			}
			if !slices.EqualFunc(a.ASPath, b.route.ASPath, model.ASSegment.Equal) {
				return fmt.Errorf("cloud peer %s gets %s with AS path %q, want the first shortest learned: %q", cp.Name, a.Prefix, model.PathString(a.ASPath), model.PathString(b.route.ASPath))
			}
		}
	}
	return checkPair(cfg, m, healthy, taken, out)
}

// halfOf reports whether p is a half of one of the prefixes in of.
func halfOf(p netip.Prefix, of map[netip.Prefix]bool) bool {
	for q := range of {
		if slices.Contains(halves(q), p) {
			return true
		}
	}
	return false
}

// checkPair: a takeover only of a device a healthy tunnel of this instance
// reaches, never while draining, never with takeover off; over a tunnel,
// only the cloud prefixes and, taken over, their halves; what the instance
// says it carries is what its healthy tunnels reach.
func checkPair(cfg *config.Config, m inputs, healthy, taken map[string]bool, out Output) error {
	if len(taken) > 0 && (out.Drain != Normal || cfg.Pair.Takeover == config.TakeoverOff || !out.InstanceOK) {
		return fmt.Errorf("takeovers %v while drain %s, takeover %s, instance ok %v", out.Takeovers, out.Drain, cfg.Pair.Takeover, out.InstanceOK)
	}
	reach := map[string]bool{}
	for _, tn := range cfg.Tunnels {
		if healthy[tn.Name] {
			reach[tn.Device] = true
		}
	}
	for d := range taken {
		if !reach[d] {
			return fmt.Errorf("takes %s over without a healthy tunnel to it", d)
		}
	}
	for _, d := range out.Self.Carrying {
		if !reach[d] {
			return fmt.Errorf("says it carries %s without a healthy tunnel to it", d)
		}
	}
	if out.Drain != Normal && len(out.Self.Carrying) > 0 {
		return fmt.Errorf("says it carries %v while %s", out.Self.Carrying, out.Drain)
	}
	cloud := map[netip.Prefix]bool{}
	for _, p := range cfg.Announce {
		cloud[p] = true
	}
	for _, tn := range cfg.Tunnels {
		for _, a := range out.Announcements[tn.Name] {
			if !cloud[a.Prefix] && !(taken[tn.Device] && halfOf(a.Prefix, cloud)) {
				return fmt.Errorf("tunnel %s (device %s, taken %v) gets %s", tn.Name, tn.Device, taken[tn.Device], a.Prefix)
			}
		}
	}
	return nil
}

// checkResets: the resets are those the rules decided, for the peers
// configured.
func checkResets(cfg *config.Config, m inputs, out Output) error {
	want := 0
	for _, peer := range cfg.PeerNames() {
		var w Reset
		if b, ok := m.bfd[peer]; ok {
			w = Reset{Gen: b.gen, Reason: b.reason}
		}
		if w.Gen > 0 {
			want++
		}
		if got := out.Resets[peer]; got != w {
			return fmt.Errorf("peer %s: reset %+v, want %+v", peer, got, w)
		}
	}
	if len(out.Resets) != want {
		return fmt.Errorf("resets %v: want only configured peers' (%d)", out.Resets, want)
	}
	return nil
}

func joinLines(l []string) string {
	s := ""
	for _, x := range l {
		s += x + "\n"
	}
	return s
}
