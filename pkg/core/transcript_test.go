package core

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/configfile"
	"github.com/bgpgw/bgpgw/pkg/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current behaviour")

// configs are the instances the transcripts run against.
var configs = map[string]string{
	// Two tunnels, a cloud-side peer (all three with BFD), an instance
	// check and a tunnel check.
	"active-active": `
instance: {name: gw1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1}
announce: [10.10.0.0/16, 10.20.0.0/24]
ipsec: {mode: none}
tunnels:
  - {name: t1, inside: {local: 169.254.21.1/30, remote: 169.254.21.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"], bfd: {enabled: true}}
  - {name: t2, inside: {local: 169.254.22.1/30, remote: 169.254.22.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"], bfd: {enabled: true}}
cloud_peers:
  - {name: rr, address: 10.10.0.2, peer_asn: 65100, bfd: {enabled: true}}
health:
  - {name: uplink, kind: link, target: eth1}
  - {name: probe-t1, kind: icmp, target: 10.1.0.1, scope: tunnel, tunnel: t1, rise: 2, fall: 2}
drain: {time: 2s}
hold_down: {initial: 1s, max: 8s, decay: 30s}
`,
	// The active-active instance after a reload: t2 removed, t3 added, the
	// announced prefixes changed, the tunnel check now on t3.
	"active-active-reloaded": `
instance: {name: gw1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1}
announce: [10.10.0.0/16, 10.30.0.0/24]
ipsec: {mode: none}
tunnels:
  - {name: t1, inside: {local: 169.254.21.1/30, remote: 169.254.21.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"], bfd: {enabled: true}}
  - {name: t3, inside: {local: 169.254.23.1/30, remote: 169.254.23.2}, peer_asn: 65020, accept: ["10.3.0.0/16 le 24"]}
cloud_peers:
  - {name: rr, address: 10.10.0.2, peer_asn: 65100, bfd: {enabled: true}}
health:
  - {name: uplink, kind: link, target: eth1}
  - {name: probe-t3, kind: icmp, target: 10.3.0.1, scope: tunnel, tunnel: t3}
drain: {time: 2s}
hold_down: {initial: 1s, max: 8s, decay: 30s}
`,
	// A pair: two tunnels to device site-a (t1, t2), one to site-b (t3).
	"pair":                        pairConfig("active-active", ""),
	"pair-med":                    oneDevice(pairConfig("active-active", "takeover: med, ")),
	"pair-off":                    pairConfig("active-active", "takeover: off, "),
	"active-standby":              activeStandby("bfd: {enabled: true}"),
	"active-standby-bfd-timers":   activeStandby("bfd: {enabled: true, min_rx: 100ms, min_tx: 100ms, multiplier: 5}"),
	"active-standby-bfd-off":      activeStandby("bfd: {enabled: false}"),
	"active-standby-bfd-multihop": activeStandby("bfd: {enabled: true, multihop: true}"),
}

// pairKeyEnv holds the pair key of the pair configurations.
const pairKeyEnv = "BGPGW_TEST_PAIR_KEY"

func init() { os.Setenv(pairKeyEnv, "core-test-pair-key-0123") }

// pairConfig is an instance of a pair in mode; pair holds extra keys of the
// pair section ("takeover: med, ").
func pairConfig(mode, pair string) string {
	return `
instance: {name: gw2, mode: ` + mode + `}
bgp: {asn: 65515, router_id: 192.0.2.2}
announce: [10.10.0.0/16]
ipsec: {mode: none}
tunnels:
  - {name: t1, device: site-a, inside: {local: 169.254.21.1/30, remote: 169.254.21.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]}
  - {name: t2, device: site-a, inside: {local: 169.254.22.1/30, remote: 169.254.22.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]}
  - {name: t3, device: site-b, inside: {local: 169.254.23.1/30, remote: 169.254.23.2}, peer_asn: 65020, accept: ["10.2.0.0/16 le 24"]}
cloud_peers:
  - {name: rr, address: 10.10.0.2, peer_asn: 65100}
pair: {` + pair + `partner: 10.10.2.1, local_address: 10.10.1.1, key_env: ` + pairKeyEnv + `, release_delay: 2s}
hold_down: {initial: 1s, max: 8s, decay: 30s}
`
}

