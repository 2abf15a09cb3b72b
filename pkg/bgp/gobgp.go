package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// GoBGP is the Speaker backed by an embedded GoBGP server.
type GoBGP struct {
	log    *slog.Logger
	s      *server.BgpServer
	global Global
	cancel context.CancelFunc

	mu      sync.Mutex
	peers   map[string]PeerConfig
	rib     map[netip.Prefix]*ribEntry // what has been applied, parked paths included
	holding map[string]bool            // peers with at least one prefix in rib
	// gateClosed are the peers whose gate is closed (park.go), with what
	// is left in their export sets behind it.
	gateClosed map[string][]netip.Prefix
	// held are the sessions to keep administratively down (name -> RFC
	// 8203 message, SetHeldDown); down, those that are (disabled, or
	// added down).
	held    map[string]string
	down    map[string]bool
	changed chan struct{}
	// pathTimer signals Changed again a moment after the last change of a
	// received route (see pathChanged).
	pathMu     sync.Mutex // not mu: the watcher's goroutine must not wait on SetAnnouncements
	pathTimer  *time.Timer
	pathClosed bool
	// The bookkeeping after a withdrawal, deferred (park.go).
	deferred     func() []error
	deferredErrs []error
	settleTimer  Stopper
	settleGen    int
	// clock times parking, the deferred bookkeeping and the sweeper
	// (pathTimer waits for GoBGP itself: real time).
	clock Clock
	// The sweeper of parked paths (park.go).
	parkFor    time.Duration
	sweepTimer Stopper
	sweeping   bool
	closed     bool
}

var _ Speaker = (*GoBGP)(nil)

// NewGoBGP starts an embedded GoBGP server with default-deny policies.
// GoBGP's own logs go to log at warning level and above. With
// g.GRPCListen set, GoBGP's gRPC API answers there once NewGoBGP returns,
// until Close.
func NewGoBGP(ctx context.Context, g Global, log *slog.Logger) (*GoBGP, error) {
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelWarn)
	opts := []server.ServerOption{server.LoggerOption(log.With("component", "gobgp"), lvl)}
	if g.GRPCListen != "" {
		if err := checkGRPCListen(g.GRPCListen); err != nil {
			return nil, err
		}
		opts = append(opts, server.GrpcListenAddress(g.GRPCListen))
	}
	s := server.NewBgpServer(opts...)
	go s.Serve()
	if g.GRPCListen != "" {
		if err := waitListening(ctx, g.GRPCListen, grpcStartTimeout); err != nil {
			s.Stop()
			return nil, fmt.Errorf("bgp.grpc_listen %s: GoBGP's gRPC API did not start: %w", g.GRPCListen, err)
		}
	}

	port := int32(g.ListenPort)
	if port == 0 {
		port = 179
	}
	var listen []string
	for _, a := range g.ListenAddresses {
		listen = append(listen, a.String())
	}
	if len(listen) == 0 {
		listen = []string{"0.0.0.0", "::"}
	}
	err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:             g.ASN,
		RouterId:        g.RouterID.String(),
		ListenPort:      port,
		ListenAddresses: listen,
	}})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("start BGP on port %d: %w", port, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	a := &GoBGP{
		log: log, s: s, global: g, cancel: cancel,
		peers:      map[string]PeerConfig{},
		rib:        map[netip.Prefix]*ribEntry{},
		gateClosed: map[string][]netip.Prefix{},
		held:       map[string]string{},
		down:       map[string]bool{},
		changed:    make(chan struct{}, 1),
		parkFor:    defaultParkFor,
		clock:      realClock{},
	}
	if err := a.applyPolicies(ctx); err != nil {
		a.Close()
		return nil, err
	}
	err = s.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(*apiutil.WatchEventMessage_PeerEvent, time.Time) { a.signal() },
		OnPathUpdate: func([]*apiutil.Path, time.Time) { a.pathChanged() },
	}, server.WatchPeer(), server.WatchPostUpdate(false, "", ""))
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("watch BGP events: %w", err)
	}
	return a, nil
}

// pathSettle is how long after a received route's event its path is
// surely in the Loc-RIB.
const pathSettle = 20 * time.Millisecond

// pathChanged signals a received route's change now and again pathSettle
// after the last one: GoBGP v4 sends the post-policy event before it
// updates the Loc-RIB (server.propagateUpdate), and Sessions takes a route
// as accepted only once it is there; a pass that reads it too early would
// miss it until the next change or resync.
func (a *GoBGP) pathChanged() {
	a.signal()
	a.pathMu.Lock()
	defer a.pathMu.Unlock()
	if a.pathClosed {
		return
	}
	if a.pathTimer == nil {
		a.pathTimer = time.AfterFunc(pathSettle, a.signal)
		return
	}
	a.pathTimer.Reset(pathSettle)
}

