// Package bgppeer is a raw BGP-4 speaker for tests: an on-prem router that
// misbehaves on purpose.
//
// Dial opens one TCP connection to a BGP speaker (bgpgw), from inside a lab
// network namespace if asked, with the IP TTL (IPv6 hop limit) at 255 for
// GTSM (RFC 5082) and TCP-MD5 (RFC 2385) when given a key. It sends an OPEN
// (4-octet AS numbers, IPv4 and IPv6 unicast), answers with KEEPALIVEs, and
// sends whatever UPDATE the test gives it, byte-exact, built with GoBGP's
// packet library (BuildUpdate and BuildWithdraw build the usual ones; Send
// takes any message, SendRaw any bytes). It filters nothing it sends and
// checks nothing it receives: it records every message the other side sends
// (Messages), keeps the routes announced to it (RIB; Ever has every prefix
// ever announced, withdrawn since or not) and the NOTIFICATION that ended
// the session (Notification).
//
// It is not a BGP implementation: no route selection, no hold timer of its
// own (the session ends when the other side ends it, or at Close), no
// ROUTE-REFRESH, no collision detection: it connects, it never listens.
package bgppeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config is one session.
type Config struct {
	// Netns is the network namespace to open the connection from, by its
	// `ip netns` name (lab.Netns.Name()); "" for the caller's. The socket
	// stays in that namespace for its whole life.
	Netns string
	// Local is the source address; the zero value lets the kernel choose.
	Local netip.Addr
	// Remote is the speaker's address and port (179).
	Remote   netip.AddrPort
	ASN      uint32
	RouterID netip.Addr // IPv4
	// HoldTime is the hold time offered in the OPEN (default 90 s); the
	// session runs with the smaller of the two offers.
	HoldTime time.Duration
	// Password is the TCP-MD5 key (RFC 2385); "" for none. It is never
	// printed.
	Password string
	// TTL is the IP TTL or IPv6 hop limit of every packet (default 255).
	TTL int
	// Families are the multiprotocol capabilities offered (default IPv4
	// and IPv6 unicast).
	Families []bgp.Family
}

// String describes the session without its TCP-MD5 key.
func (c Config) String() string {
	key := "none"
	if c.Password != "" {
		key = "(redacted)"
	}
	return fmt.Sprintf("AS %d %v -> %v (netns %q, TTL %d, TCP-MD5 key %s)", c.ASN, c.Local, c.Remote, c.Netns, c.TTL, key)
}

// GoString is String: %#v does not print the key either.
func (c Config) GoString() string { return c.String() }

func (c Config) withDefaults() Config {
	if c.HoldTime == 0 {
		c.HoldTime = 90 * time.Second
	}
	if c.TTL == 0 {
		c.TTL = 255
	}
	if c.Families == nil {
		c.Families = []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC}
	}
	return c
}

// Speaker is one established session.
type Speaker struct {
	cfg  Config
	conn net.Conn
	// Hold is the negotiated hold time (0: none, no KEEPALIVEs).
	Hold time.Duration
	// PeerOpen is the other side's OPEN.
	PeerOpen *bgp.BGPOpen

	wmu sync.Mutex // one message at a time on the wire

	mu    sync.Mutex
	msgs  []Message
	rib   map[netip.Prefix]Path
	ever  map[netip.Prefix]bool
	notif *bgp.BGPNotification
	err   error // why the session ended

	done      chan struct{} // closed when the session has ended
	stop      chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Dial connects to cfg.Remote (from cfg.Netns) and brings the session to
// Established: OPEN, KEEPALIVE. ctx bounds the connection and the exchange.
func Dial(ctx context.Context, cfg Config) (*Speaker, error) {
	cfg = cfg.withDefaults()
	conn, err := dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bgppeer: connect to %s: %w", cfg.Remote, err)
	}
	s, err := Open(ctx, conn, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return s, nil
}

func dial(ctx context.Context, cfg Config) (net.Conn, error) {
	remote := cfg.Remote.Addr().Unmap()
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = sockopts(int(fd), remote, cfg) })
		return errors.Join(err, serr)
	}}
	if cfg.Local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: cfg.Local.AsSlice()}
	}
	addr := netip.AddrPortFrom(remote, cfg.Remote.Port()).String()
	if cfg.Netns == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	return inNetns(cfg.Netns, func() (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) })
}

