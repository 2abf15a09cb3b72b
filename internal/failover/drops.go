package failover

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Drop counters: where the lab's own data plane drops packets. A loss the
// probe sees comes from the gateways' routing (what the suite measures), the
// probe's receiving sockets (Direction.ProbeDrops), or the lab's data plane
// giving way on a busy machine: charon's userspace ESP reads and writes
// through UDP sockets and the TUN device ipsec0, whose queues overflow when
// charon is not scheduled in time. The suite reads every node's counters
// before and after each try, and Result.LabDrops keeps the ones that moved.

// counters are named drop counters, e.g. "gw2 udp-rcvbuf", "gw2 ipsec0
// tx-drop".
type counters map[string]int64

// parseSNMPUDP reads the Udp lines of /proc/net/snmp: the datagrams UDP
// sockets dropped for a full receive buffer (RcvbufErrors), or failed to
// send for a full send buffer (SndbufErrors). (InErrors counts the
// RcvbufErrors again.)
func parseSNMPUDP(text string) (counters, error) {
	var header []string
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f[1:]
			continue
		}
		if len(f)-1 != len(header) {
			return nil, fmt.Errorf("snmp: Udp: %d values for %d names", len(f)-1, len(header))
		}
		out := counters{}
		for i, name := range header {
			key := ""
			switch name {
			case "RcvbufErrors":
				key = "udp-rcvbuf"
			case "SndbufErrors":
				key = "udp-sndbuf"
			default:
				continue
			}
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("snmp: Udp %s: %w", name, err)
			}
			out[key] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("snmp: no Udp values")
}

// parseNetDev reads /proc/net/dev: each interface's receive and transmit
// drops ("IFACE rx-drop", "IFACE tx-drop").
func parseNetDev(text string) (counters, error) {
	out := counters{}
	for line := range strings.Lines(text) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.Contains(name, "|") {
			continue // the two header lines
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "" || len(f) < 16 {
			return nil, fmt.Errorf("net/dev: interface %q: %d fields", name, len(f))
		}
		for key, i := range map[string]int{"rx-drop": 3, "tx-drop": 11} {
			v, err := strconv.ParseInt(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("net/dev: %s %s: %w", name, key, err)
			}
			out[name+" "+key] = v
		}
	}
	return out, nil
}

// parseSoftnet reads /proc/net/softnet_stat: packets the host's per-CPU
// backlog queues dropped (second column, hex), summed over the CPUs.
func parseSoftnet(text string) (counters, error) {
	var dropped int64
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("softnet_stat: short line %q", strings.TrimSpace(line))
		}
		v, err := strconv.ParseUint(f[1], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("softnet_stat: %w", err)
		}
		dropped += int64(v)
	}
	return counters{"backlog-drop": dropped}, nil
}

// delta returns the counters of after that grew since before; a counter
// missing from before (a new interface) or lower than before (the
// interface was created again: charon restarted makes a new ipsec0) counts
// from 0.
func delta(before, after counters) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		d := v - before[k]
		if d < 0 {
			d = v
		}
		if d > 0 {
			out[k] = d
		}
	}
	return out
}

// FormatDrops renders lab drop counters for notes: "gw2 udp-rcvbuf 25,
// host backlog-drop 3".
func FormatDrops(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// readCounters reads every node's UDP and interface drop counters (in its
// network namespace) and the host's backlog drops.
func (r *runner) readCounters(ctx context.Context) (counters, error) {
	out := counters{}
	add := func(prefix string, c counters) {
		for k, v := range c {
			out[prefix+" "+k] = v
		}
	}
	for _, n := range r.d.Nodes() {
		text, err := n.Exec(ctx, "cat", "/proc/net/snmp", "/proc/net/dev")
		if err != nil {
			return nil, fmt.Errorf("%s: drop counters: %w", n.Name, err)
		}
		snmp, dev, _ := strings.Cut(text, "Inter-|")
		u, err := parseSNMPUDP(snmp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		add(n.Name, u)
		d, err := parseNetDev(dev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		add(n.Name, d)
	}
	text, err := readHostFile("/proc/net/softnet_stat")
	if err != nil {
		return nil, err
	}
	s, err := parseSoftnet(text)
	if err != nil {
		return nil, err
	}
	add("host", s)
	return out, nil
}

func readHostFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("drop counters: %w", err)
	}
	return string(data), nil
}
