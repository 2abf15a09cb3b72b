package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkOptions configure a [LinkWatcher].
type LinkOptions struct {
	// Netns, when set (a handle > 0), makes the watcher watch the links of that network
	// namespace instead of the current one's. The caller keeps ownership of the handle and
	// must keep it open while Watch runs.
	Netns netns.NsHandle
	// Logger receives resubscriptions and netlink errors; nil discards.
	Logger *slog.Logger
}

// LinkWatcher reports the state of the network links from the kernel's link events
// (RTM_NEWLINK, RTM_DELLINK), without polling. It implements health.LinkWatcher.
//
// A link is up when the kernel reports it administratively up (IFF_UP) and operationally
// up: operstate UP, or UNKNOWN with carrier (IFF_LOWER_UP), as loopback and most tunnel
// devices (WireGuard, ipip, gre, xfrm) report. A veth is UP only while its peer is up too
// (LOWERLAYERDOWN otherwise); a tun device only while a process holds it open.
type LinkWatcher struct {
	ns     netns.NsHandle
	logger *slog.Logger
	// Tests set these.
	rcvbuf   int          // socket receive buffer size; 0 is the kernel's default
	sessions atomic.Int64 // subscriptions made
}

// NewLinkWatcher returns a watcher; it opens nothing until Watch.
func NewLinkWatcher(opts LinkOptions) *LinkWatcher {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &LinkWatcher{ns: opts.Netns, logger: logger}
}

const (
	// linkSyncTimeout bounds the wait for the links listed at start to show up in the
	// subscription, after which the start is declared complete anyway.
	linkSyncTimeout = 5 * time.Second
	// Delays between failed attempts to subscribe again.
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 5 * time.Second
)

// Watch calls fn(name, up) with the state of every link at start, then on every change of
// a link's state, until ctx ends; it then returns nil. A link that disappears (deleted,
// renamed, moved to another namespace) is reported down under its old name. Once every link
// that existed at start has been reported, Watch calls fn("", false), once: a link not
// reported by then does not exist. fn is called from the goroutine of Watch.
//
// Watch subscribes to link events with a dump of the existing links in the same stream. When
// the kernel drops events (the subscription's socket overflowed: ENOBUFS) or a dump is
// interrupted, the subscription ends: Watch subscribes again and reports what changed in the
// meantime, including links that disappeared, so no change of state is lost. Watch returns an
// error only if it fails before the start is complete; later failures to subscribe are retried
// with a backoff.
func (w *LinkWatcher) Watch(ctx context.Context, fn func(name string, up bool)) error {
	h, err := newNetlinkHandle(w.ns)
	if err != nil {
		return fmt.Errorf("route: watch links: open netlink handle: %w", err)
	}
	defer h.close()
	t := &linkTable{fn: fn, byIndex: make(map[int]linkState), byName: make(map[string]int)}
	delay := resubscribeMin
	for {
		started, err := w.session(ctx, h.h, t)
		if ctx.Err() != nil {
			return nil
		}
		if !t.synced && !started {
			return fmt.Errorf("route: watch links: %w", err)
		}
		if started {
			w.logger.Warn("link subscription ended, subscribing again", "reason", err)
			delay = resubscribeMin
			continue
		}
		w.logger.Error("cannot subscribe to link events, retrying", "error", err, "in", delay)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		delay = min(2*delay, resubscribeMax)
	}
}

var errDumpInterrupted = errors.New("link dump interrupted")

