package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// BIRD 2 has no JSON output: these parsers read birdc's text, as BIRD 2.0
// prints it (testdata/bird2_*.txt are real captures), and refuse what they
// do not recognise rather than guess.

// birdNotFound is BIRD's answer to a route lookup that matches nothing.
const birdNotFound = "Network not found"

// StripBirdcBanner removes the "BIRD 2.0.12 ready." line birdc prints
// before the answer of every command.
func StripBirdcBanner(out string) string {
	if first, rest, ok := strings.Cut(out, "\n"); ok && strings.HasPrefix(first, "BIRD ") && strings.HasSuffix(first, " ready.") {
		return rest
	}
	if strings.HasPrefix(out, "BIRD ") && strings.HasSuffix(out, " ready.") {
		return ""
	}
	return out
}

// birdError recognises BIRD's error answers (wrong command, no socket),
// which birdc prints as plain text.
func birdError(line string) error {
	for _, p := range []string{"syntax error", "No such command", "Unable to connect", "No such protocol",
		"No such table", "Access denied", "Protocol is down", "Not a BFD protocol"} {
		if strings.Contains(line, p) {
			return fmt.Errorf("bird: %s", strings.TrimSpace(line))
		}
	}
	return nil
}

// BIRDRoute is one route of `birdc show route`: the prefix, where it came
// from, whether it is the best of its prefix ("*"), its next hops and,
// with "all", its attributes.
type BIRDRoute struct {
	Table      string // "master4"
	Prefix     netip.Prefix
	Type       string // "unicast", "blackhole", "unreachable", ...
	Protocol   string // the protocol that brought it: "gw1", "static1"
	Since      string // BIRD's time format, as printed
	Primary    bool   // the best route of its prefix
	Preference int
	Info       string // e.g. "[AS65515i]" for BGP
	NextHops   []BIRDNextHop
	// Attrs are the attribute lines of `show route ... all`
	// ("BGP.as_path" -> "65515 65515"), nil without "all".
	Attrs map[string]string
}

// BIRDNextHop is one next hop of a route: "via ADDR on IFACE [weight N]",
// or "dev IFACE" (Via invalid).
type BIRDNextHop struct {
	Via    netip.Addr
	Iface  string
	Weight int // 0 when not printed
}

