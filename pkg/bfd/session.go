package bfd

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Errors for packets a Session discards; Receive returns them wrapped.
var (
	ErrDiscriminator = errors.New("bfd: your discriminator is not this session's")
	ErrAuthMissing   = errors.New("bfd: authentication required but packet has none")
	ErrAuthUnwanted  = errors.New("bfd: packet authenticated but session has no authentication")
	ErrAuthWrongType = errors.New("bfd: authentication type mismatch")
	ErrAuthKeyID     = errors.New("bfd: authentication key ID mismatch")
	ErrAuthSequence  = errors.New("bfd: authentication sequence number out of window")
)

// StateChange reports a change of a session's state.
type StateChange struct {
	Key         Key
	Old, New    State
	Diag        Diag  // local diagnostic: why the state changed
	RemoteState State // the peer's state as last received
	RemoteDiag  Diag
	At          time.Time
}

// Output is what a Session asks its caller to do after an input: send
// Wire (the encoding of Packet, signed when authentication is on) to the
// peer if Packet is not nil, and report Change if it is not nil. Both
// point into the Session and are valid until its next call.
type Output struct {
	Packet *Packet
	Wire   []byte
	Change *StateChange
}

// Counters are a session's packet and event counters.
type Counters struct {
	Sent         uint64
	Received     uint64 // accepted control packets
	Discarded    uint64 // rejected by the session, authentication failures excluded
	AuthFailures uint64
	StateChanges uint64
	BuildErrors  uint64 // packets not sent because they would not encode (a bug)
	// MinDetectMargin is the smallest time that was left before the
	// detection timer would have expired, over the packets accepted while
	// Up (zero until measured): how close the session came to a false Down.
	MinDetectMargin time.Duration
}

// Status is a snapshot of a session.
type Status struct {
	Key                 Key
	State               State
	RemoteState         State
	LocalDiag           Diag
	RemoteDiag          Diag
	LocalDiscriminator  uint32
	RemoteDiscriminator uint32
	// TxInterval is the negotiated transmit interval (before jitter): the
	// larger of our desired min TX in force and the peer's required min RX.
	TxInterval time.Duration
	// RxInterval is the negotiated receive interval: the larger of our
	// required min RX in force and the peer's desired min TX.
	RxInterval time.Duration
	// DetectionTime is the peer's detect multiplier times RxInterval, as in
	// force (a poll in either direction may keep a larger value).
	DetectionTime time.Duration
	// DesiredMinTx, RequiredMinRx and DetectMult are advertised in packets.
	DesiredMinTx        time.Duration
	RequiredMinRx       time.Duration
	DetectMult          uint8
	RemoteDesiredMinTx  time.Duration
	RemoteRequiredMinRx time.Duration
	RemoteDetectMult    uint8
	PollInProgress      bool
	LastChange          time.Time
	Counters            Counters
}

// Session is the BFD protocol machine of RFC 5880 for one session in
// asynchronous mode. It is pure: packets and clock readings go in (Receive,
// Tick and the configuration calls), packets to send and state changes come
// out (Output), and Next says when Tick must be called next. It has no
// goroutines, sockets or timers and is not safe for concurrent use.
type Session struct {
	cfg SessionConfig
	rnd *rand.Rand

	state, remoteState    State
	localDiag, remoteDiag Diag
	localDiscr            uint32
	remoteDiscr           uint32

	// Local intervals: advertised in packets (adv*) and in force (cur*),
	// which differ while a Poll Sequence is in progress (RFC 5880 6.8.3).
	advTx, advRx time.Duration
	curTx, curRx time.Duration
	poll         bool // Poll Sequence in progress
	pollAgain    bool // timers changed during the poll: start another after it

	remoteMinRx      time.Duration // bfd.RemoteMinRxInterval
	remoteDesiredTx  time.Duration
	remoteDetectMult uint8
	remoteDemand     bool

	detectTime time.Duration
	detectAt   time.Time // zero: not armed
	lastRx     time.Time
	lastTx     time.Time
	nextTx     time.Time
	txFraction float64 // jitter factor of the current TX period
	sendNow    bool    // a state or poll change wants a packet at once

	xmitSeq  uint32
	rcvSeq   uint32
	seqKnown bool

	lastChange time.Time
	counters   Counters
	marginSet  bool

	// Output storage, reused across calls.
	out     Output
	pkt     Packet
	change  StateChange
	wire    [MaxPacketLen]byte
	scratch [MaxPacketLen]byte
}

