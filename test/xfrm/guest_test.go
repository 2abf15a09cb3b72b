//go:build !guest

package xfrm

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bgpgw/bgpgw/internal/guest"
	"github.com/bgpgw/bgpgw/internal/lab"
)

// guestTimeout bounds the whole guest run (boot, every test inside).
const guestTimeout = 25 * time.Minute

// TestGuest builds bgpgw, the UDP probe, pkg/ipsec's tests and this
// package's guest tests on the host, boots Debian's kernel in a QEMU guest
// and runs them there: pkg/ipsec's TestXfrmKernel (the data plane against
// real XFRM interfaces), then every test of this package. A test failing
// in the guest fails this one with the guest's output. Without QEMU, the
// kernel or busybox it fails, naming the package to install.
func TestGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout+5*time.Minute)
	defer cancel()
	m := guest.ForTest(t, guest.Options{Timeout: guestTimeout})
	dir := m.Scratch()
	start := time.Now()
	bgpgw, err := lab.BuildBgpgw(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := lab.BuildUDPProbe(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(dir, "xfrm.test")
	if err := guest.BuildTest(ctx, ".", inner, "guest"); err != nil {
		t.Fatal(err)
	}
	ipsecTest := filepath.Join(dir, "ipsec.test")
	if err := guest.BuildTest(ctx, "../../pkg/ipsec", ipsecTest); err != nil {
		t.Fatal(err)
	}
	t.Logf("built the binaries in %v", time.Since(start).Round(time.Millisecond))
	pkgDir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	run := []string{"-test.v", "-test.count=1", "-test.timeout=" + (guestTimeout - time.Minute).String()}
	if f := os.Getenv("XFRM_GUEST_RUN"); f != "" { // one test of the guest's, while working on it
		run = append(run, "-test.run="+f)
	}
	script := `set -e
cd "$IPSEC_DIR"
"$IPSEC_TEST" -test.v -test.count=1 -test.run '^TestXfrmKernel$'
cd "$XFRM_DIR"
exec env BGPGW_BIN="$BGPGW_BIN" UDPPROBE_BIN="$UDPPROBE_BIN" "$XFRM_TEST" "$@"`
	argv := append([]string{"env", "IPSEC_DIR=" + filepath.Join(pkgDir, "../../pkg/ipsec"), "IPSEC_TEST=" + ipsecTest,
		"XFRM_DIR=" + pkgDir, "XFRM_TEST=" + inner, "BGPGW_BIN=" + bgpgw, "UDPPROBE_BIN=" + probe,
		"sh", "-c", script, "sh"}, run...)
	guest.RunTest(ctx, t, m, argv...)
}
