package pair

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire format, version 1, big endian:
//
//	offset  size  field
//	0       4     magic "BGWP"
//	4       1     version, 1
//	5       1     flags: bit 0 draining, bit 1 checks OK, bits 2-7 zero
//	6       8     epoch
//	14      8     seq
//	22      4     drops
//	26      1     instance name length n (1..32)
//	27      n     instance name
//	        2     device count d (0..256)
//	              d times: length (1..64), name
//	        2     carrying count c (0..d)
//	              c times: length (1..64), name
//	        32    HMAC-SHA256(key, every byte before it)
//
// Both lists are sorted (byte order) and free of duplicates, and every
// carrying name is a device name. A datagram is at most 16 KiB: with long
// names that limit binds before the 256-device one.
const (
	magic         = "BGWP"
	version       = 1
	flagDraining  = 1 << 0
	flagChecksOK  = 1 << 1
	flagsKnown    = flagDraining | flagChecksOK
	headerLen     = len(magic) + 1 + 1 + 8 + 8 + 4
	macLen        = sha256.Size
	minDatagram   = headerLen + 1 + 1 + 2 + 2 + macLen // one-byte name, empty lists
	maxDatagram   = 16 << 10
	minKeyLen     = 16
	maxInstance   = 32
	maxDeviceName = 64
	maxDevices    = 256
)

// Errors returned by Decode (wrapped with detail; test with errors.Is).
// Encode wraps ErrMalformed when a field is out of bounds.
var (
	// ErrShort: the datagram is shorter than the smallest valid one.
	ErrShort = errors.New("pair: datagram too short")
	// ErrVersion: wrong magic or an unsupported version.
	ErrVersion = errors.New("pair: wrong magic or version")
	// ErrAuth: the MAC does not verify (wrong key or altered datagram),
	// or the key given to Decode is shorter than 16 bytes.
	ErrAuth = errors.New("pair: authentication failed")
	// ErrMalformed: a field out of bounds, trailing bytes, an unsorted or
	// duplicated list, a carrying device that is not a device, unknown
	// flags, or a datagram over 16 KiB.
	ErrMalformed = errors.New("pair: malformed message")
)

// errKeyLen never names the key's content, only its length bound.
var errKeyLen = fmt.Errorf("pair: key shorter than %d bytes", minKeyLen)

// State is what one instance says about itself.
type State struct {
	Instance string   // sender's instance name (1..32 bytes)
	Devices  []string // on-prem devices it has tunnels to (sorted, unique; each 1..64 bytes; at most 256)
	Carrying []string // devices it carries traffic for now (subset of Devices; sorted, unique)
	Draining bool     // a drain has started (or the instance is drained)
	ChecksOK bool     // its instance-scope health checks pass
	// Drops counts the times the sender stopped carrying a device since it
	// started (core.SelfState.Drops): with Epoch it tells a partner that
	// was only unreachable from one that restarted or let a device go.
	Drops uint32
}

// Message is one decoded, verified datagram.
type Message struct {
	State
	Epoch uint64 // sender's epoch: chosen at sender start (time.Now().UnixNano()), never lower after a restart
	Seq   uint64 // per epoch, increases by one with every datagram sent
}

// Encode appends the wire form of m authenticated with key to b. It
// returns b unchanged and an error wrapping ErrMalformed when a field is
// out of bounds (see State), and an error when key is shorter than 16
// bytes.
func Encode(b []byte, m Message, key []byte) ([]byte, error) {
	if len(key) < minKeyLen {
		return b, errKeyLen
	}
	if err := validate(m.State); err != nil {
		return b, err
	}
	size := headerLen + 1 + len(m.Instance) + 2 + 2 + macLen
	for _, d := range m.Devices {
		size += 1 + len(d)
	}
	for _, d := range m.Carrying {
		size += 1 + len(d)
	}
	if size > maxDatagram {
		return b, fmt.Errorf("%w: message of %d bytes exceeds %d", ErrMalformed, size, maxDatagram)
	}
	var flags byte
	if m.Draining {
		flags |= flagDraining
	}
	if m.ChecksOK {
		flags |= flagChecksOK
	}
	start := len(b)
	b = append(b, magic...)
	b = append(b, version, flags)
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint32(b, m.Drops)
	b = append(b, byte(len(m.Instance)))
	b = append(b, m.Instance...)
	b = appendList(b, m.Devices)
	b = appendList(b, m.Carrying)
	mac := hmac.New(sha256.New, key)
	mac.Write(b[start:])
	return mac.Sum(b), nil
}

func appendList(b []byte, names []string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(names)))
	for _, n := range names {
		b = append(b, byte(len(n)))
		b = append(b, n...)
	}
	return b
}

