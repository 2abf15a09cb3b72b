package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/core"
	"github.com/bgpgw/bgpgw/pkg/ipsec"
	"github.com/bgpgw/bgpgw/pkg/model"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// planAssumes is what a plan's predicted announcements assume.
const planAssumes = "announcements once every session is (back) up, each peer sending the routes it sends now"

// Plan implements api.Backend: the file is read here, the plan is
// computed on the loop from the core's present state, and nothing is
// applied.
func (d *Daemon) Plan(ctx context.Context, path string) (api.Plan, error) {
	if !filepath.IsAbs(path) {
		return api.Plan{}, fmt.Errorf("plan: %q: want an absolute path (the daemon's working directory is not yours)", path)
	}
	next, loadErr := configfile.Load(path)
	plan := make(chan api.Plan, 1)
	err := d.call(ctx, func(context.Context) error {
		plan <- d.plan(path, next, loadErr)
		return nil
	})
	if err != nil {
		return api.Plan{}, err
	}
	return <-plan, nil
}

// plan is what switching to next would change, or why reload would
// refuse it; on the loop.
func (d *Daemon) plan(file string, next *config.Config, loadErr error) api.Plan {
	if loadErr == nil {
		_, _, loadErr = d.vetConfig(next)
	}
	if loadErr != nil {
		p := emptyPlan(file)
		p.Invalid = errorLines(loadErr)
		return p
	}
	return d.planFor(file, next)
}

// emptyPlan has every list empty, not null, in JSON.
func emptyPlan(file string) api.Plan {
	return api.Plan{File: file, Peers: []api.PlanPeer{}, Tunnels: []api.PlanItem{}, BFD: []api.PlanItem{},
		Checks: []api.PlanItem{}, Settings: []string{}}
}

// planFor is what switching to next, already vetted, would change.
func (d *Daemon) planFor(file string, next *config.Config) api.Plan {
	p := emptyPlan(file)
	cur := d.cfg
	// What each tunnel peer would send after the reload: what it has sent,
	// accepted or refused; the preview applies the new import rules.
	sent := map[string][]model.Learned{}
	for _, s := range d.sessions {
		if s.Kind == bgp.KindTunnel && s.State == bgp.StateEstablished {
			sent[s.Name] = slices.Clone(s.Received)
			for _, r := range s.Rejected {
				sent[s.Name] = append(sent[s.Name], r.Learned)
			}
		}
	}
	after := d.core.Preview(d.clock.Now(), next, sent)
	p.Peers = planPeers(cur, next, d.out, after)
	if cur.IPsec.Mode != config.IPsecNone {
		p.Tunnels = planTunnels(cur, next)
	}
	p.BFD = planBFD(cur, next)
	p.Checks = planChecks(cur, next)
	p.Routes = planRoutes(d.out.Routes, after.Routes)
	for _, c := range describeChanges(cur, next) {
		if c != "nothing changed" {
			p.Settings = append(p.Settings, c)
		}
	}
	p.Changed = len(p.Settings) > 0 || len(p.Tunnels) > 0 || len(p.BFD) > 0 || len(p.Checks) > 0 ||
		len(p.Routes.Add)+len(p.Routes.Remove) > 0 ||
		slices.ContainsFunc(p.Peers, func(pp api.PlanPeer) bool {
			return pp.Session != "" || len(pp.Announce)+len(pp.Withdraw)+len(pp.Update) > 0
		})
	p.Assumes = planAssumes
	return p
}

