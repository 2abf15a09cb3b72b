// Package config holds a bgpgw instance configuration's types and validates
// it.
//
// A configuration is one YAML file per gateway instance. pkg/configfile
// reads it (through viper, in pkg/config/yamltree) into a generic tree;
// Decode turns every key into typed values (netip.Prefix, netip.Addr,
// time.Duration), rejecting unknown keys and reporting every problem at
// once, each with its key path ("tunnels[1].inside.local: ..."). Secrets
// are read from files or the environment into Secret values, which never
// print. The package does not import viper, so neither does the decision
// core that uses its types.
//
// docs/configuration.md documents every key; a test keeps the two in step.
package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"time"
)

// Mode is how the two instances of a pair share the traffic.
type Mode string

// Modes.
const (
	ActiveActive  Mode = "active-active"
	ActiveStandby Mode = "active-standby"
)

// Role is an instance's role in an active-standby pair.
type Role string

// Roles.
const (
	RoleNone    Role = ""
	RolePrimary Role = "primary"
	RoleStandby Role = "standby"
)

// IPsecMode selects how tunnels carry packets.
type IPsecMode string

// IPsec data-plane modes.
const (
	IPsecXFRM     IPsecMode = "xfrm"     // kernel ESP, one XFRM interface per tunnel
	IPsecLibipsec IPsecMode = "libipsec" // charon's userspace ESP over its TUN device
	IPsecNone     IPsecMode = "none"     // tunnels are managed outside bgpgw; inside addresses already exist
)

// Config is a validated instance configuration.
type Config struct {
	Instance   Instance
	BGP        BGP
	Announce   []netip.Prefix // cloud-side prefixes announced over the tunnels
	Standby    Standby
	IPsec      IPsec
	Tunnels    []Tunnel
	CloudPeers []CloudPeer
	API        API
	Kernel     Kernel
	Health     []Check
	Drain      Drain
	HoldDown   HoldDown
	Metrics    Metrics
	Pair       Pair
	// Warnings are problems that do not stop the configuration from
	// working, such as a secret file readable by everyone.
	Warnings []string
}

// Instance names this gateway instance and its place in the pair.
type Instance struct {
	Name string
	Mode Mode
	Role Role // set only in active-standby
}

// BGP holds the speaker's global settings.
type BGP struct {
	ASN             uint32
	RouterID        netip.Addr
	HoldTime        time.Duration
	Keepalive       time.Duration
	ConnectRetry    time.Duration
	ListenPort      int
	ListenAddresses []netip.Addr // empty: all addresses
	// GRPCListen is the loopback address:port of GoBGP's own gRPC API, for
	// the gobgp CLI; empty: off.
	GRPCListen string
}

// Standby is how the standby instance of an active-standby pair makes its
// announcements less preferred.
type Standby struct {
	Prepend int    // extra copies of the local AS on the AS path
	MED     uint32 // MULTI_EXIT_DISC on the standby's announcements
}

// IPsec holds the tunnel data-plane settings.
type IPsec struct {
	Mode       IPsecMode
	ViciSocket string
}

// Tunnel is one IPsec site-to-site tunnel with one eBGP session inside it.
type Tunnel struct {
	Name string
	// Device names the on-prem device the tunnel reaches (default: the
	// tunnel's name). The two instances of a pair know that their tunnels
	// with the same device belong together.
	Device        string
	LocalAddress  netip.Addr // outer, public
	RemoteAddress netip.Addr // outer, public
	PSK           Secret
	IKEProposals  []string
	ESPProposals  []string
	InsideLocal   netip.Prefix // address and length on the tunnel interface
	InsideRemote  netip.Addr   // the on-prem device's BGP address
	PeerASN       uint32
	Accept        []PrefixRange // on-prem prefixes accepted from this peer
	MaxPrefixes   uint32
	// MaxASPath refuses a route whose AS path is longer (0: no limit).
	MaxASPath int
	Password  Secret
	BFD       BFD
	// IfID is the XFRM interface ID that binds the tunnel's SAs to its
	// interface (xfrm mode).
	IfID uint32
	// Interface is the tunnel's network interface: its own XFRM interface
	// in xfrm mode, charon's shared TUN device in libipsec mode.
	Interface string
}

