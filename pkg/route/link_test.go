package route

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/bgpgw/bgpgw/internal/lab"
)

// linkEvent is one call of the watcher's fn.
type linkEvent struct {
	name string
	up   bool
}

func (e linkEvent) String() string { return fmt.Sprintf("%s=%v", e.name, e.up) }

const linkEventDeadline = 5 * time.Second

// startWatch runs w.Watch with an fn that calls gate (if not nil), then sends the event to the
// returned channel. stop cancels Watch and waits for it to return.
func startWatch(t *testing.T, w *LinkWatcher, gate func()) (events <-chan linkEvent, stop func()) {
	t.Helper()
	ch := make(chan linkEvent, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Watch(ctx, func(name string, up bool) {
			if gate != nil {
				gate()
			}
			ch <- linkEvent{name, up}
		})
	}()
	return ch, func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(linkEventDeadline):
			t.Fatal("Watch did not return after its context ended")
		}
	}
}

// initialState reads the events up to the end-of-start marker, fn("", false).
func initialState(t *testing.T, events <-chan linkEvent) map[string]bool {
	t.Helper()
	state := map[string]bool{}
	deadline := time.After(linkEventDeadline)
	for {
		select {
		case e := <-events:
			if e.name == "" {
				return state
			}
			state[e.name] = e.up
		case <-deadline:
			t.Fatalf("no end-of-start marker within %s; links so far: %v", linkEventDeadline, state)
		}
	}
}

// expectEvent reads events until want arrives, failing after a deadline.
func expectEvent(t *testing.T, events <-chan linkEvent, want linkEvent) {
	t.Helper()
	var seen []linkEvent
	deadline := time.After(linkEventDeadline)
	for {
		select {
		case e := <-events:
			require.NotEqual(t, "", e.name, "second end-of-start marker")
			if e == want {
				return
			}
			seen = append(seen, e)
		case <-deadline:
			t.Fatalf("no event %v within %s; got %v", want, linkEventDeadline, seen)
		}
	}
}

func addVeth(t *testing.T, h *netlink.Handle, a, b string, up bool) {
	t.Helper()
	require.NoError(t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}))
	if up {
		for _, name := range []string{a, b} {
			setLink(t, h, name, true)
		}
		for _, name := range []string{a, b} {
			waitLink(t, h, name, true)
		}
	}
}

// waitLink waits until the kernel reports the link up or down: the operational state of a
// veth follows its peer's through the kernel's link watch, asynchronously.
func waitLink(t *testing.T, h *netlink.Handle, name string, up bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), linkEventDeadline)
	defer cancel()
	err := lab.Poll(ctx, 5*time.Millisecond, func() (bool, error) {
		l, err := h.LinkByName(name)
		if err != nil {
			return false, err
		}
		return linkUp(l.Attrs()) == up, nil
	})
	require.NoError(t, err, "link %s up=%v", name, up)
}

func setLink(t *testing.T, h *netlink.Handle, name string, up bool) {
	t.Helper()
	l, err := h.LinkByName(name)
	require.NoError(t, err)
	if up {
		require.NoError(t, h.LinkSetUp(l))
	} else {
		require.NoError(t, h.LinkSetDown(l))
	}
}

func testNetnsHandle(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	ns := lab.NewNetnsHandle(t)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	require.NoError(t, err)
	t.Cleanup(h.Close)
	return ns, h
}