// NewSession returns a session in state Down with the given local
// discriminator (non-zero, unique on this system). src drives transmit
// jitter and the initial authentication sequence number. The first packet
// is due at now.
func NewSession(cfg SessionConfig, localDiscr uint32, src rand.Source, now time.Time) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if localDiscr == 0 {
		return nil, fmt.Errorf("bfd session %v: local discriminator must not be zero", cfg.Key())
	}
	s := &Session{
		cfg:         cfg,
		rnd:         rand.New(src),
		state:       StateDown,
		remoteState: StateDown,
		localDiscr:  localDiscr,
		remoteMinRx: time.Microsecond, // RFC 5880 6.8.1 initial value
		nextTx:      now,
		lastChange:  now,
	}
	s.xmitSeq = s.rnd.Uint32()
	s.resetTimers()
	return s, nil
}

// Key is the session's identity.
func (s *Session) Key() Key { return s.cfg.Key() }

// Config returns the session's configuration, with defaults applied.
func (s *Session) Config() SessionConfig { return s.cfg }

// State is the current session state.
func (s *Session) State() State { return s.state }

// LocalDiscriminator is bfd.LocalDiscr.
func (s *Session) LocalDiscriminator() uint32 { return s.localDiscr }

// Next is when Tick must be called next: the earlier of the next periodic
// transmission and the detection timer. It may be in the past.
func (s *Session) Next() time.Time {
	next := s.nextTx
	if !s.periodicAllowed() {
		next = time.Time{}
	}
	if !s.detectAt.IsZero() && (next.IsZero() || s.detectAt.Before(next)) {
		next = s.detectAt
	}
	return next
}

// detectionDue reports whether Tick at now would take the session Down
// for lack of packets.
func (s *Session) detectionDue(now time.Time) bool {
	return (s.state == StateInit || s.state == StateUp) && !s.detectAt.IsZero() && !now.Before(s.detectAt)
}

// Tick handles the timers due at now: detection time expiry (the session
// goes Down with diagnostic 1 from Init or Up) and periodic transmission.
func (s *Session) Tick(now time.Time) Output {
	s.begin()
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		s.detectAt = time.Time{}
		// RFC 5880 6.8.1: bfd.RemoteDiscr is zeroed when the Detection
		// Time expires, whatever the state.
		s.remoteDiscr = 0
		s.remoteState = StateDown
		if s.state == StateInit || s.state == StateUp {
			s.setState(now, StateDown, DiagControlDetectionExpired)
		}
	}
	s.finish(now, false)
	return s.out
}

