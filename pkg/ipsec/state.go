package ipsec

import (
	"strings"
	"time"

	"github.com/strongswan/govici/vici"
)

// This file turns what charon says (its events, its list-sas answers) into
// the tunnels' states, for the Manager.

// event counts rekeys and notes the tunnels an IKE_SA or CHILD_SA of which
// went down; the states themselves are read back through list-sas.
func (m *Manager) event(e vici.Event) {
	if e.Message == nil {
		return
	}
	rekey := strings.HasSuffix(e.Name, "-rekey")
	down := strings.HasSuffix(e.Name, "-updown") && str(e.Message.Get("up")) != "yes"
	if !rekey && !down {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range e.Message.Keys() {
		for _, t := range m.tunnels {
			if k != ConnName(t.cfg.Name) {
				continue
			}
			if rekey {
				t.st.Rekeys++
				m.log.Debug("tunnel rekeyed", "tunnel", t.cfg.Name, "event", e.Name)
			} else {
				t.downEvent = true
			}
		}
	}
}

// settle tells whether state, read from list-sas at now, is to be taken for
// the tunnel. A tunnel that is up stays up while list-sas shows it
// otherwise for less than dropGrace, unless charon's event said an IKE_SA
// or CHILD_SA of it went down: list-sas skips an IKE_SA that a thread is
// processing, and during an IKE_SA rekey it lists the old IKE_SA, without
// CHILD_SAs, before the new one is registered (its ike-rekey event comes
// first). Taken as down, such a moment reset the tunnel's BGP session and
// withdrew its routes (seen in the QEMU guest, test/xfrm, at forced
// rekeys). A rekey raises no down event. Called with mu held.
func (m *Manager) settle(t *tunnelRun, state string, now time.Time) bool {
	down := t.downEvent
	t.downEvent = false
	if state == StateUp || t.st.State != StateUp || down {
		t.notUpSince = time.Time{}
		return true
	}
	if t.notUpSince.IsZero() {
		t.notUpSince = now
	}
	if now.Sub(t.notUpSince) < dropGrace {
		m.log.Debug("tunnel not listed up, no down event: kept up for now", "tunnel", t.cfg.Name, "listed", state)
		return false
	}
	t.notUpSince = time.Time{}
	return true
}
