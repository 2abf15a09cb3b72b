package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCharonTunnel checks the lab recipe: two charons with kernel-libipsec
// in two namespaces bring up a tunnel that carries a ping between inside
// addresses on ipsec0.
func TestCharonTunnel(t *testing.T) {
	l := ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := l.Netns("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Netns("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Link(a, "eth0", "203.0.113.1/24", b, "eth0", "203.0.113.2/24"); err != nil {
		t.Fatal(err)
	}
	ca, err := l.StartCharon(a, "a")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := l.StartCharon(b, "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.Load(ctx, SwanctlPSK("t", "203.0.113.2", "203.0.113.1", "lab-secret", "none")); err != nil {
		t.Fatal(err)
	}
	if err := ca.Load(ctx, SwanctlPSK("t", "203.0.113.1", "203.0.113.2", "lab-secret", "start")); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		n    *Netns
		addr string
	}{{a, "169.254.1.1/30"}, {b, "169.254.1.2/30"}} {
		if _, err := x.n.IP(ctx, "addr", "add", x.addr, "dev", "ipsec0"); err != nil {
			t.Fatal(err)
		}
		if _, err := x.n.IP(ctx, "link", "set", "ipsec0", "up"); err != nil {
			t.Fatal(err)
		}
	}
	err = Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		out, err := ca.Swanctl(ctx, "--list-sas")
		return err == nil && strings.Contains(out, "INSTALLED"), nil
	})
	if err != nil {
		t.Fatalf("tunnel not up: %v\n%s", err, ca.LogTail(30))
	}
	out, err := a.Exec(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", "169.254.1.2")
	if err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, ca.LogTail(30))
	}
	t.Log(out)
}