// inNetns runs fn on an OS thread that has entered the named namespace, so
// the sockets fn creates belong to it, then brings the thread back. A
// thread that cannot come back stays locked to its goroutine and ends with
// it, so no other goroutine ever runs in the wrong namespace.
func inNetns(name string, fn func() (net.Conn, error)) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("netns %s: %w", name, err)}
			return
		}
		defer target.Close()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter netns %s: %w", name, err)}
			return
		}
		c, err := fn()
		if rerr := netns.Set(orig); rerr != nil {
			if c != nil {
				_ = c.Close()
			}
			ch <- result{err: fmt.Errorf("back from netns %s: %w", name, rerr)}
			return // still locked: the thread exits with this goroutine
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// sockopts sets the TTL (hop limit) and the TCP-MD5 key before connect.
func sockopts(fd int, remote netip.Addr, cfg Config) error {
	var err error
	if remote.Is4() {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, cfg.TTL)
	} else {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, cfg.TTL)
	}
	if err != nil {
		return fmt.Errorf("set TTL %d: %w", cfg.TTL, err)
	}
	if cfg.Password == "" {
		return nil
	}
	if len(cfg.Password) > unix.TCP_MD5SIG_MAXKEYLEN {
		return fmt.Errorf("TCP-MD5 key of %d bytes, at most %d", len(cfg.Password), unix.TCP_MD5SIG_MAXKEYLEN)
	}
	sig := unix.TCPMD5Sig{Keylen: uint16(len(cfg.Password))}
	copy(sig.Key[:], cfg.Password)
	// The peer's address, as a sockaddr_in(6) after the family field.
	if remote.Is4() {
		sig.Addr.Family = unix.AF_INET
		a := remote.As4()
		copy(sig.Addr.Data[2:6], a[:])
	} else {
		sig.Addr.Family = unix.AF_INET6
		a := remote.As16()
		copy(sig.Addr.Data[6:22], a[:])
	}
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		return fmt.Errorf("set TCP-MD5 key: %w", err)
	}
	return nil
}

// Open runs the session over an established connection: it sends the
// OPEN, reads the other side's, sends a KEEPALIVE and waits for one. On
// success the session runs until the other side ends it or Close; on an
// error the caller closes conn.
func Open(ctx context.Context, conn net.Conn, cfg Config) (*Speaker, error) {
	cfg = cfg.withDefaults()
	s := &Speaker{cfg: cfg, conn: conn, rib: map[netip.Prefix]Path{}, ever: map[netip.Prefix]bool{},
		done: make(chan struct{}), stop: make(chan struct{})}
	open, err := s.openMessage()
	if err != nil {
		return nil, err
	}
	if err := s.Send(open); err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	m, err := s.expect(bgp.BGP_MSG_OPEN)
	if err != nil {
		return nil, err
	}
	s.PeerOpen = m.Msg.Body.(*bgp.BGPOpen)
	s.Hold = min(cfg.HoldTime, time.Duration(s.PeerOpen.HoldTime)*time.Second)
	if err := s.Send(bgp.NewBGPKeepAliveMessage()); err != nil {
		return nil, err
	}
	if _, err := s.expect(bgp.BGP_MSG_KEEPALIVE); err != nil {
		return nil, err
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	s.wg.Add(2)
	go s.read()
	go s.keepalive()
	return s, nil
}

func (s *Speaker) openMessage() (*bgp.BGPMessage, error) {
	caps := []bgp.ParameterCapabilityInterface{}
	for _, f := range s.cfg.Families {
		caps = append(caps, bgp.NewCapMultiProtocol(f))
	}
	caps = append(caps, bgp.NewCapFourOctetASNumber(s.cfg.ASN))
	myAS := uint16(bgp.AS_TRANS)
	if s.cfg.ASN <= 0xffff {
		myAS = uint16(s.cfg.ASN)
	}
	hold := uint16(s.cfg.HoldTime / time.Second)
	open, err := bgp.NewBGPOpenMessage(myAS, hold, s.cfg.RouterID,
		[]bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		return nil, fmt.Errorf("bgppeer: OPEN (router ID %v): %w", s.cfg.RouterID, err)
	}
	return open, nil
}

// expect reads the next message during the exchange of OPENs and records
// it; anything but typ is an error.
func (s *Speaker) expect(typ uint8) (Message, error) {
	m, err := readMessage(s.conn)
	if err != nil {
		return m, fmt.Errorf("bgppeer: waiting for message type %d: %w", typ, err)
	}
	s.record(m)
	switch {
	case m.ParseErr != nil:
		return m, fmt.Errorf("bgppeer: message type %d: %w", m.Type, m.ParseErr)
	case m.Type == bgp.BGP_MSG_NOTIFICATION:
		n := m.Msg.Body.(*bgp.BGPNotification)
		return m, fmt.Errorf("bgppeer: NOTIFICATION %d/%d (%s) waiting for message type %d", n.ErrorCode, n.ErrorSubcode, n.Data, typ)
	case m.Type != typ:
		return m, fmt.Errorf("bgppeer: message type %d, want %d", m.Type, typ)
	}
	return m, nil
}

// read records every message until the connection ends.
func (s *Speaker) read() {
	defer s.wg.Done()
	for {
		m, err := readMessage(s.conn)
		if err != nil {
			s.end(fmt.Errorf("bgppeer: connection: %w", err))
			return
		}
		s.record(m)
		if m.Type == bgp.BGP_MSG_NOTIFICATION && m.Msg != nil {
			n := m.Msg.Body.(*bgp.BGPNotification)
			s.end(fmt.Errorf("bgppeer: NOTIFICATION %d/%d received", n.ErrorCode, n.ErrorSubcode))
			return
		}
	}
}

func (s *Speaker) keepalive() {
	defer s.wg.Done()
	if s.Hold <= 0 {
		return
	}
	t := time.NewTicker(s.Hold / 3)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Send(bgp.NewBGPKeepAliveMessage()); err != nil {
				s.end(err)
				return
			}
		}
	}
}

