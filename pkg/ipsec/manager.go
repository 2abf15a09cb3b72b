package ipsec

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/strongswan/govici/vici"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// Tunnel states.
const (
	StateUp         = "up"         // CHILD_SA installed, interface ready
	StateConnecting = "connecting" // an IKE_SA exists or is being initiated
	StateDown       = "down"
)

// Reconnection and initiation backoff bounds.
const (
	minReconnect = 100 * time.Millisecond
	maxReconnect = 2 * time.Second
	minRetry     = time.Second
	maxRetry     = 30 * time.Second
	// syncInterval bounds how long a dropped event can leave a state stale.
	syncInterval = time.Second
	// dropGrace is how long a tunnel that is up may look otherwise in
	// list-sas, without charon's event saying it went down, before it is
	// taken down: a rekey makes it look so for a moment (see settle).
	dropGrace = 2 * time.Second
	// pruneInterval is how often, in xfrm mode, the ESP states of the
	// tunnels' if_ids are checked against charon's CHILD_SAs (and first
	// thing after each connection to charon).
	pruneInterval = 30 * time.Second
)

// Status is one tunnel's state as bgpgw sees it.
type Status struct {
	Name      string
	State     string
	IKEState  string
	ChildSPIs []string
	Since     time.Time // zero until the first change
	Error     string    // why it is not up
	Rekeys    uint64
	Interface string
}

// Up reports whether the tunnel carries packets.
func (s Status) Up() bool { return s.State == StateUp }

// Tunnels is the data plane as the manager uses it (see DataPlane).
type Tunnels interface {
	Ensure(t config.Tunnel) error
	Remove(t config.Tunnel) error
	Close() error
	// PruneStates deletes the kernel's ESP states bound to ifIDs that are
	// not among known, charon's SPIs (xfrm mode).
	PruneStates(ifIDs []uint32, known []string) (int, error)
}

// Options configure a Manager.
type Options struct {
	Mode    config.IPsecMode
	Socket  string // charon's VICI socket
	Tunnels []config.Tunnel
	// Announce are the cloud-side prefixes (libipsec traffic selectors).
	Announce []netip.Prefix
	// DataPlane creates the tunnel interfaces and inside addresses; nil:
	// none (tests of the charon side only).
	DataPlane Tunnels
	Logger    *slog.Logger
	// OnChange is called, without blocking, after any tunnel's state changed.
	OnChange func()
}

type tunnelRun struct {
	cfg      config.Tunnel
	needLoad bool // configured since the last load (reload)
	st       Status
	loadErr  string // charon refused its key or connection
	initErr  string // the last initiation failed
	dpErr    string // its interface or address could not be set up
	inFlight bool
	backoff  time.Duration
	nextTry  time.Time
	// downEvent: charon said an IKE_SA or CHILD_SA of the tunnel went down
	// since the last sync; notUpSince: when list-sas first showed the tunnel,
	// still up, not up without such an event.
	downEvent  bool
	notUpSince time.Time
}

var errLost = errors.New("connection to charon lost")

type initResult struct {
	tunnel string
	err    error
}

// Manager keeps the configured tunnels loaded in charon and up, and
// reports their states. It survives charon restarts: it reconnects,
// reloads the connections and resyncs from list-sas; while charon is
// unreachable every tunnel is down, with the reason.
type Manager struct {
	opts     Options
	log      *slog.Logger
	initDone chan initResult
	inits    sync.WaitGroup
	kick     chan struct{} // SetTunnels has work for the connection

	mu       sync.Mutex
	tunnels  []*tunnelRun
	announce []netip.Prefix
	unload   []config.Tunnel // removed by SetTunnels, still in charon

	lastPrune time.Time // the connection goroutine's only
}

// New returns a manager for opts; Run starts it.
func New(opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: opts, log: log, initDone: make(chan initResult, 16), kick: make(chan struct{}, 1),
		announce: opts.Announce}
	for _, t := range opts.Tunnels {
		m.tunnels = append(m.tunnels, newRun(t))
	}
	return m
}

func newRun(t config.Tunnel) *tunnelRun {
	return &tunnelRun{cfg: t, needLoad: true,
		st: Status{Name: t.Name, State: StateDown, Error: "not connected to charon yet", Interface: t.Interface,
			Since: time.Now()}}
}

