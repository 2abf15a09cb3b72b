package core

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHalves(t *testing.T) {
	for in, want := range map[string][]string{
		"10.10.0.0/16":      {"10.10.0.0/17", "10.10.128.0/17"},
		"10.10.0.0/15":      {"10.10.0.0/16", "10.11.0.0/16"},
		"0.0.0.0/0":         {"0.0.0.0/1", "128.0.0.0/1"},
		"192.0.2.6/31":      {"192.0.2.6/32", "192.0.2.7/32"},
		"192.0.2.7/32":      nil,
		"2001:db8::/32":     {"2001:db8::/33", "2001:db8:8000::/33"},
		"2001:db8:0:1::/63": {"2001:db8:0:0::/64", "2001:db8:0:1::/64"},
		"2001:db8::1/128":   nil,
	} {
		var got []string
		for _, h := range halves(netip.MustParsePrefix(in)) {
			got = append(got, h.String())
		}
		var w []string
		for _, s := range want {
			w = append(w, netip.MustParsePrefix(s).String())
		}
		assert.Equal(t, w, got, in)
	}
}