// end marks the session ended (the first reason wins) and closes the
// connection.
func (s *Speaker) end(err error) {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		s.err = err
		close(s.done)
	}
	s.mu.Unlock()
	_ = s.conn.Close()
}

func (s *Speaker) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	if m.Msg == nil {
		return
	}
	switch b := m.Msg.Body.(type) {
	case *bgp.BGPNotification:
		s.notif = b
	case *bgp.BGPUpdate:
		ann, wd := DecodeUpdate(b)
		for _, p := range wd {
			delete(s.rib, p)
		}
		for _, p := range ann {
			s.rib[p.Prefix] = p
			s.ever[p.Prefix] = true
		}
	}
}

// Send writes messages to the session as GoBGP serializes them.
func (s *Speaker) Send(msgs ...*bgp.BGPMessage) error {
	for _, m := range msgs {
		b, err := m.Serialize()
		if err != nil {
			return fmt.Errorf("bgppeer: serialize message type %d: %w", m.Header.Type, err)
		}
		if err := s.SendRaw(b); err != nil {
			return err
		}
	}
	return nil
}

// SendRaw writes bytes to the session as they are: one message, or a
// malformed one.
func (s *Speaker) SendRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("bgppeer: send to %s: %w", s.cfg.Remote, err)
	}
	return nil
}

// Announce sends the UPDATE BuildUpdate builds from r.
func (s *Speaker) Announce(r Route) error {
	m, err := BuildUpdate(r)
	if err != nil {
		return err
	}
	return s.Send(m)
}

// Withdraw sends the UPDATE BuildWithdraw builds.
func (s *Speaker) Withdraw(prefixes ...netip.Prefix) error {
	m, err := BuildWithdraw(prefixes...)
	if err != nil {
		return err
	}
	return s.Send(m)
}

// Messages returns every message received so far, OPEN included.
func (s *Speaker) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// RIB returns the routes the other side announces now (announced, not
// withdrawn since).
func (s *Speaker) RIB() map[netip.Prefix]Path {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Prefix]Path, len(s.rib))
	for k, v := range s.rib {
		out[k] = v
	}
	return out
}

// Ever returns every prefix the other side has announced in this session,
// withdrawn since or not, sorted.
func (s *Speaker) Ever() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.Prefix, 0, len(s.ever))
	for p := range s.ever {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// Notification returns the NOTIFICATION the other side sent, if any.
func (s *Speaker) Notification() (*bgp.BGPNotification, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notif, s.notif != nil
}

// Done is closed when the session has ended; Err then says why.
func (s *Speaker) Done() <-chan struct{} { return s.done }

// Err is why the session ended, or nil while it runs.
func (s *Speaker) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session with a Cease NOTIFICATION (administrative
// shutdown) if it still runs, and waits for its goroutines. Calling it
// again is a no-op.
func (s *Speaker) Close() error {
	s.closeOnce.Do(func() {
		select {
		case <-s.done:
		default:
			_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
			_ = s.Send(bgp.NewBGPNotificationMessage(bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN, nil))
		}
		close(s.stop)
		s.end(errors.New("bgppeer: closed"))
		s.wg.Wait()
	})
	return nil
}
