package integration

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// assertRejectedReason checks that bgpgw's status explains why it refused
// x from tunnel: the peer's rejected_routes holds x with the reason
// keyword. It is the one place that reads rejected_routes: adjust it here
// if that field's shape changes.
func assertRejectedReason(t *testing.T, st gwStatus, tunnel string, x netip.Prefix, reason string) bool {
	t.Helper()
	pe := st.peer(tunnel)
	for _, r := range pe.RejectedRoutes {
		if q, err := netip.ParsePrefix(r.Prefix); err == nil && q == x {
			return assert.Equal(t, reason, r.Reason, "rejected_routes reason of %s from %s (detail %q, as_path %s)", x, tunnel, r.Detail, r.ASPath)
		}
	}
	if len(pe.RejectedRoutes) == 0 {
		return assert.Fail(t, "no rejected_routes for peer "+tunnel+" in `bgpgw status --json`",
			"want %s: reason %q; the peer's rejected: %v", x, reason, pe.Rejected)
	}
	return assert.Fail(t, fmt.Sprintf("%s is not in peer %s's rejected_routes", x, tunnel), "want reason %q", reason)
}

func (s snapshot) peer(name string) gwPeer {
	for _, p := range s.status.Peers {
		if p.Name == name {
			return p
		}
	}
	return gwPeer{Name: name, State: "(not in status)"}
}

func (st gwStatus) peer(name string) gwPeer { return snapshot{status: st}.peer(name) }

// listed says whether status lists x from tunnel as received or rejected.
func (s snapshot) listed(tunnel string, x netip.Prefix) (string, bool) {
	pe := s.peer(tunnel)
	for _, l := range []struct {
		name string
		list []string
	}{{"received", pe.Received}, {"rejected", pe.Rejected}} {
		for _, y := range l.list {
			if q, err := netip.ParsePrefix(y); err == nil && q == x {
				return l.name, true
			}
		}
	}
	return "neither", false
}

// echoed says whether bgpgw ever sent x to the test peer on tunnel, other
// than as its own announcement (AS path 65515 alone).
func (s snapshot) echoed(tunnel string, x netip.Prefix) bool {
	for _, e := range s.fromGW[tunnel] {
		if e.Prefix == x && (!slices.Contains(announced, x) || e.ASPath != fmt.Sprint(batteryGwAS)) {
			return true
		}
	}
	return false
}

func insideRemote(tunnel string) netip.Addr {
	if tunnel == "onprem6" {
		return ip6Remote
	}
	return ip4Remote
}

// cloudNextHops are a cloud route's next hops without the link-local one.
func cloudNextHops(r lab.BGPRoute) []string {
	var out []string
	for _, h := range r.NextHops {
		if !strings.HasPrefix(h, "fe80:") {
			out = append(out, h)
		}
	}
	return out
}

// observe is what happened to x, in one line.
func (s snapshot) observe(c batteryCase, x netip.Prefix) string {
	var parts []string
	if hops, ok := s.kernel[x]; ok {
		parts = append(parts, fmt.Sprintf("kernel via %v", hops))
	} else {
		parts = append(parts, "not in kernel")
	}
	if r, ok := s.cloud[x]; ok {
		parts = append(parts, fmt.Sprintf("cloud: path %q nh %v origin %s med %d locprf %d", r.ASPath, r.NextHops, r.Origin, r.MED, r.LocalPref))
	} else {
		parts = append(parts, "not at cloud")
	}
	list, _ := s.listed(c.Tunnel, x)
	st := "status: " + list
	for _, r := range s.peer(c.Tunnel).RejectedRoutes {
		if r.Prefix == x.String() {
			st += fmt.Sprintf(" (%s: %s)", r.Reason, r.Detail)
		}
	}
	parts = append(parts, st)
	if s.echoed(c.Tunnel, x) {
		parts = append(parts, "ECHOED to the test peer")
	}
	return strings.Join(parts, "; ")
}

func (b *batteryLab) checkCase(t *testing.T, s snapshot, c batteryCase, x netip.Prefix) {
	t.Helper()
	hops, inKernel := s.kernel[x]
	r, atCloud := s.cloud[x]
	list, _ := s.listed(c.Tunnel, x)
	remote := []netip.Addr{insideRemote(c.Tunnel)}
	assert.False(t, s.echoed(c.Tunnel, x), "%s was sent back to the test peer", x)
	installed := func() {
		if assert.True(t, inKernel, "%s not in gw's kernel", x) {
			assert.Equal(t, remote, hops, "%s must go via the tunnel's inside remote address only (sent with next hop %s)", x, c.Route.NextHop)
		}
		assert.Equal(t, "received", list, "%s in status", x)
	}
	switch c.Want {
	case refused:
		assert.False(t, inKernel, "%s in gw's kernel via %v", x, hops)
		assert.False(t, atCloud, "%s at the cloud router (path %q)", x, r.ASPath)
		assert.Equal(t, "rejected", list, "%s in status", x)
		assertRejectedReason(t, s.status, c.Tunnel, x, c.Reason)
	case carried:
		installed()
		if assert.True(t, atCloud, "%s not at the cloud router", x) {
			b.checkCloud(t, c, x, r)
		}
	case keptHome:
		installed()
		assert.False(t, atCloud, "%s reached the cloud router (path %q)", x, r.ASPath)
	case either:
		if inKernel {
			installed()
			if assert.True(t, atCloud, "%s in gw's kernel but not at the cloud router", x) {
				b.checkCloud(t, c, x, r)
			}
		} else {
			assert.False(t, atCloud, "%s at the cloud router but not in gw's kernel", x)
			assert.NotEqual(t, "received", list, "%s received (status) but not in gw's kernel", x)
		}
	}
}

