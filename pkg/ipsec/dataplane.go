package ipsec

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netlink is the part of *netlink.Handle the data plane uses; tests replace it with a fake.
// Like netlink, AddrList may return addresses together with an error wrapping
// netlink.ErrDumpInterrupted.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	RuleList(family int) ([]netlink.Rule, error)
	RuleDel(rule *netlink.Rule) error
	XfrmStateList(family int) ([]netlink.XfrmState, error)
	XfrmStateDel(state *netlink.XfrmState) error
}

// charonRule is the priority and table of the policy-routing rule charon
// adds (pref 220 lookup 220). kernel-libipsec puts a route into ipsec0 in
// table 220 for every remote traffic selector, whatever
// charon.install_routes says; with the rule in place those routes keep
// sending traffic into a tunnel bgpgw withdrew. In libipsec mode the data
// plane removes the rule, so that bgpgw's routes alone decide what enters
// ipsec0 (as routes pick the XFRM interface in xfrm mode).
const charonRule = 220

// NewNetlink returns a netlink handle working in network namespace ns, or in the current
// one for netns.None(). The result is a *netlink.Handle: close it with its Close method
// once the data plane using it is closed.
func NewNetlink(ns netns.NsHandle) (Netlink, error) {
	if ns > 0 {
		return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	}
	return netlink.NewHandle(unix.NETLINK_ROUTE)
}

// ErrNoInterface is wrapped by Ensure's error in libipsec mode when charon's TUN device
// does not exist (yet): charon's kernel-libipsec plugin creates it when charon starts.
var ErrNoInterface = errors.New("interface does not exist")

// dumpAttempts bounds the reads of a dump that keep being interrupted by changes.
const dumpAttempts = 5

// DataPlane creates the interfaces tunnel traffic goes through and puts the tunnels'
// inside addresses on them; in xfrm mode it also deletes the ESP states of its tunnels
// that charon no longer knows (PruneStates). It is safe for concurrent use.
type DataPlane struct {
	mode config.IPsecMode
	h    Netlink
	log  *slog.Logger

	mu sync.Mutex
	// created holds the ifindex of each XFRM interface created in this run, by name.
	created map[string]int
	// ensured holds every tunnel Ensure was called for and Remove was not, in order.
	ensured []tunnelKey
	// ruleErr is the last error removing charon's rule (libipsec), logged once.
	ruleErr string
}

// tunnelKey is what the data plane does for a tunnel.
type tunnelKey struct {
	name, iface string
	ifID        uint32
	addr        netip.Prefix
}

func keyOf(t config.Tunnel) tunnelKey {
	return tunnelKey{name: t.Name, iface: t.Interface, ifID: t.IfID, addr: t.InsideLocal}
}

// NewDataPlane returns the data plane for mode (xfrm or libipsec; none is an error)
// working through h. A nil log discards messages.
func NewDataPlane(mode config.IPsecMode, h Netlink, log *slog.Logger) (*DataPlane, error) {
	switch mode {
	case config.IPsecXFRM, config.IPsecLibipsec:
	default:
		return nil, fmt.Errorf("no tunnel data plane in ipsec mode %q", mode)
	}
	if h == nil {
		return nil, errors.New("tunnel data plane: no netlink handle")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DataPlane{mode: mode, h: h, log: log, created: map[string]int{}}, nil
}

// Ensure makes tunnel t's interface exist and be up with t.InsideLocal on it. It is
// idempotent and only reads when nothing is missing. In xfrm mode it creates the XFRM
// interface t.Interface with if_id t.IfID if missing, and fails without touching anything
// if a link of that name exists but is not an XFRM interface with that if_id. In libipsec
// mode the interface is charon's TUN device; its absence is an error wrapping
// ErrNoInterface.
func (p *DataPlane) Ensure(t config.Tunnel) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ensure(t); err != nil {
		return fmt.Errorf("tunnel %q: %w", t.Name, err)
	}
	return nil
}

