package ipsec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// pruneMinAge is how old an ESP state must be before PruneStates may
// delete it: a state charon has just added is in its CHILD_SA list by the
// time a blocking list-sas returns, this is only a second guard.
const pruneMinAge = 5 * time.Second

// PruneStates deletes, in xfrm mode, the kernel's ESP states bound to one of
// ifIDs (bgpgw's tunnels' XFRM interfaces) whose SPI is not in known (the
// SPIs of charon's CHILD_SAs, hex as list-sas gives them) and that are older
// than pruneMinAge. charon removes its SAs from the kernel when it deletes
// them, but a charon that was killed leaves them: the restarted charon
// installs new ones beside them, and the old ones stay until their hard
// lifetime (an hour and more), seen after charon was killed under a running
// bgpgw in the QEMU guest (test/xfrm). It returns how many it deleted.
func (p *DataPlane) PruneStates(ifIDs []uint32, known []string) (int, error) {
	if p.mode != config.IPsecXFRM || len(ifIDs) == 0 {
		return 0, nil
	}
	live := map[uint32]bool{}
	for _, k := range known {
		spi, err := strconv.ParseUint(strings.TrimPrefix(k, "0x"), 16, 32)
		if err != nil {
			return 0, fmt.Errorf("prune XFRM states: charon's SPI %q: %w", k, err)
		}
		live[uint32(spi)] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	states, err := p.h.XfrmStateList(netlink.FAMILY_ALL)
	if err != nil {
		// An interrupted dump may miss states: the next pass prunes them.
		return 0, fmt.Errorf("prune XFRM states: list: %w", err)
	}
	now := time.Now()
	var errs []error
	removed := 0
	for i := range states {
		s := &states[i]
		spi := uint32(s.Spi)
		if s.Proto != netlink.XFRM_PROTO_ESP || !slices.Contains(ifIDs, uint32(s.Ifid)) || live[spi] {
			continue
		}
		if added := time.Unix(int64(s.Statistics.AddTime), 0); now.Sub(added) < pruneMinAge {
			continue
		}
		if err := p.h.XfrmStateDel(s); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete stale ESP state spi 0x%08x: %w", spi, err))
			continue
		}
		removed++
		p.log.Warn("deleted a stale ESP state: no CHILD_SA of charon's has its SPI (left by a charon that stopped without deleting its SAs)",
			"spi", fmt.Sprintf("0x%08x", spi), "if_id", s.Ifid, "src", s.Src.String(), "dst", s.Dst.String())
	}
	return removed, errors.Join(errs...)
}

// pruneDue, in xfrm mode, first after each connection to charon and then
// every pruneInterval, has the data plane delete the ESP states of the
// tunnels' if_ids that no CHILD_SA of charon's holds: what a killed charon
// left (see DataPlane.PruneStates). It lists the SAs blocking, so that an
// IKE_SA being processed is not taken for gone.
func (m *Manager) pruneDue(ctx context.Context, c *charon, now time.Time) {
	if m.opts.Mode != config.IPsecXFRM || m.opts.DataPlane == nil || now.Sub(m.lastPrune) < pruneInterval {
		return
	}
	m.lastPrune = now
	sas, err := c.listSAs(ctx, true)
	if err != nil {
		m.log.Debug("stale ESP states not checked: list-sas", "reason", err.Error())
		return
	}
	var known []string
	for _, list := range sas {
		for _, sa := range list {
			known = append(known, sa.Known...)
		}
	}
	m.mu.Lock()
	var ifIDs []uint32
	for _, t := range m.tunnels {
		ifIDs = append(ifIDs, t.cfg.IfID)
	}
	m.mu.Unlock()
	if n, err := m.opts.DataPlane.PruneStates(ifIDs, known); err != nil {
		m.log.Warn("stale ESP states not all deleted", "deleted", n, "reason", err.Error())
	}
}
