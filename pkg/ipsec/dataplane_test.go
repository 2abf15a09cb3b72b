package ipsec

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/vishvananda/netlink"
)

// fakeNetlink holds links and addresses the way the kernel does for the calls the data
// plane makes, records every call, and fails the test on a call the data plane should never
// make (a link or address that is not fully specified, an unknown link index).
type fakeNetlink struct {
	t         *testing.T
	links     map[string]netlink.Link // by name
	addrs     map[int][]netip.Prefix  // by link index
	lastIndex int
	calls     []string
	fail      map[string]error // by call name ("LinkAdd"...): the error to answer instead
	interrupt int              // the next AddrLists answer their addresses and ErrDumpInterrupted
	rules     []netlink.Rule   // policy-routing rules
	states    []netlink.XfrmState
}

func newFakeNetlink(t *testing.T) *fakeNetlink {
	return &fakeNetlink{t: t, links: map[string]netlink.Link{}, addrs: map[int][]netip.Prefix{},
		lastIndex: 1, fail: map[string]error{}}
}

// seed adds a link directly, as another actor (charon, an operator...) would.
func (f *fakeNetlink) seed(l netlink.Link, addrs ...string) {
	f.lastIndex++
	l.Attrs().Index = f.lastIndex
	f.links[l.Attrs().Name] = l
	for _, a := range addrs {
		f.addrs[f.lastIndex] = append(f.addrs[f.lastIndex], netip.MustParsePrefix(a))
	}
}

// copyLink returns a copy of l, as each kernel answer is.
func copyLink(l netlink.Link) netlink.Link {
	switch l := l.(type) {
	case *netlink.Xfrmi:
		c := *l
		return &c
	case *netlink.Tuntap:
		c := *l
		return &c
	case *netlink.Dummy:
		c := *l
		return &c
	}
	panic(fmt.Sprintf("fake: unexpected link type %T", l))
}

// byIndex returns the stored link l names by its index (the data plane always has one).
func (f *fakeNetlink) byIndex(call string, l netlink.Link) netlink.Link {
	f.t.Helper()
	for _, s := range f.links {
		if l != nil && s.Attrs().Index == l.Attrs().Index && s.Attrs().Name == l.Attrs().Name {
			return s
		}
	}
	f.t.Errorf("impossible: %s on a link the fake does not hold", call)
	return nil
}

func (f *fakeNetlink) LinkByName(name string) (netlink.Link, error) {
	f.calls = append(f.calls, "LinkByName "+name)
	if err := f.fail["LinkByName"]; err != nil {
		return nil, err
	}
	l, ok := f.links[name]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	return copyLink(l), nil
}

func (f *fakeNetlink) LinkAdd(l netlink.Link) error {
	x, ok := l.(*netlink.Xfrmi)
	if !ok {
		f.t.Errorf("impossible: LinkAdd of a %T", l)
		return syscall.EINVAL
	}
	f.calls = append(f.calls, fmt.Sprintf("LinkAdd xfrm %s if_id %d", x.Name, x.Ifid))
	if x.Index != 0 || x.ParentIndex != 0 || x.Flags != 0 || x.MTU != 0 {
		f.t.Errorf("impossible: LinkAdd with more than a name and an if_id")
	}
	if err := f.fail["LinkAdd"]; err != nil {
		return err
	}
	if _, ok := f.links[x.Name]; ok {
		return syscall.EEXIST
	}
	f.seed(copyLink(x))
	x.Index = f.lastIndex // as netlink's LinkAdd does
	return nil
}

func (f *fakeNetlink) LinkDel(l netlink.Link) error {
	f.calls = append(f.calls, "LinkDel "+l.Attrs().Name)
	s := f.byIndex("LinkDel", l)
	if s == nil {
		return syscall.ENODEV
	}
	delete(f.links, s.Attrs().Name)
	delete(f.addrs, s.Attrs().Index)
	return nil
}

func (f *fakeNetlink) LinkSetUp(l netlink.Link) error {
	f.calls = append(f.calls, "LinkSetUp "+l.Attrs().Name)
	s := f.byIndex("LinkSetUp", l)
	if s == nil {
		return syscall.ENODEV
	}
	s.Attrs().Flags |= net.FlagUp
	return nil
}