// ParseBIRDRoutes reads the output of `birdc show route ...` (without or
// with birdc's banner). "Network not found" is no routes.
func ParseBIRDRoutes(out string) ([]BIRDRoute, error) {
	var routes []BIRDRoute
	table := ""
	var prefix netip.Prefix
	for i, line := range strings.Split(StripBirdcBanner(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := birdError(line); err != nil {
			return nil, err
		}
		bad := func(why string) error { return fmt.Errorf("line %d: %s: %q", i+1, why, line) }
		switch {
		case strings.TrimSpace(line) == birdNotFound:
			continue
		case strings.HasPrefix(line, "Table ") && strings.HasSuffix(line, ":"):
			table = strings.TrimSuffix(strings.TrimPrefix(line, "Table "), ":")
		case strings.HasPrefix(line, "\t"):
			if len(routes) == 0 {
				return nil, bad("next hop or attribute before any route")
			}
			r := &routes[len(routes)-1]
			body := strings.TrimSpace(line)
			if nh, ok, err := parseBIRDNextHop(body); err != nil {
				return nil, bad(err.Error())
			} else if ok {
				r.NextHops = append(r.NextHops, nh)
				continue
			}
			k, v, ok := strings.Cut(body, ":")
			if !ok || k == "" || strings.ContainsAny(k, " \t") {
				return nil, bad("neither a next hop nor an attribute")
			}
			if r.Attrs == nil {
				r.Attrs = map[string]string{}
			}
			r.Attrs[k] = strings.TrimSpace(v)
		default:
			rest := line
			if !strings.HasPrefix(line, " ") {
				// A new prefix; an indented line is another route of it.
				f, after, _ := strings.Cut(line, " ")
				p, err := netip.ParsePrefix(f)
				if err != nil {
					return nil, bad("not a prefix")
				}
				prefix, rest = p, after
			} else if !prefix.IsValid() {
				return nil, bad("route without a prefix")
			}
			r, err := parseBIRDRouteLine(strings.TrimSpace(rest))
			if err != nil {
				return nil, bad(err.Error())
			}
			r.Table, r.Prefix = table, prefix
			routes = append(routes, r)
		}
	}
	return routes, nil
}

// parseBIRDRouteLine reads what follows the prefix:
// "unicast [gw1 17:27:59.809] * (100) [AS65515i]".
func parseBIRDRouteLine(s string) (BIRDRoute, error) {
	var r BIRDRoute
	typ, rest, ok := strings.Cut(s, " ")
	if !ok || typ == "" {
		return r, errors.New("no route type")
	}
	r.Type = typ
	rest = strings.TrimSpace(rest)
	if !strings.HasPrefix(rest, "[") {
		return r, errors.New("no [protocol since]")
	}
	src, rest, ok := strings.Cut(rest[1:], "]")
	if !ok {
		return r, errors.New("unterminated [protocol since]")
	}
	proto, since, _ := strings.Cut(src, " ")
	if proto == "" {
		return r, errors.New("no protocol")
	}
	r.Protocol, r.Since = proto, strings.TrimSpace(since)
	rest = strings.TrimSpace(rest)
	if strings.HasPrefix(rest, "*") {
		r.Primary = true
		rest = strings.TrimSpace(rest[1:])
	}
	if !strings.HasPrefix(rest, "(") {
		return r, errors.New("no (preference)")
	}
	pref, rest, ok := strings.Cut(rest[1:], ")")
	if !ok {
		return r, errors.New("unterminated (preference)")
	}
	// "(100)", or "(100/20)" with an IGP metric.
	pref, _, _ = strings.Cut(pref, "/")
	n, err := strconv.Atoi(pref)
	if err != nil || n < 0 {
		return r, fmt.Errorf("preference %q", pref)
	}
	r.Preference = n
	r.Info = strings.TrimSpace(rest)
	return r, nil
}

// parseBIRDNextHop reads "via 169.254.21.1 on t1 weight 1" or "dev t1"
// (ok false: not a next hop line).
func parseBIRDNextHop(s string) (BIRDNextHop, bool, error) {
	f := strings.Fields(s)
	var nh BIRDNextHop
	switch {
	case len(f) >= 4 && f[0] == "via" && f[2] == "on":
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return nh, false, fmt.Errorf("next hop %q", f[1])
		}
		nh.Via, nh.Iface, f = a, f[3], f[4:]
	case len(f) >= 2 && f[0] == "dev":
		nh.Iface, f = f[1], f[2:]
	default:
		return nh, false, nil
	}
	for len(f) >= 2 && f[0] == "weight" {
		w, err := strconv.Atoi(f[1])
		if err != nil || w < 0 {
			return nh, false, fmt.Errorf("weight %q", f[1])
		}
		nh.Weight, f = w, f[2:]
	}
	return nh, true, nil
}

// BIRDProtocol is one protocol of `birdc show protocols [all]`.
type BIRDProtocol struct {
	Name  string // "gw1"
	Proto string // "BGP", "Kernel", "BFD", ...
	Table string // "---" when it has channels
	State string // "up", "start", "down", ...
	Since string
	Info  string // "Established", "Active        Socket: Connection closed", ...
	// With "all", for BGP:
	BGPState        string // "Established", "Active", "Idle", ...
	NeighborAddress netip.Addr
	NeighborAS      uint32
	LocalAS         uint32
	NeighborID      string
	LastError       string // "BFD session down", "Received: Administrative shutdown", ...
	Channels        []BIRDChannel
}

// BIRDChannel is one channel of a protocol (`show protocols all`).
type BIRDChannel struct {
	Name                          string // "ipv4"
	State                         string // "UP", "DOWN"
	Imported, Exported, Preferred int
}

// Established reports whether the protocol is a BGP session in state
// Established.
func (p BIRDProtocol) Established() bool {
	return p.Proto == "BGP" && p.State == "up" && strings.HasPrefix(p.Info, "Established")
}