// CloudPeer is a cloud-side BGP router that learns the on-prem prefixes.
type CloudPeer struct {
	Name         string
	Address      netip.Addr
	LocalAddress netip.Addr // optional source address
	PeerASN      uint32
	Multihop     int // 0 or 1: directly connected (GTSM); >1: eBGP multihop TTL
	Password     Secret
	BFD          BFD
}

// BFD holds one session's BFD timers.
type BFD struct {
	Enabled  bool
	Multihop bool // RFC 5883 (UDP 4784) even on a directly connected tunnel peer
	// MinTTL is the lowest TTL a multihop session accepts (0: pkg/bfd's
	// default, 254, as FRR bfdd's minimum-ttl).
	MinTTL uint8
	// AuthType is "" (none), "keyed-sha1" or "meticulous-keyed-sha1".
	AuthType   string
	AuthKeyID  uint8
	AuthKey    Secret // 1 to 20 bytes
	MinRx      time.Duration
	MinTx      time.Duration
	Multiplier int
}

// API is the local control socket.
type API struct {
	Socket string
}

// Kernel says where learned routes go.
type Kernel struct {
	Table    int
	Protocol int
}

// Defaults.
const (
	DefaultHoldTime     = 9 * time.Second
	DefaultConnectRetry = 5 * time.Second
	DefaultMaxPrefixes  = 1000
	DefaultSocket       = "/run/bgpgw/bgpgw.sock"
	DefaultViciSocket   = "/var/run/charon.vici"
	DefaultTable        = 254
	DefaultProtocol     = 201
	DefaultPrepend      = 3
	DefaultStandbyMED   = 200
	DefaultBFDInterval  = 300 * time.Millisecond
	DefaultBFDMult      = 3
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// Decode types and validates a configuration read into a generic tree
// (pkg/config/yamltree; pkg/configfile reads files): every key into typed
// values, unknown keys rejected. Relative secret file paths are taken from
// baseDir ("": the current directory). The error, when not nil, is an
// Errors listing every problem.
func Decode(tree map[string]any, baseDir string) (*Config, error) {
	d := &decoder{baseDir: baseDir}
	c := d.decode(tree)
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	c.Warnings = d.warnings
	return c, nil
}

// Socket reads only api.socket from a configuration tree, for the CLI
// commands that talk to a running daemon: they need no secrets and do not
// validate the rest.
func Socket(tree map[string]any) (string, error) {
	var s string
	if api, ok := tree["api"].(map[string]any); ok {
		s, _ = api["socket"].(string)
	}
	switch {
	case s == "":
		return DefaultSocket, nil
	case !filepath.IsAbs(s):
		return "", Errors{{Path: "api.socket", Msg: fmt.Sprintf("must be an absolute path, got %q", s)}}
	}
	return s, nil
}

// Keys lists every configuration key path bgpgw reads, with list elements
// written as "[]" ("tunnels[].inside.local"), sorted.
func Keys() []string {
	d := &decoder{seen: map[string]bool{}}
	auth := map[string]any{"type": "keyed-sha1"}
	d.decode(map[string]any{
		"tunnels":     []any{map[string]any{"bfd": map[string]any{"auth": auth}}},
		"cloud_peers": []any{map[string]any{"bfd": map[string]any{"auth": auth}}},
		"health":      []any{map[string]any{}},
		"pair":        map[string]any{"partner": "192.0.2.1"},
	})
	keys := make([]string, 0, len(d.seen))
	for k := range d.seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (d *decoder) decode(tree map[string]any) *Config {
	root := d.object("", tree)
	c := &Config{}
	c.Instance = d.instance(root.child("instance"))
	c.BGP = d.bgp(root.child("bgp"))
	c.Announce = d.announce(root)
	c.Standby = d.standby(root.child("standby"))
	c.IPsec = d.ipsec(root.child("ipsec"))
	c.Tunnels = d.tunnels(root, c)
	c.CloudPeers = d.cloudPeers(root, c)
	c.API = d.api(root.child("api"))
	c.Kernel = d.kernel(root.child("kernel"))
	c.Health = d.checks(root, c)
	c.Drain = d.drain(root.child("drain"))
	c.HoldDown = d.holdDown(root.child("hold_down"))
	c.Metrics = d.metrics(root.child("metrics"))
	c.Pair = d.pair(root.child("pair"), c)
	root.done()
	return c
}

func (d *decoder) name(o *obj, key string) string {
	s, ok := o.str(key, true)
	if ok && !nameRE.MatchString(s) {
		d.errorf(o.key(key), "%q: use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return s
}

func (d *decoder) instance(o *obj) Instance {
	defer o.done()
	in := Instance{Name: d.name(o, "name")}
	mode, _ := o.str("mode", true)
	switch Mode(mode) {
	case ActiveActive, ActiveStandby:
		in.Mode = Mode(mode)
	case "":
	default:
		d.errorf(o.key("mode"), "%q: want active-active or active-standby", mode)
	}
	role, hasRole := o.str("role", false)
	switch {
	case in.Mode == ActiveStandby && !hasRole:
		d.errorf(o.key("role"), "required in active-standby mode (primary or standby)")
	case in.Mode == ActiveActive && hasRole:
		d.errorf(o.key("role"), "only used in active-standby mode; remove it")
	case hasRole && Role(role) != RolePrimary && Role(role) != RoleStandby:
		d.errorf(o.key("role"), "%q: want primary or standby", role)
	case hasRole:
		in.Role = Role(role)
	}
	return in
}

func (d *decoder) asn(o *obj, key string) uint32 {
	n, ok := o.integer(key, true, 1, 4294967294)
	if !ok {
		return 0
	}
	if n == 23456 {
		d.errorf(o.key(key), "23456 is AS_TRANS (RFC 6793) and cannot be a real AS")
		return 0
	}
	return uint32(n)
}

func (d *decoder) bgp(o *obj) BGP {
	defer o.done()
	b := BGP{ASN: d.asn(o, "asn")}
	b.RouterID = o.addr("router_id", true)
	if b.RouterID.IsValid() && !b.RouterID.Is4() {
		d.errorf(o.key("router_id"), "must be an IPv4 address, got %s", b.RouterID)
	}
	before := len(d.errs)
	b.HoldTime = o.duration("hold_time", DefaultHoldTime)
	if b.HoldTime%time.Second != 0 {
		d.errorf(o.key("hold_time"), "BGP timers are whole seconds, got %s", b.HoldTime)
	} else if b.HoldTime < 3*time.Second {
		d.errorf(o.key("hold_time"), "%s is below BGP's minimum of 3s (RFC 4271); use BFD for faster detection", b.HoldTime)
	}
	holdOK := len(d.errs) == before
	b.Keepalive = o.duration("keepalive", max(time.Second, (b.HoldTime/3).Truncate(time.Second)))
	if holdOK && (b.Keepalive%time.Second != 0 || b.Keepalive >= b.HoldTime) {
		d.errorf(o.key("keepalive"), "must be whole seconds below hold_time (%s), got %s", b.HoldTime, b.Keepalive)
	}
	b.ConnectRetry = o.duration("connect_retry", DefaultConnectRetry)
	if b.ConnectRetry%time.Second != 0 {
		d.errorf(o.key("connect_retry"), "BGP timers are whole seconds, got %s", b.ConnectRetry)
	}
	port, ok := o.integer("listen_port", false, 1, 65535)
	if !ok {
		port = 179
	}
	b.ListenPort = int(port)
	addrs, paths := o.strings("listen_addresses")
	for i, s := range addrs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.errorf(paths[i], "not an IP address: %q", s)
			continue
		}
		b.ListenAddresses = append(b.ListenAddresses, a)
	}
	b.GRPCListen = d.loopbackListen(o, "grpc_listen", "")
	return b
}

func (d *decoder) announce(root *obj) []netip.Prefix {
	before := len(d.errs)
	items, paths := root.strings("announce")
	if len(items) == 0 {
		if len(d.errs) == before {
			d.errorf("announce", "list at least one cloud-side prefix to announce")
		}
		return nil
	}
	var out []netip.Prefix
	seen := map[netip.Prefix]string{}
	for i, s := range items {
		p, err := ParsePrefix(s)
		if err != nil {
			d.errorf(paths[i], "%v", err)
			continue
		}
		if p.Bits() == 0 {
			d.errorf(paths[i], "a default route is never announced over a tunnel")
			continue
		}
		if first, dup := seen[p]; dup {
			d.errorf(paths[i], "%s is listed twice (also %s)", p, first)
			continue
		}
		seen[p] = paths[i]
		out = append(out, p)
	}
	return out
}

func (d *decoder) standby(o *obj) Standby {
	defer o.done()
	s := Standby{Prepend: DefaultPrepend, MED: DefaultStandbyMED}
	if n, ok := o.integer("prepend", false, 0, 10); ok {
		s.Prepend = int(n)
	}
	if n, ok := o.integer("med", false, 0, 4294967295); ok {
		s.MED = uint32(n)
	}
	return s
}

func (d *decoder) ipsec(o *obj) IPsec {
	defer o.done()
	p := IPsec{Mode: IPsecXFRM}
	if m, ok := o.str("mode", false); ok {
		switch IPsecMode(m) {
		case IPsecXFRM, IPsecLibipsec, IPsecNone:
			p.Mode = IPsecMode(m)
		default:
			d.errorf(o.key("mode"), "%q: want xfrm, libipsec or none", m)
		}
	}
	p.ViciSocket = o.absPath("vici_socket", DefaultViciSocket)
	return p
}

func (d *decoder) bfd(o *obj) BFD {
	defer o.done()
	b := BFD{MinRx: DefaultBFDInterval, MinTx: DefaultBFDInterval, Multiplier: DefaultBFDMult}
	b.Enabled, _ = o.boolean("enabled")
	b.Multihop, _ = o.boolean("multihop")
	if n, ok := o.integer("min_ttl", false, 1, 255); ok {
		b.MinTTL = uint8(n)
	}
	b.MinRx, b.MinTx = d.bfdTimers(o, DefaultBFDInterval, 60*time.Second)
	if n, ok := o.integer("multiplier", false, 1, 255); ok {
		b.Multiplier = int(n)
	}
	if a := o.child("auth"); len(a.m) > 0 {
		b.AuthType, _ = a.str("type", true)
		if b.AuthType != "" && b.AuthType != "keyed-sha1" && b.AuthType != "meticulous-keyed-sha1" {
			d.errorf(a.key("type"), "%q: want keyed-sha1 or meticulous-keyed-sha1", b.AuthType)
		}
		if n, ok := a.integer("key_id", false, 0, 255); ok {
			b.AuthKeyID = uint8(n)
		}
		b.AuthKey = a.secret("key", true)
		if b.AuthKey.IsSet() && len(b.AuthKey.Reveal()) > 20 {
			d.errorf(a.key("key_file"), "BFD SHA1 keys are 1 to 20 bytes")
		}
		a.done()
	} else {
		a.done()
	}
	return b
}

// bfdTimers decodes min_rx and min_tx (default def), each 10ms to max.
func (d *decoder) bfdTimers(o *obj, def, max time.Duration) (rx, tx time.Duration) {
	for _, k := range []string{"min_rx", "min_tx"} {
		v := o.duration(k, def)
		if v < 10*time.Millisecond || v > max {
			d.errorf(o.key(k), "%s out of range 10ms..%s", v, max)
		}
		if k == "min_rx" {
			rx = v
		} else {
			tx = v
		}
	}
	return rx, tx
}

func (d *decoder) api(o *obj) API {
	defer o.done()
	return API{Socket: o.absPath("socket", DefaultSocket)}
}

func (d *decoder) kernel(o *obj) Kernel {
	defer o.done()
	k := Kernel{Table: DefaultTable, Protocol: DefaultProtocol}
	if n, ok := o.integer("table", false, 1, 4294967295); ok {
		if n == 255 {
			d.errorf(o.key("table"), "255 is the kernel's local table")
		}
		k.Table = int(n)
	}
	if n, ok := o.integer("protocol", false, 5, 255); ok {
		k.Protocol = int(n)
	}
	return k
}