func (f *fakeNetlink) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	f.calls = append(f.calls, fmt.Sprintf("AddrList %s %s", l.Attrs().Name, fakeFamilyName(family)))
	if family != netlink.FAMILY_V4 && family != netlink.FAMILY_V6 {
		f.t.Errorf("impossible: AddrList of family %d", family)
	}
	s := f.byIndex("AddrList", l)
	if s == nil {
		return nil, syscall.ENODEV
	}
	var out []netlink.Addr
	for _, p := range f.addrs[s.Attrs().Index] {
		if p.Addr().Is4() == (family == netlink.FAMILY_V4) {
			out = append(out, netlink.Addr{IPNet: ipNet(p), LinkIndex: s.Attrs().Index})
		}
	}
	if f.interrupt > 0 {
		f.interrupt--
		return out, fmt.Errorf("fake: %w", netlink.ErrDumpInterrupted)
	}
	return out, nil
}

func (f *fakeNetlink) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	p := f.checkAddr("AddrAdd", l, a)
	s := f.byIndex("AddrAdd", l)
	if s == nil {
		return syscall.ENODEV
	}
	if err := f.fail["AddrAdd"]; err != nil {
		return err
	}
	i := s.Attrs().Index
	if slices.ContainsFunc(f.addrs[i], func(q netip.Prefix) bool {
		return q == p || (q.Addr().Is6() && q.Addr() == p.Addr()) // IPv6 keys by address only
	}) {
		return syscall.EEXIST
	}
	f.addrs[i] = append(f.addrs[i], p)
	return nil
}

func (f *fakeNetlink) AddrDel(l netlink.Link, a *netlink.Addr) error {
	p := f.checkAddr("AddrDel", l, a)
	s := f.byIndex("AddrDel", l)
	if s == nil {
		return syscall.ENODEV
	}
	i := s.Attrs().Index
	k := slices.Index(f.addrs[i], p)
	if k < 0 {
		return syscall.EADDRNOTAVAIL
	}
	f.addrs[i] = slices.Delete(f.addrs[i], k, k+1)
	return nil
}

// checkAddr records an address change and checks it is a plain address with its prefix.
func (f *fakeNetlink) checkAddr(op string, l netlink.Link, a *netlink.Addr) netip.Prefix {
	f.t.Helper()
	ip, ok := netip.AddrFromSlice(a.IP)
	ones, bits := a.Mask.Size()
	p := netip.PrefixFrom(ip, ones)
	f.calls = append(f.calls, fmt.Sprintf("%s %s %s", op, l.Attrs().Name, p))
	if !ok || bits != ip.BitLen() || a.Peer != nil || a.Label != "" || a.Flags != 0 || a.Scope != 0 || a.Broadcast != nil {
		f.t.Errorf("impossible: %s of a malformed or decorated address %s", op, a)
	}
	return p
}

func fakeFamilyName(family int) string {
	if family == netlink.FAMILY_V4 {
		return "v4"
	}
	return "v6"
}

func (f *fakeNetlink) RuleList(family int) ([]netlink.Rule, error) {
	f.calls = append(f.calls, "RuleList")
	if family != netlink.FAMILY_ALL {
		f.t.Errorf("impossible: RuleList of family %d", family)
	}
	if err := f.fail["RuleList"]; err != nil {
		return nil, err
	}
	return slices.Clone(f.rules), nil
}

func (f *fakeNetlink) RuleDel(r *netlink.Rule) error {
	f.calls = append(f.calls, fmt.Sprintf("RuleDel pref %d table %d %s", r.Priority, r.Table, fakeFamilyName(r.Family)))
	if err := f.fail["RuleDel"]; err != nil {
		return err
	}
	for i, x := range f.rules {
		if x.Priority == r.Priority && x.Table == r.Table && x.Family == r.Family {
			f.rules = slices.Delete(f.rules, i, i+1)
			return nil
		}
	}
	return syscall.ENOENT
}

// changes returns and forgets the calls since the last time, without the reads.
func (f *fakeNetlink) changes() []string {
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c, "LinkByName ") && !strings.HasPrefix(c, "AddrList ") && c != "RuleList" && c != "XfrmStateList" {
			out = append(out, c)
		}
	}
	f.calls = nil
	return out
}

