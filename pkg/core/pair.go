package core

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// The pair rules (config.Pair):
//   - This instance carries a device (tunnels[].device) while it is not
//     draining, its instance-scope checks pass and at least one of its
//     tunnels to that device carries traffic. It tells the partner, at
//     once, which devices it carries (Output.Self).
//   - It takes over a device it carries when the partner has that device
//     (or has never said which devices it has) and does not carry it: the
//     partner is lost (PartnerView.Up false), or, having carried the
//     device since this instance started (else none of its routes toward
//     it can be stale: it is starting, or its tunnel never came up), is
//     draining, failing its instance checks, or no longer lists the device
//     as carried. An instance whose partner has not been up since it
//     started waits ReleaseDelay first: the partner may simply be starting.
//   - A takeover starts at once and ends ReleaseDelay after its cause has
//     gone (the partner's own routes need time to be installed), or at
//     once when this instance no longer carries the device itself.
//   - While a device is taken over, the routes that win over the
//     partner's are announced: with takeover more-specific, the halves of
//     every cloud prefix to the device's tunnels and of every on-prem
//     prefix learned from it to the cloud-side peers; with med, the same
//     prefixes at MED 0 where both instances normally announce
//     config.TakeoverBaseMED.
//   - A takeover is false when the partner it replaced comes back without
//     having restarted and without having stopped carrying the device
//     since it was lost (the link between the two was cut, or a false BFD
//     Down): it reports the same Epoch and Drops.

// PartnerView is what this instance knows of its partner at one moment.
type PartnerView struct {
	// Up: its BFD session is Up and its state has been heard recently.
	Up bool
	// Why explains Up false, e.g. "BFD down" (for logs and status).
	Why string
	// Heard: at least one state message has been received; the fields
	// below are from the newest one (kept while the partner is lost).
	Heard    bool
	Epoch    uint64
	Drops    uint32 // times it stopped carrying a device since its start
	Devices  []string
	Carrying []string
	Draining bool
	ChecksOK bool
}

// SelfState is what this instance tells its partner.
type SelfState struct {
	Devices  []string // sorted
	Carrying []string // sorted
	Draining bool
	ChecksOK bool
	Drops    uint32
}

// TakeoverStatus is one device this instance takes over.
type TakeoverStatus struct {
	Device    string
	Reason    string
	Since     time.Time
	ReleaseAt time.Time // set once the cause has gone: the routes go then
	False     bool      // the partner never stopped carrying (see the rules)
}

type takeover struct {
	since, releaseAt time.Time
	reason           string
	lost             bool // started because the partner was lost
	epoch            uint64
	drops            uint32
	falseAlarm       bool
}

type pairState struct {
	view      PartnerView
	started   time.Time // the core's start: the first ReleaseDelay is a grace
	takeovers map[string]*takeover
	carrying  map[string]bool // devices carried at the last refresh
	drops     uint32
	everUp    bool            // the partner has been up since this instance started
	seen      map[string]bool // devices the partner has said it carries since then
}

// Partner reports what is known of the partner now.
func (c *Core) Partner(now time.Time, v PartnerView) {
	v.Devices, v.Carrying = slices.Clone(v.Devices), slices.Clone(v.Carrying)
	c.pair.view = v
	c.pair.everUp = c.pair.everUp || v.Up
	if c.pair.seen == nil {
		c.pair.seen = map[string]bool{}
	}
	for _, d := range v.Carrying {
		c.pair.seen[d] = true
	}
	c.refresh(now)
}

// carries lists the devices this instance carries now; refresh must have
// run at now.
func (c *Core) carries(now time.Time) map[string]bool {
	out := map[string]bool{}
	if c.drain != Normal || !c.instance.open(now) {
		return out
	}
	for _, tc := range c.cfg.Tunnels {
		if c.tunnels[tc.Name].gate.open(now) {
			out[tc.Device] = true
		}
	}
	return out
}

// refreshPair updates what is carried and the takeovers, after the gates.
func (c *Core) refreshPair(now time.Time) {
	ps := &c.pair
	carrying := c.carries(now)
	for d := range ps.carrying {
		if !carrying[d] {
			ps.drops++
		}
	}
	ps.carrying = carrying
	if ps.takeovers == nil {
		ps.takeovers = map[string]*takeover{}
	}
	pc := c.cfg.Pair
	for d, t := range ps.takeovers {
		if !carrying[d] || pc.Takeover == config.TakeoverOff {
			delete(ps.takeovers, d) // nothing of ours to win with
		} else if !t.releaseAt.IsZero() && !now.Before(t.releaseAt) {
			delete(ps.takeovers, d)
		}
	}
	if pc.Takeover == config.TakeoverOff {
		return
	}
	v := ps.view
	for d := range carrying {
		why, want := c.takeoverCause(now, d)
		t := ps.takeovers[d]
		switch {
		case want && t == nil:
			ps.takeovers[d] = &takeover{since: now, reason: why, lost: !v.Up, epoch: v.Epoch, drops: v.Drops}
		case want:
			t.releaseAt, t.falseAlarm, t.reason = time.Time{}, false, why
		case t != nil && t.releaseAt.IsZero():
			t.releaseAt = now.Add(pc.ReleaseDelay)
			t.falseAlarm = t.lost && v.Heard && v.Epoch == t.epoch && v.Drops == t.drops
		}
	}
}

