package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/core"
)

var _ api.Backend = (*Daemon)(nil)

// Drain implements api.Backend: it starts the drain and records it on disk,
// so that the instance stays drained across a restart or reboot.
func (d *Daemon) Drain(context.Context) error {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	d.mu.Lock()
	d.core.SetDrain(d.now(), true, false)
	d.mu.Unlock()
	cfg := d.config()
	d.log.Info("drain requested", "drain_time", cfg.Drain.Time)
	d.poke()
	if err := writeDrainState(cfg.Drain.StateFile, d.now()); err != nil {
		return fmt.Errorf("draining, but the drain will not survive a restart: %w", err)
	}
	return nil
}

// Undrain implements api.Backend.
func (d *Daemon) Undrain(context.Context) error {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	d.mu.Lock()
	stopping := d.stopping
	d.mu.Unlock()
	if stopping {
		return errors.New("bgpgw is stopping (SIGTERM): it drains and exits; undrain after it restarts")
	}
	// Forget the state on disk first: if that fails, stay drained.
	stateFile := d.config().Drain.StateFile
	if err := os.Remove(stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("still drained: cannot remove %s: %w", stateFile, err)
	}
	d.mu.Lock()
	d.core.SetDrain(d.now(), false, false)
	d.mu.Unlock()
	d.log.Info("undrain requested")
	d.poke()
	return nil
}

// SetRole implements api.Backend.
func (d *Daemon) SetRole(_ context.Context, role string) error {
	if mode := d.config().Instance.Mode; mode != config.ActiveStandby {
		return fmt.Errorf("role: only in active-standby mode (this instance is %s)", mode)
	}
	r := config.Role(role)
	if r != config.RolePrimary && r != config.RoleStandby {
		return fmt.Errorf("role %q: want primary or standby", role)
	}
	d.mu.Lock()
	d.core.SetRole(d.now(), r)
	d.mu.Unlock()
	d.log.Info("role changed", "role", r)
	d.poke()
	return nil
}

func readDrainState(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("drain.state_file: %w", err)
}

func writeDrainState(path string, now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString("drained at " + now.UTC().Format(time.RFC3339) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	// Make the rename itself durable: a power loss must not undo the drain.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// Status implements api.Backend.
func (d *Daemon) Status(ctx context.Context) (api.Status, error) {
	peers, err := d.speaker.Status(ctx)
	if err != nil {
		return api.Status{}, err
	}
	now := d.now()
	d.mu.Lock()
	d.core.Tick(now)
	out := d.core.Output(now) // the decision now, even if not yet applied
	st := api.Status{
		Instance:   api.Instance{Name: d.cfg.Instance.Name, Mode: string(d.cfg.Instance.Mode), Role: string(out.Role)},
		Drained:    out.Drain != core.Normal,
		DrainState: string(out.Drain),
		InstanceOK: out.InstanceOK,
		Tunnels:    []api.Tunnel{},
		Checks:     []api.Check{},
		Peers:      []api.Peer{},
		Routes:     []api.Route{},
		Errors:     append([]string(nil), d.lastErrs...),
		Reload:     d.lastReload,
	}
	for _, r := range d.installed {
		st.Routes = append(st.Routes, api.Route{Prefix: r.Prefix.String(), NextHops: strs(r.NextHops)})
	}
	for _, ch := range d.cfg.Health {
		c, ok := d.checks[ch.Name]
		if !ok {
			c = api.Check{Name: ch.Name, Scope: scopeName(ch)}
		}
		st.Checks = append(st.Checks, c)
	}
	d.mu.Unlock()
	ipsecSt := d.ipsecStatus()
	for _, t := range out.Tunnels {
		at := api.Tunnel{Name: t.Name, Carrying: t.Carrying, Reason: t.Reason, Flaps: t.Flaps, IPsec: ipsecSt[t.Name]}
		if !t.HoldDown.IsZero() {
			h := t.HoldDown.UTC()
			at.HoldDownUntil = &h
		}
		st.Tunnels = append(st.Tunnels, at)
	}
	for _, p := range peers {
		ap := apiPeer(p, now)
		ap.BFD = d.bfdStatus(p.Name)
		st.Peers = append(st.Peers, ap)
	}
	return st, nil
}

func scopeName(ch config.Check) string {
	if ch.Scope == config.ScopeTunnel {
		return "tunnel:" + ch.Tunnel
	}
	return string(ch.Scope)
}

func apiPeer(p bgp.PeerStatus, now time.Time) api.Peer {
	ap := api.Peer{
		Name: p.Name, Kind: string(p.Kind), Address: p.Address.String(), PeerASN: p.PeerASN,
		State: string(p.State), AdminDown: p.AdminDown, LastError: p.LastError,
		Announced: strs(p.Announced), Received: strs(p.Received), Rejected: strs(p.Rejected),
	}
	if !p.Since.IsZero() {
		since := p.Since.UTC()
		ap.EstablishedSince = &since
		ap.UptimeSeconds = now.Sub(p.Since).Round(time.Millisecond).Seconds()
	}
	return ap
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func strs[T fmt.Stringer](l []T) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = v.String()
	}
	return out
}
