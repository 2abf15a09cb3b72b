package pair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and limits of Config.
const (
	defaultRefresh = 500 * time.Millisecond
	receivedCap    = 16
)

var defaultRepeat = []time.Duration{5 * time.Millisecond, 20 * time.Millisecond}

// Config configures a Channel.
type Config struct {
	Self    string         // our instance name (messages claiming this name are dropped: reflection)
	Partner string         // partner's instance name, "" = accept any name other than Self
	Local   netip.AddrPort // bind address (our cloud-side address and the port)
	Remote  netip.AddrPort // partner's address and port
	Key     []byte         // shared key, >= 16 bytes; never logged, never in errors
	Refresh time.Duration  // resend the current state this often (0: 500ms)
	// Repeat: after a change, send again at these offsets (positive,
	// ascending) for loss. nil: 5ms, 20ms; an empty non-nil slice: none.
	Repeat []time.Duration
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now (for the epoch only)
}

// Counters are totals since New.
type Counters struct {
	Sent        uint64 // datagrams written to the socket
	Received    uint64 // messages accepted (delivered on Received or dropped there as the oldest)
	SendErrors  uint64 // states that would not encode, and failed writes
	BadAuth     uint64 // datagrams whose MAC did not verify
	Replayed    uint64 // verified messages not newer than the last accepted one
	Malformed   uint64 // datagrams failing Decode other than by MAC (short, version, malformed)
	WrongSender uint64 // datagrams from another address, or naming Self or not naming Partner
}

// Channel is the state channel to the partner. Create it with New, run it
// with Run, and feed it with Send; read the partner's word from Received
// or Last.
type Channel struct {
	self, partner string
	local, remote netip.AddrPort
	remoteAddr    netip.Addr // remote's address without zone, for the source check
	key           []byte
	refresh       time.Duration
	repeat        []time.Duration
	log           *slog.Logger
	epoch         uint64

	received chan Message
	changed  chan struct{} // size 1: transmit now (state changed, or partner restarted)
	running  atomic.Bool

	sent, recvd, sendErrors, badAuth, replayed, malformed, wrongSender atomic.Uint64

	mu       sync.Mutex
	state    State // immutable once stored: Send replaces it, never edits it
	hasState bool
	seq      uint64
	last     Message
	lastAt   time.Time
	hasLast  bool

	window Window // the read goroutine's alone
}

// New validates cfg and returns a Channel; it binds nothing (Run does).
// Its epoch is Now().UnixNano() at this call.
func New(cfg Config) (*Channel, error) {
	if err := checkName("self", cfg.Self); err != nil {
		return nil, err
	}
	if cfg.Partner != "" {
		if err := checkName("partner", cfg.Partner); err != nil {
			return nil, err
		}
		if cfg.Partner == cfg.Self {
			return nil, fmt.Errorf("pair: config: partner name %q is our own name", cfg.Partner)
		}
	}
	local := netip.AddrPortFrom(cfg.Local.Addr().Unmap(), cfg.Local.Port())
	remote := netip.AddrPortFrom(cfg.Remote.Addr().Unmap(), cfg.Remote.Port())
	if !local.IsValid() || local.Port() == 0 {
		return nil, fmt.Errorf("pair: config: local address %q needs an address and a port", cfg.Local)
	}
	if !remote.IsValid() || remote.Port() == 0 || remote.Addr().IsUnspecified() {
		return nil, fmt.Errorf("pair: config: remote address %q needs an address and a port", cfg.Remote)
	}
	if local.Addr().Is4() != remote.Addr().Is4() {
		return nil, fmt.Errorf("pair: config: local %s and remote %s are of different address families", local, remote)
	}
	if len(cfg.Key) < minKeyLen {
		return nil, fmt.Errorf("pair: config: key of %d bytes, want at least %d", len(cfg.Key), minKeyLen)
	}
	refresh := cfg.Refresh
	switch {
	case refresh < 0:
		return nil, fmt.Errorf("pair: config: refresh %s is negative", refresh)
	case refresh == 0:
		refresh = defaultRefresh
	}
	repeat := cfg.Repeat
	if repeat == nil {
		repeat = defaultRepeat
	}
	for i, d := range repeat {
		if d <= 0 || i > 0 && d <= repeat[i-1] {
			return nil, fmt.Errorf("pair: config: repeat offsets %v must be positive and ascending", repeat)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Channel{
		self:       cfg.Self,
		partner:    cfg.Partner,
		local:      local,
		remote:     remote,
		remoteAddr: remote.Addr().WithZone(""),
		key:        slices.Clone(cfg.Key),
		refresh:    refresh,
		repeat:     slices.Clone(repeat),
		log:        log,
		epoch:      uint64(max(now().UnixNano(), 0)),
		received:   make(chan Message, receivedCap),
		changed:    make(chan struct{}, 1),
	}, nil
}

func checkName(field, name string) error {
	if n := len(name); n < 1 || n > maxInstance {
		return fmt.Errorf("pair: config: %s name of %d bytes, want 1..%d", field, n, maxInstance)
	}
	return nil
}

// Run binds the UDP socket and runs until ctx ends; then it closes the
// socket, waits for its goroutines and returns nil. It returns an error
// when it cannot bind ("pair: listen 10.10.1.1:7784: bind: address already
// in use"), or when the Channel is already running. Run may be called
// again after it returns: the epoch stays and Seq goes on counting.
func (c *Channel) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("pair: channel already running")
	}
	defer c.running.Store(false)
	network := "udp4"
	if !c.local.Addr().Is4() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(c.local))
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err // drop the repeated "listen udp4 ADDR:" prefix
		}
		return fmt.Errorf("pair: listen %s: %w", c.local, err)
	}
	c.log.Info("pair: channel up", "local", c.local, "remote", c.remote, "epoch", c.epoch)
	var wg sync.WaitGroup
	wg.Go(func() { c.readLoop(conn) })
	c.sendLoop(ctx, conn) // returns when ctx ends
	err = conn.Close()    // ends readLoop
	wg.Wait()
	c.log.Info("pair: channel down", "local", c.local)
	if err != nil {
		c.log.Warn("pair: close socket", "err", err)
	}
	return nil
}