// oneDevice drops t3 (device site-b) from a pair configuration.
func oneDevice(y string) string {
	i := strings.Index(y, "  - {name: t3,")
	j := i + strings.Index(y[i:], "\n") + 1
	return y[:i] + y[j:]
}

// activeStandby is the standby of a pair, with one tunnel whose BFD
// settings are bfd.
func activeStandby(bfd string) string {
	return `
instance: {name: gw2, mode: active-standby, role: standby}
bgp: {asn: 65515, router_id: 192.0.2.2}
announce: [10.10.0.0/16]
standby: {prepend: 3, med: 200}
ipsec: {mode: none}
tunnels:
  - {name: t1, inside: {local: 169.254.23.1/30, remote: 169.254.23.2}, peer_asn: 65010, accept: [10.1.0.0/16], ` + bfd + `}
`
}

func loadConfig(t testing.TB, name string) *config.Config {
	t.Helper()
	y, ok := configs[name]
	require.True(t, ok, "no config %q", name)
	c, err := configfile.Parse([]byte(y))
	require.NoError(t, err)
	return c
}

// TestTranscripts replays testdata/*.txt: each line is "at DURATION EVENT"
// (or a comment); the golden file holds every event and, after each
// "show", the desired state.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			got := runTranscript(t, f)
			golden := strings.TrimSuffix(f, ".txt") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "run go test ./pkg/core -update to create it")
			require.Equal(t, string(want), got)
		})
	}
}

func runTranscript(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out strings.Builder
	var c *Core
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		out.WriteString(line + "\n")
		w := strings.Fields(line)
		if w[0] == "config" {
			c = New(loadConfig(t, w[1]), epoch)
			continue
		}
		require.True(t, len(w) >= 3 && w[0] == "at", "%s:%d: want: at DURATION EVENT ...", path, n)
		d, err := time.ParseDuration(w[1])
		require.NoError(t, err, "%s:%d", path, n)
		now := epoch.Add(d)
		require.NotNil(t, c, "%s:%d: config first", path, n)
		args := w[3:]
		switch w[2] {
		case "session": // session PEER up|down [ROUTE...], see parseLearned
			var learned []model.Learned
			for _, r := range args[2:] {
				l, err := parseLearned(r)
				require.NoError(t, err, "%s:%d", path, n)
				learned = append(learned, l)
			}
			c.SessionState(now, args[0], args[1] == "up", learned)
		case "tunnel":
			c.TunnelState(now, args[0], args[1] == "up")
		case "bfd": // bfd PEER STATE [from STATE] [remote STATE] [diag TEXT...]
			ev, err := parseBFD(args)
			require.NoError(t, err, "%s:%d", path, n)
			c.BFD(now, ev)
		case "check": // check NAME ok|fail
			c.CheckResult(now, args[0], args[1] == "ok")
		case "drain": // drain on|off|restored
			c.SetDrain(now, args[0] != "off", args[0] == "restored")
		case "partner": // partner up|down [why TEXT] [epoch N] [drops N] [devices A,B] [carrying A,B] [draining] [checks-fail]
			v, err := parsePartner(args)
			require.NoError(t, err, "%s:%d", path, n)
			c.Partner(now, v)
		case "role":
			c.SetRole(now, config.Role(args[0]))
		case "reload": // reload CONFIG
			c.Reconfigure(now, loadConfig(t, args[0]))
		case "tick":
			c.Tick(now)
		case "show":
			c.Tick(now)
			out.WriteString(render(c.Output(now), epoch))
			if c.cfg.Pair.Enabled {
				out.WriteString(renderPair(c.Output(now), epoch))
			}
		default:
			t.Fatalf("%s:%d: unknown event %q", path, n, w[2])
		}
	}
	require.NoError(t, sc.Err())
	return out.String()
}