// Receive processes a decoded control packet (Decode has validated it)
// received at now, per RFC 5880 section 6.8.6. A discarded packet returns
// an error and no output.
func (s *Session) Receive(now time.Time, p *Packet) (Output, error) {
	s.begin()
	if p.YourDiscriminator != 0 && p.YourDiscriminator != s.localDiscr {
		s.counters.Discarded++
		return s.out, fmt.Errorf("%w: %d", ErrDiscriminator, p.YourDiscriminator)
	}
	if err := s.checkAuth(now, p); err != nil {
		s.counters.AuthFailures++
		return s.out, err
	}
	s.counters.Received++
	if s.state == StateUp && !s.detectAt.IsZero() {
		if m := s.detectAt.Sub(now); !s.marginSet || m < s.counters.MinDetectMargin {
			s.counters.MinDetectMargin, s.marginSet = m, true
		}
	}
	s.lastRx = now
	s.remoteDiscr = p.MyDiscriminator
	s.remoteState = p.State
	s.remoteDiag = p.Diag
	s.remoteDemand = p.Demand
	s.remoteMinRx = usec(p.RequiredMinRxInterval)
	s.remoteDesiredTx = usec(p.DesiredMinTxInterval)
	s.remoteDetectMult = p.DetectMult
	if p.Final && s.poll {
		s.endPoll()
	}
	s.updateTx()
	// Detection time (RFC 5880 6.8.4). While the peer polls (P set), a
	// change it announces may not be in force on its side yet: never
	// shorten the detection time until its poll is over.
	dt := time.Duration(p.DetectMult) * max(s.curRx, s.remoteDesiredTx)
	if p.Poll && dt < s.detectTime {
		dt = s.detectTime
	}
	s.detectTime = dt
	if s.state == StateAdminDown {
		return s.out, nil
	}
	s.detectAt = now.Add(dt)
	switch {
	case p.State == StateAdminDown:
		if s.state != StateDown {
			s.setState(now, StateDown, DiagNeighborSignaledDown)
		}
	case s.state == StateDown:
		switch p.State {
		case StateDown:
			s.setState(now, StateInit, DiagNone)
		case StateInit:
			s.setState(now, StateUp, DiagNone)
		}
	case s.state == StateInit:
		if p.State == StateInit || p.State == StateUp {
			s.setState(now, StateUp, DiagNone)
		}
	default: // Up
		if p.State == StateDown {
			s.setState(now, StateDown, DiagNeighborSignaledDown)
		}
	}
	s.finish(now, p.Poll)
	return s.out, nil
}

// SetAdminDown puts the session in AdminDown (diagnostic 7) or, with
// down false, takes it out to Down (RFC 5880 6.8.16). Packets keep being
// sent at the slow rate, carrying state AdminDown.
func (s *Session) SetAdminDown(now time.Time, down bool) Output {
	s.begin()
	switch {
	case down && s.state != StateAdminDown:
		s.detectAt = time.Time{}
		s.setState(now, StateAdminDown, DiagAdministrativelyDown)
	case !down && s.state == StateAdminDown:
		s.setState(now, StateDown, DiagNone)
	}
	s.finish(now, false)
	return s.out
}

// Update applies a new configuration with the same Key. A change of the
// detect multiplier or the authentication applies at once; a change of
// the intervals while Up starts a Poll Sequence, and the intervals in
// force change when the peer's Final arrives (a faster transmit rate and a
// longer detection time apply at once, which the RFC allows).
func (s *Session) Update(now time.Time, cfg SessionConfig) (Output, error) {
	s.begin()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return s.out, err
	}
	if cfg.Key() != s.cfg.Key() {
		return s.out, fmt.Errorf("bfd session %v: update to a different session %v", s.cfg.Key(), cfg.Key())
	}
	old := s.cfg
	s.cfg = cfg
	if !sameAuth(old.Auth, cfg.Auth) {
		s.seqKnown = false
	}
	if old.DetectMult != cfg.DetectMult {
		s.sendNow = true
	}
	if old.DesiredMinTx != cfg.DesiredMinTx || old.RequiredMinRx != cfg.RequiredMinRx {
		if s.state != StateUp {
			s.resetTimers()
		} else if s.poll {
			s.pollAgain = true
		} else {
			s.startPoll()
		}
		s.updateTx()
	}
	s.finish(now, false)
	return s.out, nil
}

func sameAuth(a, b *AuthConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Type == b.Type && a.KeyID == b.KeyID && bytes.Equal(a.Key, b.Key)
}

