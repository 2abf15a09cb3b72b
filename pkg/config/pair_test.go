package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withPair is validYAML (active-standby) with a pair section; %[1]s holds
// the secret files, pair-key among them.
func withPair(t *testing.T, pair string) (string, string) {
	t.Helper()
	dir := secretsDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pair-key"), []byte("pair-s3cret-0123456789\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "short-key"), []byte("short"), 0o600))
	return fmt.Sprintf(validYAML, dir) + pair, dir
}

func TestPairValid(t *testing.T) {
	y, dir := withPair(t, "pair: {partner: 10.10.2.1, local_address: 10.10.1.1, key_file: "+"%s/pair-key}\n")
	c, err := Parse([]byte(fmt.Sprintf(y, dir)))
	require.NoError(t, err)
	p := c.Pair
	assert.True(t, p.Enabled)
	assert.Equal(t, netip.MustParseAddr("10.10.2.1"), p.Partner)
	assert.Equal(t, DefaultPairPort, p.Port)
	assert.Equal(t, 20*time.Millisecond, p.MinTx)
	assert.Equal(t, 3, p.Multiplier)
	assert.Equal(t, TakeoverMoreSpecific, p.Takeover)
	assert.Equal(t, DefaultReleaseDelay, p.ReleaseDelay)
	assert.Equal(t, "pair-s3cret-0123456789", p.Key.Reveal())
	assert.Equal(t, "onprem-a", c.Tunnels[0].Device, "device defaults to the tunnel's name")
	assert.NotContains(t, fmt.Sprintf("%+v", c), "pair-s3cret")
	// onprem-b has neither BFD nor a tunnel check.
	require.Len(t, c.Warnings, 1)
	assert.Contains(t, c.Warnings[0], "tunnel onprem-b has neither BFD nor a scope: tunnel check")

	c, err = Parse([]byte(strings.Replace(fmt.Sprintf(validYAML, dir), "  - name: onprem-b\n", "  - name: onprem-b\n    device: site-a\n", 1)))
	require.NoError(t, err)
	assert.Equal(t, "site-a", c.Tunnels[1].Device)

	c, err = Parse([]byte(fmt.Sprintf(validYAML, dir)))
	require.NoError(t, err)
	assert.False(t, c.Pair.Enabled)
	assert.Equal(t, TakeoverOff, c.Pair.Takeover, "no pair: no takeover")
}

func TestPairErrors(t *testing.T) {
	rows := []struct {
		name, pair, path, msg string
	}{
		{"partner missing", "{local_address: 10.10.1.1, key_file: %[1]s/pair-key}", "pair.partner", "required"},
		{"partner is local", "{partner: 10.10.1.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key}", "pair.partner", "same as local_address"},
		{"versions differ", "{partner: 2001:db8::1, local_address: 10.10.1.1, key_file: %[1]s/pair-key}", "pair.partner", "same IP version"},
		{"key missing", "{partner: 10.10.2.1, local_address: 10.10.1.1}", "pair.key_file", "required"},
		{"key short", "{partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/short-key}", "pair.key_file", "at least 16 bytes"},
		{"bad method", "{partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key, takeover: faster}", "pair.takeover", "more-specific, med or off"},
		{"med in active-standby", "{partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key, takeover: med}", "pair.takeover", "cannot work in active-standby"},
		{"bfd too fast", "{partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key, bfd: {min_rx: 5ms}}", "pair.bfd.min_rx", "out of range"},
		{"release delay", "{partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key, release_delay: 1h}", "pair.release_delay", "out of range"},
		{"unknown key", "{partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key, mode: x}", "pair.mode", "unknown key"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			y, dir := withPair(t, "pair: "+r.pair+"\n")
			_, err := Parse([]byte(strings.ReplaceAll(y, "%[1]s", dir)))
			requireFieldError(t, err, r.path, r.msg)
		})
	}
	// A host prefix has no halves: announced, or accepted from a tunnel.
	y, dir := withPair(t, "pair: {partner: 10.10.2.1, local_address: 10.10.1.1, key_file: %[1]s/pair-key}\n")
	y = strings.ReplaceAll(y, "%[1]s", dir)
	_, err := Parse([]byte(strings.Replace(y, "  - 10.20.0.0/24", "  - 10.20.0.1/32", 1)))
	requireFieldError(t, err, "pair.takeover", "announce 10.20.0.1/32")
	_, err = Parse([]byte(strings.Replace(y, `"10.1.0.0/16 le 24"`, `"10.1.0.0/16 le 32"`, 1)))
	requireFieldError(t, err, "pair.takeover", "accept up to /31")
	aa := strings.Replace(strings.Replace(y, "mode: active-standby", "mode: active-active", 1), "  role: primary\n", "", 1)
	_, err = Parse([]byte(strings.Replace(aa, "key_file: "+dir+"/pair-key}", "key_file: "+dir+"/pair-key, takeover: med}", 1)))
	requireFieldError(t, err, "pair.takeover", "med works with one on-prem device")
	oneDevice := strings.Replace(aa, "  - name: onprem-b\n", "  - name: onprem-b\n    device: onprem-a\n", 1)
	_, err = Parse([]byte(strings.Replace(oneDevice, "key_file: "+dir+"/pair-key}", "key_file: "+dir+"/pair-key, takeover: med}", 1)))
	require.NoError(t, err, "med with one device")
	_, err = Parse([]byte(strings.Replace(y, "key_file: "+dir+"/pair-key}", "key_file: "+dir+"/pair-key, takeover: off}", 1)))
	require.NoError(t, err, "takeover: off needs no halves")
}

func requireFieldError(t *testing.T, err error, path, msg string) {
	t.Helper()
	var errs Errors
	require.ErrorAs(t, err, &errs)
	for _, e := range errs {
		if e.Path == path && strings.Contains(e.Msg, msg) {
			assert.NotContains(t, err.Error(), "pair-s3cret")
			return
		}
	}
	t.Fatalf("want %s: ...%s...; got:\n%v", path, msg, err)
}