// parseBFD reads "PEER STATE [from STATE] [remote STATE] [diag TEXT...]".
// By default the session comes from Up (from Down when STATE is up), the
// peer's state is STATE and the diagnostic is a detection time expiry: so
// "bfd t1 down" is an Up session timing out.
func parseBFD(args []string) (BFDEvent, error) {
	if len(args) < 2 {
		return BFDEvent{}, fmt.Errorf("want: bfd PEER STATE [from STATE] [remote STATE] [diag TEXT]")
	}
	ev := BFDEvent{Peer: args[0], Old: BFDUp, Diag: "Control Detection Time Expired"}
	var err error
	if ev.New, err = parseBFDState(args[1]); err != nil {
		return ev, err
	}
	if ev.New == BFDUp {
		ev.Old = BFDDown
	}
	ev.Remote = ev.New
	for rest := args[2:]; len(rest) > 0; rest = rest[2:] {
		if len(rest) < 2 {
			return ev, fmt.Errorf("%q: missing value", rest[0])
		}
		switch rest[0] {
		case "from":
			ev.Old, err = parseBFDState(rest[1])
		case "remote":
			ev.Remote, err = parseBFDState(rest[1])
		case "diag":
			ev.Diag, rest = strings.Join(rest[1:], " "), rest[:2] // the rest of the line
		default:
			err = fmt.Errorf("%q: want from, remote or diag", rest[0])
		}
		if err != nil {
			return ev, err
		}
	}
	return ev, nil
}

// parseBFDState reads a BFDState by its String.
func parseBFDState(s string) (BFDState, error) {
	for st := BFDAdminDown; st <= BFDUp; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("BFD state %q: want admindown, down, init or up", s)
}

func render(o Output, epoch time.Time) string {
	var b strings.Builder
	for _, ts := range o.Tunnels {
		state := "carrying"
		if !ts.Carrying {
			state = "not carrying: " + ts.Reason
		}
		fmt.Fprintf(&b, "  tunnel %s: %s (flaps %d)\n", ts.Name, state, ts.Flaps)
	}
	for _, peer := range sortedKeys(o.Announcements) {
		fmt.Fprintf(&b, "  announce %s:%s\n", peer, renderAnns(o.Announcements[peer]))
	}
	for _, r := range o.Routes {
		fmt.Fprintf(&b, "  route %s\n", r)
	}
	for _, peer := range sortedKeys(o.Resets) {
		fmt.Fprintf(&b, "  reset %s gen %d: %s\n", peer, o.Resets[peer].Gen, o.Resets[peer].Reason)
	}
	fmt.Fprintf(&b, "  drain %s, role %q, instance ok %v", o.Drain, o.Role, o.InstanceOK)
	if len(o.ShutDown) > 0 {
		fmt.Fprintf(&b, ", shut down %s", strings.Join(o.ShutDown, " "))
	}
	if !o.NextWake.IsZero() {
		fmt.Fprintf(&b, ", next wake %s", o.NextWake.Sub(epoch))
	}
	b.WriteString("\n")
	return b.String()
}

// parsePartner reads "up|down [why TEXT] [epoch N] [drops N] [devices
// A,B] [carrying A,B] [draining] [checks-fail]". Up is heard; down keeps
// nothing heard unless fields are given; checks pass unless checks-fail.
func parsePartner(args []string) (PartnerView, error) {
	if len(args) < 1 || (args[0] != "up" && args[0] != "down") {
		return PartnerView{}, fmt.Errorf("want: partner up|down ...")
	}
	v := PartnerView{Up: args[0] == "up", ChecksOK: true}
	list := func(s string) []string {
		if s == "-" {
			return []string{}
		}
		return strings.Split(s, ",")
	}
	for rest := args[1:]; len(rest) > 0; {
		switch rest[0] {
		case "draining":
			v.Draining, rest = true, rest[1:]
			continue
		case "checks-fail":
			v.ChecksOK, rest = false, rest[1:]
			continue
		}
		if len(rest) < 2 {
			return v, fmt.Errorf("%q: missing value", rest[0])
		}
		var err error
		switch rest[0] {
		case "why":
			v.Why = rest[1]
		case "epoch":
			v.Epoch, err = strconv.ParseUint(rest[1], 10, 64)
			v.Heard = true
		case "drops":
			var d uint64
			d, err = strconv.ParseUint(rest[1], 10, 32)
			v.Drops = uint32(d)
		case "devices":
			v.Devices, v.Heard = list(rest[1]), true
		case "carrying":
			v.Carrying = list(rest[1])
		default:
			err = fmt.Errorf("%q: unknown", rest[0])
		}
		if err != nil {
			return v, err
		}
		rest = rest[2:]
	}
	return v, nil
}