// session runs one subscription until it ends (returning why) or ctx ends. started tells
// whether it got as far as receiving events.
func (w *LinkWatcher) session(ctx context.Context, h *netlink.Handle, t *linkTable) (started bool, _ error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var (
		mu      sync.Mutex
		stopped bool  // by us: errors are no news
		recvErr error // the error that ended the subscription
	)
	interrupted := make(chan struct{}, 1)
	opts := netlink.LinkSubscribeOptions{
		ListExisting:      true,
		ReceiveBufferSize: w.rcvbuf,
		ErrorCallback: func(err error) { // called from netlink's goroutine
			mu.Lock()
			defer mu.Unlock()
			switch {
			case stopped:
			case errors.Is(err, netlink.ErrDumpInterrupted):
				select {
				case interrupted <- struct{}{}:
				default:
				}
			default:
				recvErr = err // a receive error closes the channel next
				w.logger.Warn("link subscription error", "error", err)
			}
		},
	}
	if w.ns > 0 {
		ns := w.ns
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		close(done)
		return false, fmt.Errorf("subscribe: %w", err)
	}
	w.sessions.Add(1)
	defer func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		close(done) // closes the socket: netlink's goroutine closes updates
		for range updates {
		}
	}()

	// The links that exist now, after subscribing, must all show up in the subscription's
	// stream (dumped, changed or deleted): until they have, the start is not complete.
	links, err := listLinks(h)
	if err != nil {
		return false, fmt.Errorf("list links: %w", err)
	}
	await := make(map[int]bool, len(links))
	for _, l := range links {
		await[l.Attrs().Index] = true
	}
	t.forgetMissing(await)
	var syncTimeout <-chan time.Time
	if !t.synced {
		timer := time.NewTimer(linkSyncTimeout)
		defer timer.Stop()
		syncTimeout = timer.C
	}
	for {
		if !t.synced && len(await) == 0 {
			t.synced = true
			t.fn("", false)
		}
		select {
		case u, ok := <-updates:
			if !ok {
				mu.Lock()
				err := recvErr
				mu.Unlock()
				if err == nil {
					err = errors.New("subscription closed")
				}
				return true, err
			}
			delete(await, int(u.Index))
			t.apply(u)
		case <-interrupted:
			return true, errDumpInterrupted
		case <-syncTimeout:
			w.logger.Warn("links listed at start did not all show up in the subscription", "missing", len(await))
			clear(await)
		case <-ctx.Done():
			return true, nil
		}
	}
}

func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	var (
		links []netlink.Link
		err   error
	)
	for range dumpAttempts {
		if links, err = h.LinkList(); !isDumpInterrupted(err) {
			break
		}
	}
	return links, err
}

// linkTable is the state of the links as last reported to fn.
type linkTable struct {
	fn      func(name string, up bool)
	byIndex map[int]linkState
	byName  map[string]int
	ignore  map[int]bool // links found gone at a resubscription: their older events are stale
	synced  bool         // fn("", false) was called
}

type linkState struct {
	name string
	up   bool
}

// forgetMissing reports as gone the links known before that are not among exist: they
// disappeared while no subscription was receiving.
func (t *linkTable) forgetMissing(exist map[int]bool) {
	t.ignore = make(map[int]bool)
	for idx := range t.byIndex {
		if !exist[idx] {
			t.ignore[idx] = true
			t.remove(idx)
		}
	}
}

func (t *linkTable) apply(u netlink.LinkUpdate) {
	idx := int(u.Index)
	if t.ignore[idx] {
		return
	}
	switch u.Header.Type {
	case unix.RTM_DELLINK:
		t.remove(idx)
	case unix.RTM_NEWLINK:
		a := u.Attrs()
		t.set(idx, a.Name, linkUp(a))
	}
}

func (t *linkTable) set(idx int, name string, up bool) {
	old, known := t.byIndex[idx]
	if known && old.name != name { // renamed: the old name is gone
		t.remove(idx)
		known = false
	}
	if j, ok := t.byName[name]; ok && j != idx { // a link whose deletion was missed
		delete(t.byIndex, j)
	}
	t.byIndex[idx] = linkState{name: name, up: up}
	t.byName[name] = idx
	if !known || old.up != up {
		t.fn(name, up)
	}
}

func (t *linkTable) remove(idx int) {
	l, ok := t.byIndex[idx]
	if !ok {
		return
	}
	delete(t.byIndex, idx)
	if t.byName[l.name] == idx {
		delete(t.byName, l.name)
		t.fn(l.name, false)
	}
}

// linkUp applies the rule of [LinkWatcher].
func linkUp(a *netlink.LinkAttrs) bool {
	if a.RawFlags&unix.IFF_UP == 0 {
		return false
	}
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		return a.RawFlags&unix.IFF_LOWER_UP != 0
	}
	return false
}