// ParseBIRDProtocols reads the output of `birdc show protocols` or `show
// protocols all`.
func ParseBIRDProtocols(out string) ([]BIRDProtocol, error) {
	var ps []BIRDProtocol
	var ch *BIRDChannel
	header := false
	for i, line := range strings.Split(StripBirdcBanner(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := birdError(line); err != nil {
			return nil, err
		}
		bad := func(why string) error { return fmt.Errorf("line %d: %s: %q", i+1, why, line) }
		f := strings.Fields(line)
		switch {
		case !header:
			if len(f) < 5 || f[0] != "Name" || f[1] != "Proto" {
				return nil, bad("no header")
			}
			header = true
		case !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t"):
			if len(f) < 5 {
				return nil, bad("short protocol line")
			}
			p := BIRDProtocol{Name: f[0], Proto: f[1], Table: f[2], State: f[3], Since: f[4]}
			// Info starts after the fifth column.
			rest := line
			for range 5 {
				rest = strings.TrimLeft(rest, " \t")
				_, rest, _ = strings.Cut(rest, " ")
			}
			p.Info = strings.TrimSpace(rest)
			ps = append(ps, p)
			ch = nil
		default:
			if len(ps) == 0 {
				return nil, bad("detail before any protocol")
			}
			p := &ps[len(ps)-1]
			body := strings.TrimSpace(line)
			if name, ok := strings.CutPrefix(body, "Channel "); ok && !strings.Contains(body, ":") {
				p.Channels = append(p.Channels, BIRDChannel{Name: name})
				ch = &p.Channels[len(p.Channels)-1]
				continue
			}
			k, v, ok := strings.Cut(body, ":")
			if !ok {
				continue // capability lists and the like
			}
			v = strings.TrimSpace(v)
			if ch != nil {
				if err := ch.set(k, v); err != nil {
					return nil, bad(err.Error())
				}
				continue
			}
			if err := p.set(k, v); err != nil {
				return nil, bad(err.Error())
			}
		}
	}
	return ps, nil
}

func (p *BIRDProtocol) set(k, v string) error {
	switch k {
	case "BGP state":
		p.BGPState = v
	case "Neighbor address":
		a, err := netip.ParseAddr(v)
		if err != nil {
			return fmt.Errorf("neighbor address %q", v)
		}
		p.NeighborAddress = a
	case "Neighbor AS", "Local AS":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("%s %q", k, v)
		}
		if k == "Neighbor AS" {
			p.NeighborAS = uint32(n)
		} else {
			p.LocalAS = uint32(n)
		}
	case "Neighbor ID":
		p.NeighborID = v
	case "Last error":
		p.LastError = v
	}
	return nil
}

func (c *BIRDChannel) set(k, v string) error {
	switch k {
	case "State":
		c.State = v
	case "Routes":
		// "2 imported, 1 exported, 2 preferred" (some protocols add
		// "N filtered" after imported).
		for _, part := range strings.Split(v, ",") {
			w := strings.Fields(part)
			if len(w) != 2 {
				return fmt.Errorf("routes %q", v)
			}
			n, err := strconv.Atoi(w[0])
			if err != nil || n < 0 {
				return fmt.Errorf("routes %q", v)
			}
			switch w[1] {
			case "imported":
				c.Imported = n
			case "exported":
				c.Exported = n
			case "preferred":
				c.Preferred = n
			}
		}
	}
	return nil
}

// BIRDBFDSession is one session of `birdc show bfd sessions`.
type BIRDBFDSession struct {
	Protocol  string // the BFD protocol: "bfd1"
	Address   netip.Addr
	Interface string // "---" for a multihop session
	State     string // "Up", "Down", "Init", "AdminDown"
	Since     string
	Interval  time.Duration // transmit interval now in use
	Timeout   time.Duration // detection time
}

// ParseBIRDBFDSessions reads the output of `birdc show bfd sessions`.
func ParseBIRDBFDSessions(out string) ([]BIRDBFDSession, error) {
	var ss []BIRDBFDSession
	proto := ""
	for i, line := range strings.Split(StripBirdcBanner(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := birdError(line); err != nil {
			return nil, err
		}
		bad := func(why string) error { return fmt.Errorf("line %d: %s: %q", i+1, why, line) }
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && strings.HasSuffix(f[0], ":"):
			proto = strings.TrimSuffix(f[0], ":")
		case len(f) >= 2 && f[0] == "IP" && f[1] == "address":
		case proto == "":
			return nil, bad("session before its protocol")
		case len(f) != 6:
			return nil, bad("want 6 columns")
		default:
			a, err := netip.ParseAddr(f[0])
			if err != nil {
				return nil, bad("address")
			}
			iv, err1 := birdSeconds(f[4])
			to, err2 := birdSeconds(f[5])
			if err := errors.Join(err1, err2); err != nil {
				return nil, bad(err.Error())
			}
			ss = append(ss, BIRDBFDSession{Protocol: proto, Address: a, Interface: f[1], State: f[2], Since: f[3],
				Interval: iv, Timeout: to})
		}
	}
	return ss, nil
}

// birdSeconds reads BIRD's "0.100" (seconds, millisecond precision).
func birdSeconds(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > 1e6 {
		return 0, fmt.Errorf("seconds %q", s)
	}
	return time.Duration(v * float64(time.Second)).Round(time.Millisecond), nil
}
