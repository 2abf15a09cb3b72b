package pair

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewValidates(t *testing.T) {
	good := testConfig(netip.MustParseAddrPort("10.10.1.1:7784"), netip.MustParseAddrPort("10.10.1.2:7784"))
	_, err := New(good)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no self", func(c *Config) { c.Self = "" }},
		{"self too long", func(c *Config) { c.Self = strings.Repeat("s", 33) }},
		{"partner too long", func(c *Config) { c.Partner = strings.Repeat("p", 33) }},
		{"partner is self", func(c *Config) { c.Partner = c.Self }},
		{"no local", func(c *Config) { c.Local = netip.AddrPort{} }},
		{"local port 0", func(c *Config) { c.Local = netip.MustParseAddrPort("10.10.1.1:0") }},
		{"no remote", func(c *Config) { c.Remote = netip.AddrPort{} }},
		{"remote unspecified", func(c *Config) { c.Remote = netip.MustParseAddrPort("0.0.0.0:7784") }},
		{"families differ", func(c *Config) { c.Remote = netip.MustParseAddrPort("[2001:db8::2]:7784") }},
		{"short key", func(c *Config) { c.Key = testKey[:15] }},
		{"negative refresh", func(c *Config) { c.Refresh = -time.Second }},
		{"zero repeat", func(c *Config) { c.Repeat = []time.Duration{0} }},
		{"descending repeat", func(c *Config) { c.Repeat = []time.Duration{20 * time.Millisecond, 5 * time.Millisecond} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "pair: config: "), err.Error())
			assert.NotContains(t, err.Error(), string(testKey[:15]))
		})
	}
	// Defaults, and a key the caller changes later does not matter.
	cfg := good
	cfg.Refresh, cfg.Repeat = 0, nil
	c, err := New(cfg)
	require.NoError(t, err)
	assert.Equal(t, defaultRefresh, c.refresh)
	assert.Equal(t, defaultRepeat, c.repeat)
	cfg.Key[0] ^= 0xff
	defer func() { cfg.Key[0] ^= 0xff }()
	assert.NotEqual(t, cfg.Key[0], c.key[0])
}
