//go:build guest

package xfrm

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The binaries under test, built on the host by TestGuest and passed in
// the environment (the guest has no build cache: building there under TCG
// would take minutes).
var bgpgwBin, probeBin string

func TestMain(m *testing.M) {
	bgpgwBin, probeBin = os.Getenv("BGPGW_BIN"), os.Getenv("UDPPROBE_BIN")
	if bgpgwBin == "" || probeBin == "" {
		fmt.Fprintln(os.Stderr, "xfrm: these tests run in the QEMU guest, started by TestGuest on the host: "+
			"go test ./test/xfrm (BGPGW_BIN and UDPPROBE_BIN are not set)")
		os.Exit(1)
	}
	if err := prepareRun(); err != nil {
		fmt.Fprintln(os.Stderr, "xfrm:", err)
		os.Exit(1)
	}
	code := m.Run()
	// What the tests made the kernel load, for the operations guide.
	if b, err := os.ReadFile("/proc/modules"); err == nil {
		var mods []string
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			mods = append(mods, strings.Fields(line)[0])
		}
		slices.Sort(mods)
		fmt.Printf("xfrm: kernel modules loaded in the guest: %s\n", strings.Join(mods, " "))
	}
	os.Exit(code)
}

// prepareRun makes FRR's state directory: the guest's /run is an empty
// tmpfs, where the frr package's tmpfiles.d entry would have made it at
// boot.
func prepareRun() error {
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("user frr (Debian package frr): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll("/run/frr", 0o755); err != nil {
		return err
	}
	return os.Chown("/run/frr", uid, gid)
}

func TestParseSwanctlSPIs(t *testing.T) {
	out := `gw1v4: #1, ESTABLISHED, IKEv2, 1a2b3c4d5e6f7a8b_i 0102030405060708_r*
  local  '198.51.100.10' @ 198.51.100.10[500]
  gw1v4: #1, reqid 1, INSTALLED, TUNNEL, ESP:AES_GCM_16-256
    installed 3s ago, rekeying in 3289s, expires in 3957s
    in  c0b3c1a7,      0 bytes,     0 packets
    out 06e3d5f4,    840 bytes,    10 packets,     1s ago
    local  0.0.0.0/0 ::/0
`
	got := parseSwanctlSPIs(out)
	if want := []string{"0x06e3d5f4", "0xc0b3c1a7"}; !slices.Equal(got, want) {
		t.Errorf("parseSwanctlSPIs = %q, want %q", got, want)
	}
}

func TestParsePolicies(t *testing.T) {
	out := `src ::/0 dst ::/0 
	dir out priority 399999 ptype main 
	tmpl src 2001:db8:203:1::10 dst 2001:db8:198::10
		proto esp spi 0xc40d00d4 reqid 2 mode tunnel
	if_id 0x2
src 0.0.0.0/0 dst 0.0.0.0/0 socket in priority 0 ptype main 
src 0.0.0.0/0 dst 0.0.0.0/0 
	dir fwd priority 399999 ptype main 
	tmpl src 198.51.100.10 dst 203.0.113.10
		proto esp reqid 1 mode tunnel
	if_id 0x1
`
	got, err := parsePolicies(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"fwd 0.0.0.0/0>0.0.0.0/0 if_id 0x1", "out ::/0>::/0 if_id 0x2"}; !slices.Equal(got, want) {
		t.Errorf("parsePolicies = %q, want %q", got, want)
	}
}
