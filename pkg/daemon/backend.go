package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/config"
)

var _ api.Backend = (*Daemon)(nil)

// Drain implements api.Backend: it starts the drain and records it on disk,
// so that the instance stays drained across a restart or reboot.
func (d *Daemon) Drain(ctx context.Context) error {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	stateFile := make(chan string, 1)
	err := d.call(ctx, func(context.Context) error {
		d.core.SetDrain(d.clock.Now(), true, false)
		d.log.Info("drain requested", "drain_time", d.cfg.Drain.Time)
		stateFile <- d.cfg.Drain.StateFile
		return nil
	})
	if err != nil {
		return err
	}
	if err := writeDrainState(<-stateFile, d.clock.Now()); err != nil {
		return fmt.Errorf("draining, but the drain will not survive a restart: %w", err)
	}
	return nil
}

// Undrain implements api.Backend. The state file goes first: if it cannot
// be removed, the instance stays drained.
func (d *Daemon) Undrain(ctx context.Context) error {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	return d.call(ctx, func(context.Context) error {
		if d.stopping {
			return errors.New("bgpgw is stopping (SIGTERM): it drains and exits; undrain after it restarts")
		}
		stateFile := d.cfg.Drain.StateFile
		if err := os.Remove(stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("still drained: cannot remove %s: %w", stateFile, err)
		}
		d.core.SetDrain(d.clock.Now(), false, false)
		d.log.Info("undrain requested")
		return nil
	})
}

// SetRole implements api.Backend.
func (d *Daemon) SetRole(ctx context.Context, role string) error {
	return d.call(ctx, func(context.Context) error {
		if mode := d.cfg.Instance.Mode; mode != config.ActiveStandby {
			return fmt.Errorf("role: only in active-standby mode (this instance is %s)", mode)
		}
		r := config.Role(role)
		if r != config.RolePrimary && r != config.RoleStandby {
			return fmt.Errorf("role %q: want primary or standby", role)
		}
		d.core.SetRole(d.clock.Now(), r)
		d.log.Info("role changed", "role", r)
		return nil
	})
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func strs[T fmt.Stringer](l []T) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = v.String()
	}
	return out
}