func errorLines(err error) []string {
	var ferrs config.Errors
	if errors.As(err, &ferrs) {
		var out []string
		for _, fe := range ferrs {
			out = append(out, fe.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// planPeers lists every peer of cur or next: its session change and what
// it is announced now and afterwards.
func planPeers(cur, next *config.Config, now, after core.Output) []api.PlanPeer {
	curPeers, nextPeers := peersByName(cur), peersByName(next)
	var out []api.PlanPeer
	for _, name := range slices.Sorted(maps.Keys(unionKeys(curPeers, nextPeers))) {
		a, inCur := curPeers[name]
		b, inNext := nextPeers[name]
		pp := api.PlanPeer{Name: name, Kind: string(b.Kind), After: []api.PlanPrefix{}}
		switch {
		case !inCur:
			pp.Session = "added"
		case !inNext:
			pp.Session, pp.Kind = "removed", string(a.Kind)
		case !a.Equal(b):
			pp.Session, pp.Why = "reset", "changed: "+strings.Join(peerChanges(a, b), ", ")
		}
		was := map[netip.Prefix]model.Announcement{}
		for _, ann := range now.Announcements[name] {
			was[ann.Prefix] = ann
		}
		if inNext {
			for _, ann := range after.Announcements[name] {
				pp.After = append(pp.After, planPrefix(ann))
				old, ok := was[ann.Prefix]
				delete(was, ann.Prefix)
				switch {
				case !ok:
					pp.Announce = append(pp.Announce, planPrefix(ann))
				case !old.Equal(ann):
					pp.Update = append(pp.Update, planPrefix(ann))
				}
			}
		}
		for _, pfx := range slices.SortedFunc(maps.Keys(was), comparePrefix) {
			pp.Withdraw = append(pp.Withdraw, pfx.String())
		}
		out = append(out, pp)
	}
	return out
}

func peersByName(c *config.Config) map[string]bgp.PeerConfig {
	m := map[string]bgp.PeerConfig{}
	for _, p := range peers(c) {
		m[p.Name] = p
	}
	return m
}

// peerChanges names the settings that differ between two sessions (a
// password change is named, never shown).
func peerChanges(a, b bgp.PeerConfig) []string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"address", a.Address == b.Address},
		{"local address", a.LocalAddress == b.LocalAddress},
		{"port", a.Port == b.Port},
		{"peer_asn", a.PeerASN == b.PeerASN},
		{"password", a.Password == b.Password},
		{"accept", slices.Equal(a.Accept, b.Accept)},
		{"max_prefixes", a.MaxPrefixes == b.MaxPrefixes},
		{"bgp timers", a.HoldTime == b.HoldTime && a.Keepalive == b.Keepalive && a.ConnectRetry == b.ConnectRetry},
		{"multihop", a.MultihopTTL == b.MultihopTTL},
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

func planPrefix(a model.Announcement) api.PlanPrefix {
	p := api.PlanPrefix{Prefix: a.Prefix.String(), Prepend: a.Prepend}
	if a.HasMED {
		med := a.MED
		p.MED = &med
	}
	for _, c := range a.Communities {
		if c == model.CommunityGracefulShutdown {
			p.Communities = append(p.Communities, "graceful-shutdown")
		} else {
			p.Communities = append(p.Communities, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
		}
	}
	return p
}

// planTunnels lists the IPsec tunnels charon adds, removes or rebuilds.
func planTunnels(cur, next *config.Config) []api.PlanItem {
	out := []api.PlanItem{}
	curT := byName(cur.Tunnels, func(t config.Tunnel) string { return t.Name })
	nextT := byName(next.Tunnels, func(t config.Tunnel) string { return t.Name })
	announceChanged := !slices.Equal(cur.Announce, next.Announce)
	for _, name := range slices.Sorted(maps.Keys(unionKeys(curT, nextT))) {
		a, inCur := curT[name]
		b, inNext := nextT[name]
		switch {
		case !inCur:
			out = append(out, api.PlanItem{Name: name, Change: "added"})
		case !inNext:
			out = append(out, api.PlanItem{Name: name, Change: "removed", Why: "its SAs are deleted"})
		default:
			if why := ipsec.Rebuild(next.IPsec.Mode, a, b, announceChanged); why != "" {
				out = append(out, api.PlanItem{Name: name, Change: "rebuilt", Why: why})
			}
		}
	}
	return out
}

// planBFD lists the BFD sessions added, removed or updated in place.
func planBFD(cur, next *config.Config) []api.PlanItem {
	out := []api.PlanItem{}
	curS, curP := wantBFD(cur)
	nextS, nextP := wantBFD(next)
	keys := slices.SortedFunc(maps.Keys(unionKeys(curS, nextS)), func(a, b bfd.Key) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	for _, k := range keys {
		a, inCur := curS[k]
		b, inNext := nextS[k]
		switch {
		case !inCur:
			out = append(out, api.PlanItem{Name: nextP[k].name, Change: "added"})
		case !inNext:
			out = append(out, api.PlanItem{Name: curP[k].name, Change: "removed", Why: "BFD no longer relied on"})
		case !reflect.DeepEqual(a, b):
			out = append(out, api.PlanItem{Name: nextP[k].name, Change: "updated",
				Why: "timers or authentication changed in place (RFC 5880 poll sequence): no Down, no session reset"})
		}
	}
	return out
}

// planChecks lists the health checks added, removed or restarted.
func planChecks(cur, next *config.Config) []api.PlanItem {
	out := []api.PlanItem{}
	curC := byName(cur.Health, func(c config.Check) string { return c.Name })
	nextC := byName(next.Health, func(c config.Check) string { return c.Name })
	for _, name := range slices.Sorted(maps.Keys(unionKeys(curC, nextC))) {
		a, inCur := curC[name]
		b, inNext := nextC[name]
		switch {
		case !inCur:
			out = append(out, api.PlanItem{Name: name, Change: "added", Why: "failing until it passes"})
		case !inNext:
			out = append(out, api.PlanItem{Name: name, Change: "removed"})
		case !reflect.DeepEqual(a, b):
			why := "restarts: failing until it passes"
			if core.SameCheck(a, b) {
				why = "rise, fall, interval or timeout: keeps its state"
			}
			out = append(out, api.PlanItem{Name: name, Change: "changed", Why: why})
		}
	}
	return out
}

// planRoutes lists the kernel routes added and removed (a route whose
// next hops change is removed and added).
func planRoutes(cur, next []route.Route) api.PlanRoutes {
	var out api.PlanRoutes
	key := func(r route.Route) string { return r.String() }
	was := map[string]route.Route{}
	for _, r := range cur {
		was[key(r)] = r
	}
	for _, r := range next {
		if _, ok := was[key(r)]; ok {
			delete(was, key(r))
			continue
		}
		out.Add = append(out.Add, api.Route{Prefix: r.Prefix.String(), NextHops: strs(r.NextHops)})
	}
	for _, k := range slices.Sorted(maps.Keys(was)) {
		r := was[k]
		out.Remove = append(out.Remove, api.Route{Prefix: r.Prefix.String(), NextHops: strs(r.NextHops)})
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