// sameTunnel reports whether a and b load the same connection into charon
// and use the same interface: other changes (the BGP session, BFD) leave the
// SA alone.
func sameTunnel(mode config.IPsecMode, a, b config.Tunnel) bool {
	same := a.Name == b.Name && a.LocalAddress == b.LocalAddress && a.RemoteAddress == b.RemoteAddress &&
		a.PSK.Reveal() == b.PSK.Reveal() && slices.Equal(a.IKEProposals, b.IKEProposals) &&
		slices.Equal(a.ESPProposals, b.ESPProposals) && a.InsideLocal == b.InsideLocal &&
		a.IfID == b.IfID && a.Interface == b.Interface
	if mode == config.IPsecLibipsec { // the accepted prefixes are remote traffic selectors
		same = same && reflect.DeepEqual(a.Accept, b.Accept)
	}
	return same
}

// Rebuild says why a reload from old to next rebuilds a tunnel (its SAs
// are re-created), or "" when charon does not touch it.
func Rebuild(mode config.IPsecMode, old, next config.Tunnel, announceChanged bool) string {
	switch {
	case !sameTunnel(mode, old, next):
		return "IKE, ESP, addresses or interface changed"
	case announceChanged && mode == config.IPsecLibipsec:
		return "announce changed: libipsec's traffic selectors include it"
	}
	return ""
}

// SetTunnels changes the configured tunnels (a reload): new ones are
// loaded and initiated, removed ones terminated and unloaded, changed ones
// reloaded and initiated again; the others are not touched.
func (m *Manager) SetTunnels(tunnels []config.Tunnel, announce []netip.Prefix) {
	m.mu.Lock()
	cur := map[string]*tunnelRun{}
	for _, t := range m.tunnels {
		cur[t.cfg.Name] = t
	}
	announceChanged := !slices.Equal(announce, m.announce)
	var next []*tunnelRun
	for _, t := range tunnels {
		old, ok := cur[t.Name]
		delete(cur, t.Name)
		switch {
		case !ok:
			next = append(next, newRun(t))
		case !sameTunnel(m.opts.Mode, old.cfg, t):
			// A changed tunnel is rebuilt; its interface too if that changed.
			if old.cfg.Interface != t.Interface || old.cfg.IfID != t.IfID || old.cfg.InsideLocal != t.InsideLocal {
				m.unload = append(m.unload, old.cfg)
			} else {
				m.unload = append(m.unload, config.Tunnel{Name: old.cfg.Name})
			}
			next = append(next, newRun(t))
		case announceChanged && m.opts.Mode == config.IPsecLibipsec:
			// libipsec traffic selectors include the announced prefixes.
			old.needLoad = true
			next = append(next, old)
		default:
			old.cfg = t // BGP or BFD settings: not charon's business
			next = append(next, old)
		}
	}
	for _, t := range cur {
		m.unload = append(m.unload, t.cfg)
	}
	m.tunnels, m.announce = next, slices.Clone(announce)
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Status returns every tunnel's state, in configuration order.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.tunnels))
	for _, t := range m.tunnels {
		s := t.st
		s.ChildSPIs = append([]string(nil), s.ChildSPIs...)
		out = append(out, s)
	}
	return out
}

