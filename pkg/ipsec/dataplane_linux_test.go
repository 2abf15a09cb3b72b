package ipsec

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// newTestNetns creates a fresh, unnamed network namespace that disappears when the test
// ends, leaving the calling thread in its original namespace.
func newTestNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: creates a network namespace and a TUN device in it")
	}
	var ns netns.NsHandle
	err := inNetns(func() (err error) {
		ns, err = netns.New() // creates the namespace and moves this thread into it
		return err
	})
	if err != nil {
		t.Fatalf("create a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNetns runs fn on a locked thread (moved to a namespace by fn or by inNetns itself if
// ns is given) and puts the thread back in its original namespace.
func inNetns(fn func() error, ns ...netns.NsHandle) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if len(ns) > 0 {
		err = netns.Set(ns[0])
	}
	if err == nil {
		err = fn()
	}
	if serr := netns.Set(orig); serr != nil {
		// Leave the thread locked: it dies with its goroutine rather than running others
		// in the wrong namespace.
		return errors.Join(err, serr)
	}
	runtime.UnlockOSThread()
	return err
}

// addTun creates charon's TUN device in ns, as its kernel-libipsec plugin does.
func addTun(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	tun := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: config.LibipsecInterface}, Mode: netlink.TUNTAP_MODE_TUN}
	// TUNSETIFF creates the device in the namespace of the calling thread.
	if err := inNetns(func() error { return netlink.LinkAdd(tun) }, ns); err != nil {
		t.Fatalf("create the TUN device: %v", err)
	}
}

// recorder records the changes the data plane asks of a real netlink handle.
type recorder struct {
	Netlink
	calls []string
}

func (r *recorder) LinkAdd(l netlink.Link) error {
	r.calls = append(r.calls, "LinkAdd "+l.Attrs().Name)
	return r.Netlink.LinkAdd(l)
}

func (r *recorder) LinkDel(l netlink.Link) error {
	r.calls = append(r.calls, "LinkDel "+l.Attrs().Name)
	return r.Netlink.LinkDel(l)
}

func (r *recorder) LinkSetUp(l netlink.Link) error {
	r.calls = append(r.calls, "LinkSetUp "+l.Attrs().Name)
	return r.Netlink.LinkSetUp(l)
}

func (r *recorder) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	r.calls = append(r.calls, "AddrAdd "+l.Attrs().Name+" "+a.IPNet.String())
	return r.Netlink.AddrAdd(l, a)
}

func (r *recorder) AddrDel(l netlink.Link, a *netlink.Addr) error {
	r.calls = append(r.calls, "AddrDel "+l.Attrs().Name+" "+a.IPNet.String())
	return r.Netlink.AddrDel(l, a)
}

func (r *recorder) RuleDel(rule *netlink.Rule) error {
	r.calls = append(r.calls, fmt.Sprintf("RuleDel pref %d table %d", rule.Priority, rule.Table))
	return r.Netlink.RuleDel(rule)
}

func (r *recorder) take() []string {
	c := r.calls
	r.calls = nil
	return c
}

