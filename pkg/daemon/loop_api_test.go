package daemon

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/pkg/api"
	"github.com/bgpgw/bgpgw/pkg/bgp"
	"github.com/bgpgw/bgpgw/pkg/health"
	"github.com/bgpgw/bgpgw/pkg/route"
)

// TestLoopDrain: drain re-announces everything with GRACEFUL_SHUTDOWN and
// the prepend, then after drain.time withdraws it and shuts every session
// down; undrain enables them and announces again once they are back. The
// drain is recorded in the state file until undrain.
func TestLoopDrain(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()
	stateFile := filepath.Join(h.dir, "drained")

	require.NoError(t, h.d.Drain(h.ctx()))
	h.settle()
	assert.Equal(t, []string{
		"update rr 10.1.0.0/16 [prepend 3, gshut]",
		"update rr 10.1.2.0/24 [prepend 3, gshut]",
		"update t1 10.10.0.0/16 [prepend 3, gshut]",
		"update t1 10.20.0.0/24 [prepend 3, gshut]",
		"update t2 10.10.0.0/16 [prepend 3, gshut]",
		"update t2 10.20.0.0/24 [prepend 3, gshut]",
	}, h.next())
	data, err := os.ReadFile(stateFile)
	require.NoError(t, err, "the drain is recorded")
	assert.Contains(t, string(data), "drained at")
	st := h.status()
	assert.Equal(t, "draining", st.DrainState)
	assert.True(t, st.Drained)

	// A second drain does not restart the drain time.
	h.clock.Advance(time.Second)
	require.NoError(t, h.d.Drain(h.ctx()))
	h.settle()
	assert.Empty(t, h.next())

	// The drain time ends: the timer alone wakes the loop.
	h.clock.Advance(time.Second)
	h.calls.waitFor(t, waitTimeout, "the sessions shut down", func() bool { return h.sp.down["rr"] })
	h.settle()
	assert.Equal(t, []string{
		"withdraw rr 10.1.0.0/16",
		"withdraw rr 10.1.2.0/24",
		"withdraw t1 10.10.0.0/16",
		"withdraw t1 10.20.0.0/24",
		"withdraw t2 10.10.0.0/16",
		"withdraw t2 10.20.0.0/24",
		"shutdown t1",
		"shutdown t2",
		"shutdown rr",
		"route del 10.1.0.0/16",
		"route del 10.1.2.0/24",
	}, h.next())
	st = h.status()
	assert.Equal(t, "drained", st.DrainState)
	for _, p := range st.Peers {
		assert.True(t, p.AdminDown, p.Name)
		assert.Empty(t, p.Announced, p.Name)
	}
	assert.Equal(t, "drained", tunnelStatus(t, st, "t1").Reason[:len("drained")])
	assert.Empty(t, st.Routes)

	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	_, err = os.Stat(stateFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "undrain removes the state file")
	calls := h.next()
	require.Len(t, calls, 3+len(bringUpCalls), "%q", calls)
	enables := slices.Sorted(slices.Values(calls[:3]))
	assert.Equal(t, []string{"enable rr", "enable t1", "enable t2"}, enables)
	// Announced as soon as the sessions are back: no hold-down after a drain.
	assert.Equal(t, bringUpCalls, calls[3:])
	st = h.status()
	assert.Equal(t, "normal", st.DrainState)
	assert.False(t, st.Drained)
	assert.True(t, tunnelStatus(t, st, "t1").Carrying)
}

// TestLoopSetRole: in an active-standby pair the role sets the prepend and
// MED; an active-active instance has no role.
func TestLoopSetRole(t *testing.T) {
	h := startLoop(t, activeStandbyYAML)
	h.check("uplink", true)
	h.settle()
	h.sp.setSessions(map[string]sessionState{"t1": sessUp("10.1.0.0/16"), "rr": sessUp()})
	h.settle()
	assert.Equal(t, []string{
		"announce rr 10.1.0.0/16 [prepend 3, med 200]",
		"announce t1 10.10.0.0/16 [prepend 3, med 200]",
		"route add 10.1.0.0/16 via 169.254.23.2",
	}, h.calls.Lines(2))
	h.skip()
	assert.Equal(t, "standby", h.status().Instance.Role)
	assert.Equal(t, []string{"10.10.0.0/16"}, h.sp.prefixesTo("t1"))
	require.NoError(t, h.d.SetRole(h.ctx(), "primary"))
	h.settle()
	assert.Equal(t, []string{
		"update rr 10.1.0.0/16 [med 0]",
		"update t1 10.10.0.0/16 [med 0]",
	}, h.next())
	assert.Equal(t, "primary", h.status().Instance.Role)

	require.NoError(t, h.d.SetRole(h.ctx(), "standby"))
	h.settle()
	assert.Equal(t, []string{
		"update rr 10.1.0.0/16 [prepend 3, med 200]",
		"update t1 10.10.0.0/16 [prepend 3, med 200]",
	}, h.next())
	assert.Equal(t, "standby", h.status().Instance.Role)

	err := h.d.SetRole(h.ctx(), "leader")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "primary or standby")
	h.settle()
	assert.Empty(t, h.next())

	aa := startLoop(t, activeActive())
	aa.bringUp()
	aa.skip()
	err = aa.d.SetRole(aa.ctx(), "standby")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "only in active-standby mode")
	aa.settle()
	assert.Empty(t, aa.next())
}

