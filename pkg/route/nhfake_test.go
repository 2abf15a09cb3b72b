package route

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nhFake is a namespace's nexthop objects and routing tables that behave like the kernel's for
// the calls the installer makes through nexthop objects: deleting an object deletes every
// route through it and removes it from its groups (a group left empty goes too, with its
// routes). It records every change request and fails the test on a call the installer should
// never make: an object or route request without our protocol, a change to an object of
// others, a single object on a device that is not its gateway's, a route through an object
// that is not ours, a replace or delete of a route that is not ours, an add over our own.
type nhFake struct {
	t            *testing.T
	table, proto int

	objs  map[uint32]nhObject
	rts   []kroute // every route of every table and protocol
	devs  map[netip.Addr]int
	calls []string

	fail       map[string]error // by "op PREFIX" or "nh new|replace|del GATEWAY|#N": the answer instead
	refuse     error            // answer to every object request and dump if set
	steal      []uint32         // ids another user takes just before the installer's next create (not the probe's)
	interrupt  int              // the next object dumps answer ErrDumpInterrupted too
	routeDumps int              // route dumps made
	// dumpsBeforeDel is routeDumps at each object deletion.
	dumpsBeforeDel []int
	closed         bool
}

func newNHFake(t *testing.T) *nhFake {
	return &nhFake{t: t, table: testTable, proto: testProto, objs: map[uint32]nhObject{},
		devs: map[netip.Addr]int{}, fail: map[string]error{}}
}

// newNHTest returns an installer routing through nexthop objects in f, and the fake of
// per-route calls, which it must not use.
func newNHTest(t *testing.T) (*Installer, *nhFake) {
	t.Helper()
	i, k, f := newBothTest(t)
	t.Cleanup(func() {
		assert.Empty(t, k.calls, "per-route calls while routing through objects")
		assert.Zero(t, k.lists, "per-route lists while routing through objects")
	})
	return i, f
}

// newBothTest returns an installer with both fakes: the per-route one is for the fallback.
func newBothTest(t *testing.T) (*Installer, *fakeKernel, *nhFake) {
	t.Helper()
	i, k := newTest(t)
	f := newNHFake(t)
	i.nh = f
	// Gateways on "device 2" unless a test moves them.
	for _, a := range []string{"192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.9", "2001:db8::2", "2001:db8::3", "2001:db8::4"} {
		f.devs[netip.MustParseAddr(a)] = 2
	}
	return i, k, f
}

const ourBase = uint32(testProto) << 24

// name shows an id of our block as #N (N from the block's start), others as they are.
func name(id uint32) string {
	if id > ourBase && id-ourBase < idBlock {
		return fmt.Sprintf("#%d", id-ourBase)
	}
	return fmt.Sprint(id)
}

func (f *nhFake) describeObject(o nhObject) string {
	switch {
	case o.blackhole:
		return name(o.id) + " blackhole"
	case o.isGroup():
		ids := make([]string, len(o.group))
		for k, m := range o.group {
			ids[k] = name(m)
		}
		return name(o.id) + " group " + strings.Join(ids, "/")
	}
	return fmt.Sprintf("%s via %s dev %d", name(o.id), o.gw, o.oif)
}

func (f *nhFake) objects() ([]nhObject, error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	var out []nhObject
	for _, o := range f.objs {
		o.group = slices.Clone(o.group)
		out = append(out, o)
	}
	if f.interrupt > 0 {
		f.interrupt--
		return out, netlink.ErrDumpInterrupted
	}
	return out, nil
}