func (a *GoBGP) signal() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// Changed implements Speaker.
func (a *GoBGP) Changed() <-chan struct{} { return a.changed }

// Close implements Speaker.
func (a *GoBGP) Close() {
	a.mu.Lock()
	a.closed = true
	if a.sweepTimer != nil {
		a.sweepTimer.Stop()
	}
	if a.settleTimer != nil {
		a.settleTimer.Stop()
	}
	a.mu.Unlock()
	a.pathMu.Lock()
	a.pathClosed = true
	if a.pathTimer != nil {
		a.pathTimer.Stop()
	}
	a.pathMu.Unlock()
	a.cancel()
	a.s.Stop()
}

// SetPeers implements Speaker.
func (a *GoBGP) SetPeers(ctx context.Context, peers []PeerConfig) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runDeferred() // the policy is rebuilt from the applied state
	want := map[string]PeerConfig{}
	for _, p := range peers {
		want[p.Name] = p
	}
	var errs []error
	// Remove peers that are gone or changed, before the policy forgets them.
	for _, name := range sortedKeys(a.peers) {
		cur := a.peers[name]
		if w, ok := want[name]; ok && w.Equal(cur) {
			continue
		}
		if err := a.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: cur.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: remove: %w", name, err))
		}
		delete(a.peers, name)
		delete(a.down, name)
		if _, stays := want[name]; !stays {
			a.forgetPeer(name)
		}
	}
	added := false
	for _, name := range sortedKeys(want) {
		if _, ok := a.peers[name]; !ok {
			added = true
		}
	}
	if !added && len(errs) == 0 {
		return nil
	}
	// The policy names each peer: install it before the new sessions can
	// exchange anything, so no route passes without it.
	next := map[string]PeerConfig{}
	for name, p := range a.peers {
		next[name] = p
	}
	for name, p := range want {
		next[name] = p
	}
	prev := a.peers
	a.peers = next
	if err := a.applyPolicies(ctx); err != nil {
		a.peers = prev
		return errors.Join(append(errs, err)...)
	}
	for _, name := range sortedKeys(want) {
		if _, ok := prev[name]; ok {
			continue
		}
		p := want[name]
		_, held := a.held[name] // a session held down starts down
		if err := a.s.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, held)}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s (%s): add: %w", name, p.Address, err))
			delete(a.peers, name)
			continue
		}
		if held {
			a.down[name] = true
		}
	}
	return errors.Join(errs...)
}

// forgetPeer drops a removed peer from the applied state: its paths that
// nobody else has are then unwanted like any other (parked at the next
// update). Caller holds a.mu.
func (a *GoBGP) forgetPeer(name string) {
	for _, e := range a.rib {
		delete(e.peers, name)
	}
	delete(a.holding, name)
	delete(a.gateClosed, name)
}

func apiPeer(p PeerConfig, adminDown bool) *api.Peer {
	fam := familyOf(p.Address)
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.PeerASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
			AdminDown:       adminDown,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               uint64(p.HoldTime / time.Second),
			KeepaliveInterval:      uint64(p.Keepalive / time.Second),
			ConnectRetry:           uint64(p.ConnectRetry / time.Second),
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{},
		AfiSafis: []*api.AfiSafi{{
			Config:       &api.AfiSafiConfig{Family: fam, Enabled: true},
			PrefixLimits: &api.PrefixLimit{Family: fam, MaxPrefixes: p.MaxPrefixes},
		}},
		// Graceful restart would keep a dead peer's routes as stale: the
		// opposite of fast withdrawal. Off on every session.
		GracefulRestart: &api.GracefulRestart{Enabled: false},
	}
	if p.LocalAddress.IsValid() {
		ap.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.Port != 0 {
		ap.Transport.RemotePort = uint32(p.Port)
	}
	if p.MultihopTTL > 1 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.MultihopTTL)}
	} else {
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	return ap
}

func familyOf(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// Reset implements Speaker.
func (a *GoBGP) Reset(ctx context.Context, peer, message string) error {
	a.mu.Lock()
	p, ok := a.peers[peer]
	down := a.down[peer]
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("peer %s: not configured", peer)
	}
	if down {
		return nil // held down: already closed
	}
	// Only an established session is reset: GoBGP queues the Cease for the
	// Established state, so sent now it would kill the next session.
	established := false
	err := a.s.ListPeer(ctx, &api.ListPeerRequest{Address: p.Address.String()}, func(ap *api.Peer) {
		established = ap.State != nil && ap.State.SessionState == api.PeerState_SESSION_STATE_ESTABLISHED
	})
	if err != nil || !established {
		return err
	}
	if err := a.s.ResetPeerCease(ctx, p.Address.String(), bgp.BGP_ERROR_SUB_BFD_DOWN, message); err != nil {
		return fmt.Errorf("peer %s: reset: %w", peer, err)
	}
	return nil
}

