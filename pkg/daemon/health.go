package daemon

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// startHealth runs the configured health checks and feeds their results
// to the core. (Wired to pkg/health when it lands.)
func (d *Daemon) startHealth(ctx context.Context, g *errgroup.Group, stop <-chan struct{}) error {
	return nil
}
