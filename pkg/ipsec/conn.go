package ipsec

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// ConnPrefix starts the name of every connection, child and shared key
// bgpgw loads into charon, so they never collide with the operator's own.
const ConnPrefix = "bgpgw-"

// ConnName is the charon connection (and CHILD_SA config) name of a tunnel.
func ConnName(tunnel string) string { return ConnPrefix + tunnel }

// DPDDelay is the IKE liveness check interval. BFD detects a dead data
// plane far faster; DPD only cleans up an IKE_SA whose peer is gone.
const DPDDelay = "10s"

// connMessage is the load-conn request for tunnel t: an IKEv2 tunnel
// authenticated with a pre-shared key, the identities being the outer
// addresses. Nothing is started by charon itself: bgpgw initiates and
// retries.
//
// In xfrm mode the tunnel is route-based: traffic selectors 0.0.0.0/0 and
// ::/0 both ways, the CHILD_SA bound to the tunnel's XFRM interface by its
// if_id, and routes choose the tunnel. libipsec has one TUN device for
// every tunnel and picks the SA by the packet's addresses, so there the
// selectors are narrowed to what the tunnel carries: its inside subnet,
// the announced prefixes on the local side and the accepted ones on the
// remote side.
func connMessage(mode config.IPsecMode, announce []netip.Prefix, t config.Tunnel) map[string]any {
	localTS, remoteTS := []string{"0.0.0.0/0", "::/0"}, []string{"0.0.0.0/0", "::/0"}
	if mode == config.IPsecLibipsec {
		inside := t.InsideLocal.Masked().String()
		localTS, remoteTS = []string{inside}, []string{inside}
		for _, p := range announce {
			localTS = append(localTS, p.String())
		}
		for _, r := range t.Accept {
			remoteTS = append(remoteTS, r.Prefix.String())
		}
	}
	child := map[string]any{
		"mode":          "tunnel",
		"local_ts":      localTS,
		"remote_ts":     remoteTS,
		"esp_proposals": slices.Clone(t.ESPProposals),
		"start_action":  "none",
		"close_action":  "none",
		"dpd_action":    "clear",
	}
	if mode == config.IPsecXFRM {
		child["if_id_in"] = fmt.Sprint(t.IfID)
		child["if_id_out"] = fmt.Sprint(t.IfID)
	}
	name := ConnName(t.Name)
	return map[string]any{name: map[string]any{
		"version":      "2",
		"local_addrs":  []string{t.LocalAddress.String()},
		"remote_addrs": []string{t.RemoteAddress.String()},
		"proposals":    slices.Clone(t.IKEProposals),
		"mobike":       "no",
		"dpd_delay":    DPDDelay,
		"keyingtries":  "1",
		"local":        map[string]any{"auth": "psk", "id": t.LocalAddress.String()},
		"remote":       map[string]any{"auth": "psk", "id": t.RemoteAddress.String()},
		"children":     map[string]any{name: child},
	}}
}

// SA is what charon reports about one IKE_SA of a bgpgw connection.
type SA struct {
	Conn     string // connection name
	IKEState string // CREATED, CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
	// Installed: a CHILD_SA of the connection has its SAs in the kernel
	// (INSTALLED, or being rekeyed or updated: see carryingChild).
	Installed bool
	SPIs      []string // of the INSTALLED CHILD_SAs, else of those carrying
	// Known are the SPIs of every CHILD_SA of the connection, in any state:
	// an ESP state of the tunnel's if_id that is not among them was left
	// by an earlier charon.
	Known []string
}

// carryingChild are the CHILD_SA states whose SAs are in the kernel and
// carry the tunnel's traffic. During a rekey the old CHILD_SA is REKEYING
// while the CREATE_CHILD_SA exchange runs, and the new one is listed only
// once it is INSTALLED (the old one is then REKEYED, until deleted):
// counting only INSTALLED took the tunnel down for the length of every
// rekey exchange, and its BGP session with it.
var carryingChild = map[string]bool{"INSTALLED": true, "UPDATING": true, "REKEYING": true}

// usableIKE are the IKE_SA states whose CHILD_SAs count: an IKE_SA being
// rekeyed (REKEYING) keeps its CHILD_SAs until they move to the new one.
var usableIKE = map[string]bool{"ESTABLISHED": true, "REKEYING": true, "REKEYED": true}

// parseSAs reads a list-sas answer: one entry per IKE_SA, keyed by the
// connection name, each with a state and a child-sas section. Entries of
// connections that are not bgpgw's are ignored. Malformed entries are
// skipped, never trusted: a tunnel counts as up only when a usable IKE_SA
// has a CHILD_SA carrying traffic (see tunnelState).
func parseSAs(msgs []map[string]any) map[string][]SA {
	out := map[string][]SA{}
	for _, m := range msgs {
		for conn, v := range m {
			if !strings.HasPrefix(conn, ConnPrefix) {
				continue
			}
			ike, ok := v.(map[string]any)
			if !ok {
				continue
			}
			sa := SA{Conn: conn, IKEState: str(ike["state"])}
			var installed, carrying []string
			children, _ := ike["child-sas"].(map[string]any)
			for _, cv := range children {
				c, ok := cv.(map[string]any)
				if !ok || str(c["name"]) != conn {
					continue
				}
				var spis []string
				for _, spi := range []string{str(c["spi-in"]), str(c["spi-out"])} {
					if spi != "" {
						spis = append(spis, spi)
					}
				}
				sa.Known = append(sa.Known, spis...)
				state := str(c["state"])
				if state == "INSTALLED" {
					installed = append(installed, spis...)
				}
				if carryingChild[state] {
					sa.Installed = true
					carrying = append(carrying, spis...)
				}
			}
			sa.SPIs = installed
			if len(sa.SPIs) == 0 {
				sa.SPIs = carrying
			}
			for _, l := range []*[]string{&sa.SPIs, &sa.Known} {
				slices.Sort(*l)
				*l = slices.Compact(*l)
			}
			out[conn] = append(out[conn], sa)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// tunnelState sums up a connection's IKE_SAs.
func tunnelState(sas []SA) (state, ikeState string, spis []string) {
	state = StateDown
	for _, sa := range sas {
		if usableIKE[sa.IKEState] && sa.Installed {
			return StateUp, sa.IKEState, sa.SPIs
		}
		if sa.IKEState != "" && sa.IKEState != "DESTROYING" && sa.IKEState != "DELETING" {
			state, ikeState = StateConnecting, sa.IKEState
		}
	}
	return state, ikeState, nil
}

// failureReason picks, from the log lines charon streamed during an
// initiation, the one that says why it failed (a notify from the peer, a
// proposal mismatch, retransmissions given up), falling back to the error.
func failureReason(err error, logs []string) string {
	keys := []string{"AUTHENTICATION_FAILED", "NO_PROPOSAL_CHOSEN", "TS_UNACCEPTABLE", "no acceptable proposal",
		"giving up after", "no shared key", "notify error"}
	for _, k := range keys {
		for i := len(logs) - 1; i >= 0; i-- {
			if strings.Contains(logs[i], k) {
				return fmt.Sprintf("%v: %s", err, logs[i])
			}
		}
	}
	return fmt.Sprint(err)
}