// Status returns a snapshot of the session.
func (s *Session) Status() Status {
	return Status{
		Key:                 s.cfg.Key(),
		State:               s.state,
		RemoteState:         s.remoteState,
		LocalDiag:           s.localDiag,
		RemoteDiag:          s.remoteDiag,
		LocalDiscriminator:  s.localDiscr,
		RemoteDiscriminator: s.remoteDiscr,
		TxInterval:          s.txInterval(),
		RxInterval:          max(s.curRx, s.remoteDesiredTx),
		DetectionTime:       s.detectTime,
		DesiredMinTx:        s.advTx,
		RequiredMinRx:       s.advRx,
		DetectMult:          s.cfg.DetectMult,
		RemoteDesiredMinTx:  s.remoteDesiredTx,
		RemoteRequiredMinRx: s.remoteMinRx,
		RemoteDetectMult:    s.remoteDetectMult,
		PollInProgress:      s.poll,
		LastChange:          s.lastChange,
		Counters:            s.counters,
	}
}

// begin resets the output of the previous call.
func (s *Session) begin() {
	s.out = Output{}
	s.sendNow = false
}

// finish sends a packet if one is due: a Final, a packet announcing a
// state or parameter change, or the periodic one. A Final alone is sent
// outside the periodic schedule and leaves it as it is.
func (s *Session) finish(now time.Time, final bool) {
	scheduled := s.sendNow || (s.periodicAllowed() && !now.Before(s.nextTx))
	if final || scheduled {
		s.send(now, final, scheduled)
	}
}

// periodicAllowed applies RFC 5880 6.8.7: no periodic packets when the
// peer asked for none (Required Min RX zero) or is in Demand mode with
// both sides Up and no poll in progress.
func (s *Session) periodicAllowed() bool {
	if s.remoteMinRx == 0 {
		return false
	}
	return !(s.remoteDemand && s.state == StateUp && s.remoteState == StateUp && !s.poll)
}

func (s *Session) setState(now time.Time, st State, diag Diag) {
	old := s.state
	s.state = st
	s.localDiag = diag
	s.lastChange = now
	s.counters.StateChanges++
	switch {
	case st == StateUp:
		// bfd.DesiredMinTxInterval leaves its 1 s floor: a parameter
		// change while Up, announced with a poll.
		if s.advTx != s.cfg.DesiredMinTx || s.advRx != s.cfg.RequiredMinRx {
			s.startPoll()
		}
	case old == StateUp:
		s.resetTimers()
	}
	s.updateTx()
	s.sendNow = true
	s.change = StateChange{Key: s.cfg.Key(), Old: old, New: st, Diag: diag,
		RemoteState: s.remoteState, RemoteDiag: s.remoteDiag, At: now}
	s.out.Change = &s.change
}

// resetTimers sets the intervals for a session that is not Up: the
// configured ones, with desired min TX at least 1 s, in force at once.
func (s *Session) resetTimers() {
	s.poll, s.pollAgain = false, false
	s.advTx = max(s.cfg.DesiredMinTx, slowTxInterval)
	s.advRx = s.cfg.RequiredMinRx
	s.curTx, s.curRx = s.advTx, s.advRx
}

// startPoll advertises the configured intervals with the Poll bit. Until
// the Final, the transmit interval in force is the smaller of old and new
// (an increase must wait, RFC 5880 6.8.3) and the receive interval the
// larger (a decrease must wait).
func (s *Session) startPoll() {
	s.poll, s.pollAgain = true, false
	s.advTx, s.advRx = s.cfg.DesiredMinTx, s.cfg.RequiredMinRx
	s.curTx = min(s.curTx, s.advTx)
	s.curRx = max(s.curRx, s.advRx)
	s.sendNow = true
}

// endPoll commits the advertised intervals on a Final.
func (s *Session) endPoll() {
	s.poll = false
	s.curTx, s.curRx = s.advTx, s.advRx
	if s.pollAgain || s.advTx != s.cfg.DesiredMinTx || s.advRx != s.cfg.RequiredMinRx {
		s.startPoll()
	}
}

func (s *Session) txInterval() time.Duration { return max(s.curTx, s.remoteMinRx) }

// updateTx moves the next periodic transmission to match the current
// interval, keeping this period's jitter.
func (s *Session) updateTx() {
	if s.lastTx.IsZero() {
		return
	}
	s.nextTx = s.lastTx.Add(time.Duration(float64(s.txInterval()) * s.txFraction))
}