// t3 is the tunnel the reload test adds.
const t3YAML = `  - {name: t3, inside: {local: 169.254.23.1/30, remote: 169.254.23.2}, peer_asn: 65020, accept: ["10.3.0.0/16 le 24"]}
`

// TestLoopReload: a reload adds a tunnel (the speaker gets it, it carries
// once up), removes one (no call names it again), and a change only a
// restart applies is rejected with nothing applied.
func TestLoopReload(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()

	// Add t3.
	h.writeConfig(yamlWith(activeActiveYAML, "$BFD", "", "$T3", t3YAML))
	_, err := h.d.Reload(h.ctx())
	require.NoError(t, err)
	h.settle()
	assert.Equal(t, []string{"add peer t3"}, h.next(), "the new session is not announced to before it is up")
	assert.Equal(t, []string{"t1", "t2", "t3", "rr"}, h.sp.peerNames())
	st := h.status()
	require.NotNil(t, st.Reload)
	assert.True(t, st.Reload.OK)
	assert.Contains(t, st.Reload.Changes, "tunnel t3 added")
	assert.Equal(t, "BGP session not established", tunnelStatus(t, st, "t3").Reason)
	h.sp.setSessions(map[string]sessionState{"t3": sessUp("10.3.0.0/16")})
	h.settle()
	assert.Equal(t, []string{
		"announce rr 10.3.0.0/16",
		"announce t3 10.10.0.0/16",
		"announce t3 10.20.0.0/24",
		"route add 10.3.0.0/16 via 169.254.23.2",
	}, h.next())

	// Remove t2: its routes go; the rest stays.
	y := yamlWith(activeActiveYAML, "$BFD", "", "$T3", t3YAML)
	y = strings.Replace(y, `  - {name: t2, inside: {local: 169.254.22.1/30, remote: 169.254.22.2}, peer_asn: 65010, accept: ["10.1.0.0/16 le 24"]}
`, "", 1)
	require.NotContains(t, y, "t2")
	h.writeConfig(y)
	_, err = h.d.Reload(h.ctx())
	require.NoError(t, err)
	h.settle()
	assert.Equal(t, []string{"remove peer t2", "route change 10.1.0.0/16 via 169.254.21.2"}, h.next())
	assert.Equal(t, []string{"t1", "t3", "rr"}, h.sp.peerNames())
	st = h.status()
	assert.Contains(t, st.Reload.Changes, "tunnel t2 removed")
	assert.False(t, slices.ContainsFunc(st.Tunnels, func(x api.Tunnel) bool { return x.Name == "t2" }), "t2 in status")
	assert.False(t, slices.ContainsFunc(st.Peers, func(x api.Peer) bool { return x.Name == "t2" }), "t2 in status")
	// Nothing names t2 again, whatever happens (the fake also fails the
	// test on any call naming a peer it does not hold).
	h.check("uplink", false)
	h.settle()
	h.check("uplink", true)
	h.clock.Advance(time.Second)
	h.settle()
	require.NoError(t, h.d.Drain(h.ctx()))
	h.clock.Advance(2 * time.Second)
	h.settle()
	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	for _, l := range h.next() {
		assert.NotContains(t, l, "t2")
	}
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, h.sp.prefixesTo("t1"), "back to normal")

	// A change only a restart applies: rejected, nothing applied.
	setPeers, _ := h.sp.counts("")
	h.writeConfig(strings.Replace(y, "asn: 65515", "asn: 65516", 1))
	_, err = h.d.Reload(h.ctx())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bgp.asn")
	h.settle()
	assert.Empty(t, h.next())
	after, _ := h.sp.counts("")
	assert.Equal(t, setPeers, after, "SetPeers after a rejected reload")
	st = h.status()
	require.NotNil(t, st.Reload)
	assert.False(t, st.Reload.OK)
	require.NotEmpty(t, st.Reload.Errors)
	assert.Contains(t, strings.Join(st.Reload.Errors, "\n"), "bgp.asn")
	var asn uint32
	require.NoError(t, h.d.call(h.ctx(), func(context.Context) error { asn = h.d.cfg.BGP.ASN; return nil }))
	assert.Equal(t, uint32(65515), asn, "the running configuration stays")
	assert.Equal(t, []string{"t1", "t3", "rr"}, h.sp.peerNames())
}

