package config

import (
	"net/netip"
	"time"
)

// Takeover is how the survivor of a pair makes its routes win over its
// partner's stale ones.
type Takeover string

// Takeover methods.
const (
	// TakeoverMoreSpecific announces the two halves of every prefix (one
	// bit longer): longest-prefix match wins on any router, whatever its
	// path selection. The peers must accept prefixes one bit longer.
	TakeoverMoreSpecific Takeover = "more-specific"
	// TakeoverMED announces every prefix with MED 0 while the instances
	// normally announce MED TakeoverBaseMED: active-active only (the
	// standby's AS-path prepend is compared before MED).
	TakeoverMED Takeover = "med"
	// TakeoverOff: the pair channel reports the partner's state; routes
	// do not change.
	TakeoverOff Takeover = "off"
)

// TakeoverBaseMED is the MED both instances of an active-active pair
// announce with takeover: med, so that the survivor's MED 0 wins.
const TakeoverBaseMED = 100

// Pair defaults.
const (
	DefaultPairPort     = 7784
	DefaultPairInterval = 20 * time.Millisecond
	DefaultPairMult     = 3
	DefaultReleaseDelay = 2 * time.Second
)

// Pair is how this instance knows its partner: an authenticated BFD
// session between the two and an authenticated state channel (pkg/pair).
type Pair struct {
	Enabled bool // a pair: section is present
	// Partner is the partner's cloud-side address; LocalAddress ours.
	Partner      netip.Addr
	LocalAddress netip.Addr
	Port         int    // UDP port of the state channel, both sides
	Key          Secret // shared; at least 16 bytes
	// Multihop: the partner is not on the same subnet (RFC 5883 BFD).
	Multihop   bool
	MinRx      time.Duration // pair BFD timers
	MinTx      time.Duration
	Multiplier int
	Takeover   Takeover
	// ReleaseDelay is how long takeover routes stay once the partner
	// carries a device again (its own routes need time to be installed),
	// and how long an instance that has never heard its partner waits
	// before taking over.
	ReleaseDelay time.Duration
}

func (d *decoder) pair(o *obj, c *Config) Pair {
	defer o.done()
	if len(o.m) == 0 {
		return Pair{Takeover: TakeoverOff}
	}
	p := Pair{Enabled: true, Port: DefaultPairPort, MinRx: DefaultPairInterval, MinTx: DefaultPairInterval,
		Multiplier: DefaultPairMult, Takeover: TakeoverMoreSpecific}
	p.Partner = o.addr("partner", true)
	p.LocalAddress = o.addr("local_address", true)
	if p.Partner.IsValid() && p.Partner == p.LocalAddress {
		d.errorf(o.key("partner"), "same as local_address (%s)", p.Partner)
	}
	if p.Partner.IsValid() && p.LocalAddress.IsValid() && p.Partner.Is4() != p.LocalAddress.Is4() {
		d.errorf(o.key("partner"), "%s and local_address %s are not the same IP version", p.Partner, p.LocalAddress)
	}
	if n, ok := o.integer("port", false, 1, 65535); ok {
		p.Port = int(n)
	}
	p.Key = o.secret("key", true)
	if p.Key.IsSet() && len(p.Key.Reveal()) < 16 {
		d.errorf(o.key("key_file"), "the pair key must be at least 16 bytes")
	}
	b := o.child("bfd")
	p.Multihop, _ = b.boolean("multihop")
	p.MinRx, p.MinTx = d.bfdTimers(b, DefaultPairInterval, 10*time.Second)
	if n, ok := b.integer("multiplier", false, 2, 255); ok {
		p.Multiplier = int(n)
	}
	b.done()
	if s, ok := o.str("takeover", false); ok {
		p.Takeover = Takeover(s)
	}
	switch p.Takeover {
	case TakeoverMoreSpecific:
		d.moreSpecificWorks(o, c)
	case TakeoverMED:
		if c.Instance.Mode == ActiveStandby {
			d.errorf(o.key("takeover"), "med cannot work in active-standby: the standby's AS-path prepend is compared before MED; use more-specific")
		}
		devices := map[string]bool{}
		for _, t := range c.Tunnels {
			devices[t.Device] = true
		}
		if len(devices) > 1 {
			// The speaker keeps one path per prefix: a cloud prefix cannot
			// go at MED 0 to one device and MED 100 to another.
			d.errorf(o.key("takeover"), "med works with one on-prem device (tunnels[].device), these tunnels reach %d; use more-specific", len(devices))
		}
	case TakeoverOff:
	default:
		d.errorf(o.key("takeover"), "%q: want more-specific, med or off", p.Takeover)
	}
	d.pairDetection(o, c)
	p.ReleaseDelay = o.duration("release_delay", DefaultReleaseDelay)
	if p.ReleaseDelay < 100*time.Millisecond || p.ReleaseDelay > 5*time.Minute {
		d.errorf(o.key("release_delay"), "%s out of range 100ms..5m", p.ReleaseDelay)
	}
	return p
}

// pairDetection warns about tunnels that notice a dead data plane only at
// the BGP hold time: the partner's takeover waits for this instance to say
// it no longer carries the device.
func (d *decoder) pairDetection(o *obj, c *Config) {
	probed := map[string]bool{}
	for _, ch := range c.Health {
		if ch.Scope == ScopeTunnel {
			probed[ch.Tunnel] = true
		}
	}
	for _, t := range c.Tunnels {
		if !t.BFD.Enabled && !probed[t.Name] {
			d.warnf(o.key("partner"), "tunnel %s has neither BFD nor a scope: tunnel check: a dead tunnel is noticed only at the BGP hold time (%s), and the partner takes over only then", t.Name, c.BGP.HoldTime)
		}
	}
}

// moreSpecificWorks refuses takeover: more-specific when a prefix has no
// halves: an announced host prefix, or an accept-list that lets a tunnel
// peer send one.
func (d *decoder) moreSpecificWorks(o *obj, c *Config) {
	for _, p := range c.Announce {
		if p.Bits() == p.Addr().BitLen() {
			d.errorf(o.key("takeover"), "more-specific cannot take over announce %s: a host prefix has no halves (announce a shorter prefix or use takeover: off)", p)
		}
	}
	for _, t := range c.Tunnels {
		for _, r := range t.Accept {
			if r.MaxLen == r.Prefix.Addr().BitLen() {
				d.errorf(o.key("takeover"), "more-specific cannot take over what tunnel %s accepts (%s): a host prefix has no halves; accept up to /%d", t.Name, r, r.MaxLen-1)
			}
		}
	}
}