// jitterFraction draws the factor applied to the next transmit interval:
// 75-100%, or 75-90% with a detect multiplier of 1 (RFC 5880 6.8.7).
func (s *Session) jitterFraction() float64 {
	if s.cfg.DetectMult == 1 {
		return 0.75 + 0.15*s.rnd.Float64()
	}
	return 0.75 + 0.25*s.rnd.Float64()
}

func (s *Session) send(now time.Time, final, periodic bool) {
	s.pkt = Packet{
		Diag:                  s.localDiag,
		State:                 s.state,
		Poll:                  s.poll && !final,
		Final:                 final,
		DetectMult:            s.cfg.DetectMult,
		MyDiscriminator:       s.localDiscr,
		YourDiscriminator:     s.remoteDiscr,
		DesiredMinTxInterval:  usecs(s.advTx),
		RequiredMinRxInterval: usecs(s.advRx),
	}
	if s.state != StateDown && s.state != StateAdminDown && s.remoteDiscr == 0 {
		// Unreachable by the state machine; keep the packet valid anyway.
		s.pkt.State = StateDown
	}
	if a := s.cfg.Auth; a != nil {
		s.xmitSeq++
		s.pkt.Auth = Auth{Type: a.Type, Len: SHA1AuthLen, KeyID: a.KeyID, Seq: s.xmitSeq}
	}
	w, err := s.pkt.Append(s.wire[:0])
	if err == nil && s.cfg.Auth != nil {
		err = SignSHA1(w, s.cfg.Auth.Key)
		copy(s.pkt.Auth.Data[:], w[HeaderLen+digestAuthHeaderLen:])
	}
	if err != nil {
		// Unreachable: the session only builds valid packets. Skip the
		// packet rather than take the process down.
		s.counters.BuildErrors++
		s.pkt = Packet{}
		return
	}
	s.counters.Sent++
	if periodic {
		s.lastTx = now
		s.txFraction = s.jitterFraction()
		s.updateTx()
	}
	s.out.Packet = &s.pkt
	s.out.Wire = w
}

// checkAuth applies the authentication checks of RFC 5880 6.8.6 and
// 6.7.4. On success it advances bfd.RcvAuthSeq.
func (s *Session) checkAuth(now time.Time, p *Packet) error {
	a := s.cfg.Auth
	if a == nil {
		if p.Auth.Type != AuthNone {
			return ErrAuthUnwanted
		}
		return nil
	}
	switch {
	case p.Auth.Type == AuthNone:
		return ErrAuthMissing
	case p.Auth.Type != a.Type:
		return fmt.Errorf("%w: got %v, want %v", ErrAuthWrongType, p.Auth.Type, a.Type)
	case p.Auth.KeyID != a.KeyID:
		return fmt.Errorf("%w: got %d, want %d", ErrAuthKeyID, p.Auth.KeyID, a.KeyID)
	}
	// bfd.AuthSeqKnown lapses after twice the detection time in silence.
	if s.seqKnown && now.Sub(s.lastRx) >= 2*s.detectTime {
		s.seqKnown = false
	}
	if s.seqKnown {
		d := p.Auth.Seq - s.rcvSeq // modulo 2^32
		window := 3 * uint32(p.DetectMult)
		lo := uint32(0)
		if a.Type.Meticulous() {
			lo = 1
		}
		if d < lo || d > window {
			return fmt.Errorf("%w: %d after %d", ErrAuthSequence, p.Auth.Seq, s.rcvSeq)
		}
	}
	w, err := p.Append(s.scratch[:0])
	if err != nil {
		return err
	}
	if err := VerifySHA1(w, a.Key); err != nil {
		return err
	}
	s.rcvSeq, s.seqKnown = p.Auth.Seq, true
	return nil
}

func usec(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }

func usecs(d time.Duration) uint32 { return uint32(d / time.Microsecond) }
