package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/bgpgw/bgpgw/internal/clab"
	"github.com/bgpgw/bgpgw/internal/lab"
)

// gateway is the instance a fault is applied to, with the commands that
// break it and bring it back for one stack.
type gateway struct {
	node    *clab.Node
	dir     string // its configuration directory below nodes/, e.g. active-active/gw1
	stack   string
	uplink  string // cloud-side interface
	flapFor time.Duration
	partner string // the partner instance's cloud-side address (pair.partner), "" if none
}

// sh runs a shell script in the gateway node; lib.sh's helpers are
// available with the node's configuration directory.
func (g *gateway) sh(ctx context.Context, script string) (string, error) {
	return g.node.Exec(ctx, "sh", "-c", ". /run/lab/nodes/lib.sh \"$1\"\n"+script, "sh", g.dir)
}

// bgpgw runs a bgpgw command against the node's running daemon.
const bgpgwCmd = `"${BGPGW_BIN:-bgpgw}" `

// startBgpgw starts bgpgw again with the configuration gateway.sh wrote
// (lib.sh's $BGPGW_CONF: the topology variant's, the stack's takeover).
const startBgpgw = `setsid -f "${BGPGW_BIN:-bgpgw}" run --config "$BGPGW_CONF" >>"$LOG/bgpgw.log" 2>&1 </dev/null
wait_for 150 "${BGPGW_BIN:-bgpgw}" status --config "$BGPGW_CONF" || die "bgpgw did not come back"`

const startFRRDaemons = `for d in bgpd bfdd; do
	/usr/lib/frr/"$d" -d -P 0 -f "$STATE/frr/frr.conf" --log "file:$LOG/frr/$d.log" >>"$LOG/frr/start.log" 2>&1 </dev/null
done
wait_for 100 vtysh -c 'show bgp summary'`

// nftSilent drops every packet in and out of the node.
const nftSilent = `nft -f - <<'EOF'
table inet bgwfault {
	chain c_in { type filter hook input priority -300; policy drop; }
	chain c_fwd { type filter hook forward priority -300; policy drop; }
	chain c_out { type filter hook output priority -300; policy drop; }
}
EOF`

// nftESP drops ESP (in UDP 4500, non-zero SPI where IKE has its zero
// marker) both ways; IKE keeps answering.
const nftESP = `nft -f - <<'EOF'
table inet bgwfault {
	chain c_in { type filter hook input priority -300; udp dport 4500 @th,64,32 != 0 drop; }
	chain c_out { type filter hook output priority -300; udp sport 4500 @th,64,32 != 0 drop; }
}
EOF`

// nftTunnel drops the whole tunnel (IKE and ESP) both ways.
const nftTunnel = `nft -f - <<'EOF'
table inet bgwflap {
	chain c_in { type filter hook input priority -300; udp dport { 500, 4500 } drop; }
	chain c_out { type filter hook output priority -300; udp dport { 500, 4500 } drop; }
}
EOF`

// nftPartnerCut drops what the node sends to and receives from addr (the
// partner's cloud-side address: the pair's BFD and state channel), nothing
// else.
func nftPartnerCut(addr string) string {
	family := "ip"
	if strings.Contains(addr, ":") {
		family = "ip6"
	}
	return fmt.Sprintf(`nft -f - <<'EOF'
table inet bgwpair {
	chain c_in { type filter hook input priority -300; %[1]s saddr %[2]s drop; }
	chain c_out { type filter hook output priority -300; %[1]s daddr %[2]s drop; }
}
EOF`, family, addr)
}

// flapPeriod is one down and up of the tunnel flap.
const flapPeriod = 5 * time.Second