// kernelState returns whether ipsec0 is up and its global addresses, as the kernel has them.
func kernelState(t *testing.T, h Netlink) (up bool, addrs []string) {
	t.Helper()
	l, err := h.LinkByName(config.LibipsecInterface)
	if err != nil {
		t.Fatalf("look up ipsec0: %v", err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list the addresses of ipsec0: %v", err)
	}
	for _, a := range as {
		if ip, _ := netip.AddrFromSlice(a.IP); !ip.IsLinkLocalUnicast() || ip.Is4() {
			addrs = append(addrs, a.IPNet.String())
		}
	}
	slices.Sort(addrs)
	return l.Attrs().Flags&net.FlagUp != 0, addrs
}

// TestLibipsecKernel runs the libipsec data plane against the kernel, in a network
// namespace of its own holding a TUN device like charon's.
func TestLibipsecKernel(t *testing.T) {
	ns := newTestNetns(t)
	h, err := NewNetlink(ns)
	if err != nil {
		t.Fatalf("NewNetlink: %v", err)
	}
	t.Cleanup(h.(*netlink.Handle).Close)
	rec := &recorder{Netlink: h}
	p, err := NewDataPlane(config.IPsecLibipsec, rec, nil)
	if err != nil {
		t.Fatalf("NewDataPlane: %v", err)
	}
	a := dpTunnel("a", config.LibipsecInterface, 1, "169.254.10.1/30")
	b := dpTunnel("b", config.LibipsecInterface, 2, "fd00:10::1/64")

	if err := p.Ensure(a); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("Ensure before charon created ipsec0: %v, want ErrNoInterface", err)
	}
	addTun(t, ns)
	if _, err := h.LinkByName(config.LibipsecInterface); err != nil {
		t.Fatalf("the TUN device is not in the test namespace: %v", err)
	}
	// charon's rules, as it adds them when it starts
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		r := netlink.NewRule()
		r.Priority, r.Table, r.Family = 220, 220, fam
		if err := h.(*netlink.Handle).RuleAdd(r); err != nil {
			t.Fatalf("add rule pref 220 (family %d): %v", fam, err)
		}
	}
	for _, tun := range []config.Tunnel{a, b} {
		if err := p.Ensure(tun); err != nil {
			t.Fatalf("Ensure(%s): %v", tun.Name, err)
		}
	}
	dpEqual(t, "Ensure", rec.take(), []string{"RuleDel pref 220 table 220", "RuleDel pref 220 table 220",
		"LinkSetUp ipsec0", "AddrAdd ipsec0 169.254.10.1/30", "AddrAdd ipsec0 fd00:10::1/64"})
	rules, err := h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list rules: %v", err)
	}
	for _, r := range rules {
		if r.Priority == 220 {
			t.Errorf("rule pref 220 still there: %+v", r)
		}
	}
	up, addrs := kernelState(t, h)
	if !up {
		t.Errorf("ipsec0 is not up")
	}
	dpEqual(t, "addresses", addrs, []string{"169.254.10.1/30", "fd00:10::1/64"})
	for _, tun := range []config.Tunnel{a, b} {
		if err := p.Ensure(tun); err != nil {
			t.Fatalf("Ensure(%s) again: %v", tun.Name, err)
		}
	}
	dpEqual(t, "Ensure again", rec.take(), nil)

	// charon restarts: its new ipsec0 has none of our addresses
	l, err := h.LinkByName(config.LibipsecInterface)
	if err != nil {
		t.Fatalf("look up ipsec0: %v", err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatalf("delete ipsec0: %v", err)
	}
	addTun(t, ns)
	if err := p.Ensure(a); err != nil {
		t.Fatalf("Ensure(a) after the restart: %v", err)
	}
	dpEqual(t, "Ensure after the restart", rec.take(), []string{"LinkSetUp ipsec0", "AddrAdd ipsec0 169.254.10.1/30"})
	if err := p.Ensure(b); err != nil {
		t.Fatalf("Ensure(b) after the restart: %v", err)
	}
	rec.take()

	if err := p.Remove(a); err != nil {
		t.Fatalf("Remove(a): %v", err)
	}
	_, addrs = kernelState(t, h)
	dpEqual(t, "addresses after Remove(a)", addrs, []string{"fd00:10::1/64"})
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	up, addrs = kernelState(t, h)
	dpEqual(t, "addresses after Close", addrs, nil)
	if !up {
		t.Errorf("ipsec0 is no longer up after Close")
	}
	dpEqual(t, "Remove and Close", rec.take(), []string{
		"AddrDel ipsec0 169.254.10.1/30", "AddrDel ipsec0 fd00:10::1/64"})
}

// TestXfrmKernel runs the xfrm data plane against the kernel, in a network namespace of its
// own. A kernel without XFRM interfaces must get an error pointing to libipsec mode.
func TestXfrmKernel(t *testing.T) {
	ns := newTestNetns(t)
	h, err := NewNetlink(ns)
	if err != nil {
		t.Fatalf("NewNetlink: %v", err)
	}
	t.Cleanup(h.(*netlink.Handle).Close)
	p, err := NewDataPlane(config.IPsecXFRM, h, nil)
	if err != nil {
		t.Fatalf("NewDataPlane: %v", err)
	}
	tun := dpTunnel("onprem", "bgpgw7", 7, "169.254.10.1/30")
	if err := p.Ensure(tun); err != nil {
		dpWantErr(t, err, `tunnel "onprem": `, `"bgpgw7"`, "ipsec.mode libipsec")
		if _, lerr := h.LinkByName("bgpgw7"); lerr == nil {
			t.Errorf("Ensure failed and left bgpgw7")
		}
		t.Logf("no XFRM interfaces here: %v", err)
		return
	}
	l, err := h.LinkByName("bgpgw7")
	if err != nil {
		t.Fatalf("look up bgpgw7: %v", err)
	}
	if x, ok := l.(*netlink.Xfrmi); !ok || x.Ifid != 7 || x.Flags&net.FlagUp == 0 {
		t.Errorf("bgpgw7 is a %s link, want an XFRM interface with if_id 7, up", l.Type())
	}
	if err := p.Ensure(tun); err != nil {
		t.Fatalf("Ensure again: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := h.LinkByName("bgpgw7"); err == nil {
		t.Errorf("bgpgw7 still there after Close")
	}
}