// TestLoopReloadWhileDrained: a reload while drained leaves every session
// held down; the sessions it did not change are not touched, the one it
// adds is shut down, and undrain lets them all up.
func TestLoopReloadWhileDrained(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	require.NoError(t, h.d.Drain(h.ctx()))
	h.clock.Advance(2 * time.Second)
	h.settle()
	h.skip()

	h.writeConfig(yamlWith(activeActiveYAML, "$BFD", "", "$T3", t3YAML))
	_, err := h.d.Reload(h.ctx())
	require.NoError(t, err)
	h.settle()
	assert.Equal(t, []string{"add peer t3", "shutdown t3"}, h.next(), "only the new session is shut down")
	for _, p := range []string{"t1", "t2", "t3", "rr"} {
		assert.True(t, h.sp.isDown(p), p)
	}

	require.NoError(t, h.d.Undrain(h.ctx()))
	h.settle()
	enables := slices.Sorted(slices.Values(slices.DeleteFunc(h.next(), func(l string) bool { return !strings.HasPrefix(l, "enable ") })))
	assert.Equal(t, []string{"enable rr", "enable t1", "enable t2", "enable t3"}, enables)
}

// TestStatusWhileLoopBusy: Status answers from the last published
// snapshot at once, while the loop is stuck in the speaker.
func TestStatusWhileLoopBusy(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	before := h.status()
	require.True(t, before.InstanceOK)

	// The check fails, handled on the loop by a request; the pass that
	// follows blocks in SetAnnouncements, before it publishes anything.
	// The block is set on the loop, so that it is that pass that blocks
	// (not one still running from before), and the request is not waited
	// for: its reply comes after that pass.
	type block struct {
		entered <-chan struct{}
		release func()
	}
	armed := make(chan block, 1)
	replied := make(chan error, 1)
	go func() {
		replied <- h.d.call(context.Background(), func(context.Context) error {
			entered, release := h.sp.blockNext()
			armed <- block{entered, release}
			h.d.checkResult(checkEvent{gen: h.d.health.gen, res: health.Result{Check: "uplink", OK: false, At: h.clock.Now()}})
			return nil
		})
	}()
	var b block
	select {
	case b = <-armed:
	case <-time.After(waitTimeout):
		t.Fatal("the loop never handled the request")
	}
	defer b.release()
	select {
	case <-b.entered:
	case <-time.After(waitTimeout):
		t.Fatal("the loop never called SetAnnouncements")
	}
	// The loop is busy: the request is not answered...
	select {
	case err := <-replied:
		t.Fatalf("request answered (%v) before its pass completed", err)
	default:
	}
	// ...but Status answers, with what was last published.
	st := h.status()
	assert.Equal(t, before, st)
	assert.True(t, st.InstanceOK)
	assert.Equal(t, []string{"10.10.0.0/16", "10.20.0.0/24"}, peerStatus(t, st, "t1").Announced)

	b.release()
	select {
	case err := <-replied:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("the request was never answered")
	}
	st = h.status()
	assert.False(t, st.InstanceOK, "published by the pass the request waited for")
	assert.Empty(t, peerStatus(t, st, "t1").Announced)
	h.settle()
	assert.Empty(t, h.sp.prefixesTo("t1"))
}

// TestLoopStopping: SIGTERM drains (not persisted) and the loop returns
// once drained; undrain is refused meanwhile.
func TestLoopStopping(t *testing.T) {
	h := startLoop(t, activeActive())
	h.bringUp()
	h.skip()

	close(h.stopping)
	h.calls.waitFor(t, waitTimeout, "the drain", func() bool {
		a := h.sp.announcedLocked("t1")
		return len(a) > 0 && len(a[0].Communities) > 0
	})
	h.settle()
	assert.Len(t, h.next(), 6, "everything re-announced with GRACEFUL_SHUTDOWN")
	err := h.d.Undrain(h.ctx())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stopping")
	_, err = os.Stat(filepath.Join(h.dir, "drained"))
	assert.ErrorIs(t, err, os.ErrNotExist, "a SIGTERM drain is not persisted")

	h.clock.Advance(2 * time.Second)
	select {
	case <-h.exited:
	case <-time.After(waitTimeout):
		t.Fatal("the loop did not return after the drain")
	}
	require.NoError(t, h.loopErr)
	calls := h.next()
	assert.Contains(t, calls, "withdraw t1 10.10.0.0/16")
	assert.Contains(t, calls, "shutdown rr")
	assert.Equal(t, "drained", h.status().DrainState)
	// The loop is gone: requests fail at once.
	assert.True(t, errors.Is(h.d.call(h.ctx(), func(context.Context) error { return nil }), errStopped))
}