// state describes every link and its addresses, sorted.
func (f *fakeNetlink) state() []string {
	var out []string
	for name, l := range f.links {
		s := fmt.Sprintf("%s %s", name, l.Type())
		if x, ok := l.(*netlink.Xfrmi); ok {
			s += fmt.Sprintf(" if_id %d", x.Ifid)
		}
		if l.Attrs().Flags&net.FlagUp != 0 {
			s += " up"
		}
		for _, a := range f.addrs[l.Attrs().Index] {
			s += " " + a.String()
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func dpTunnel(name, iface string, ifID uint32, inside string) config.Tunnel {
	return config.Tunnel{Name: name, Interface: iface, IfID: ifID, InsideLocal: netip.MustParsePrefix(inside)}
}

func newTestDataPlane(t *testing.T, mode config.IPsecMode) (*DataPlane, *fakeNetlink, *bytes.Buffer) {
	t.Helper()
	f := newFakeNetlink(t)
	var logs bytes.Buffer
	p, err := NewDataPlane(mode, f, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("NewDataPlane(%s): %v", mode, err)
	}
	return p, f, &logs
}

func dpEqual(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func dpWantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not say %q", err, p)
		}
	}
}

func TestNewDataPlaneModes(t *testing.T) {
	for _, mode := range []config.IPsecMode{config.IPsecNone, "", "vti"} {
		if _, err := NewDataPlane(mode, newFakeNetlink(t), nil); err == nil {
			t.Errorf("NewDataPlane(%q): no error", mode)
		}
	}
	if _, err := NewDataPlane(config.IPsecXFRM, nil, nil); err == nil {
		t.Errorf("NewDataPlane without netlink: no error")
	}
	for _, mode := range []config.IPsecMode{config.IPsecXFRM, config.IPsecLibipsec} {
		if _, err := NewDataPlane(mode, newFakeNetlink(t), nil); err != nil {
			t.Errorf("NewDataPlane(%q): %v", mode, err)
		}
	}
}

func TestXfrmEnsureCreates(t *testing.T) {
	for _, inside := range []string{"169.254.10.1/30", "fd00:10::1/64"} {
		t.Run(inside, func(t *testing.T) {
			p, f, logs := newTestDataPlane(t, config.IPsecXFRM)
			tun := dpTunnel("onprem", "bgpgw7", 7, inside)
			if err := p.Ensure(tun); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			dpEqual(t, "first Ensure", f.changes(), []string{
				"LinkAdd xfrm bgpgw7 if_id 7", "LinkSetUp bgpgw7", "AddrAdd bgpgw7 " + inside})
			dpEqual(t, "state", f.state(), []string{"bgpgw7 xfrm if_id 7 up " + inside})
			if n := strings.Count(logs.String(), `tunnel=onprem interface=bgpgw7`); n != 3 {
				t.Errorf("%d log lines naming the tunnel and interface, want 3:\n%s", n, logs)
			}
			logs.Reset()
			for range 2 {
				if err := p.Ensure(tun); err != nil {
					t.Fatalf("Ensure again: %v", err)
				}
			}
			dpEqual(t, "Ensure again", f.changes(), nil)
			if logs.Len() != 0 {
				t.Errorf("Ensure with nothing to do logged:\n%s", logs)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			dpEqual(t, "Close", f.changes(), []string{"LinkDel bgpgw7"})
			dpEqual(t, "state after Close", f.state(), nil)
		})
	}
}

func TestXfrmEnsureRepairs(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecXFRM)
	tun := dpTunnel("onprem", "bgpgw1", 1, "169.254.10.1/30")
	// Left by a previous run, down, with another address; another link has our address.
	f.seed(&netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: "bgpgw1"}, Ifid: 1}, "10.9.9.9/24")
	f.seed(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "other", Flags: net.FlagUp}}, "169.254.10.1/30")
	if err := p.Ensure(tun); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	dpEqual(t, "Ensure", f.changes(), []string{"LinkSetUp bgpgw1", "AddrAdd bgpgw1 169.254.10.1/30"})
	// Someone takes the address away and downs the link.
	f.links["bgpgw1"].Attrs().Flags = 0
	f.addrs[f.links["bgpgw1"].Attrs().Index] = nil
	if err := p.Ensure(tun); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	dpEqual(t, "Ensure after changes", f.changes(), []string{"LinkSetUp bgpgw1", "AddrAdd bgpgw1 169.254.10.1/30"})
	// It is an xfrm link with the tunnel's if_id: Remove deletes it.
	if err := p.Remove(tun); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	dpEqual(t, "Remove", f.changes(), []string{"LinkDel bgpgw1"})
	dpEqual(t, "state", f.state(), []string{"other dummy up 169.254.10.1/30"})
}