// Run keeps the tunnels up until ctx ends, then terminates them, unloads
// them from charon and removes their interfaces.
func (m *Manager) Run(ctx context.Context) error {
	defer m.shutdown()
	retry := minReconnect
	for {
		start := time.Now()
		err := m.connected(ctx)
		if ctx.Err() != nil {
			return nil
		}
		m.lost(err)
		if time.Since(start) > 10*time.Second {
			retry = minReconnect
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		retry = min(retry*2, maxReconnect)
	}
}

// connected runs one connection to charon until it breaks or ctx ends.
func (m *Manager) connected(ctx context.Context) error {
	c, err := dial(m.opts.Socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ch := make(chan vici.Event, 64)
	ev, err := subscribe(m.opts.Socket, ch)
	if err != nil {
		return err
	}
	defer func() { _ = ev.Close() }()
	m.log.Info("connected to charon", "socket", m.opts.Socket)
	m.mu.Lock()
	for _, t := range m.tunnels {
		t.needLoad = true // charon may have restarted without them
	}
	m.mu.Unlock()
	m.lastPrune = time.Time{} // charon may have restarted, leaving its SAs in the kernel
	m.applyChanges(ctx, c)
	tick := time.NewTicker(syncInterval)
	defer tick.Stop()
	for {
		if err := m.sync(ctx, c); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-ch:
			if !ok {
				return errLost
			}
			m.event(e)
			for more := true; more; { // a burst of events makes one sync
				select {
				case e, ok := <-ch:
					if !ok {
						return errLost
					}
					m.event(e)
				default:
					more = false
				}
			}
		case r := <-m.initDone:
			m.initiated(r)
		case <-m.kick:
			m.applyChanges(ctx, c)
		case <-tick.C:
			m.applyChanges(ctx, c) // retries failed unloads; nothing to do otherwise
		}
	}
}

// applyChanges unloads the removed tunnels and loads the new ones.
func (m *Manager) applyChanges(ctx context.Context, c *charon) {
	m.mu.Lock()
	unload := m.unload
	m.unload = nil
	var load []*tunnelRun
	for _, t := range m.tunnels {
		if t.needLoad {
			load = append(load, t)
			t.needLoad = false // a SetTunnels during the load sets it again
		}
	}
	announce := m.announce
	m.mu.Unlock()
	for _, t := range unload {
		if err := c.unload(ctx, t.Name); err != nil {
			m.log.Warn("tunnel not unloaded from charon: will retry", "tunnel", t.Name, "reason", err.Error())
			m.mu.Lock()
			m.unload = append(m.unload, t)
			m.mu.Unlock()
			continue
		}
		m.log.Info("tunnel unloaded from charon", "tunnel", t.Name)
		if m.opts.DataPlane != nil && t.Interface != "" {
			if err := m.opts.DataPlane.Remove(t); err != nil {
				m.log.Warn("remove tunnel interface", "tunnel", t.Name, "reason", err.Error())
			}
		}
	}
	for _, t := range load {
		err := c.load(ctx, m.opts.Mode, announce, t.cfg)
		m.mu.Lock()
		t.loadErr = ""
		if err != nil {
			t.loadErr = err.Error()
		}
		m.mu.Unlock()
		if err != nil {
			m.log.Error("tunnel not loaded into charon", "tunnel", t.cfg.Name, "reason", err.Error())
		}
	}
}

// sync reads the SAs from charon, makes sure every tunnel's interface is
// ready, updates the states and starts the initiations that are due.
func (m *Manager) sync(ctx context.Context, c *charon) error {
	sas, err := c.listSAs(ctx, false)
	if err != nil {
		return err
	}
	now := time.Now()
	changed := false
	m.mu.Lock()
	for _, t := range m.tunnels {
		m.ensureInterface(t)
		state, ike, spis := tunnelState(sas[ConnName(t.cfg.Name)])
		if !m.settle(t, state, now) {
			continue
		}
		why := ""
		switch {
		case t.loadErr != "":
			state, why = StateDown, t.loadErr
		case t.dpErr != "":
			if state == StateUp {
				state = StateDown
			}
			why = t.dpErr
		case state == StateUp:
			t.initErr, t.backoff, t.nextTry = "", 0, time.Time{}
		case t.inFlight && state == StateDown:
			state = StateConnecting
		}
		if state != StateUp && why == "" {
			why = t.initErr
		}
		changed = m.update(t, now, state, ike, spis, why) || changed
	}
	m.mu.Unlock()
	m.initiateDue(ctx, now)
	if changed && m.opts.OnChange != nil {
		m.opts.OnChange()
	}
	m.pruneDue(ctx, c, now)
	return nil
}

// ensureInterface sets up the tunnel's interface and inside address,
// logging only changes of its error. Called with mu held.
func (m *Manager) ensureInterface(t *tunnelRun) {
	if m.opts.DataPlane == nil || t.needLoad { // not loaded yet: a reload may be replacing it
		return
	}
	msg := ""
	if err := m.opts.DataPlane.Ensure(t.cfg); err != nil {
		msg = "interface: " + err.Error()
	}
	if msg != t.dpErr {
		if msg != "" {
			m.log.Error("tunnel interface not ready", "tunnel", t.cfg.Name, "reason", msg)
		} else {
			m.log.Info("tunnel interface ready", "tunnel", t.cfg.Name, "interface", t.cfg.Interface)
		}
	}
	t.dpErr = msg
}

// update records a tunnel's new state; it reports whether the state
// changed. Called with mu held.
func (m *Manager) update(t *tunnelRun, now time.Time, state, ike string, spis []string, why string) bool {
	prev, prevWhy := t.st.State, t.st.Error
	if state == StateUp {
		why = ""
	}
	t.st.IKEState, t.st.ChildSPIs, t.st.Error = ike, spis, why
	changed := prev != state
	if changed {
		t.st.State, t.st.Since = state, now
	}
	switch {
	case changed && state == StateUp:
		m.log.Info("tunnel up", "tunnel", t.cfg.Name, "event", "child-sa-installed")
	case changed && state == StateConnecting:
		m.log.Info("tunnel connecting", "tunnel", t.cfg.Name, "event", "connecting")
	case state == StateDown && (changed || why != prevWhy):
		m.log.Warn("tunnel down", "tunnel", t.cfg.Name, "event", "down", "reason", why)
	}
	return changed
}

// initiateDue starts, each in its own goroutine and VICI session, the
// initiation of every tunnel that is down, loaded and past its backoff.
func (m *Manager) initiateDue(ctx context.Context, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tunnels {
		// An IKE_SA without its CHILD_SA (the peer refused the child, or
		// deleted it alone) gets the child initiated on it; an IKE_SA
		// being set up by the peer is left to finish.
		childless := t.st.State == StateConnecting && t.st.IKEState == "ESTABLISHED"
		if (t.st.State != StateDown && !childless) || t.loadErr != "" || t.needLoad || t.inFlight || now.Before(t.nextTry) {
			continue
		}
		t.inFlight = true
		name := t.cfg.Name
		m.inits.Add(1)
		go func() {
			defer m.inits.Done()
			r := initResult{tunnel: name, err: initiate(ctx, m.opts.Socket, name)}
			select {
			case m.initDone <- r:
			case <-ctx.Done():
			}
		}()
	}
}

func (m *Manager) initiated(r initResult) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.tunnels {
		if t.cfg.Name != r.tunnel {
			continue
		}
		t.inFlight = false
		if r.err == nil {
			t.initErr = ""
			continue
		}
		t.initErr = r.err.Error()
		if strings.Contains(t.initErr, "not found") {
			// Someone unloaded it from charon (swanctl --load-all unloads
			// what is not in its files): load it again at once.
			t.needLoad = true
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}
		t.backoff = min(max(t.backoff*2, minRetry), maxRetry)
		t.nextTry = time.Now().Add(t.backoff)
		m.log.Warn("tunnel initiation failed", "tunnel", t.cfg.Name, "reason", t.initErr, "retry_in", t.backoff)
	}
}