// apply breaks the gateway. For planned faults it returns how long the
// drain (or the stop) took.
func (g *gateway) apply(ctx context.Context, fault string) (time.Duration, error) {
	start := time.Now()
	switch fault {
	case FaultDrain:
		if IsBgpgw(g.stack) {
			if _, err := g.sh(ctx, bgpgwCmd+`drain --config "$BGPGW_CONF"`); err != nil {
				return 0, err
			}
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			err := lab.Poll(pctx, 20*time.Millisecond, func() (bool, error) {
				out, err := g.sh(pctx, bgpgwCmd+`status --json --config "$BGPGW_CONF"`)
				var st struct {
					DrainState string `json:"drain_state"`
				}
				if err == nil {
					err = json.Unmarshal([]byte(out), &st)
				}
				return st.DrainState == "drained", err
			})
			return time.Since(start), err
		}
		// The hand-built recipe: graceful-shutdown, wait 2 s, shut the sessions.
		asn, err := g.frrASN(ctx)
		if err != nil {
			return 0, err
		}
		if _, err := g.node.Exec(ctx, "vtysh", "-c", "configure terminal", "-c", "router bgp "+asn, "-c", "bgp graceful-shutdown"); err != nil {
			return 0, err
		}
		t := time.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
		_, err = g.node.Exec(ctx, "vtysh", "-c", "configure terminal", "-c", "router bgp "+asn, "-c", "bgp shutdown message drained")
		return time.Since(start), err
	case FaultSIGTERM:
		names := []string{"bgpgw"}
		if g.stack == StackHandBuilt {
			names = []string{"bgpd", "bfdd"}
		}
		if err := g.kill(ctx, syscall.SIGTERM, names...); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	case FaultKillDaemon:
		names := []string{"bgpgw"}
		if g.stack == StackHandBuilt {
			names = []string{"bgpd", "bfdd"}
		}
		return 0, g.kill(ctx, syscall.SIGKILL, names...)
	case FaultKillCharon:
		return 0, g.kill(ctx, syscall.SIGKILL, "charon")
	case FaultSilent:
		_, err := g.sh(ctx, nftSilent)
		return 0, err
	case FaultESPDrop:
		_, err := g.sh(ctx, nftESP)
		return 0, err
	case FaultUplinkDown:
		_, err := g.sh(ctx, "ip link set "+g.uplink+" down")
		return 0, err
	case FaultPartnerCut:
		// The suite restores the path (runner.pairFault) while the traffic runs.
		if g.partner == "" {
			return 0, fmt.Errorf("node %s: no pair.partner in %s/bgpgw.yaml", g.node.Name, g.dir)
		}
		_, err := g.sh(ctx, nftPartnerCut(g.partner))
		return 0, err
	case FaultRejoin:
		// The instance was silenced before (runner.settleWithout): it
		// comes back.
		_, err := g.sh(ctx, "nft delete table inet bgwfault")
		return 0, err
	case FaultTunnelFlaps:
		// Down 2 s, up 3 s (flapPeriod), for flapFor.
		end := time.Now().Add(g.flapFor)
		for time.Now().Before(end) {
			if _, err := g.sh(ctx, nftTunnel); err != nil {
				return 0, err
			}
			if err := sleepCtx(ctx, 2*time.Second); err != nil {
				return 0, err
			}
			if _, err := g.sh(ctx, "nft delete table inet bgwflap"); err != nil {
				return 0, err
			}
			if err := sleepCtx(ctx, 3*time.Second); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	return 0, fmt.Errorf("unknown fault %q", fault)
}

// clear undoes apply: the daemons restarted, the rules removed, the link
// up, the drain ended.
func (g *gateway) clear(ctx context.Context, fault string) error {
	var script string
	switch fault {
	case FaultDrain:
		if IsBgpgw(g.stack) {
			script = bgpgwCmd + `undrain --config "$BGPGW_CONF"`
		} else {
			asn, err := g.frrASN(ctx)
			if err != nil {
				return err
			}
			_, err = g.node.Exec(ctx, "vtysh", "-c", "configure terminal", "-c", "router bgp "+asn,
				"-c", "no bgp shutdown", "-c", "no bgp graceful-shutdown")
			return err
		}
	case FaultSIGTERM, FaultKillDaemon:
		script = startBgpgw
		if g.stack == StackHandBuilt {
			script = startFRRDaemons
		}
	case FaultKillCharon:
		script = "start_charon"
		if g.stack == StackHandBuilt {
			// Without bgpgw, someone has to load the tunnels again and put
			// the inside addresses back on the new ipsec0.
			script += `
load_swanctl "$NODE_DIR/handbuilt/swanctl.conf"
ip_batch "$NODE_DIR/handbuilt/ipsec0.batch"
for c in $(swanctl --list-conns | sed -n 's/^\([^ :]*\): IKEv2.*/\1/p'); do
	n=0
	until swanctl --list-sas --ike "$c" 2>/dev/null | grep -q INSTALLED; do
		n=$((n + 1))
		[ $n -le 30 ] || die "tunnel $c does not come up"
		swanctl --initiate --child "$c" --timeout 5 >/dev/null 2>&1 || sleep 0.5
	done
done`
		}
	case FaultSilent, FaultESPDrop:
		script = "nft delete table inet bgwfault"
	case FaultPartnerCut:
		// The suite restores the path while the traffic runs; this also
		// undoes a cut left behind by an error.
		script = "nft delete table inet bgwpair 2>/dev/null || true"
	case FaultRejoin:
		// The instance came back during the measurement; this undoes a
		// silence left behind by an error.
		script = "nft delete table inet bgwfault 2>/dev/null || true"
	case FaultUplinkDown:
		// The link's routes left with it: run the node's batch again.
		script = "ip link set " + g.uplink + ` up; ip -force -batch "$NODE_DIR/ip.batch" >/dev/null 2>&1 || true`
	case FaultTunnelFlaps:
		script = "nft delete table inet bgwflap 2>/dev/null || true"
	default:
		return fmt.Errorf("unknown fault %q", fault)
	}
	_, err := g.sh(ctx, script)
	return err
}

// kill sends sig to the node's processes called one of names (pkill would
// see every node's: the nodes share the host's PID namespace) and waits
// until they are gone.
func (g *gateway) kill(ctx context.Context, sig syscall.Signal, names ...string) error {
	pids, err := g.pids(ctx, names)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("node %s: no %v running", g.node.Name, names)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil {
			return fmt.Errorf("node %s: kill %d: %w", g.node.Name, pid, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return lab.Poll(wctx, 10*time.Millisecond, func() (bool, error) {
		left, err := g.pids(wctx, names)
		return len(left) == 0, err
	})
}

func (g *gateway) pids(ctx context.Context, names []string) ([]int, error) {
	all, err := g.node.NS.Pids(ctx)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, pid := range all {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && slices.Contains(names, strings.TrimSpace(string(comm))) {
			out = append(out, pid)
		}
	}
	return out, nil
}

func (g *gateway) frrASN(ctx context.Context) (string, error) {
	out, err := g.node.Exec(ctx, "vtysh", "-c", "show running-config")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "router" && f[1] == "bgp" {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("node %s: no router bgp in FRR's configuration", g.node.Name)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