func TestXfrmEnsureRefusesForeignLink(t *testing.T) {
	for _, c := range []struct {
		name string
		link netlink.Link
		says []string
	}{
		{"not xfrm", &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "bgpgw1"}}, []string{"dummy", "not an XFRM interface"}},
		{"other if_id", &netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: "bgpgw1"}, Ifid: 9}, []string{"if_id 9, not 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, f, logs := newTestDataPlane(t, config.IPsecXFRM)
			f.seed(c.link)
			before := f.state()
			tun := dpTunnel("onprem", "bgpgw1", 1, "169.254.10.1/30")
			err := p.Ensure(tun)
			dpWantErr(t, err, append(c.says, `tunnel "onprem": `, `"bgpgw1"`)...)
			if !strings.HasPrefix(err.Error(), `tunnel "onprem": `) {
				t.Errorf("error %q does not start with the tunnel", err)
			}
			if err := p.Remove(tun); err != nil {
				t.Errorf("Remove: %v", err)
			}
			if err := p.Ensure(tun); err == nil {
				t.Errorf("second Ensure: no error")
			}
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			dpEqual(t, "changes", f.changes(), nil)
			dpEqual(t, "state", f.state(), before)
			if logs.Len() != 0 {
				t.Errorf("logged changes:\n%s", logs)
			}
		})
	}
}

func TestXfrmRemoveAndClose(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecXFRM)
	a := dpTunnel("a", "bgpgw1", 1, "169.254.10.1/30")
	b := dpTunnel("b", "bgpgw2", 2, "169.254.10.5/30")
	c := dpTunnel("c", "bgpgw3", 3, "fd00:10::1/64")
	foreign := dpTunnel("foreign", "eth9", 9, "169.254.10.9/30")
	f.seed(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}})
	for _, tun := range []config.Tunnel{a, b, c} {
		if err := p.Ensure(tun); err != nil {
			t.Fatalf("Ensure(%s): %v", tun.Name, err)
		}
	}
	if err := p.Ensure(foreign); err == nil {
		t.Fatalf("Ensure(foreign): no error")
	}
	f.changes()

	if err := p.Remove(a); err != nil {
		t.Fatalf("Remove(a): %v", err)
	}
	dpEqual(t, "Remove(a)", f.changes(), []string{"LinkDel bgpgw1"})
	if err := p.Remove(a); err != nil {
		t.Fatalf("Remove(a) again: %v", err)
	}
	dpEqual(t, "Remove(a) again", f.changes(), nil)

	// Created in this run: deleted even if the tunnel's if_id changed since.
	b2 := b
	b2.IfID = 22
	if err := p.Remove(b2); err != nil {
		t.Fatalf("Remove(b with another if_id): %v", err)
	}
	dpEqual(t, "Remove(b with another if_id)", f.changes(), []string{"LinkDel bgpgw2"})

	// Not created in this run and another if_id: not ours.
	f.seed(&netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: "bgpgw4"}, Ifid: 40})
	if err := p.Remove(dpTunnel("d", "bgpgw4", 4, "169.254.10.13/30")); err != nil {
		t.Fatalf("Remove(d): %v", err)
	}
	dpEqual(t, "Remove(d)", f.changes(), nil)

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dpEqual(t, "Close", f.changes(), []string{"LinkDel bgpgw3"})
	dpEqual(t, "state", f.state(), []string{"bgpgw4 xfrm if_id 40", "eth9 dummy"})
	if err := p.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	dpEqual(t, "Close again", f.changes(), nil)
}

