package config

import (
	"time"
)

// Scope says what a failing health check takes out of service.
type Scope string

// Check scopes.
const (
	ScopeInstance Scope = "instance" // every cloud prefix from every tunnel; on-prem prefixes from cloud peers
	ScopeTunnel   Scope = "tunnel"   // one tunnel's announcements and routes
)

// Check is one health check.
type Check struct {
	Name     string
	Kind     string // link, icmp, tcp, http, command
	Target   string
	Args     []string
	Interval time.Duration
	Timeout  time.Duration
	Rise     int
	Fall     int
	Scope    Scope
	Tunnel   string // with ScopeTunnel
}

// Drain configures planned maintenance.
type Drain struct {
	Time      time.Duration // GRACEFUL_SHUTDOWN period before withdrawal
	StateFile string        // remembers "drained" across restarts and reboots
}

// HoldDown delays re-announcement after a flap, growing with repeated flaps.
type HoldDown struct {
	Initial time.Duration // after the first flap
	Max     time.Duration // doubling stops here
	Decay   time.Duration // one flap is forgotten per Decay of stability
}

// Defaults for failover.
const (
	DefaultDrainTime     = 2 * time.Second
	DefaultDrainState    = "/var/lib/bgpgw/drained"
	DefaultHoldInitial   = time.Second
	DefaultHoldMax       = 60 * time.Second
	DefaultHoldDecay     = 60 * time.Second
	DefaultCheckInterval = time.Second
)

var checkKinds = map[string]bool{"link": true, "icmp": true, "tcp": true, "http": true, "command": true}

func (d *decoder) drain(o *obj) Drain {
	defer o.done()
	dr := Drain{Time: o.duration("time", DefaultDrainTime), StateFile: o.absPath("state_file", DefaultDrainState)}
	if dr.Time > 5*time.Minute {
		d.errorf(o.key("time"), "%s is longer than 5m", dr.Time)
	}
	return dr
}

func (d *decoder) holdDown(o *obj) HoldDown {
	defer o.done()
	h := HoldDown{
		Initial: o.duration("initial", DefaultHoldInitial),
		Max:     o.duration("max", DefaultHoldMax),
		Decay:   o.duration("decay", DefaultHoldDecay),
	}
	if h.Max < h.Initial {
		d.errorf(o.key("max"), "%s is below initial (%s)", h.Max, h.Initial)
	}
	if h.Max > 24*time.Hour {
		d.errorf(o.key("max"), "%s is longer than 24h", h.Max)
	}
	return h
}

func (d *decoder) checks(root *obj, c *Config) []Check {
	items, paths := root.list("health")
	var out []Check
	seen := map[string]string{}
	tunnels := map[string]bool{}
	for _, t := range c.Tunnels {
		tunnels[t.Name] = true
	}
	for i, item := range items {
		o := d.object(paths[i], item)
		ch := Check{Name: d.name(o, "name")}
		if first, dup := seen[ch.Name]; dup && ch.Name != "" {
			d.errorf(o.key("name"), "duplicate check name %q (also %s)", ch.Name, first)
		}
		seen[ch.Name] = o.key("name")
		if k, ok := o.str("kind", true); ok {
			if !checkKinds[k] {
				d.errorf(o.key("kind"), "%q: want link, icmp, tcp, http or command", k)
			}
			ch.Kind = k
		}
		ch.Target, _ = o.str("target", true)
		ch.Args, _ = o.strings("args")
		if len(ch.Args) > 0 && ch.Kind != "command" {
			d.errorf(o.key("args"), "only for kind command")
		}
		ch.Interval = o.duration("interval", DefaultCheckInterval)
		ch.Timeout = o.duration("timeout", ch.Interval/2)
		if ch.Timeout >= ch.Interval {
			d.errorf(o.key("timeout"), "%s must be below interval (%s)", ch.Timeout, ch.Interval)
		}
		ch.Rise, ch.Fall = 1, 1
		if ch.Kind != "link" {
			ch.Rise, ch.Fall = 2, 2
		}
		for _, k := range []string{"rise", "fall"} {
			n, ok := o.integer(k, false, 1, 100)
			switch {
			case !ok:
			case ch.Kind == "link" && n != 1:
				// Link results come once per change, not per interval.
				d.errorf(o.key(k), "must be 1 for kind link (link checks report changes, not repeated results)")
			case k == "rise":
				ch.Rise = int(n)
			default:
				ch.Fall = int(n)
			}
		}
		scope, _ := o.str("scope", false)
		tunnel, hasTunnel := o.str("tunnel", false)
		switch Scope(scope) {
		case "", ScopeInstance:
			ch.Scope = ScopeInstance
			if hasTunnel {
				d.errorf(o.key("tunnel"), "only with scope: tunnel")
			}
		case ScopeTunnel:
			ch.Scope = ScopeTunnel
			switch {
			case !hasTunnel:
				d.errorf(o.key("tunnel"), "required with scope: tunnel")
			case !tunnels[tunnel]:
				d.errorf(o.key("tunnel"), "no tunnel named %q", tunnel)
			}
			ch.Tunnel = tunnel
		default:
			d.errorf(o.key("scope"), "%q: want instance or tunnel", scope)
		}
		o.done()
		out = append(out, ch)
	}
	return out
}
