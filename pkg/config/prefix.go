package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PrefixRange matches Prefix itself and its more-specifics up to MaxLen bits,
// like "10.1.0.0/16 le 24" in a router's prefix list. MaxLen equal to
// Prefix.Bits() matches the prefix exactly.
type PrefixRange struct {
	Prefix netip.Prefix
	MaxLen int
}

// Contains reports whether p falls inside the range.
func (r PrefixRange) Contains(p netip.Prefix) bool {
	return p.Addr().Is4() == r.Prefix.Addr().Is4() &&
		p.Bits() >= r.Prefix.Bits() && p.Bits() <= r.MaxLen &&
		r.Prefix.Contains(p.Addr())
}

func (r PrefixRange) String() string {
	if r.MaxLen == r.Prefix.Bits() {
		return r.Prefix.String()
	}
	return fmt.Sprintf("%s le %d", r.Prefix, r.MaxLen)
}

// ParsePrefixRange parses "PREFIX" (exact) or "PREFIX le N".
func ParsePrefixRange(s string) (PrefixRange, error) {
	fields := strings.Fields(s)
	if len(fields) != 1 && len(fields) != 3 {
		return PrefixRange{}, fmt.Errorf("want PREFIX or \"PREFIX le N\", got %q", s)
	}
	p, err := ParsePrefix(fields[0])
	if err != nil {
		return PrefixRange{}, err
	}
	r := PrefixRange{Prefix: p, MaxLen: p.Bits()}
	if len(fields) == 3 {
		if fields[1] != "le" {
			return PrefixRange{}, fmt.Errorf("want \"le\" after the prefix, got %q", fields[1])
		}
		n, err := strconv.Atoi(fields[2])
		if err != nil || n < p.Bits() || n > p.Addr().BitLen() {
			return PrefixRange{}, fmt.Errorf("le must be a length from %d to %d, got %q", p.Bits(), p.Addr().BitLen(), fields[2])
		}
		r.MaxLen = n
	}
	return r, nil
}

// ParsePrefix parses a prefix and insists that its host bits are zero, so a
// typo like 10.0.0.1/16 is an error instead of a silent 10.0.0.0/16.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a prefix: %q", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zoned prefixes are not supported: %q", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("IPv4-mapped IPv6 prefixes are not supported: %q", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set; did you mean %s?", s, m)
	}
	return p, nil
}
