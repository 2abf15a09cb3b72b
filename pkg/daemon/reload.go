package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/health"
)

// Reload implements api.Backend: it reads the configuration file into a
// fresh config, validates it and applies only the difference: sessions,
// tunnels and BFD sessions that did not change are not touched. A file
// that does not load, or that changes something only a restart can
// change, is rejected: the running configuration stays, and the errors go
// to the log and to status. The file is read here; the loop applies it
// and returns what it applied (the plan `bgpgw plan` would have shown).
//
// A reload that applied the file but could not apply all of it (a
// session, a BFD session) returns no error: the plan lists what failed in
// Errors.
func (d *Daemon) Reload(ctx context.Context) (api.Plan, error) {
	if d.configPath == "" {
		return api.Plan{}, errors.New("reload: bgpgw was started without a configuration file path")
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	next, loadErr := configfile.Load(d.configPath)
	plan := make(chan api.Plan, 1)
	err := d.call(ctx, func(ctx context.Context) error {
		if loadErr != nil {
			d.rejectReload(loadErr)
			return fmt.Errorf("reload rejected, running configuration kept: %w", loadErr)
		}
		p, err := d.applyConfig(ctx, next)
		plan <- p
		return err
	})
	if err != nil {
		return api.Plan{}, err
	}
	return <-plan, nil
}

// applyConfig switches the running daemon to next and returns what
// changed; on the loop.
func (d *Daemon) applyConfig(ctx context.Context, next *config.Config) (api.Plan, error) {
	// What can still refuse the new configuration is checked before
	// anything changes.
	runner, healthChanged, err := d.vetConfig(next)
	if err != nil {
		d.rejectReload(err)
		return api.Plan{}, fmt.Errorf("reload rejected, running configuration kept: %w", err)
	}
	for _, w := range next.Warnings {
		d.log.Warn("configuration", "warning", w)
	}
	plan := d.planFor(d.configPath, next)
	changes := plan.Settings
	if len(changes) == 0 {
		changes = []string{"nothing changed"}
	}
	var errs []error

	d.cfg = next
	d.core.Reconfigure(d.clock.Now(), next)
	if healthChanged {
		d.startHealthRunner(runner) // no result of an old check counts from here
		d.forgetChecks(next)
	}
	// The speaker: the prefixes never accepted follow announce (a no-op
	// when they did not change, and retried by the next reload if it
	// failed); sessions are added, removed or recreated only where their
	// settings changed.
	if err := d.speaker.SetNever(ctx, filter.Never(next)); err != nil {
		errs = append(errs, fmt.Errorf("cloud prefixes in the import policy: %w", err))
	}
	if err := d.speaker.SetPeers(ctx, peers(next)); err != nil {
		errs = append(errs, fmt.Errorf("BGP sessions: %w", err))
	}
	// The speaker keeps what it holds down across SetPeers; the next pass
	// gives the new set.
	d.observe = true // read the sessions again after SetPeers
	if d.ipsec != nil {
		d.ipsec.SetTunnels(next.Tunnels, next.Announce)
	}
	if err := d.reconfigureBFD(d.runCtx, next); err != nil {
		errs = append(errs, fmt.Errorf("BFD: %w", err))
	}

	rec := &api.Reload{At: d.clock.Now().UTC(), OK: len(errs) == 0, Changes: changes}
	for _, e := range errs {
		rec.Errors = append(rec.Errors, e.Error())
	}
	d.lastReload = rec
	plan.Errors = rec.Errors
	if len(errs) > 0 {
		err := errors.Join(errs...)
		d.log.Error("configuration reloaded with errors", "reason", err.Error(), "changes", strings.Join(changes, "; "))
		return plan, nil // applied: the plan says what failed
	}
	d.log.Info("configuration reloaded", "changes", strings.Join(changes, "; "))
	return plan, nil
}

// vetConfig is what can still refuse next once it loaded: a setting only
// a restart applies, or a health check that cannot be built (its target is
// checked here). When the checks changed, it returns their runner, which
// holds nothing until it runs (nil when there are none).
func (d *Daemon) vetConfig(next *config.Config) (runner *health.Runner, healthChanged bool, err error) {
	if err := restartOnly(d.cfg, next); err != nil {
		return nil, false, err
	}
	if reflect.DeepEqual(d.cfg.Health, next.Health) {
		return nil, false, nil
	}
	runner, err = d.newHealthRunner(next.Health)
	return runner, true, err
}

// rejectReload records and logs a rejected reload, one line per problem.
func (d *Daemon) rejectReload(err error) {
	lines := errorLines(err)
	for _, l := range lines {
		d.log.Error("reload rejected: running configuration kept", "file", d.configPath, "reason", l)
	}
	d.lastReload = &api.Reload{At: d.clock.Now().UTC(), OK: false, Errors: lines}
}

// restartOnly returns an error naming every setting that differs between
// cur and next and that only a restart applies.
func restartOnly(cur, next *config.Config) error {
	type field struct {
		key      string
		cur, nxt any
	}
	fields := []field{
		{"instance.name", cur.Instance.Name, next.Instance.Name},
		{"instance.mode", cur.Instance.Mode, next.Instance.Mode},
		{"bgp.asn", cur.BGP.ASN, next.BGP.ASN},
		{"bgp.router_id", cur.BGP.RouterID, next.BGP.RouterID},
		{"bgp.listen_port", cur.BGP.ListenPort, next.BGP.ListenPort},
		{"bgp.listen_addresses", cur.BGP.ListenAddresses, next.BGP.ListenAddresses},
		{"bgp.grpc_listen", cur.BGP.GRPCListen, next.BGP.GRPCListen},
		{"ipsec.mode", cur.IPsec.Mode, next.IPsec.Mode},
		{"ipsec.vici_socket", cur.IPsec.ViciSocket, next.IPsec.ViciSocket},
		{"api.socket", cur.API.Socket, next.API.Socket},
		{"kernel", cur.Kernel, next.Kernel},
		{"metrics.listen", cur.Metrics.Listen, next.Metrics.Listen},
		{"drain.state_file", cur.Drain.StateFile, next.Drain.StateFile},
		{"pair", cur.Pair.Enabled, next.Pair.Enabled},
		{"pair.partner", cur.Pair.Partner, next.Pair.Partner},
		{"pair.local_address", cur.Pair.LocalAddress, next.Pair.LocalAddress},
		{"pair.port", cur.Pair.Port, next.Pair.Port},
		{"pair.key", cur.Pair.Key, next.Pair.Key},
	}
	var errs config.Errors
	for _, f := range fields {
		if !reflect.DeepEqual(f.cur, f.nxt) {
			errs = append(errs, config.FieldError{Path: f.key, Msg: fmt.Sprintf("changed from %v to %v: only a restart applies it", f.cur, f.nxt)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// describeChanges lists what a reload changes, for the log and status.
func describeChanges(cur, next *config.Config) []string {
	out := slices.Concat(
		diffNamed("tunnel", cur.Tunnels, next.Tunnels, func(t config.Tunnel) string { return t.Name }),
		diffNamed("cloud peer", cur.CloudPeers, next.CloudPeers, func(p config.CloudPeer) string { return p.Name }),
		diffNamed("check", cur.Health, next.Health, func(ch config.Check) string { return ch.Name }))
	if !slices.Equal(cur.Announce, next.Announce) {
		out = append(out, fmt.Sprintf("announce %v -> %v", cur.Announce, next.Announce))
	}
	for _, f := range []struct {
		key      string
		cur, nxt any
	}{
		{"instance.role", cur.Instance.Role, next.Instance.Role},
		{"standby", cur.Standby, next.Standby},
		{"drain.time", cur.Drain.Time, next.Drain.Time},
		{"hold_down", cur.HoldDown, next.HoldDown},
		{"bgp timers", [3]any{cur.BGP.HoldTime, cur.BGP.Keepalive, cur.BGP.ConnectRetry},
			[3]any{next.BGP.HoldTime, next.BGP.Keepalive, next.BGP.ConnectRetry}},
	} {
		if !reflect.DeepEqual(f.cur, f.nxt) {
			out = append(out, f.key+" changed")
		}
	}
	if len(out) == 0 {
		out = []string{"nothing changed"}
	}
	return out
}

// diffNamed lists the items of kind added, removed and changed between
// cur and next, by name.
func diffNamed[T any](kind string, cur, next []T, name func(T) string) []string {
	a, b := byName(cur, name), byName(next, name)
	var out []string
	for _, n := range slices.Sorted(maps.Keys(unionKeys(a, b))) {
		x, inCur := a[n]
		y, inNext := b[n]
		switch {
		case !inCur:
			out = append(out, fmt.Sprintf("%s %s added", kind, n))
		case !inNext:
			out = append(out, fmt.Sprintf("%s %s removed", kind, n))
		case !reflect.DeepEqual(x, y):
			out = append(out, fmt.Sprintf("%s %s changed", kind, n))
		}
	}
	return out
}

func byName[T any](items []T, name func(T) string) map[string]T {
	m := make(map[string]T, len(items))
	for _, it := range items {
		m[name(it)] = it
	}
	return m
}

func unionKeys[K comparable, A, B any](a map[K]A, b map[K]B) map[K]struct{} {
	out := map[K]struct{}{}
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}