// takeoverCause says why device d, which this instance carries, must be
// taken over, if it must.
func (c *Core) takeoverCause(now time.Time, d string) (string, bool) {
	v := c.pair.view
	if v.Heard && !slices.Contains(v.Devices, d) {
		return "", false // the partner has no tunnel to d
	}
	switch {
	case !v.Up && !c.pair.everUp:
		if now.Before(c.pair.started.Add(c.cfg.Pair.ReleaseDelay)) {
			return "", false
		}
		return "partner not up since start" + because(v.Why), true
	case !v.Up:
		return "partner lost" + because(v.Why), true
	case !c.pair.seen[d]:
		// It never carried d since this instance started: no route of
		// its toward d can be stale (it is starting, or its tunnel to d
		// never came up).
		return "", false
	case v.Draining:
		return "partner draining", true
	case !v.ChecksOK:
		return "partner's instance checks failing", true
	case !slices.Contains(v.Carrying, d):
		return "partner does not carry " + d, true
	}
	return "", false
}

func because(why string) string {
	if why == "" {
		return ""
	}
	return ": " + why
}

// pairNextWake is the next time the pair state changes on its own.
func (c *Core) pairNextWake(now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if c.cfg.Pair.Takeover != config.TakeoverOff && !c.pair.everUp {
		consider(c.pair.started.Add(c.cfg.Pair.ReleaseDelay))
	}
	for _, t := range c.pair.takeovers {
		if !t.releaseAt.IsZero() {
			consider(t.releaseAt)
		}
	}
	return next
}

// pairOutput fills the pair parts of o.
func (c *Core) pairOutput(o *Output) {
	s := SelfState{Draining: c.drain != Normal, ChecksOK: o.InstanceOK, Drops: c.pair.drops}
	for _, tc := range c.cfg.Tunnels {
		s.Devices = append(s.Devices, tc.Device)
	}
	for d := range c.pair.carrying {
		s.Carrying = append(s.Carrying, d)
	}
	slices.Sort(s.Devices)
	s.Devices = slices.Compact(s.Devices)
	slices.Sort(s.Carrying)
	o.Self = s
	for d, t := range c.pair.takeovers {
		o.Takeovers = append(o.Takeovers, TakeoverStatus{Device: d, Reason: t.reason, Since: t.since,
			ReleaseAt: t.releaseAt, False: t.falseAlarm})
	}
	slices.SortFunc(o.Takeovers, func(a, b TakeoverStatus) int { return cmp.Compare(a.Device, b.Device) })
}

// taken reports whether device d is taken over.
func (c *Core) taken(d string) bool {
	_, ok := c.pair.takeovers[d]
	return ok
}

// winning returns the announcements that win over the partner's for
// prefixes ps (taken over), given the announcement of each (with).
func (c *Core) winning(ps []netip.Prefix, with func(netip.Prefix) model.Announcement) []model.Announcement {
	var out []model.Announcement
	switch c.cfg.Pair.Takeover {
	case config.TakeoverMoreSpecific:
		for _, p := range ps {
			for _, h := range halves(p) {
				a := with(p) // the prefix's own attributes, its AS path among them
				a.Prefix = h
				out = append(out, a)
			}
		}
	case config.TakeoverMED:
		for _, p := range ps {
			a := with(p)
			a.HasMED, a.MED = true, 0
			out = append(out, a)
		}
	}
	return out
}

// halves returns the two prefixes one bit longer that make up p (none for
// a host prefix).
func halves(p netip.Prefix) []netip.Prefix {
	p = p.Masked()
	if p.Bits() >= p.Addr().BitLen() {
		return nil
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	b := p.Addr().AsSlice()
	b[p.Bits()/8] |= 0x80 >> (p.Bits() % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	return []netip.Prefix{lo, netip.PrefixFrom(hiAddr, p.Bits()+1)}
}

// merge adds the winning announcements to anns: one for a prefix already
// there replaces it (MED 0), the others are appended.
func merge(anns, winning []model.Announcement) []model.Announcement {
	if len(winning) == 0 {
		return anns
	}
	at := make(map[netip.Prefix]int, len(anns))
	for i, a := range anns {
		at[a.Prefix] = i
	}
	for _, w := range winning {
		if i, ok := at[w.Prefix]; ok {
			anns[i] = w
			continue
		}
		at[w.Prefix] = len(anns)
		anns = append(anns, w)
	}
	return anns
}