// Status implements Speaker.
func (a *GoBGP) Status(ctx context.Context) ([]PeerStatus, error) {
	return a.status(ctx, true)
}

// Sessions implements Speaker.
func (a *GoBGP) Sessions(ctx context.Context) ([]PeerStatus, error) {
	return a.status(ctx, false)
}

func (a *GoBGP) status(ctx context.Context, announced bool) ([]PeerStatus, error) {
	a.mu.Lock()
	byAddr := map[string]PeerConfig{}
	for _, p := range a.peers {
		byAddr[p.Address.String()] = p
	}
	a.mu.Unlock()

	var out []PeerStatus
	err := a.s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil {
			return
		}
		cfg, ok := byAddr[p.Conf.NeighborAddress]
		if !ok {
			return
		}
		st := PeerStatus{
			Name: cfg.Name, Kind: cfg.Kind, Address: cfg.Address, PeerASN: cfg.PeerASN,
			State:     sessionState(p.State.SessionState),
			AdminDown: p.State.AdminState != api.PeerState_ADMIN_STATE_UP,
		}
		if p.State.DisconnectReason != api.PeerState_DISCONNECT_REASON_UNSPECIFIED {
			st.LastError = p.State.DisconnectMessage
		}
		if p.State.AdminState == api.PeerState_ADMIN_STATE_PFX_CT {
			st.LastError = fmt.Sprintf("maximum prefix count (%d) exceeded; session held down", cfg.MaxPrefixes)
		}
		if st.State == StateEstablished && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			st.Since = p.Timers.State.Uptime.AsTime()
		}
		out = append(out, st)
	})
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	for i := range out {
		st := &out[i]
		if st.State != StateEstablished {
			continue
		}
		fam := bgp.RF_IPv4_UC
		if st.Address.Is6() {
			fam = bgp.RF_IPv6_UC
		}
		if announced {
			list, err := a.listAdj(st.Address, fam, api.TableType_TABLE_TYPE_ADJ_OUT)
			if err != nil {
				return nil, fmt.Errorf("peer %s: %w", st.Name, err)
			}
			st.Announced = list
		}
		received, err := a.listAdjIn(st.Address, fam)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", st.Name, err)
		}
		accepted, err := a.accepted(st.Address, model.Prefixes(received))
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", st.Name, err)
		}
		im := a.importOf(st.Name)
		for _, r := range received {
			if _, ok := slices.BinarySearchFunc(accepted, r.Prefix, comparePrefix); ok {
				st.Received = append(st.Received, r)
				continue
			}
			why, ok := im.Check(r.Prefix, r.ASPath)
			if !ok {
				why = filter.Rejection{Reason: filter.Other, Detail: "refused by the BGP speaker"}
			}
			st.Rejected = append(st.Rejected, RejectedRoute{Learned: r, Rejection: why})
		}
	}
	slices.SortFunc(out, func(x, y PeerStatus) int {
		if x.Kind != y.Kind {
			if x.Kind == KindTunnel {
				return -1
			}
			return 1
		}
		return cmpString(x.Name, y.Name)
	})
	return out, nil
}

// accepted are the prefixes of candidates (what a peer sent) that hold a
// path from that peer in the Loc-RIB: that leaves out both what the import
// policy refused and what GoBGP dropped for an AS loop (which its filtered
// Adj-RIB-In listing does not flag). The Loc-RIB is looked up prefix by
// prefix, not walked: it holds bgpgw's own paths too, 10,000 of them maybe.
func (a *GoBGP) accepted(peer netip.Addr, candidates []netip.Prefix) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v6 := range []bool{false, true} {
		fam := bgp.RF_IPv4_UC
		if v6 {
			fam = bgp.RF_IPv6_UC
		}
		var lookup []*apiutil.LookupPrefix
		for _, c := range candidates {
			if c.Addr().Is6() == v6 {
				lookup = append(lookup, &apiutil.LookupPrefix{Prefix: c.String(), LookupOption: apiutil.LOOKUP_EXACT})
			}
		}
		if len(lookup) == 0 {
			continue
		}
		err := a.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam, Prefixes: lookup},
			func(nlri bgp.NLRI, paths []*apiutil.Path) {
				pfx, ok := nlriPrefix(nlri)
				if !ok {
					return
				}
				for _, p := range paths {
					if !p.Withdrawal && p.PeerAddress == peer {
						out = append(out, pfx)
					}
				}
			})
		if err != nil {
			return nil, fmt.Errorf("look up the RIB: %w", err)
		}
	}
	return sortedUnique(out), nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// importOf is a peer's import policy as filter states it (the GoBGP policy
