//go:build guest

package xfrm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// LibreswanRoot is where scripts/install-deps.sh unpacks Debian's libreswan
// package: it conflicts with strongSwan's packages, which the lab needs
// installed, so it is unpacked beside them rather than installed. Its
// libraries are installed as packages.
const LibreswanRoot = "/opt/bgpgw-lab/libreswan"

// libreswanDevice is libreswan's pluto on op: one IKEv2 connection per
// gateway tunnel, route-based on op's XFRM interface ipsecN (libreswan's
// ipsec-interface=N uses an existing ipsecN with if_id N), responder only.
// libreswan 4 keeps one address family per connection: each tunnel's
// CHILD_SA is narrowed to its family's selector (0.0.0.0/0 or ::/0) out of
// the two bgpgw proposes.
type libreswanDevice struct {
	dir, ctl string
	whack    string
	proc     *lab.Process
	ns       *lab.Netns
}

func startLibreswanDevice(ctx context.Context, x *xlab) (*libreswanDevice, error) {
	bin := func(name string) string { return filepath.Join(LibreswanRoot, "usr/libexec/ipsec", name) }
	for _, b := range []string{"pluto", "whack", "addconn"} {
		if _, err := os.Stat(bin(b)); err != nil {
			return nil, fmt.Errorf("libreswan: %w (scripts/install-deps.sh unpacks Debian's libreswan package into %s)",
				err, LibreswanRoot)
		}
	}
	d := &libreswanDevice{dir: filepath.Join(x.l.Dir(), "libreswan"), whack: bin("whack"), ns: x.op}
	d.ctl = filepath.Join(d.dir, "run", "pluto.ctl")
	nss := filepath.Join(d.dir, "nss")
	for _, p := range []string{filepath.Join(d.dir, "run"), nss} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return nil, err
		}
	}
	if out, err := exec.CommandContext(ctx, "certutil", "-N", "-d", "sql:"+nss, "--empty-password").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("libreswan: NSS database (certutil, package libnss3-tools): %w: %s", err, out)
	}
	var conns, secrets strings.Builder
	conns.WriteString("config setup\n\tplutodebug=none\n\n")
	for _, g := range x.gws {
		for _, s := range g.tunnels {
			local, sel := opWAN4, "0.0.0.0/0"
			if s.v6 {
				local, sel = opWAN6, "::/0"
			}
			fmt.Fprintf(&conns, `conn %[1]s
	ikev2=yes
	authby=secret
	left=%[2]s
	right=%[3]s
	leftsubnet=%[4]s
	rightsubnet=%[4]s
	narrowing=yes
	ike=aes_gcm256-sha2_384;dh20
	esp=aes_gcm256
	ipsec-interface=%[5]d
	leftupdown=%%disabled
	dpddelay=10s
	dpdaction=clear
	retransmit-timeout=10s
	auto=add

`, s.opConn, local, s.gwOuter, sel, s.opIfID)
			fmt.Fprintf(&secrets, "%s %s : PSK \"%s\"\n", local, s.gwOuter, labPSK)
		}
	}
	conf := filepath.Join(d.dir, "ipsec.conf")
	sec := filepath.Join(d.dir, "ipsec.secrets")
	if err := os.WriteFile(conf, []byte(conns.String()), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(sec, []byte(secrets.String()), 0o600); err != nil {
		return nil, err
	}
	p, err := x.l.Start(x.op, filepath.Join(d.dir, "pluto.log"), bin("pluto"), "--nofork", "--stderrlog",
		"--config", conf, "--secretsfile", sec, "--nssdir", nss, "--rundir", filepath.Join(d.dir, "run"),
		"--ipsecdir", d.dir, "--no-dnssec")
	if err != nil {
		return nil, fmt.Errorf("libreswan: %w", err)
	}
	d.proc = p
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = lab.Poll(wctx, 100*time.Millisecond, func() (bool, error) {
		if p.Exited() {
			return false, lab.Fatal(fmt.Errorf("pluto exited:\n%s", d.logTail(ctx, 30)))
		}
		_, err := d.run(ctx, "--status")
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("libreswan: pluto's control socket did not answer: %w\n%s", err, d.logTail(ctx, 30))
	}
	if out, err := x.op.Exec(ctx, bin("addconn"), "--config", conf, "--ctlsocket", d.ctl, "--autoall"); err != nil {
		return nil, fmt.Errorf("libreswan: addconn: %w: %s\n%s", err, out, d.logTail(ctx, 30))
	}
	if _, err := d.run(ctx, "--listen"); err != nil {
		return nil, fmt.Errorf("libreswan: %w", err)
	}
	return d, nil
}

// run runs whack against this pluto in op.
func (d *libreswanDevice) run(ctx context.Context, args ...string) (string, error) {
	return d.ns.Exec(ctx, append([]string{d.whack, "--ctlsocket", d.ctl}, args...)...)
}

func (d *libreswanDevice) terminate(ctx context.Context, conn string) error {
	_, err := d.run(ctx, "--name", conn, "--terminate")
	return err
}

// libreswanSPI matches an SA in whack --status: "esp.c0b3c1a7@198.51.100.10".
var libreswanSPI = regexp.MustCompile(`esp\.([0-9a-f]+)@`)

func (d *libreswanDevice) spis(ctx context.Context) ([]string, error) {
	out, err := d.run(ctx, "--status")
	if err != nil {
		return nil, err
	}
	var spis []string
	for _, m := range libreswanSPI.FindAllStringSubmatch(out, -1) {
		spis = append(spis, fmt.Sprintf("0x%08s", m[1]))
	}
	slices.Sort(spis)
	return slices.Compact(spis), nil
}

func (d *libreswanDevice) logTail(ctx context.Context, n int) string {
	st, _ := d.run(ctx, "--trafficstatus")
	b, _ := os.ReadFile(filepath.Join(d.dir, "pluto.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return st + "\n" + strings.Join(lines, "\n")
}

// TestXfrmLibreswan: the same pair against libreswan's pluto as the on-prem
// VPN device, route-based on XFRM interfaces (ipsec-interface), so that an
// IKE implementation other than charon's is proven against bgpgw's: every
// tunnel up (each CHILD_SA narrowed to its family's selector), BGP over
// the inside addresses, traffic both ways through both gateways in both
// families, libreswan deleting a gateway's SAs and the gateway bringing
// them back, nothing stale on either end.
func TestXfrmLibreswan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	x := newLab(t, ctx, labOptions{device: libreswan})
	x.waitConverged(ctx, "start", "gw1", "gw2")
	t.Logf("lab up and converged in %v", time.Since(start).Round(100*time.Millisecond))
	x.checkDataPlane(ctx)
	x.requireCarriers("both carrying", x.burst(ctx, "both carrying", 2*time.Second, 0.05), "gw1", "gw2")
	x.waitNoStale(ctx, "start", "gw1", "gw2")
	if x.run("SA deleted by libreswan", func(t *testing.T) { x.farEndDeletes(ctx, x.gw("gw1")) }) {
		x.checkNoSecrets(ctx)
	}
}