func TestLinkWatcher(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns, h := testNetnsHandle(t)
	addVeth(t, h, "v0", "v1", true)
	addVeth(t, h, "d0", "d1", false)

	w := NewLinkWatcher(LinkOptions{Netns: ns, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	events, stop := startWatch(t, w, nil)
	defer stop()

	// lo is down in a new namespace; the host's links are not seen.
	assert.Equal(t, map[string]bool{"lo": false, "v0": true, "v1": true, "d0": false, "d1": false}, initialState(t, events))

	setLink(t, h, "v1", false)
	expectEvent(t, events, linkEvent{"v1", false})
	expectEvent(t, events, linkEvent{"v0", false}) // LOWERLAYERDOWN: its peer is down
	setLink(t, h, "v1", true)
	expectEvent(t, events, linkEvent{"v1", true})
	expectEvent(t, events, linkEvent{"v0", true})

	// Only d0 up: still down (no carrier); then a rename reports the old name gone.
	setLink(t, h, "d0", true)
	setLink(t, h, "lo", true) // UNKNOWN with carrier: up
	expectEvent(t, events, linkEvent{"lo", true})
	setLink(t, h, "d0", false)
	d0, err := h.LinkByName("d0")
	require.NoError(t, err)
	require.NoError(t, h.LinkSetName(d0, "e0"))
	expectEvent(t, events, linkEvent{"d0", false})
	expectEvent(t, events, linkEvent{"e0", false})

	// Deleting one end of a veth deletes both: both reported down.
	v0, err := h.LinkByName("v0")
	require.NoError(t, err)
	require.NoError(t, h.LinkDel(v0))
	expectEvent(t, events, linkEvent{"v0", false})
	expectEvent(t, events, linkEvent{"v1", false})
	assert.EqualValues(t, 1, w.sessions.Load(), "no resubscription expected")
}

// TestLinkWatcherResync makes the kernel drop events (ENOBUFS: the consumer is blocked and the
// socket buffer tiny) and checks that the watcher subscribes again and reports what changed
// in the meantime, deletions included.
func TestLinkWatcherResync(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns, h := testNetnsHandle(t)
	addVeth(t, h, "a0", "a1", true)
	addVeth(t, h, "g0", "g1", true)

	w := NewLinkWatcher(LinkOptions{Netns: ns, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	w.rcvbuf = 1 // the kernel's minimum
	blocked := make(chan struct{})
	release := make(chan struct{})
	var synced atomic.Bool
	gate := func() { // on the watcher's goroutine: blocks the first event after the start
		if synced.Load() {
			select {
			case <-blocked:
			default:
				close(blocked)
				<-release
			}
		}
	}
	events, stop := startWatch(t, w, gate)
	defer stop()
	assert.Equal(t, map[string]bool{"lo": false, "a0": true, "a1": true, "g0": true, "g1": true}, initialState(t, events))
	synced.Store(true)

	setLink(t, h, "lo", true) // the first event: fn blocks on it
	select {
	case <-blocked:
	case <-time.After(linkEventDeadline):
		t.Fatal("no event after lo up")
	}
	for range 100 {
		setLink(t, h, "a1", false)
		setLink(t, h, "a1", true)
	}
	g0, err := h.LinkByName("g0")
	require.NoError(t, err)
	require.NoError(t, h.LinkDel(g0))
	setLink(t, h, "a1", false)
	close(release)

	// Read until the final state is reached.
	want := map[string]bool{"lo": true, "a0": false, "a1": false, "g0": false, "g1": false}
	state := map[string]bool{"a0": true, "a1": true, "g0": true, "g1": true}
	var seen []linkEvent
	deadline := time.After(linkEventDeadline)
	for !mapsEqual(state, want) {
		select {
		case e := <-events:
			require.NotEqual(t, "", e.name, "second end-of-start marker")
			state[e.name] = e.up
			seen = append(seen, e)
		case <-deadline:
			t.Fatalf("final state not reached: got %v, want %v; events %v", state, want, seen)
		}
	}
	assert.GreaterOrEqual(t, w.sessions.Load(), int64(2), "the kernel dropped no event: the test proves nothing")
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestLinkWatcherBadNetns(t *testing.T) {
	w := NewLinkWatcher(LinkOptions{Netns: netns.NsHandle(1 << 20)}) // not an open fd
	err := w.Watch(context.Background(), func(string, bool) { t.Error("fn called") })
	assert.Error(t, err)
}

func TestLinkUp(t *testing.T) {
	for _, tc := range []struct {
		flags uint32
		oper  netlink.LinkOperState
		want  bool
	}{
		{unix.IFF_UP | unix.IFF_LOWER_UP | unix.IFF_RUNNING, netlink.OperUp, true},
		{unix.IFF_UP, netlink.OperUp, true},
		{unix.IFF_UP | unix.IFF_LOWER_UP, netlink.OperUnknown, true}, // loopback, WireGuard
		{unix.IFF_UP, netlink.OperUnknown, false},
		{unix.IFF_UP | unix.IFF_LOWER_UP, netlink.OperDormant, false},
		{unix.IFF_UP, netlink.OperLowerLayerDown, false}, // veth whose peer is down
		{unix.IFF_UP, netlink.OperDown, false},           // tun without a process
		{unix.IFF_LOWER_UP, netlink.OperUp, false},       // administratively down
		{0, netlink.OperUnknown, false},
	} {
		a := &netlink.LinkAttrs{RawFlags: tc.flags, OperState: tc.oper}
		assert.Equal(t, tc.want, linkUp(a), "flags %#x oper %s", tc.flags, tc.oper)
	}
}

// TestLinkTable covers what the kernel rarely shows: stale events after a resubscription, and
// a name taken by a new link while the old one's deletion was missed.
func TestLinkTable(t *testing.T) {
	var got []string
	tab := &linkTable{
		fn:      func(name string, up bool) { got = append(got, linkEvent{name, up}.String()) },
		byIndex: map[int]linkState{}, byName: map[string]int{},
	}
	upd := func(typ uint16, idx int, name string, up bool) netlink.LinkUpdate {
		var u netlink.LinkUpdate
		u.Header.Type = typ
		u.Index = int32(idx)
		flags := uint32(0)
		if up {
			flags = unix.IFF_UP | unix.IFF_LOWER_UP
		}
		u.Link = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: idx, Name: name, RawFlags: flags, OperState: netlink.OperUnknown}}
		return u
	}
	tab.apply(upd(unix.RTM_NEWLINK, 1, "a", true))
	tab.apply(upd(unix.RTM_NEWLINK, 1, "a", true)) // no change
	tab.apply(upd(unix.RTM_NEWLINK, 2, "b", true))
	tab.apply(upd(unix.RTM_NEWLINK, 3, "b", false)) // b deleted and created again, deletion missed
	tab.apply(upd(unix.RTM_DELLINK, 2, "b", false)) // the stale one's deletion: b is 3 now
	tab.forgetMissing(map[int]bool{3: true})        // resubscribed: 1 is gone
	tab.apply(upd(unix.RTM_NEWLINK, 1, "a", true))  // stale event of the gone link
	tab.apply(upd(unix.RTM_NEWLINK, 3, "c", false)) // renamed
	assert.Equal(t, []string{"a=true", "b=true", "b=false", "a=false", "b=false", "c=false"}, got)
}