func (p *DataPlane) ensure(t config.Tunnel) error {
	if t.Interface == "" || !t.InsideLocal.IsValid() {
		return errors.New("no interface or inside address")
	}
	if k := keyOf(t); !slices.Contains(p.ensured, k) {
		p.ensured = append(p.ensured, k) // before any change, so that Close undoes it
	}
	log := p.log.With("tunnel", t.Name, "interface", t.Interface)
	l, err := p.link(t.Interface)
	switch {
	case err != nil:
		return err
	case l == nil && p.mode == config.IPsecLibipsec:
		return fmt.Errorf("TUN device %q: %w (charon's kernel-libipsec plugin creates it)", t.Interface, ErrNoInterface)
	case p.mode == config.IPsecLibipsec:
		// charon is running (ipsec0 exists): its rule may be back too. A
		// failure is logged (once), not the tunnel's error: the tunnel
		// works, only a withdrawal would leak through table 220.
		err := p.dropCharonRule()
		if msg := fmt.Sprint(err); err != nil && msg != p.ruleErr {
			p.log.Error("charon's policy-routing rule stays: traffic may keep entering a withdrawn tunnel; remove it by hand (ip rule del pref 220)", "error", err)
		}
		p.ruleErr = ""
		if err != nil {
			p.ruleErr = fmt.Sprint(err)
		}
	case l == nil:
		if l, err = p.createXfrm(t, log); err != nil {
			return err
		}
	}
	if p.mode == config.IPsecXFRM {
		if err := checkXfrm(l, t); err != nil {
			return err
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := p.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %q up: %w", t.Interface, err)
		}
		log.Info("set interface up")
	}
	addrs, err := p.addrs(l, t)
	if err != nil {
		return err
	}
	if slices.Contains(addrs, t.InsideLocal) {
		return nil
	}
	for _, a := range addrs {
		if a.Addr() == t.InsideLocal.Addr() {
			// IPv6 would refuse the add; IPv4 would hold both, with two connected routes.
			return fmt.Errorf("%q has %s with another prefix length than %s", t.Interface, a, t.InsideLocal)
		}
	}
	err = p.h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(t.InsideLocal)})
	if errors.Is(err, unix.EEXIST) { // added meanwhile?
		if addrs, lerr := p.addrs(l, t); lerr == nil && slices.Contains(addrs, t.InsideLocal) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("add %s to %q: %w", t.InsideLocal, t.Interface, err)
	}
	log.Info("added inside address", "address", t.InsideLocal.String())
	return nil
}

// createXfrm creates t's XFRM interface and returns it as the kernel holds it.
func (p *DataPlane) createXfrm(t config.Tunnel, log *slog.Logger) (netlink.Link, error) {
	err := p.h.LinkAdd(&netlink.Xfrmi{LinkAttrs: netlink.LinkAttrs{Name: t.Interface}, Ifid: t.IfID})
	if errors.Is(err, unix.EOPNOTSUPP) {
		err = fmt.Errorf("%w (the kernel has no XFRM interfaces: use ipsec.mode libipsec)", err)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) { // EEXIST: created meanwhile, checked below
		return nil, fmt.Errorf("create XFRM interface %q with if_id %d: %w", t.Interface, t.IfID, err)
	}
	created := err == nil
	l, err := p.link(t.Interface)
	if err == nil && l == nil {
		err = fmt.Errorf("XFRM interface %q vanished after its creation", t.Interface)
	}
	if created && l != nil {
		p.created[t.Interface] = l.Attrs().Index
		log.Info("created XFRM interface", "if_id", t.IfID)
	}
	return l, err
}

// checkXfrm fails if l is not the XFRM interface of t.
func checkXfrm(l netlink.Link, t config.Tunnel) error {
	x, ok := l.(*netlink.Xfrmi)
	if !ok {
		return fmt.Errorf("interface %q exists and is a %s link, not an XFRM interface; not touching it", t.Interface, l.Type())
	}
	if x.Ifid != t.IfID {
		return fmt.Errorf("XFRM interface %q exists with if_id %d, not %d; not touching it", t.Interface, x.Ifid, t.IfID)
	}
	return nil
}

// Remove undoes Ensure for t. In xfrm mode it deletes the XFRM interface if the data plane
// created it in this run or it has t's if_id. In libipsec mode it removes t's inside
// address from the TUN device, which is charon's. Missing things are not errors. After a
// failed Remove, Close tries again.
func (p *DataPlane) Remove(t config.Tunnel) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.remove(t); err != nil {
		return fmt.Errorf("tunnel %q: %w", t.Name, err)
	}
	p.ensured = slices.DeleteFunc(p.ensured, func(k tunnelKey) bool { return k == keyOf(t) })
	return nil
}