func TestXfrmCloseAfterFailedEnsure(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecXFRM)
	f.fail["AddrAdd"] = syscall.EINVAL
	err := p.Ensure(dpTunnel("onprem", "bgpgw1", 1, "169.254.10.1/30"))
	dpWantErr(t, err, `tunnel "onprem": `, "169.254.10.1/30", "invalid argument")
	dpEqual(t, "Ensure", f.changes(), []string{"LinkAdd xfrm bgpgw1 if_id 1", "LinkSetUp bgpgw1", "AddrAdd bgpgw1 169.254.10.1/30"})
	// Close deletes what the failed Ensure created.
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dpEqual(t, "Close", f.changes(), []string{"LinkDel bgpgw1"})
}

func TestXfrmErrors(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecXFRM)
	f.fail["LinkAdd"] = syscall.EOPNOTSUPP
	dpWantErr(t, p.Ensure(dpTunnel("onprem", "bgpgw1", 1, "169.254.10.1/30")),
		`tunnel "onprem": `, `"bgpgw1"`, "if_id 1", "libipsec")
	f.fail = map[string]error{"LinkByName": syscall.EPERM}
	dpWantErr(t, p.Ensure(dpTunnel("onprem", "bgpgw1", 1, "169.254.10.1/30")), `tunnel "onprem": `, "operation not permitted")
	dpWantErr(t, p.Remove(dpTunnel("onprem", "bgpgw1", 1, "169.254.10.1/30")), `tunnel "onprem": `, "operation not permitted")
	dpWantErr(t, p.Close(), `tunnel "onprem": `, "operation not permitted")
	f.fail = map[string]error{}
	f.calls = nil
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dpEqual(t, "Close retrying the failed one", f.calls, []string{"LinkByName bgpgw1"})
	f.calls = nil
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dpEqual(t, "Close after a successful Close", f.calls, nil)
	dpWantErr(t, p.Ensure(config.Tunnel{Name: "empty"}), `tunnel "empty": `)
}

func TestEnsureAddressConflict(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecLibipsec)
	f.seed(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "ipsec0", Flags: net.FlagUp}, Mode: netlink.TUNTAP_MODE_TUN},
		"169.254.10.1/24", "fd00:10::1/120")
	dpWantErr(t, p.Ensure(dpTunnel("v4", "ipsec0", 0, "169.254.10.1/30")), `tunnel "v4": `, "169.254.10.1/24")
	dpWantErr(t, p.Ensure(dpTunnel("v6", "ipsec0", 0, "fd00:10::1/64")), `tunnel "v6": `, "fd00:10::1/120")
	dpEqual(t, "changes", f.changes(), nil)
}

func TestEnsureDumpInterrupted(t *testing.T) {
	p, f, _ := newTestDataPlane(t, config.IPsecLibipsec)
	f.seed(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "ipsec0", Flags: net.FlagUp}, Mode: netlink.TUNTAP_MODE_TUN},
		"169.254.10.1/30")
	tun := dpTunnel("onprem", "ipsec0", 0, "169.254.10.1/30")
	for _, n := range []int{1, 1000} { // read again, or used as read when it keeps being interrupted
		f.interrupt = n
		if err := p.Ensure(tun); err != nil {
			t.Fatalf("Ensure with %d interrupted dumps: %v", n, err)
		}
		dpEqual(t, "Ensure", f.changes(), nil)
	}
	f.interrupt = 0
	tun2 := dpTunnel("second", "ipsec0", 0, "169.254.10.5/30")
	f.interrupt = 1000
	if err := p.Ensure(tun2); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	dpEqual(t, "Ensure", f.changes(), []string{"AddrAdd ipsec0 169.254.10.5/30"})
}

