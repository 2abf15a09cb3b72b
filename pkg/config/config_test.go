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

// validYAML is a complete configuration; %[1]s is a directory holding the
// secret files psk-a, psk-b and pw-a.
const validYAML = `
instance:
  name: gw1
  mode: active-standby
  role: primary
bgp:
  asn: 65515
  router_id: 192.0.2.1
  hold_time: 9s
announce:
  - 10.10.0.0/16
  - 10.20.0.0/24
ipsec:
  mode: libipsec
tunnels:
  - name: onprem-a
    local_address: 203.0.113.1
    remote_address: 198.51.100.1
    psk_file: %[1]s/psk-a
    ike_proposals: [aes256gcm16-prfsha384-ecp384]
    esp_proposals: [aes256gcm16-ecp384]
    inside:
      local: 169.254.21.1/30
      remote: 169.254.21.2
    peer_asn: 65010
    accept: ["10.1.0.0/16 le 24", 10.2.0.0/16]
    max_prefixes: 100
    max_as_path: 20
    password_file: %[1]s/pw-a
    bfd: {enabled: true, multihop: true, min_ttl: 64, min_rx: 100ms, min_tx: 100ms, multiplier: 3}
  - name: onprem-b
    local_address: 203.0.113.1
    remote_address: 198.51.100.2
    psk_file: %[1]s/psk-b
    ike_proposals: [aes256gcm16-prfsha384-ecp384]
    esp_proposals: [aes256gcm16-ecp384]
    inside:
      local: 169.254.22.1/30
      remote: 169.254.22.2
    peer_asn: 65010
    accept: [10.1.0.0/16]
cloud_peers:
  - name: cloud-rr
    address: 10.10.0.2
    peer_asn: 65100
api:
  socket: /run/bgpgw/gw1.sock
`

func secretsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"psk-a": "s3cret-psk-a\n", "psk-b": "s3cret-psk-b", "pw-a": "md5-pw"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600))
	}
	return dir
}

func TestParseValid(t *testing.T) {
	dir := secretsDir(t)
	c, err := Parse(fmt.Appendf(nil, validYAML, dir))
	require.NoError(t, err)
	assert.Equal(t, ActiveStandby, c.Instance.Mode)
	assert.Equal(t, RolePrimary, c.Instance.Role)
	assert.Equal(t, uint32(65515), c.BGP.ASN)
	assert.Equal(t, 3*time.Second, c.BGP.Keepalive, "keepalive defaults to hold_time/3")
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("10.20.0.0/24")}, c.Announce)
	require.Len(t, c.Tunnels, 2)
	a := c.Tunnels[0]
	assert.Equal(t, "s3cret-psk-a", a.PSK.Reveal())
	assert.Equal(t, netip.MustParsePrefix("169.254.21.1/30"), a.InsideLocal)
	assert.Equal(t, []PrefixRange{{netip.MustParsePrefix("10.1.0.0/16"), 24}, {netip.MustParsePrefix("10.2.0.0/16"), 16}}, a.Accept)
	assert.Equal(t, 100*time.Millisecond, a.BFD.MinRx)
	assert.Equal(t, uint8(64), a.BFD.MinTTL)
	assert.Equal(t, 20, a.MaxASPath)
	assert.Zero(t, c.Tunnels[1].MaxASPath, "no limit by default")
	assert.Equal(t, uint32(DefaultMaxPrefixes), c.Tunnels[1].MaxPrefixes)
	assert.Equal(t, DefaultProtocol, c.Kernel.Protocol)
	assert.Equal(t, DefaultPrepend, c.Standby.Prepend)

	// Secrets never print.
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", a.PSK), fmt.Sprintf("%q", a.PSK)} {
		assert.NotContains(t, s, "s3cret")
		assert.NotContains(t, s, "md5-pw")
	}
}