func (f *nhFake) newObject(o nhObject, replace bool) error {
	op := "new"
	if replace {
		op = "replace"
	}
	call := "nh " + op + " " + f.describeObject(o)
	f.calls = append(f.calls, call)
	if f.refuse != nil {
		return f.refuse
	}
	if !replace && !o.blackhole && len(f.steal) > 0 {
		f.objs[f.steal[0]] = nhObject{id: f.steal[0], proto: protoOther, family: unix.AF_INET, blackhole: true}
		f.steal = f.steal[1:]
	}
	key := "nh " + op + " " + name(o.id)
	if !o.isGroup() && o.gw.IsValid() {
		key = "nh " + op + " " + o.gw.String()
	}
	if err := f.fail[key]; err != nil {
		return err
	}
	old, exists := f.objs[o.id]
	switch {
	case f.closed:
		f.t.Errorf("impossible: %s on a closed handle", call)
	case o.proto != f.proto || o.id == 0:
		f.t.Errorf("impossible: %s: protocol %d, id %d", call, o.proto, o.id)
	case exists && !replace:
		return syscall.EEXIST
	case !exists && replace:
		f.t.Errorf("impossible: %s: no such object", call)
		return syscall.ENOENT
	case exists && old.proto != f.proto:
		f.t.Errorf("impossible: %s: the object is another protocol's", call)
		return syscall.EINVAL
	case exists && old.isGroup() != o.isGroup():
		return syscall.EINVAL // the kernel refuses to change an object's kind
	}
	switch {
	case o.blackhole:
	case o.isGroup():
		if len(o.group) == 0 {
			f.t.Errorf("impossible: %s: empty group", call)
		}
		for _, m := range o.group {
			mo, ok := f.objs[m]
			if !ok || mo.isGroup() || mo.proto != f.proto {
				f.t.Errorf("impossible: %s: member %s is not one of our single objects", call, name(m))
				return syscall.EINVAL
			}
		}
		if len(slices.Compact(slices.Sorted(slices.Values(o.group)))) != len(o.group) {
			f.t.Errorf("impossible: %s: a member twice", call)
		}
	default:
		if dev, ok := f.devs[o.gw]; !ok || dev != o.oif || o.family != familyOfAddr(o.gw) {
			f.t.Errorf("impossible: %s: the gateway is on device %d", call, dev)
			return syscall.EINVAL
		}
	}
	o.group = slices.Clone(o.group)
	f.objs[o.id] = o
	return nil
}

func (f *nhFake) delObject(id uint32) error {
	call := "nh del " + name(id)
	f.calls = append(f.calls, call)
	f.dumpsBeforeDel = append(f.dumpsBeforeDel, f.routeDumps)
	if f.refuse != nil {
		return f.refuse
	}
	if err := f.fail[call]; err != nil {
		return err
	}
	o, ok := f.objs[id]
	if !ok {
		return syscall.ENOENT
	}
	if o.proto != f.proto {
		f.t.Errorf("impossible: %s: the object is another protocol's", call)
		return syscall.EINVAL
	}
	f.remove(id)
	return nil
}

// remove deletes an object as the kernel does: with its routes, from its groups, and the
// groups it leaves empty.
func (f *nhFake) remove(id uint32) {
	delete(f.objs, id)
	f.rts = slices.DeleteFunc(f.rts, func(r kroute) bool { return r.nhid == id })
	for gid, g := range f.objs {
		if !slices.Contains(g.group, id) {
			continue
		}
		g.group = slices.DeleteFunc(g.group, func(m uint32) bool { return m == id })
		f.objs[gid] = g
		if len(g.group) == 0 {
			f.remove(gid)
		}
	}
}