// is built from the same rules), to explain what the peer was refused.
func (a *GoBGP) importOf(peer string) filter.Import {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.peers[peer]
	return filter.Import{Never: a.global.Never, Accept: p.Accept, LocalAS: a.global.ASN, MaxASPath: p.MaxASPath}
}

// listAdjIn lists a peer's Adj-RIB-In: each route as received, sorted by prefix.
func (a *GoBGP) listAdjIn(addr netip.Addr, fam bgp.Family) ([]model.Learned, error) {
	var out []model.Learned
	err := a.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: addr.String(), Family: fam},
		func(nlri bgp.NLRI, paths []*apiutil.Path) {
			pfx, ok := nlriPrefix(nlri)
			if !ok {
				return
			}
			for _, p := range paths {
				if !p.Withdrawal {
					out = append(out, learnedOf(pfx, p.Attrs))
					return
				}
			}
		})
	slices.SortFunc(out, func(x, y model.Learned) int { return comparePrefix(x.Prefix, y.Prefix) })
	return slices.CompactFunc(out, func(x, y model.Learned) bool { return x.Prefix == y.Prefix }), err
}

// learnedOf is a received route in bgpgw's terms: its AS path (4-octet
// ASNs; AS_CONFED segments, which no eBGP peer may send, are left out) and
// its standard communities.
func learnedOf(pfx netip.Prefix, attrs []bgp.PathAttributeInterface) model.Learned {
	l := model.Learned{Prefix: pfx}
	for _, at := range attrs {
		switch v := at.(type) {
		case *bgp.PathAttributeAsPath:
			for _, seg := range v.Value {
				switch seg.GetType() {
				case bgp.BGP_ASPATH_ATTR_TYPE_SEQ, bgp.BGP_ASPATH_ATTR_TYPE_SET:
					l.ASPath = append(l.ASPath, model.ASSegment{Set: seg.GetType() == bgp.BGP_ASPATH_ATTR_TYPE_SET, ASNs: slices.Clone(seg.GetAS())})
				}
			}
		case *bgp.PathAttributeCommunities:
			l.Communities = slices.Sorted(slices.Values(v.Value))
		}
	}
	return l
}

// listAdj lists the prefixes of a peer's Adj-RIB-In or Adj-RIB-Out.
func (a *GoBGP) listAdj(addr netip.Addr, fam bgp.Family, tt api.TableType) ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := a.s.ListPath(apiutil.ListPathRequest{TableType: tt, Name: addr.String(), Family: fam},
		func(nlri bgp.NLRI, paths []*apiutil.Path) {
			pfx, ok := nlriPrefix(nlri)
			if !ok {
				return
			}
			for _, p := range paths {
				if !p.Withdrawal {
					out = append(out, pfx)
					return
				}
			}
		})
	return sortedUnique(out), err
}

func sortedUnique(l []netip.Prefix) []netip.Prefix {
	slices.SortFunc(l, comparePrefix)
	return slices.Compact(l)
}

func nlriPrefix(n bgp.NLRI) (netip.Prefix, bool) {
	if p, ok := n.(*bgp.IPAddrPrefix); ok {
		return p.Prefix, true
	}
	return netip.Prefix{}, false
}

func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_SESSION_STATE_CONNECT:
		return StateConnect
	case api.PeerState_SESSION_STATE_ACTIVE:
		return StateActive
	case api.PeerState_SESSION_STATE_OPENSENT:
		return StateOpenSent
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

// grpcStartTimeout bounds the wait for GoBGP's gRPC listener.
const grpcStartTimeout = 5 * time.Second

// checkGRPCListen refuses an address that is not loopback (the API has no
// authentication) and one that cannot be bound. GoBGP binds the address on
// a goroutine of its own and only logs a failure, so a busy port would
// otherwise go unnoticed.
func checkGRPCListen(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("bgp.grpc_listen %q: want ADDRESS:PORT: %w", addr, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("bgp.grpc_listen %s: not a loopback address: GoBGP's gRPC API has no authentication", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bgp.grpc_listen %s: %w", addr, err)
	}
	return l.Close()
}

// waitListening waits until a TCP connection to addr is accepted.
func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