func (b *batteryLab) checkCloud(t *testing.T, c batteryCase, x netip.Prefix, r lab.BGPRoute) {
	t.Helper()
	gw := cloud4Gw
	if x.Addr().Is6() {
		gw = cloud6Gw
	}
	assert.Equal(t, []string{gw.String()}, cloudNextHops(r), "%s at the cloud router: next hop must be bgpgw's own", x)
	assert.NotEqual(t, uint32(1000), r.LocalPref, "%s: the test peer's LOCAL_PREF reached the cloud router", x)
	sent := bgp.AsPathString(bgp.NewPathAttributeAsPath(c.Route.ASPath))
	if c.CloudPath != "" {
		assert.Equal(t, c.CloudPath, r.ASPath, "%s: AS path at the cloud router", x)
		return
	}
	assert.Contains(t, []string{fmt.Sprint(batteryGwAS), fmt.Sprintf("%d %s", batteryGwAS, sent)}, r.ASPath,
		"%s: AS path at the cloud router is neither kept nor re-originated", x)
}

// checkEcho: bgpgw sent the test peer its own prefixes only, as its own
// (AS path 65515, next hop its inside address).
func (b *batteryLab) checkEcho(t *testing.T, s snapshot) {
	t.Helper()
	for tunnel, local := range map[string]netip.Addr{"onprem": ip4Local, "onprem6": ip6Local} {
		var got []netip.Prefix
		for _, e := range s.fromGW[tunnel] {
			got = append(got, e.Prefix)
			assert.Equal(t, fmt.Sprint(batteryGwAS), e.ASPath, "%s sent to %s", e.Prefix, tunnel)
			assert.Equal(t, local, e.NextHop, "%s sent to %s", e.Prefix, tunnel)
		}
		got = sortPrefixes(got)
		want := announced[:1]
		if tunnel == "onprem6" {
			want = announced[1:]
		}
		assert.Equal(t, want, got, "what bgpgw announced to the test peer on %s", tunnel)
	}
}

// checkSessions: bgpgw runs, and every session but those in gone is still
// the one established at the start (none was reset).
func (b *batteryLab) checkSessions(t *testing.T, ctx context.Context, s snapshot, gone []string) {
	t.Helper()
	require.False(t, b.gw.Proc.Exited(), "bgpgw exited: %s", b.gw.LogTail(40))
	for name, since := range b.sessions {
		if slices.Contains(gone, name) {
			continue
		}
		pe := s.peer(name)
		if assert.Equal(t, "established", pe.State, "peer %s (last error %q)", name, pe.LastError) && pe.EstablishedSince != nil {
			assert.True(t, since.Equal(*pe.EstablishedSince), "peer %s was reset: established since %v, was %v", name, pe.EstablishedSince, since)
		}
	}
	for name, sp := range b.peers {
		if slices.Contains(gone, name) {
			continue
		}
		select {
		case <-sp.Done():
			n, _ := sp.Notification()
			assert.Fail(t, "the test peer's session "+name+" ended", "%v (NOTIFICATION %+v)\n%s", sp.Err(), n, b.diag(ctx))
		default:
		}
	}
}

// checkMaxPrefix: onprem went over max_prefixes. Its session is held down
// with a clear error and its routes are gone; nothing else moved.
func (b *batteryLab) checkMaxPrefix(t *testing.T, ctx context.Context, before snapshot) {
	t.Helper()
	sp := b.peers["onprem"]
	select {
	case <-sp.Done():
	case <-time.After(30 * time.Second):
		require.Fail(t, "bgpgw did not end onprem's session over max_prefixes", b.diag(ctx))
	}
	n, ok := sp.Notification()
	if assert.True(t, ok, "no NOTIFICATION: %v", sp.Err()) {
		assert.Equal(t, [2]uint8{bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_MAXIMUM_NUMBER_OF_PREFIXES_REACHED},
			[2]uint8{n.ErrorCode, n.ErrorSubcode}, "NOTIFICATION code/subcode")
	}
	var last string
	b.must(t, ctx, lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		st, err := b.status(ctx)
		pe := st.peer("onprem")
		last = pe.LastError
		return pe.State != "established" && strings.Contains(pe.LastError, "maximum prefix"), err
	}), "onprem held down with a max-prefix error in status")
	t.Logf("onprem's last_error: %q", last)

	// Only onprem6's routes stay, in the kernel and at the cloud router.
	wantKernel, wantCloud := v6Only(sortedKeys(before.kernel)), v6Only(sortedKeys(before.cloud))
	var s snapshot
	err := lab.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		s, err = b.take(ctx)
		return err == nil && slices.Equal(sortedKeys(s.kernel), wantKernel) && slices.Equal(sortedKeys(s.cloud), wantCloud), err
	})
	assert.NoError(t, err, "after max-prefix: kernel %v, want %v; cloud %v, want %v", sortedKeys(s.kernel), wantKernel,
		sortedKeys(s.cloud), wantCloud)
	assert.NotEmpty(t, wantKernel, "onprem6's routes")
	for _, x := range wantKernel {
		assert.Equal(t, []netip.Addr{ip6Remote}, s.kernel[x], "%s", x)
	}
	b.checkSessions(t, ctx, s, []string{"onprem"})
	assert.Contains(t, b.peers["onprem6"].RIB(), announced[1], "onprem6 still gets bgpgw's prefix")
}

func v6Only(ps []netip.Prefix) []netip.Prefix {
	return slices.DeleteFunc(ps, func(x netip.Prefix) bool { return x.Addr().Is4() })
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

func sortedKeys[V any](m map[netip.Prefix]V) []netip.Prefix {
	var out []netip.Prefix
	for k := range m {
		out = append(out, k)
	}
	return sortPrefixes(out)
}
