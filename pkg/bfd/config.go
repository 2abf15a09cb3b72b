package bfd

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Defaults applied by SessionConfig.withDefaults (FRR bfdd's defaults).
const (
	DefaultDesiredMinTx  = 300 * time.Millisecond
	DefaultRequiredMinRx = 300 * time.Millisecond
	DefaultDetectMult    = 3
	// DefaultMultihopMinTTL is the lowest TTL accepted on a multihop session
	// when SessionConfig.MinTTL is zero (as FRR bfdd's minimum-ttl).
	DefaultMultihopMinTTL = 254

	// slowTxInterval is the floor of bfd.DesiredMinTxInterval while the
	// session is not Up (RFC 5880 section 6.8.3).
	slowTxInterval = time.Second
	maxInterval    = time.Duration(1<<32-1) * time.Microsecond
)

// Key identifies a session: its peer, and how packets to and from it travel.
type Key struct {
	Peer      netip.Addr
	Local     netip.Addr
	Interface string
	Multihop  bool
}

func (k Key) String() string {
	s := k.Peer.String()
	if k.Local.IsValid() {
		s += " from " + k.Local.String()
	}
	if k.Interface != "" {
		s += " dev " + k.Interface
	}
	if k.Multihop {
		s += " multihop"
	}
	return s
}

// AuthConfig enables Keyed SHA1 or Meticulous Keyed SHA1 authentication
// (RFC 5880 section 6.7.4).
type AuthConfig struct {
	Type  AuthType // AuthKeyedSHA1 or AuthMeticulousKeyedSHA1
	KeyID uint8
	Key   []byte // 1 to 20 bytes
}

// SessionConfig configures one BFD session. Zero timers and multiplier
// take the defaults above.
type SessionConfig struct {
	// Peer is the remote system's address (required).
	Peer netip.Addr
	// Local is the address to send from; required for multihop. For
	// single-hop it is optional (the kernel picks the source), and when set
	// received packets must be addressed to it.
	Local netip.Addr
	// Interface restricts a single-hop session to one interface: packets
	// leave through it and are accepted only when received on it.
	Interface string
	// Multihop selects RFC 5883 (UDP port 4784, TTL checked against
	// MinTTL) instead of RFC 5881 (UDP port 3784, TTL must be 255).
	Multihop bool
	// MinTTL is the lowest TTL (hop limit) accepted on a multihop session;
	// 0 means DefaultMultihopMinTTL. Ignored for single-hop.
	MinTTL uint8

	// DesiredMinTx is bfd.DesiredMinTxInterval once the session is Up.
	DesiredMinTx time.Duration
	// RequiredMinRx is bfd.RequiredMinRxInterval.
	RequiredMinRx time.Duration
	// DetectMult is bfd.DetectMult.
	DetectMult uint8

	// Auth, when not nil, enables authentication.
	Auth *AuthConfig
}

// Key returns the session's identity.
func (c *SessionConfig) Key() Key {
	return Key{Peer: c.Peer, Local: c.Local, Interface: c.Interface, Multihop: c.Multihop}
}

// withDefaults returns a validated copy of c with defaults filled in and
// the key copied, so later changes by the caller do not leak in.
func (c SessionConfig) withDefaults() (SessionConfig, error) {
	if c.DesiredMinTx == 0 {
		c.DesiredMinTx = DefaultDesiredMinTx
	}
	if c.RequiredMinRx == 0 {
		c.RequiredMinRx = DefaultRequiredMinRx
	}
	if c.DetectMult == 0 {
		c.DetectMult = DefaultDetectMult
	}
	if c.Multihop && c.MinTTL == 0 {
		c.MinTTL = DefaultMultihopMinTTL
	}
	var errs []error
	if !c.Peer.IsValid() {
		errs = append(errs, errors.New("peer address is required"))
	}
	if c.Local.IsValid() && c.Peer.IsValid() && c.Local.Unmap().Is4() != c.Peer.Unmap().Is4() {
		errs = append(errs, fmt.Errorf("local address %v and peer %v are of different families", c.Local, c.Peer))
	}
	if c.Multihop && !c.Local.IsValid() {
		errs = append(errs, errors.New("multihop needs a local address"))
	}
	if c.Multihop && c.Interface != "" {
		errs = append(errs, errors.New("interface is for single-hop sessions only"))
	}
	for _, iv := range []struct {
		name string
		d    time.Duration
	}{{"desired min tx", c.DesiredMinTx}, {"required min rx", c.RequiredMinRx}} {
		if iv.d < time.Microsecond || iv.d > maxInterval {
			errs = append(errs, fmt.Errorf("%s %v out of range 1µs-%v", iv.name, iv.d, maxInterval))
		}
	}
	if c.Auth != nil {
		a := *c.Auth
		if a.Type != AuthKeyedSHA1 && a.Type != AuthMeticulousKeyedSHA1 {
			errs = append(errs, fmt.Errorf("auth type %v not supported (keyed-sha1 or meticulous-keyed-sha1)", a.Type))
		}
		if len(a.Key) == 0 || len(a.Key) > sha1DigestLen {
			errs = append(errs, fmt.Errorf("auth key of %d bytes, want 1-%d", len(a.Key), sha1DigestLen))
		}
		a.Key = append([]byte(nil), a.Key...)
		c.Auth = &a
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("bfd session %v: %w", c.Key(), err)
	}
	c.Peer, c.Local = c.Peer.Unmap(), c.Local.Unmap()
	return c, nil
}