func (f *nhFake) routes(family, table, protocol int, into []kroute) ([]kroute, error) {
	f.routeDumps++
	if table != f.table || protocol != f.proto {
		f.t.Errorf("impossible: list of table %d protocol %d", table, protocol)
	}
	out := into
	for _, r := range f.rts {
		if r.family == family && r.table == table && r.proto == protocol {
			r.NextHops = slices.Clone(r.NextHops)
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *nhFake) apply(table, protocol int, changes []change) []error {
	errs := make([]error, len(changes))
	for k, c := range changes {
		errs[k] = f.change(table, protocol, c)
	}
	return errs
}

func (f *nhFake) change(table, protocol int, c change) error {
	call := "route " + c.op.String() + " " + describeEntry(c.r)
	if c.nhid != 0 {
		call += " nhid " + name(c.nhid)
	}
	f.calls = append(f.calls, call)
	if f.closed || table != f.table || protocol != f.proto {
		f.t.Errorf("impossible: %s: table %d protocol %d", call, table, protocol)
		return syscall.EINVAL
	}
	if err := f.fail[c.op.String()+" "+c.r.Prefix.String()]; err != nil {
		return err
	}
	k := slices.IndexFunc(f.rts, func(x kroute) bool {
		return x.table == table && x.family == c.r.family && x.Prefix == c.r.Prefix && x.tos == c.r.tos && x.priority == c.r.priority
	})
	ours := k >= 0 && f.rts[k].proto == f.proto
	if c.op == opDel {
		if c.nhid != 0 && (!ours || f.rts[k].nhid != c.nhid) {
			return syscall.ESRCH // the kernel matches the object too: not through it
		}
		if !ours || f.rts[k].typ != c.r.typ {
			f.t.Errorf("impossible: %s: no such route of ours", call)
			return syscall.ESRCH
		}
		f.rts = slices.Delete(f.rts, k, k+1)
		return nil
	}
	if o, ok := f.objs[c.nhid]; !ok || o.proto != f.proto {
		f.t.Errorf("impossible: %s: not one of our objects", call)
		return syscall.EINVAL
	}
	if !c.r.isPrimary() || c.r.typ != rtnUnicast || c.r.extra || c.r.family != familyOf(c.r.Prefix) {
		f.t.Errorf("impossible: %s: not a plain unicast route at the default metric", call)
	}
	switch {
	case c.op == opAdd && ours:
		f.t.Errorf("impossible: %s: our own route is already there", call)
		return syscall.EEXIST
	case c.op == opAdd && k >= 0:
		return syscall.EEXIST
	case c.op == opReplace && !ours:
		f.t.Errorf("impossible: %s: no route of ours there to replace", call)
		return syscall.EINVAL
	case c.op == opReplace:
		f.rts = slices.Delete(f.rts, k, k+1)
	}
	r := kroute{entry: c.r, table: table, proto: protocol, nhid: c.nhid}
	r.NextHops = nil
	f.rts = append(f.rts, r)
	return nil
}

func (f *nhFake) device(gw netip.Addr) (int, error) {
	if dev, ok := f.devs[gw]; ok {
		return dev, nil
	}
	return 0, syscall.ENETUNREACH
}

func (f *nhFake) close() {
	if f.closed {
		f.t.Errorf("impossible: closed twice")
	}
	f.closed = true
}

func describeEntry(e entry) string {
	s := e.Prefix.String()
	if e.priority != defaultPriority(e.family) {
		s += fmt.Sprintf(" metric %d", e.priority)
	}
	if e.tos != 0 {
		s += fmt.Sprintf(" tos %d", e.tos)
	}
	return s
}

// seedObject puts an object in the namespace, as another user or a previous run would.
func (f *nhFake) seedObject(o nhObject) {
	if o.family == 0 && o.gw.IsValid() {
		o.family = familyOfAddr(o.gw)
	}
	f.objs[o.id] = o
}

// seedRoute puts a route in a table: "PREFIX via HOPS" (the route holds its gateways) or
// "PREFIX nhid ID".
func (f *nhFake) seedRoute(table, proto, priority int, s string) {
	f.t.Helper()
	fields := strings.Fields(s)
	p := netip.MustParsePrefix(fields[0])
	r := kroute{entry: primaryEntry(Route{Prefix: p}), table: table, proto: proto}
	if priority != 0 {
		r.priority = priority
	}
	switch fields[1] {
	case "via":
		r.NextHops = parseRoute(f.t, fields[0]+" via "+fields[2]).NextHops
	case "nhid":
		var id uint32
		_, err := fmt.Sscan(fields[2], &id)
		require.NoError(f.t, err)
		r.nhid = id
	}
	f.rts = append(f.rts, r)
}

// gatewaysOf resolves a route's gateways as the kernel would show them.
func (f *nhFake) gatewaysOf(r kroute) []netip.Addr {
	if r.nhid == 0 {
		return r.NextHops
	}
	o := f.objs[r.nhid]
	if !o.isGroup() {
		return []netip.Addr{o.gw}
	}
	var out []netip.Addr
	for _, m := range o.group {
		out = append(out, f.objs[m].gw)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// ours returns our routes with their gateways resolved, sorted.
func (f *nhFake) ours() []Route {
	out := []Route{}
	for _, r := range f.rts {
		if r.table == f.table && r.proto == f.proto {
			out = append(out, Route{Prefix: r.Prefix, NextHops: f.gatewaysOf(r)})
		}
	}
	slices.SortFunc(out, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

// others describes what is not ours: routes of other tables or protocols, objects of other
// protocols.
func (f *nhFake) others() []string {
	var out []string
	for _, r := range f.rts {
		if r.table != f.table || r.proto != f.proto {
			out = append(out, fmt.Sprintf("table %d proto %d %s nhid %d via %s", r.table, r.proto, r.Prefix, r.nhid, hopsString(r.NextHops)))
		}
	}
	for _, o := range f.objs {
		if o.proto != f.proto {
			out = append(out, "object "+f.describeObject(o))
		}
	}
	slices.Sort(out)
	return out
}

// unused returns our objects that no route of ours goes through, directly or in a group,
// and that are not the object of one of gws.
func (f *nhFake) unused(gws ...netip.Addr) []string {
	used := map[uint32]bool{}
	for _, r := range f.rts {
		if r.proto == f.proto && r.nhid != 0 {
			used[r.nhid] = true
			for _, m := range f.objs[r.nhid].group {
				used[m] = true
			}
		}
	}
	var out []string
	for id, o := range f.objs {
		if o.proto == f.proto && !used[id] && !(o.gw.IsValid() && slices.Contains(gws, o.gw)) {
			out = append(out, f.describeObject(o))
		}
	}
	slices.Sort(out)
	return out
}

func (f *nhFake) takeCalls() []string {
	c := f.calls
	f.calls = nil
	return c
}

// nhSet runs Set and checks the invariants of every pass: the returned routes are the truth,
// the routes and objects of others are untouched, the per-route fake is never used.
func nhSet(t *testing.T, i *Installer, f *nhFake, routes []Route) ([]Route, error) {
	t.Helper()
	before := f.others()
	got, err := i.Set(routes)
	assert.Equal(t, f.ours(), nonNil(got), "Set must return what the kernel holds")
	assert.Equal(t, before, f.others(), "routes or objects of others touched")
	return got, err
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for k, s := range ss {
		out[k] = netip.MustParseAddr(s)
	}
	return out
}

// logTo returns a logger writing to b.
func logTo(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var errInjected = errors.New("injected failure")

// recordingNH records the changes made through an nhKernel.
type recordingNH struct {
	nhKernel
	calls []string
}

func (r *recordingNH) newObject(o nhObject, replace bool) error {
	r.calls = append(r.calls, fmt.Sprintf("object new/replace=%v", replace))
	return r.nhKernel.newObject(o, replace)
}

func (r *recordingNH) delObject(id uint32) error {
	r.calls = append(r.calls, "object del")
	return r.nhKernel.delObject(id)
}

func (r *recordingNH) routes(family, table, protocol int, into []kroute) ([]kroute, error) {
	r.calls = append(r.calls, "read routes")
	return r.nhKernel.routes(family, table, protocol, into)
}

func (r *recordingNH) apply(table, protocol int, changes []change) []error {
	for _, c := range changes {
		r.calls = append(r.calls, "route "+c.op.String())
	}
	return r.nhKernel.apply(table, protocol, changes)
}

func (r *recordingNH) take() []string {
	c := r.calls
	r.calls = nil
	return slices.DeleteFunc(c, func(s string) bool { return s == "read routes" })
}
