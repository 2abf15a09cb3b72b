package bfd

import (
	"crypto/sha1" //nolint:gosec // RFC 5880 section 6.7.4 specifies SHA1.
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire sizes (RFC 5880 section 4).
const (
	// HeaderLen is the length of the mandatory part of a control packet.
	HeaderLen = 24
	// SHA1AuthLen is the Auth Len of a Keyed SHA1 or Meticulous Keyed SHA1
	// section: type, length, key ID, reserved, sequence number, 20-byte hash.
	SHA1AuthLen = 28
	// MD5AuthLen is the Auth Len of a Keyed MD5 or Meticulous Keyed MD5 section.
	MD5AuthLen = 24
	// MaxPacketLen is the largest control packet this codec produces or accepts.
	MaxPacketLen = HeaderLen + SHA1AuthLen

	version = 1
)

// State is a BFD session state (RFC 5880 section 4.1, "Sta").
type State uint8

// Session states.
const (
	StateAdminDown State = 0
	StateDown      State = 1
	StateInit      State = 2
	StateUp        State = 3
)

var stateNames = [...]string{"AdminDown", "Down", "Init", "Up"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is a diagnostic code (RFC 5880 section 4.1, "Diag"; 5 bits).
type Diag uint8

// Diagnostic codes.
const (
	DiagNone                    Diag = 0
	DiagControlDetectionExpired Diag = 1
	DiagEchoFailed              Diag = 2
	DiagNeighborSignaledDown    Diag = 3
	DiagForwardingPlaneReset    Diag = 4
	DiagPathDown                Diag = 5
	DiagConcatenatedPathDown    Diag = 6
	DiagAdministrativelyDown    Diag = 7
	DiagReverseConcatenatedPath Diag = 8
)

var diagNames = [...]string{
	"No Diagnostic",
	"Control Detection Time Expired",
	"Echo Function Failed",
	"Neighbor Signaled Session Down",
	"Forwarding Plane Reset",
	"Path Down",
	"Concatenated Path Down",
	"Administratively Down",
	"Reverse Concatenated Path Down",
}

func (d Diag) String() string {
	if int(d) < len(diagNames) {
		return diagNames[d]
	}
	return fmt.Sprintf("Diag(%d)", uint8(d))
}

// AuthType is the Auth Type of an authentication section (RFC 5880
// section 4.1). AuthNone means the packet has no authentication section.
type AuthType uint8

// Authentication types.
const (
	AuthNone                AuthType = 0
	AuthSimplePassword      AuthType = 1
	AuthKeyedMD5            AuthType = 2
	AuthMeticulousKeyedMD5  AuthType = 3
	AuthKeyedSHA1           AuthType = 4
	AuthMeticulousKeyedSHA1 AuthType = 5
)

// Authentication section sizes (RFC 5880 sections 4.2-4.4).
const (
	maxAuthType              = AuthMeticulousKeyedSHA1
	minSimplePasswordAuthLen = 4  // 3 + a 1-byte password
	maxSimplePasswordAuthLen = 19 // 3 + a 16-byte password
	digestAuthHeaderLen      = 8  // type, len, key ID, reserved, sequence
	sha1DigestLen            = 20
	md5DigestLen             = 16
)

var authNames = [...]string{"none", "simple-password", "keyed-md5", "meticulous-keyed-md5", "keyed-sha1", "meticulous-keyed-sha1"}

func (a AuthType) String() string {
	if int(a) < len(authNames) {
		return authNames[a]
	}
	return fmt.Sprintf("AuthType(%d)", uint8(a))
}

// Meticulous reports whether the sequence number must grow on every packet.
func (a AuthType) Meticulous() bool {
	return a == AuthMeticulousKeyedMD5 || a == AuthMeticulousKeyedSHA1
}

// Auth is an authentication section. Len is the Auth Len field as on the
// wire; Data holds the password (Len-3 bytes) for simple password, or the
// digest (16 bytes for MD5, 20 for SHA1) for the keyed types, with the rest
// zero. KeyID and, for the keyed types, Seq are the fields of the same name.
// Reserved is the keyed types' reserved byte: zero on transmit and ignored
// on receipt (RFC 5880 section 4.3), but kept as received because the
// digest covers it, so that a decoded packet encodes to the same bytes.
type Auth struct {
	Type     AuthType
	Len      uint8
	KeyID    uint8
	Reserved uint8
	Seq      uint32
	Data     [20]byte
}

// Bytes returns the password or digest part of Data.
func (a *Auth) Bytes() []byte {
	n, _ := a.dataLen()
	return a.Data[:n]
}

// dataLen checks Type against Len and returns the length of the data part.
func (a *Auth) dataLen() (int, error) {
	switch a.Type {
	case AuthSimplePassword:
		if a.Len < minSimplePasswordAuthLen || a.Len > maxSimplePasswordAuthLen {
			return 0, fmt.Errorf("%w: simple password auth len %d, want %d-%d", ErrAuthLength, a.Len, minSimplePasswordAuthLen, maxSimplePasswordAuthLen)
		}
		return int(a.Len) - 3, nil
	case AuthKeyedMD5, AuthMeticulousKeyedMD5:
		if a.Len != MD5AuthLen {
			return 0, fmt.Errorf("%w: %v auth len %d, want %d", ErrAuthLength, a.Type, a.Len, MD5AuthLen)
		}
		return md5DigestLen, nil
	case AuthKeyedSHA1, AuthMeticulousKeyedSHA1:
		if a.Len != SHA1AuthLen {
			return 0, fmt.Errorf("%w: %v auth len %d, want %d", ErrAuthLength, a.Type, a.Len, SHA1AuthLen)
		}
		return sha1DigestLen, nil
	}
	return 0, fmt.Errorf("%w: %d", ErrAuthType, uint8(a.Type))
}

// Packet is a BFD control packet (RFC 5880 section 4.1). Version (always 1)
// and Length are implied; the Multipoint bit is always zero; the A bit is
// set iff Auth.Type is not AuthNone. Intervals are in microseconds, as on
// the wire.
type Packet struct {
	Diag                      Diag
	State                     State
	Poll                      bool
	Final                     bool
	ControlPlaneIndependent   bool
	Demand                    bool
	DetectMult                uint8
	MyDiscriminator           uint32
	YourDiscriminator         uint32
	DesiredMinTxInterval      uint32
	RequiredMinRxInterval     uint32
	RequiredMinEchoRxInterval uint32
	Auth                      Auth
}

// Errors returned by Decode and Append; the returned errors wrap them.
var (
	ErrShort         = errors.New("bfd: packet too short")
	ErrVersion       = errors.New("bfd: unsupported version")
	ErrLength        = errors.New("bfd: bad length field")
	ErrDetectMult    = errors.New("bfd: detect multiplier is zero")
	ErrMultipoint    = errors.New("bfd: multipoint bit set")
	ErrMyDiscr       = errors.New("bfd: my discriminator is zero")
	ErrYourDiscr     = errors.New("bfd: your discriminator is zero in a packet whose state is not Down or AdminDown")
	ErrAuthType      = errors.New("bfd: unknown authentication type")
	ErrAuthLength    = errors.New("bfd: bad authentication length")
	ErrDiag          = errors.New("bfd: diagnostic out of range")
	ErrState         = errors.New("bfd: state out of range")
	ErrBadDigest     = errors.New("bfd: authentication digest mismatch")
	ErrNotDigestAuth = errors.New("bfd: packet has no keyed SHA1 authentication")
)

// Bits and offsets of the header.
const (
	flagPoll        = 0x20
	flagFinal       = 0x10
	flagCPI         = 0x08
	flagAuth        = 0x04
	flagDemand      = 0x02
	flagMultipoint  = 0x01
	diagMask        = 0x1f
	versionShift    = 5
	stateShift      = 6
	offDetectMult   = 2
	offLength       = 3
	offMyDiscr      = 4
	offYourDiscr    = 8
	offDesiredTx    = 12
	offRequiredRx   = 16
	offRequiredEcho = 20
)

// Decode parses and validates a control packet, applying every check of
// RFC 5880 section 6.8.6 that does not depend on session state: version 1,
// the Length field at least 24 (26 with the A bit) and not beyond b, an
// authentication section present iff the A bit is set and exactly filling
// Length, a non-zero Detect Mult, a clear Multipoint bit, a non-zero My
// Discriminator, and a non-zero Your Discriminator unless State is Down or
// AdminDown. Bytes of b beyond Length are ignored. It never panics.
func Decode(b []byte) (Packet, error) {
	var p Packet
	err := p.Unmarshal(b)
	return p, err
}

// Unmarshal is Decode into p; it does not allocate. On error p is undefined.
func (p *Packet) Unmarshal(b []byte) error {
	if len(b) < HeaderLen {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrShort, len(b), HeaderLen)
	}
	if v := b[0] >> versionShift; v != version {
		return fmt.Errorf("%w: %d", ErrVersion, v)
	}
	flags := b[1]
	length := int(b[offLength])
	hasAuth := flags&flagAuth != 0
	minLen := HeaderLen
	if hasAuth {
		minLen = HeaderLen + 2
	}
	if length < minLen {
		return fmt.Errorf("%w: %d, want at least %d", ErrLength, length, minLen)
	}
	if length > len(b) {
		return fmt.Errorf("%w: %d, but only %d bytes received", ErrLength, length, len(b))
	}
	*p = Packet{
		Diag:                      Diag(b[0] & diagMask),
		State:                     State(flags >> stateShift),
		Poll:                      flags&flagPoll != 0,
		Final:                     flags&flagFinal != 0,
		ControlPlaneIndependent:   flags&flagCPI != 0,
		Demand:                    flags&flagDemand != 0,
		DetectMult:                b[offDetectMult],
		MyDiscriminator:           binary.BigEndian.Uint32(b[offMyDiscr:]),
		YourDiscriminator:         binary.BigEndian.Uint32(b[offYourDiscr:]),
		DesiredMinTxInterval:      binary.BigEndian.Uint32(b[offDesiredTx:]),
		RequiredMinRxInterval:     binary.BigEndian.Uint32(b[offRequiredRx:]),
		RequiredMinEchoRxInterval: binary.BigEndian.Uint32(b[offRequiredEcho:]),
	}
	if p.DetectMult == 0 {
		return ErrDetectMult
	}
	if flags&flagMultipoint != 0 {
		return ErrMultipoint
	}
	if p.MyDiscriminator == 0 {
		return ErrMyDiscr
	}
	if p.YourDiscriminator == 0 && p.State != StateDown && p.State != StateAdminDown {
		return fmt.Errorf("%w (state %v)", ErrYourDiscr, p.State)
	}
	if !hasAuth {
		if length != HeaderLen {
			return fmt.Errorf("%w: %d without authentication, want %d", ErrLength, length, HeaderLen)
		}
		return nil
	}
	a := b[HeaderLen:length]
	p.Auth.Type = AuthType(a[0])
	p.Auth.Len = a[1]
	if p.Auth.Type == AuthNone || p.Auth.Type > maxAuthType {
		return fmt.Errorf("%w: %d", ErrAuthType, a[0])
	}
	if int(p.Auth.Len) != len(a) {
		return fmt.Errorf("%w: auth len %d, length field leaves %d", ErrAuthLength, p.Auth.Len, len(a))
	}
	n, err := p.Auth.dataLen()
	if err != nil {
		return err
	}
	p.Auth.KeyID = a[2]
	if p.Auth.Type == AuthSimplePassword {
		copy(p.Auth.Data[:], a[3:3+n])
		return nil
	}
	p.Auth.Reserved = a[3]
	p.Auth.Seq = binary.BigEndian.Uint32(a[4:])
	copy(p.Auth.Data[:], a[digestAuthHeaderLen:digestAuthHeaderLen+n])
	return nil
}

// Len is the encoded length of p (the Length field).
func (p *Packet) Len() int {
	if p.Auth.Type == AuthNone {
		return HeaderLen
	}
	return HeaderLen + int(p.Auth.Len)
}

// Append appends the encoding of p to dst. It fails (and appends nothing)
// when p could not be decoded again: a zero Detect Mult or My
// Discriminator, Your Discriminator zero outside Down and AdminDown, Diag
// or State out of range, or an inconsistent authentication section. The
// digest is copied from Auth.Data as is; see SignSHA1.
func (p *Packet) Append(dst []byte) ([]byte, error) {
	switch {
	case p.Diag > diagMask:
		return dst, fmt.Errorf("%w: %d", ErrDiag, p.Diag)
	case p.State > StateUp:
		return dst, fmt.Errorf("%w: %d", ErrState, p.State)
	case p.DetectMult == 0:
		return dst, ErrDetectMult
	case p.MyDiscriminator == 0:
		return dst, ErrMyDiscr
	case p.YourDiscriminator == 0 && p.State != StateDown && p.State != StateAdminDown:
		return dst, fmt.Errorf("%w (state %v)", ErrYourDiscr, p.State)
	}
	n := 0
	if p.Auth.Type != AuthNone {
		var err error
		if n, err = p.Auth.dataLen(); err != nil {
			return dst, err
		}
	}
	length := p.Len()
	flags := byte(p.State) << stateShift
	for _, f := range [...]struct {
		on  bool
		bit byte
	}{{p.Poll, flagPoll}, {p.Final, flagFinal}, {p.ControlPlaneIndependent, flagCPI}, {p.Auth.Type != AuthNone, flagAuth}, {p.Demand, flagDemand}} {
		if f.on {
			flags |= f.bit
		}
	}
	dst = append(dst, version<<versionShift|byte(p.Diag), flags, p.DetectMult, byte(length))
	dst = binary.BigEndian.AppendUint32(dst, p.MyDiscriminator)
	dst = binary.BigEndian.AppendUint32(dst, p.YourDiscriminator)
	dst = binary.BigEndian.AppendUint32(dst, p.DesiredMinTxInterval)
	dst = binary.BigEndian.AppendUint32(dst, p.RequiredMinRxInterval)
	dst = binary.BigEndian.AppendUint32(dst, p.RequiredMinEchoRxInterval)
	switch p.Auth.Type {
	case AuthNone:
	case AuthSimplePassword:
		dst = append(dst, byte(p.Auth.Type), p.Auth.Len, p.Auth.KeyID)
		dst = append(dst, p.Auth.Data[:n]...)
	default:
		dst = append(dst, byte(p.Auth.Type), p.Auth.Len, p.Auth.KeyID, p.Auth.Reserved)
		dst = binary.BigEndian.AppendUint32(dst, p.Auth.Seq)
		dst = append(dst, p.Auth.Data[:n]...)
	}
	return dst, nil
}

// Marshal returns the encoding of p.
func (p *Packet) Marshal() ([]byte, error) {
	return p.Append(make([]byte, 0, MaxPacketLen))
}

// sha1Section returns the 20-byte hash field of an encoded packet with a
// keyed SHA1 section, after checking that it has one.
func sha1Section(pkt []byte) ([]byte, error) {
	if len(pkt) < HeaderLen+SHA1AuthLen || int(pkt[offLength]) != len(pkt) || pkt[1]&flagAuth == 0 {
		return nil, ErrNotDigestAuth
	}
	a := pkt[HeaderLen:]
	if t := AuthType(a[0]); (t != AuthKeyedSHA1 && t != AuthMeticulousKeyedSHA1) || a[1] != SHA1AuthLen {
		return nil, ErrNotDigestAuth
	}
	return a[digestAuthHeaderLen:], nil
}

// sha1Digest computes the RFC 5880 section 6.7.4 digest of pkt: SHA1 over
// the whole packet with the hash field replaced by the key, zero-padded to
// 20 bytes. pkt is not modified.
func sha1Digest(pkt []byte, key []byte) [sha1DigestLen]byte {
	var padded [sha1DigestLen]byte
	copy(padded[:], key)
	h := sha1.New() //nolint:gosec // mandated by the RFC
	h.Write(pkt[:len(pkt)-sha1DigestLen])
	h.Write(padded[:])
	var sum [sha1DigestLen]byte
	h.Sum(sum[:0])
	return sum
}

// SignSHA1 fills in the hash of an encoded packet (exactly Length bytes)
// that carries a Keyed SHA1 or Meticulous Keyed SHA1 section, using key
// (at most 20 bytes).
func SignSHA1(pkt []byte, key []byte) error {
	field, err := sha1Section(pkt)
	if err != nil {
		return err
	}
	sum := sha1Digest(pkt, key)
	copy(field, sum[:])
	return nil
}

// VerifySHA1 checks the hash of an encoded packet (exactly Length bytes)
// that carries a Keyed SHA1 or Meticulous Keyed SHA1 section against key.
// It returns ErrNotDigestAuth when the packet has no such section and
// ErrBadDigest when the hash does not match.
func VerifySHA1(pkt []byte, key []byte) error {
	field, err := sha1Section(pkt)
	if err != nil {
		return err
	}
	sum := sha1Digest(pkt, key)
	if subtle.ConstantTimeCompare(field, sum[:]) != 1 {
		return ErrBadDigest
	}
	return nil
}