// Send sets the state we advertise. Instance is always set to Config.Self,
// and Devices and Carrying are copied, sorted and freed of duplicates. If
// the result differs from the last state it is transmitted at once, then
// at the Repeat offsets, and anyway every Refresh. A state that still does
// not encode (a name too long, a carrying device that is not a device, too
// many devices) is not transmitted: each attempt counts a SendError and is
// logged at Error level at most once per second, and the partner hears
// nothing until a valid state is set. Send is safe from any goroutine and
// never blocks on the network; before Run it only records the state.
func (c *Channel) Send(s State) {
	s = State{
		Instance: c.self,
		Devices:  sortedSet(s.Devices),
		Carrying: sortedSet(s.Carrying),
		Draining: s.Draining,
		ChecksOK: s.ChecksOK,
		Drops:    s.Drops,
	}
	c.mu.Lock()
	same := c.hasState && sameState(c.state, s)
	if !same {
		c.state, c.hasState = s, true
	}
	c.mu.Unlock()
	if !same {
		c.kick()
	}
}

func sortedSet(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	names = slices.Clone(names)
	slices.Sort(names)
	return slices.Compact(names)
}

func sameState(a, b State) bool {
	return a.Instance == b.Instance && a.Draining == b.Draining && a.ChecksOK == b.ChecksOK && a.Drops == b.Drops &&
		slices.Equal(a.Devices, b.Devices) && slices.Equal(a.Carrying, b.Carrying)
}

// kick asks the sender for an immediate transmission with repeats.
func (c *Channel) kick() {
	select {
	case c.changed <- struct{}{}:
	default: // one is pending already; it will send the newest state
	}
}

// Received delivers every accepted message from the partner, in order. Its
// buffer holds 16; when it is full the OLDEST pending message is dropped,
// so the newest is always delivered. The channel is never closed.
func (c *Channel) Received() <-chan Message {
	return c.received
}

// Counters returns totals since New.
func (c *Channel) Counters() Counters {
	return Counters{
		Sent:        c.sent.Load(),
		Received:    c.recvd.Load(),
		SendErrors:  c.sendErrors.Load(),
		BadAuth:     c.badAuth.Load(),
		Replayed:    c.replayed.Load(),
		Malformed:   c.malformed.Load(),
		WrongSender: c.wrongSender.Load(),
	}
}

// Last returns the newest accepted message and when it arrived (by
// time.Now, with its monotonic reading); ok is false if none yet. The
// message is a copy the caller may keep and change.
func (c *Channel) Last() (m Message, at time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m = c.last
	m.Devices = slices.Clone(m.Devices)
	m.Carrying = slices.Clone(m.Carrying)
	return m, c.lastAt, c.hasLast
}
