package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bfd"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/core"
	"github.com/bgpgw/bgpgw/pkg/ipsec"
	"github.com/bgpgw/bgpgw/pkg/model"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// snapshot is what the loop last applied, published at the end of every
// pass. Status and every metrics scrape read it: they never run core code,
// wait for the loop, or walk GoBGP's tables. Nothing in it is changed after
// it is published.
type snapshot struct {
	cfg       *config.Config
	out       core.Output
	installed []route.Route
	errs      []string
	checks    []api.Check
	reload    *api.Reload
	// sessions as last read (on every change the speaker signals), and
	// what the last successful SetAnnouncements gave each peer (a peer's
	// Announced while established; built when status is read, not at every
	// pass).
	sessions []bgp.PeerStatus
	applied  map[string][]bgp.Announcement
	bfdKeys  map[string]bfd.Key // peer name -> its BFD session
	bfd      *bfd.Manager
	ipsec    *ipsec.Manager
	pair     *pairSnap
}

// publish makes the loop's present state the one status reads.
func (d *Daemon) publish() {
	s := &snapshot{cfg: d.cfg, out: d.out, installed: d.installed, errs: d.lastErrs,
		reload: d.lastReload, bfd: d.bfd.m, ipsec: d.ipsec, bfdKeys: map[string]bfd.Key{}}
	for k, p := range d.bfd.byKey {
		s.bfdKeys[p.name] = k
	}
	for _, ch := range d.cfg.Health {
		c, ok := d.checks[ch.Name]
		if !ok {
			c = api.Check{Name: ch.Name, Scope: scopeName(ch)}
		}
		s.checks = append(s.checks, c)
	}
	s.sessions, s.applied = d.sessions, d.applied
	s.pair = d.snapPair()
	d.snap.Store(s)
}

// Status implements api.Backend from the last published snapshot.
func (d *Daemon) Status(context.Context) (api.Status, error) { return d.status(true) }

// metricsStatus is Status without the peers' prefix lists (their counts
// only): what a scrape needs, without building 10,000 strings per peer.
func (d *Daemon) metricsStatus(context.Context) (api.Status, error) { return d.status(false) }

func (d *Daemon) status(lists bool) (api.Status, error) {
	s := d.snap.Load()
	if s == nil {
		return api.Status{}, errors.New("bgpgw is starting: no status yet")
	}
	now := d.clock.Now()
	out := s.out
	st := api.Status{
		Instance:   api.Instance{Name: s.cfg.Instance.Name, Mode: string(s.cfg.Instance.Mode), Role: string(out.Role)},
		Drained:    out.Drain != core.Normal,
		DrainState: string(out.Drain),
		InstanceOK: out.InstanceOK,
		Tunnels:    []api.Tunnel{},
		Checks:     append([]api.Check{}, s.checks...),
		Peers:      []api.Peer{},
		Routes:     []api.Route{},
		Errors:     append([]string(nil), s.errs...),
		Reload:     s.reload,
		Pair:       pairStatus(s, now),
	}
	for _, r := range s.installed {
		st.Routes = append(st.Routes, api.Route{Prefix: r.Prefix.String(), NextHops: strs(r.NextHops)})
	}
	ipsecSt := ipsecStatus(s.ipsec)
	for _, t := range out.Tunnels {
		at := api.Tunnel{Name: t.Name, Carrying: t.Carrying, Reason: t.Reason, Flaps: t.Flaps, IPsec: ipsecSt[t.Name]}
		if t.HoldDown.After(now) {
			h := t.HoldDown.UTC()
			at.HoldDownUntil = &h
		}
		st.Tunnels = append(st.Tunnels, at)
	}
	for _, p := range s.sessions {
		var announced []bgp.Announcement
		if p.State == bgp.StateEstablished {
			announced = s.applied[p.Name]
		}
		ap := apiPeer(p, now, lists)
		ap.AnnouncedCount = len(announced)
		if lists {
			ap.Announced = make([]string, len(announced))
			for i, a := range announced {
				ap.Announced[i] = a.Prefix.String()
			}
		}
		if k, ok := s.bfdKeys[p.Name]; ok && s.bfd != nil {
			ap.BFD = bfdStatus(s.bfd, k)
		}
		st.Peers = append(st.Peers, ap)
	}
	return st, nil
}

func scopeName(ch config.Check) string {
	if ch.Scope == config.ScopeTunnel {
		return "tunnel:" + ch.Tunnel
	}
	return string(ch.Scope)
}

// apiPeer is a session for the API, without what it was announced (the
// caller adds it); lists false leaves the prefix lists out, counts only.
func apiPeer(p bgp.PeerStatus, now time.Time, lists bool) api.Peer {
	ap := api.Peer{
		Name: p.Name, Kind: string(p.Kind), Address: p.Address.String(), PeerASN: p.PeerASN,
		State: string(p.State), AdminDown: p.AdminDown, LastError: p.LastError,
		ReceivedCount: len(p.Received), RejectedCount: len(p.Rejected),
	}
	if lists {
		ap.Received = strs(model.Prefixes(p.Received))
		ap.Rejected = make([]string, 0, len(p.Rejected))
		for _, r := range p.Rejected {
			ap.Rejected = append(ap.Rejected, r.Prefix.String())
		}
	}
	for i, r := range p.Rejected {
		if ap.RejectedReasons == nil {
			ap.RejectedReasons = map[string]int{}
		}
		ap.RejectedReasons[string(r.Reason)]++
		if lists && i < api.MaxRejectedRoutes {
			ap.RejectedRoutes = append(ap.RejectedRoutes, api.RejectedRoute{
				Prefix: r.Prefix.String(), ASPath: model.PathString(r.ASPath), Reason: string(r.Reason), Detail: r.Detail,
			})
		}
	}
	if !p.Since.IsZero() {
		since := p.Since.UTC()
		ap.EstablishedSince = &since
		ap.UptimeSeconds = now.Sub(p.Since).Round(time.Millisecond).Seconds()
	}
	return ap
}