func renderPair(o Output, epoch time.Time) string {
	var b strings.Builder
	s := o.Self
	fmt.Fprintf(&b, "  self: devices %s, carrying %s, draining %v, checks ok %v, drops %d\n",
		strings.Join(s.Devices, ","), strings.Join(s.Carrying, ","), s.Draining, s.ChecksOK, s.Drops)
	for _, t := range o.Takeovers {
		fmt.Fprintf(&b, "  takeover %s since %s: %s", t.Device, t.Since.Sub(epoch), t.Reason)
		if !t.ReleaseAt.IsZero() {
			fmt.Fprintf(&b, ", release at %s", t.ReleaseAt.Sub(epoch))
		}
		if t.False {
			b.WriteString(", false")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// parseLearned parses a learned route: PREFIX[@AS.AS...][+COMMUNITY...],
// AS "{A.B}" an AS_SET, COMMUNITY no-export, no-advertise or
// no-export-subconfed. "10.1.0.0/16@65020.65010+no-export".
func parseLearned(s string) (model.Learned, error) {
	parts := strings.Split(s, "+")
	pfx, path, _ := strings.Cut(parts[0], "@")
	p, err := netip.ParsePrefix(pfx)
	if err != nil {
		return model.Learned{}, err
	}
	l := model.Learned{Prefix: p}
	if path != "" {
		for _, as := range strings.Split(path, ".") {
			set := strings.HasPrefix(as, "{")
			var seg model.ASSegment
			for _, a := range strings.Split(strings.Trim(as, "{}"), ",") {
				n, err := strconv.ParseUint(a, 10, 32)
				if err != nil {
					return model.Learned{}, fmt.Errorf("AS %q: %w", a, err)
				}
				seg.ASNs = append(seg.ASNs, uint32(n))
			}
			if k := len(l.ASPath) - 1; !set && k >= 0 && !l.ASPath[k].Set {
				l.ASPath[k].ASNs = append(l.ASPath[k].ASNs, seg.ASNs...)
				continue
			}
			seg.Set = set
			l.ASPath = append(l.ASPath, seg)
		}
	}
	for _, c := range parts[1:] {
		switch c {
		case "no-export":
			l.Communities = append(l.Communities, model.CommunityNoExport)
		case "no-advertise":
			l.Communities = append(l.Communities, model.CommunityNoAdvertise)
		case "no-export-subconfed":
			l.Communities = append(l.Communities, model.CommunityNoExportSubconfed)
		default:
			return model.Learned{}, fmt.Errorf("community %q", c)
		}
	}
	slices.Sort(l.Communities)
	return l, nil
}

func renderAnns(anns []model.Announcement) string {
	if len(anns) == 0 {
		return " -"
	}
	same := !slices.ContainsFunc(anns, func(a model.Announcement) bool {
		b := anns[0]
		b.Prefix = a.Prefix
		return !a.Equal(b)
	})
	if !same { // each with its own attributes
		var b strings.Builder
		for _, a := range anns {
			b.WriteString(renderAnns([]model.Announcement{a}))
		}
		return b.String()
	}
	var b strings.Builder
	for _, a := range anns {
		b.WriteString(" " + a.Prefix.String())
	}
	a := anns[0]
	var attrs []string
	if a.Prepend > 0 {
		attrs = append(attrs, fmt.Sprintf("prepend %d", a.Prepend))
	}
	if len(a.ASPath) > 0 {
		attrs = append(attrs, "path "+model.PathString(a.ASPath))
	}
	if a.HasMED {
		attrs = append(attrs, fmt.Sprintf("med %d", a.MED))
	}
	for _, c := range a.Communities {
		if c == model.CommunityGracefulShutdown {
			attrs = append(attrs, "graceful-shutdown")
		}
	}
	if len(attrs) > 0 {
		b.WriteString(" [" + strings.Join(attrs, ", ") + "]")
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