func (p *DataPlane) remove(t config.Tunnel) error {
	if t.Interface == "" {
		return nil
	}
	log := p.log.With("tunnel", t.Name, "interface", t.Interface)
	l, err := p.link(t.Interface)
	if err != nil || l == nil {
		return err
	}
	if p.mode == config.IPsecXFRM {
		idx, created := p.created[t.Interface]
		if !(created && idx == l.Attrs().Index) && checkXfrm(l, t) != nil {
			return nil // not ours
		}
		if err := p.h.LinkDel(l); err != nil && !isGone(err) {
			return fmt.Errorf("delete XFRM interface %q: %w", t.Interface, err)
		}
		delete(p.created, t.Interface)
		log.Info("deleted XFRM interface")
		return nil
	}
	if !t.InsideLocal.IsValid() {
		return nil
	}
	addrs, err := p.addrs(l, t)
	if err != nil || !slices.Contains(addrs, t.InsideLocal) {
		return err
	}
	if err := p.h.AddrDel(l, &netlink.Addr{IPNet: ipNet(t.InsideLocal)}); err != nil && !isGone(err) {
		return fmt.Errorf("remove %s from %q: %w", t.InsideLocal, t.Interface, err)
	}
	log.Info("removed inside address", "address", t.InsideLocal.String())
	return nil
}

// Close removes everything Ensure created, for every tunnel it was called for and that
// was not removed since, and reports all errors joined. What it failed to remove is
// retried by the next Close.
func (p *DataPlane) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var (
		errs []error
		left []tunnelKey
	)
	for _, k := range p.ensured {
		t := config.Tunnel{Name: k.name, Interface: k.iface, IfID: k.ifID, InsideLocal: k.addr}
		if err := p.remove(t); err != nil {
			errs = append(errs, fmt.Errorf("tunnel %q: %w", t.Name, err))
			left = append(left, k)
		}
	}
	p.ensured = left
	return errors.Join(errs...)
}

// link returns the link named name, or nil if there is none.
func (p *DataPlane) link(name string) (netlink.Link, error) {
	l, err := p.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		return nil, nil
	case err != nil && !(errors.Is(err, netlink.ErrDumpInterrupted) && l != nil):
		// Found by an interrupted dump (kernels without lookup by name): still found.
		return nil, fmt.Errorf("look up interface %q: %w", name, err)
	}
	return l, nil
}

// addrs returns the addresses of l of t.InsideLocal's family, each with its prefix length.
// A list that keeps being interrupted is used as read.
func (p *DataPlane) addrs(l netlink.Link, t config.Tunnel) ([]netip.Prefix, error) {
	family := netlink.FAMILY_V6
	if t.InsideLocal.Addr().Is4() {
		family = netlink.FAMILY_V4
	}
	as, err := p.h.AddrList(l, family)
	for i := 1; i < dumpAttempts && errors.Is(err, netlink.ErrDumpInterrupted); i++ {
		as, err = p.h.AddrList(l, family)
	}
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list addresses of %q: %w", t.Interface, err)
	}
	var out []netip.Prefix
	for _, a := range as {
		if a.IPNet != nil { // a malformed address becomes an invalid prefix, matching nothing
			ip, _ := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// isGone tells whether err says that what was to be deleted is already gone.
func isGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ESRCH) // ESRCH: an XFRM state
}

// dropCharonRule removes charon's "pref 220 lookup 220" rules (IPv4 and
// IPv6) if present; it only reads when they are not. Called with p.mu held.
func (p *DataPlane) dropCharonRule() error {
	rules, err := p.h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list policy-routing rules: %w", err)
	}
	for i := range rules {
		r := &rules[i]
		if r.Priority != charonRule || r.Table != charonRule {
			continue
		}
		if err := p.h.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove charon's rule pref %d lookup %d: %w", charonRule, charonRule, err)
		}
		p.log.Info("removed charon's policy-routing rule: bgpgw's routes decide what enters the tunnels",
			"rule", fmt.Sprintf("pref %d lookup %d", charonRule, charonRule), "family", familyName(r.Family))
	}
	return nil
}

func familyName(f int) string {
	if f == netlink.FAMILY_V6 {
		return "ipv6"
	}
	return "ipv4"
}