// lost marks every tunnel down because charon cannot be reached.
func (m *Manager) lost(err error) {
	why := err.Error()
	if !strings.Contains(why, "charon") {
		why = "charon: " + why
	}
	now := time.Now()
	changed := false
	m.mu.Lock()
	for _, t := range m.tunnels {
		changed = m.update(t, now, StateDown, "", nil, why) || changed
	}
	m.mu.Unlock()
	if changed && m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

// shutdown terminates and unloads the tunnels and removes their interfaces.
func (m *Manager) shutdown() {
	m.inits.Wait()
	if c, err := dial(m.opts.Socket); err != nil {
		m.log.Warn("tunnels not unloaded from charon", "reason", err.Error())
	} else {
		m.mu.Lock()
		names := make([]string, 0, len(m.tunnels)+len(m.unload))
		for _, t := range m.unload {
			names = append(names, t.Name)
		}
		for _, t := range m.tunnels {
			names = append(names, t.cfg.Name)
		}
		m.mu.Unlock()
		for _, name := range names {
			// Each its own budget: a terminate toward a dead peer takes
			// its full timeout and must not starve the others.
			ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
			err := c.unload(ctx, name)
			cancel()
			if err != nil {
				m.log.Warn("tunnel not unloaded from charon", "tunnel", name, "reason", err.Error())
			}
		}
		c.Close()
		m.log.Info("tunnels terminated and unloaded from charon", "count", len(names))
	}
	if m.opts.DataPlane != nil {
		if err := m.opts.DataPlane.Close(); err != nil {
			m.log.Warn("remove tunnel interfaces", "reason", err.Error())
		}
	}
}