// validate checks the bounds Encode and Decode share. Its errors name
// fields and indices, never content.
func validate(s State) error {
	if n := len(s.Instance); n < 1 || n > maxInstance {
		return fmt.Errorf("%w: instance name of %d bytes, want 1..%d", ErrMalformed, n, maxInstance)
	}
	if len(s.Devices) > maxDevices {
		return fmt.Errorf("%w: %d devices, want at most %d", ErrMalformed, len(s.Devices), maxDevices)
	}
	if err := checkList("devices", s.Devices); err != nil {
		return err
	}
	if err := checkList("carrying", s.Carrying); err != nil {
		return err
	}
	// Both lists are sorted: walk them together.
	i := 0
	for j, c := range s.Carrying {
		for i < len(s.Devices) && s.Devices[i] < c {
			i++
		}
		if i == len(s.Devices) || s.Devices[i] != c {
			return fmt.Errorf("%w: carrying[%d] is not in devices", ErrMalformed, j)
		}
	}
	return nil
}

func checkList(field string, names []string) error {
	for i, n := range names {
		if len(n) < 1 || len(n) > maxDeviceName {
			return fmt.Errorf("%w: %s[%d] of %d bytes, want 1..%d", ErrMalformed, field, i, len(n), maxDeviceName)
		}
		if i > 0 && names[i-1] >= n {
			return fmt.Errorf("%w: %s[%d] not above %s[%d] (list must be sorted and unique)", ErrMalformed, field, i, field, i-1)
		}
	}
	return nil
}

// Decode verifies and decodes one datagram. Its errors wrap ErrShort,
// ErrVersion, ErrAuth or ErrMalformed and never contain payload bytes.
// Checks run in this order: length and magic, version, MAC (hmac.Equal),
// then the body; nothing past the fixed header is read before the MAC
// verifies.
func Decode(b []byte, key []byte) (Message, error) {
	if len(key) < minKeyLen {
		return Message{}, fmt.Errorf("%w: %w", ErrAuth, errKeyLen)
	}
	if len(b) < len(magic)+1 {
		return Message{}, fmt.Errorf("%w: %d bytes", ErrShort, len(b))
	}
	if string(b[:len(magic)]) != magic {
		return Message{}, fmt.Errorf("%w: bad magic", ErrVersion)
	}
	if b[4] != version {
		return Message{}, fmt.Errorf("%w: version %d, want %d", ErrVersion, b[4], version)
	}
	if len(b) < minDatagram {
		return Message{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrShort, len(b), minDatagram)
	}
	if len(b) > maxDatagram {
		return Message{}, fmt.Errorf("%w: %d bytes, want at most %d", ErrMalformed, len(b), maxDatagram)
	}
	body, sum := b[:len(b)-macLen], b[len(b)-macLen:]
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), sum) {
		return Message{}, ErrAuth
	}
	return parse(body)
}

// parse reads an authenticated body (everything before the MAC).
func parse(b []byte) (Message, error) {
	flags := b[5]
	if flags&^flagsKnown != 0 {
		return Message{}, fmt.Errorf("%w: unknown flags %#02x", ErrMalformed, flags&^flagsKnown)
	}
	m := Message{
		State: State{
			Draining: flags&flagDraining != 0,
			ChecksOK: flags&flagChecksOK != 0,
			Drops:    binary.BigEndian.Uint32(b[22:]),
		},
		Epoch: binary.BigEndian.Uint64(b[6:]),
		Seq:   binary.BigEndian.Uint64(b[14:]),
	}
	r := reader{b: b[headerLen:]}
	m.Instance = r.name(maxInstance)
	m.Devices = r.list(maxDevices)
	m.Carrying = r.list(maxDevices)
	if r.err != nil {
		return Message{}, r.err
	}
	if len(r.b) != 0 {
		return Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if err := validate(m.State); err != nil {
		return Message{}, err
	}
	return m, nil
}

// reader is a cursor over an authenticated body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

// name reads a length-prefixed name of 1..limit bytes.
func (r *reader) name(limit int) string {
	if r.err != nil {
		return ""
	}
	if len(r.b) < 1 {
		r.fail("body ends before a name length")
		return ""
	}
	n := int(r.b[0])
	if n < 1 || n > limit {
		r.fail("name of %d bytes, want 1..%d", n, limit)
		return ""
	}
	if len(r.b) < 1+n {
		r.fail("body ends inside a name")
		return ""
	}
	s := string(r.b[1 : 1+n])
	r.b = r.b[1+n:]
	return s
}

// list reads a count-prefixed list of device names (nil when empty).
func (r *reader) list(limit int) []string {
	if r.err != nil {
		return nil
	}
	if len(r.b) < 2 {
		r.fail("body ends before a list count")
		return nil
	}
	n := int(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	if n > limit {
		r.fail("list of %d names, want at most %d", n, limit)
		return nil
	}
	if n == 0 {
		return nil
	}
	names := make([]string, 0, n)
	for range n {
		names = append(names, r.name(maxDeviceName))
		if r.err != nil {
			return nil
		}
	}
	return names
}