// TestFakesEnforceContracts: the fakes record the calls a real adapter
// could not take, so that the loop tests fail on them.
func TestFakesEnforceContracts(t *testing.T) {
	ctx := context.Background()
	calls := newCallLog()
	sp := newFakeSpeaker(calls)
	sp.check = cloudPrefixCheck([]netip.Prefix{netip.MustParsePrefix("10.10.0.0/16")})
	require.NoError(t, sp.SetPeers(ctx, []bgp.PeerConfig{{Name: "t1", Kind: bgp.KindTunnel}, {Name: "rr", Kind: bgp.KindCloud}}))
	ann := func(p string, attrs ...uint32) bgp.Announcement {
		return bgp.Announcement{Prefix: netip.MustParsePrefix(p), Communities: attrs}
	}
	require.NoError(t, sp.SetAnnouncements(ctx, map[string][]bgp.Announcement{"t1": {ann("10.10.0.0/16")}}))
	require.NoError(t, sp.SetAnnouncements(ctx, map[string][]bgp.Announcement{"t1": {}, "rr": {ann("10.1.0.0/16")}}))
	assert.Equal(t, []string{"add peer t1", "add peer rr", "announce t1 10.10.0.0/16", "announce rr 10.1.0.0/16", "withdraw t1 10.10.0.0/16"}, calls.Lines(0), "per call: peers by name")
	require.Empty(t, calls.Violations())

	_ = sp.SetAnnouncements(ctx, map[string][]bgp.Announcement{
		"t2": nil,                                                                 // no such peer
		"t1": {ann("10.1.0.0/16")},                                                // not a cloud prefix
		"rr": {ann("10.10.0.0/16"), ann("10.1.0.0/16", 1), ann("10.1.0.0/16", 1)}, // a cloud prefix; twice; other attributes than t1's
	})
	_ = sp.SetHeldDown(ctx, map[string]string{"t1": "", "t3": "bye"}) // no message; no such peer
	_ = sp.Reset(ctx, "t1", "BFD down")                               // held down
	_ = sp.Reset(ctx, "t3", "BFD down")                               // no such peer
	rt := newFakeRoutes(calls)
	_, err := rt.Set([]route.Route{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), NextHops: []netip.Addr{netip.MustParseAddr("169.254.21.2")}},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), NextHops: []netip.Addr{netip.MustParseAddr("169.254.22.2")}},
		{Prefix: netip.MustParsePrefix("10.2.0.0/16"), NextHops: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
		{Prefix: netip.MustParsePrefix("10.3.0.0/16")},
	})
	assert.Error(t, err)
	v := strings.Join(calls.Violations(), "\n")
	for _, want := range []string{
		"SetAnnouncements t2: no such peer",
		"10.1.0.0/16 to tunnel t1: not a cloud prefix",
		"10.10.0.0/16 to cloud rr: a cloud prefix",
		"10.1.0.0/16 announced twice to rr",
		"10.1.0.0/16 with other attributes",
		"SetHeldDown t3: no such peer",
		"SetHeldDown t1: no RFC 8203 message",
		"Reset t1: held down",
		"Reset t3: no such peer",
		"prefix twice",
		"invalid next hop 2001:db8::1",
		"no next hop",
	} {
		assert.Contains(t, v, want)
	}

	// The fake clock fires a timer when due, once; Reset re-arms it and
	// drops a value not received.
	clock := newFakeClock(loopEpoch)
	tm := clock.NewTimer(time.Second)
	clock.Advance(999 * time.Millisecond)
	select {
	case <-tm.C():
		t.Fatal("fired early")
	default:
	}
	clock.Advance(time.Millisecond)
	assert.Equal(t, loopEpoch.Add(time.Second), <-tm.C())
	tm.Reset(time.Second)
	clock.Advance(time.Second)
	tm.Reset(time.Second)
	select {
	case <-tm.C():
		t.Fatal("stale value after Reset")
	default:
	}
	tm.Stop()
	clock.Advance(time.Hour)
	assert.Zero(t, clock.pending())
}