func TestLibipsec(t *testing.T) {
	p, f, logs := newTestDataPlane(t, config.IPsecLibipsec)
	a := dpTunnel("a", config.LibipsecInterface, 1, "169.254.10.1/30")
	b := dpTunnel("b", config.LibipsecInterface, 2, "fd00:10::1/64")

	// charon not started yet
	err := p.Ensure(a)
	if !errors.Is(err, ErrNoInterface) {
		t.Fatalf("Ensure without ipsec0: %v, want ErrNoInterface", err)
	}
	dpWantErr(t, err, `tunnel "a": `, `"ipsec0"`, "kernel-libipsec")
	dpEqual(t, "Ensure without ipsec0", f.changes(), nil)

	// charon creates ipsec0 (down here) and its rules; another rule stays
	f.seed(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "ipsec0"}, Mode: netlink.TUNTAP_MODE_TUN}, "10.1.1.1/32")
	f.rules = []netlink.Rule{
		{Priority: 220, Table: 220, Family: netlink.FAMILY_V4},
		{Priority: 100, Table: 100, Family: netlink.FAMILY_V4},
		{Priority: 220, Table: 220, Family: netlink.FAMILY_V6},
	}
	for _, tun := range []config.Tunnel{a, b, a, b} {
		if err := p.Ensure(tun); err != nil {
			t.Fatalf("Ensure(%s): %v", tun.Name, err)
		}
	}
	dpEqual(t, "Ensure", f.changes(), []string{
		"RuleDel pref 220 table 220 v4", "RuleDel pref 220 table 220 v6",
		"LinkSetUp ipsec0", "AddrAdd ipsec0 169.254.10.1/30", "AddrAdd ipsec0 fd00:10::1/64"})
	if len(f.rules) != 1 || f.rules[0].Priority != 100 {
		t.Errorf("rules left: %+v, want only pref 100", f.rules)
	}
	if !strings.Contains(logs.String(), "removed charon's policy-routing rule") {
		t.Errorf("the removal is not logged:\n%s", logs)
	}

	// a rule that cannot be removed is logged once, and is not the
	// tunnel's error (the tunnel works)
	f.rules = append(f.rules, netlink.Rule{Priority: 220, Table: 220, Family: netlink.FAMILY_V4})
	f.fail["RuleDel"] = syscall.EPERM
	logs.Reset()
	for range 3 {
		if err := p.Ensure(a); err != nil {
			t.Fatalf("Ensure(a) with a rule that stays: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "rule stays"); n != 1 {
		t.Errorf("%d log lines about the rule, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "pref 220 lookup 220") {
		t.Errorf("the log does not name the rule:\n%s", logs)
	}
	delete(f.fail, "RuleDel")
	if err := p.Ensure(a); err != nil {
		t.Fatalf("Ensure(a) once the rule can go: %v", err)
	}
	if len(f.rules) != 1 {
		t.Errorf("rules left: %+v", f.rules)
	}
	f.changes()
	logs.Reset()
	dpEqual(t, "state", f.state(), []string{"ipsec0 tuntap up 10.1.1.1/32 169.254.10.1/30 fd00:10::1/64"})

	// charon restarts: a new ipsec0 without our addresses
	delete(f.links, "ipsec0")
	f.seed(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "ipsec0", Flags: net.FlagUp}, Mode: netlink.TUNTAP_MODE_TUN})
	logs.Reset()
	for _, tun := range []config.Tunnel{a, b} {
		if err := p.Ensure(tun); err != nil {
			t.Fatalf("Ensure(%s) after the restart: %v", tun.Name, err)
		}
	}
	dpEqual(t, "Ensure after the restart", f.changes(), []string{
		"AddrAdd ipsec0 169.254.10.1/30", "AddrAdd ipsec0 fd00:10::1/64"})
	if n := strings.Count(logs.String(), "interface=ipsec0"); n != 2 {
		t.Errorf("%d log lines, want 2:\n%s", n, logs)
	}

	// Remove deletes only the address, never charon's device.
	if err := p.Remove(a); err != nil {
		t.Fatalf("Remove(a): %v", err)
	}
	dpEqual(t, "Remove(a)", f.changes(), []string{"AddrDel ipsec0 169.254.10.1/30"})
	if err := p.Remove(a); err != nil {
		t.Fatalf("Remove(a) again: %v", err)
	}
	dpEqual(t, "Remove(a) again", f.changes(), nil)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dpEqual(t, "Close", f.changes(), []string{"AddrDel ipsec0 fd00:10::1/64"})
	dpEqual(t, "state", f.state(), []string{"ipsec0 tuntap up"})

	// ipsec0 gone (charon stopped): nothing to remove
	delete(f.links, "ipsec0")
	if err := p.Ensure(a); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("Ensure without ipsec0: %v, want ErrNoInterface", err)
	}
	if err := p.Remove(b); err != nil {
		t.Fatalf("Remove without ipsec0: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close without ipsec0: %v", err)
	}
	dpEqual(t, "without ipsec0", f.changes(), nil)
}