func TestParseErrors(t *testing.T) {
	dir := secretsDir(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "open"), []byte("x"), 0o666))
	require.NoError(t, os.Chmod(filepath.Join(dir, "open"), 0o666))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	base := fmt.Sprintf(validYAML, dir)
	rows := []struct {
		name      string
		old, new  string // replace old with new in the valid file
		path, msg string // expected key path and a piece of the message
	}{
		{"unknown top-level key", "api:", "apii:\n  socket: /x\napi:", "apii", "unknown key"},
		{"unknown nested key", "    max_prefixes: 100", "    max_prefix: 100", "tunnels[0].max_prefix", "unknown key"},
		{"typo in bfd", "multiplier: 3}", "multiplyer: 3}", "tunnels[0].bfd.multiplyer", "unknown key"},
		{"bad announce prefix", "  - 10.20.0.0/24", "  - 10.20.0.0/33", "announce[1]", "not a prefix"},
		{"host bits in announce", "  - 10.20.0.0/24", "  - 10.20.0.1/24", "announce[1]", "did you mean 10.20.0.0/24"},
		{"default route announced", "  - 10.20.0.0/24", "  - 0.0.0.0/0", "announce[1]", "default route"},
		{"duplicate announce", "  - 10.20.0.0/24", "  - 10.10.0.0/16", "announce[1]", "listed twice"},
		{"announce list empty", "announce:\n  - 10.10.0.0/16\n  - 10.20.0.0/24", "announce: []", "announce", "at least one"},
		{"announce missing", "announce:\n  - 10.10.0.0/16\n  - 10.20.0.0/24", "", "announce", "at least one"},
		{"bad accept prefix", `accept: [10.1.0.0/16]`, `accept: [10.1.0.0/16 ge 24]`, "tunnels[1].accept[0]", `want "le"`},
		{"accept le too short", `"10.1.0.0/16 le 24"`, `"10.1.0.0/16 le 8"`, "tunnels[0].accept[0]", "le must be a length"},
		{"overlapping inside addresses", "local: 169.254.22.1/30", "local: 169.254.21.1/29", "tunnels[1].inside.local", "overlaps tunnels[0].inside.local"},
		{"inside remote outside subnet", "remote: 169.254.22.2", "remote: 169.254.23.2", "tunnels[1].inside.remote", "not in the inside subnet"},
		{"inside local is network address", "local: 169.254.22.1/30", "local: 169.254.22.0/30", "tunnels[1].inside.local", "network address"},
		{"inside local no length", "local: 169.254.22.1/30", "local: 169.254.22.1", "tunnels[1].inside.local", "ADDRESS/LENGTH"},
		{"missing PSK file", "psk-b", "psk-missing", "tunnels[1].psk_file", "no such file"},
		{"PSK file world writable", "psk-b", "open", "tunnels[1].psk_file", "writable by everyone"},
		{"PSK file empty", "psk-b", "empty", "tunnels[1].psk_file", "empty"},
		{"PSK absent", "    psk_file: " + dir + "/psk-b\n", "", "tunnels[1].psk_file", "required"},
		{"PSK env unset", "    psk_file: " + dir + "/psk-b\n", "    psk_env: BGPGW_TEST_SURELY_UNSET\n", "tunnels[1].psk_env", "not set"},
		{"duplicate tunnel names", "name: onprem-b", "name: onprem-a", "tunnels[1].name", `duplicate name "onprem-a"`},
		{"cloud peer reuses tunnel name", "name: cloud-rr", "name: onprem-a", "cloud_peers[0].name", "duplicate name"},
		{"bad name", "name: onprem-b", "name: on prem b", "tunnels[1].name", "letters, digits"},
		{"ASN out of range", "asn: 65515", "asn: 4294967296", "bgp.asn", "out of range"},
		{"ASN zero", "peer_asn: 65100", "peer_asn: 0", "cloud_peers[0].peer_asn", "out of range"},
		{"ASN not a number", "asn: 65515", "asn: sixty", "bgp.asn", "whole number"},
		{"AS_TRANS", "asn: 65515", "asn: 23456", "bgp.asn", "AS_TRANS"},
		{"iBGP tunnel", "peer_asn: 65010\n    accept: [10.1.0.0/16]", "peer_asn: 65515\n    accept: [10.1.0.0/16]", "tunnels[1].peer_asn", "eBGP"},
		{"hold time 1s", "hold_time: 9s", "hold_time: 1s", "bgp.hold_time", "minimum of 3s"},
		{"hold time 2s", "hold_time: 9s", "hold_time: 2s", "bgp.hold_time", "minimum of 3s"},
		{"hold time fraction", "hold_time: 9s", "hold_time: 3500ms", "bgp.hold_time", "whole seconds"},
		{"hold time garbage", "hold_time: 9s", "hold_time: nine", "bgp.hold_time", "not a duration"},
		{"router id v6", "router_id: 192.0.2.1", "router_id: 2001:db8::1", "bgp.router_id", "IPv4"},
		{"bad mode", "mode: active-standby", "mode: active-passive", "instance.mode", "active-active or active-standby"},
		{"standby without role", "  role: primary\n", "", "instance.role", "required in active-standby"},
		{"role in active-active", "mode: active-standby", "mode: active-active", "instance.role", "only used in active-standby"},
		{"bad role", "role: primary", "role: backup", "instance.role", "primary or standby"},
		{"bad outer address", "remote_address: 198.51.100.2", "remote_address: 198.51.100", "tunnels[1].remote_address", "not an IP address"},
		{"no proposals", "    ike_proposals: [aes256gcm16-prfsha384-ecp384]\n    esp_proposals: [aes256gcm16-ecp384]\n    inside:\n      local: 169.254.22.1/30", "    inside:\n      local: 169.254.22.1/30", "tunnels[1].ike_proposals", "required"},
		{"bfd interval too small", "min_rx: 100ms", "min_rx: 1ms", "tunnels[0].bfd.min_rx", "out of range"},
		{"bfd multiplier", "multiplier: 3}", "multiplier: 0}", "tunnels[0].bfd.multiplier", "out of range"},
		{"max prefixes zero", "max_prefixes: 100", "max_prefixes: 0", "tunnels[0].max_prefixes", "out of range"},
		{"relative socket", "socket: /run/bgpgw/gw1.sock", "socket: gw1.sock", "api.socket", "absolute"},
		{"tunnels not a list", "tunnels:\n", "tunnels: 3\nx_tunnels:\n", "tunnels", "must be a list"},
		{"duplicate cloud peer", "cloud_peers:\n", "cloud_peers:\n  - {name: rr0, address: 10.10.0.2, peer_asn: 65100}\n", "cloud_peers[1].address", "also cloud_peers[0].address"},
		{"bad YAML", "instance:", "instance: [", "", "not valid YAML"},
		{"check kind", "api:", "health: [{name: c1, kind: ping, target: x}]\napi:", "health[0].kind", "want link, icmp"},
		{"check tunnel scope without tunnel", "api:", "health: [{name: c1, kind: icmp, target: 10.1.0.1, scope: tunnel}]\napi:", "health[0].tunnel", "required with scope: tunnel"},
		{"check unknown tunnel", "api:", "health: [{name: c1, kind: icmp, target: 10.1.0.1, scope: tunnel, tunnel: nope}]\napi:", "health[0].tunnel", `no tunnel named "nope"`},
		{"check timeout", "api:", "health: [{name: c1, kind: tcp, target: '10.1.0.1:80', interval: 1s, timeout: 1s}]\napi:", "health[0].timeout", "below interval"},
		{"check duplicate", "api:", "health: [{name: c1, kind: link, target: eth0}, {name: c1, kind: link, target: eth1}]\napi:", "health[1].name", "duplicate check name"},
		{"drain too long", "api:", "drain: {time: 10m}\napi:", "drain.time", "longer than 5m"},
		{"hold-down max below initial", "api:", "hold_down: {initial: 10s, max: 5s}\napi:", "hold_down.max", "below initial"},
		{"bfd auth type", "multiplier: 3}", "multiplier: 3, auth: {type: md5, key_file: pw-a}}", "tunnels[0].bfd.auth.type", "keyed-sha1"},
		{"bfd auth key missing", "multiplier: 3}", "multiplier: 3, auth: {type: keyed-sha1}}", "tunnels[0].bfd.auth.key_file", "required"},
		{"link rise", "api:", "health: [{name: c1, kind: link, target: eth0, rise: 2}]\napi:", "health[0].rise", "must be 1 for kind link"},
		{"hold-down max too long", "api:", "hold_down: {max: 48h}\napi:", "hold_down.max", "longer than 24h"},
		{"iBGP cloud peer", "peer_asn: 65100", "peer_asn: 65515", "cloud_peers[0].peer_asn", "eBGP"},
		{"empty proposal", "esp_proposals: [aes256gcm16-ecp384]\n    inside:\n      local: 169.254.22.1/30", "esp_proposals: [\"\"]\n    inside:\n      local: 169.254.22.1/30", "tunnels[1].esp_proposals[0]", "non-empty string"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			require.Contains(t, base, r.old, "test row does not apply to the valid file")
			_, err := Parse([]byte(strings.Replace(base, r.old, r.new, 1)))
			require.Error(t, err)
			var errs Errors
			require.ErrorAs(t, err, &errs)
			found := false
			for _, e := range errs {
				if e.Path == r.path && strings.Contains(e.Msg, r.msg) {
					found = true
				}
			}
			assert.True(t, found, "want %s: ...%s...; got:\n%v", r.path, r.msg, err)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestSecretFileWarningsAndRelativePaths(t *testing.T) {
	dir := secretsDir(t)
	require.NoError(t, os.Chmod(filepath.Join(dir, "psk-b"), 0o644))
	yaml := strings.ReplaceAll(fmt.Sprintf(validYAML, dir), dir+"/", "")
	path := filepath.Join(dir, "gw1.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	c, err := Load(path)
	require.NoError(t, err, "relative secret paths are taken from the config file's directory")
	assert.Equal(t, "s3cret-psk-b", c.Tunnels[1].PSK.Reveal())
	require.Len(t, c.Warnings, 1)
	assert.Contains(t, c.Warnings[0], "tunnels[1].psk_file: ")
	assert.Contains(t, c.Warnings[0], "readable by everyone")
}

func TestKeepaliveDefaultIsWholeSeconds(t *testing.T) {
	dir := secretsDir(t)
	c, err := Parse([]byte(strings.Replace(fmt.Sprintf(validYAML, dir), "hold_time: 9s", "hold_time: 10s", 1)))
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, c.BGP.Keepalive)
}

func TestOneErrorPerProblem(t *testing.T) {
	dir := secretsDir(t)
	_, err := Parse([]byte(strings.Replace(fmt.Sprintf(validYAML, dir), "esp_proposals: [aes256gcm16-ecp384]\n    inside:\n      local: 169.254.22.1/30", "esp_proposals: [\"\"]\n    inside:\n      local: 169.254.22.1/30", 1)))
	var errs Errors
	require.ErrorAs(t, err, &errs)
	assert.Len(t, errs, 1, "%v", err)
}

func TestParseReportsAllErrors(t *testing.T) {
	dir := secretsDir(t)
	bad := strings.NewReplacer("asn: 65515", "asn: 0", "hold_time: 9s", "hold_time: 2s", "- 10.20.0.0/24", "- 10.20.0.1/24").Replace(fmt.Sprintf(validYAML, dir))
	_, err := Parse([]byte(bad))
	var errs Errors
	require.ErrorAs(t, err, &errs)
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	assert.Equal(t, []string{"bgp.asn", "bgp.hold_time", "announce[1]"}, paths)
}

func TestIPsecNoneNeedsNoTunnelSecrets(t *testing.T) {
	c, err := Parse([]byte(`
instance: {name: lab1, mode: active-active}
bgp: {asn: 65515, router_id: 192.0.2.1}
announce: [10.10.0.0/16]
ipsec: {mode: none}
tunnels:
  - name: t1
    inside: {local: 169.254.21.1/30, remote: 169.254.21.2}
    peer_asn: 65010
`))
	require.NoError(t, err)
	assert.Equal(t, IPsecNone, c.IPsec.Mode)
	assert.Empty(t, c.Tunnels[0].Accept)
}

func TestPrefixRange(t *testing.T) {
	r, err := ParsePrefixRange("10.1.0.0/16 le 24")
	require.NoError(t, err)
	assert.True(t, r.Contains(netip.MustParsePrefix("10.1.0.0/16")))
	assert.True(t, r.Contains(netip.MustParsePrefix("10.1.5.0/24")))
	assert.False(t, r.Contains(netip.MustParsePrefix("10.1.5.0/25")))
	assert.False(t, r.Contains(netip.MustParsePrefix("10.0.0.0/8")))
	assert.False(t, r.Contains(netip.MustParsePrefix("10.2.0.0/24")))
	assert.Equal(t, "10.1.0.0/16 le 24", r.String())
	for _, bad := range []string{"", "10.1.0.0/16 le", "10.1.0.0/16 ge 24", "10.1.0.0/16 le 33", "10.1.0.1/16", "::ffff:10.0.0.0/104"} {
		_, err := ParsePrefixRange(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(validYAML, "/nonexistent")))
	f.Add([]byte("instance: {name: x}\ntunnels: [{}]"))
	f.Add([]byte("announce: [10.0.0.0/8, '::/0']"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil && (c == nil || len(c.Tunnels) == 0 || len(c.Announce) == 0) {
			t.Fatalf("accepted a config without tunnels or announcements")
		}
	})
}

func FuzzParsePrefixRange(f *testing.F) {
	for _, s := range []string{"10.1.0.0/16", "10.1.0.0/16 le 24", "2001:db8::/32 le 48", "0.0.0.0/0 le 32"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePrefixRange(s)
		if err != nil {
			return
		}
		if !r.Contains(r.Prefix) {
			t.Fatalf("%q does not contain its own prefix", s)
		}
		back, err := ParsePrefixRange(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip of %q: %v %v", s, back, err)
		}
	})
}
