// Package bgp is bgpgw's BGP speaker: the types the rest of bgpgw speaks in
// (peers, announcements, session status) and an adapter that drives an
// embedded GoBGP server with them. Only this package imports GoBGP.
//
// The speaker is declarative: SetPeers gives the whole set of sessions and
// SetAnnouncements the whole desired Adj-RIB-Out of every peer; the adapter
// computes the difference with what it applied before and applies only that.
// Import and export default to deny (RFC 8212): a peer receives only what
// SetAnnouncements lists for it, and a tunnel peer's routes are accepted only
// as pkg/filter's rules allow (in its accept-list; no default route,
// martian, nor a route overlapping a cloud-side prefix, an underlay address
// or an inside subnet; no AS loop; not over max_as_path). Status explains
// every refused route with the same rules.
package bgp

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/bgpgw/bgpgw/pkg/config"
	"github.com/bgpgw/bgpgw/pkg/filter"
	"github.com/bgpgw/bgpgw/pkg/model"
)

// PeerKind tells tunnel peers (on-prem devices) from cloud-side peers.
type PeerKind string

// Peer kinds.
const (
	KindTunnel PeerKind = "tunnel"
	KindCloud  PeerKind = "cloud"
)

// PrefixRange matches a prefix and its more-specifics up to MaxLen.
type PrefixRange = config.PrefixRange

// Global holds the speaker-wide settings.
type Global struct {
	ASN             uint32
	RouterID        netip.Addr
	ListenPort      int          // 0: 179
	ListenAddresses []netip.Addr // empty: all
	// Never are the ranges never accepted from any peer (filter.Never).
	// Default routes and split defaults are never accepted either.
	Never []filter.Rule
	// GRPCListen is the loopback ADDRESS:PORT where GoBGP's own gRPC API
	// (for the gobgp CLI) listens; empty: nothing listens.
	GRPCListen string
}

// PeerConfig is one BGP session.
type PeerConfig struct {
	Name         string
	Kind         PeerKind
	Address      netip.Addr
	LocalAddress netip.Addr // optional
	Port         int        // the peer's TCP port; 0: 179
	PeerASN      uint32
	Password     string // TCP-MD5 key; never logged
	Accept       []PrefixRange
	MaxPrefixes  uint32
	MaxASPath    int // refuse longer AS paths; 0: no limit
	HoldTime     time.Duration
	Keepalive    time.Duration
	ConnectRetry time.Duration
	// MultihopTTL 0 means a directly connected peer protected by GTSM
	// (RFC 5082: sent with TTL 255, accepted only with TTL 255).
	MultihopTTL int
}

// Equal reports whether two peer configurations are the same session.
func (p PeerConfig) Equal(o PeerConfig) bool {
	return p.Name == o.Name && p.Kind == o.Kind && p.Address == o.Address &&
		p.LocalAddress == o.LocalAddress && p.Port == o.Port && p.PeerASN == o.PeerASN &&
		p.Password == o.Password && slices.Equal(p.Accept, o.Accept) &&
		p.MaxPrefixes == o.MaxPrefixes && p.MaxASPath == o.MaxASPath && p.HoldTime == o.HoldTime &&
		p.Keepalive == o.Keepalive && p.ConnectRetry == o.ConnectRetry &&
		p.MultihopTTL == o.MultihopTTL
}

// Well-known communities.
const (
	CommunityGracefulShutdown = model.CommunityGracefulShutdown // 65535:0, RFC 8326
)

// Announcement is one prefix as announced to a peer (bgpgw's own type,
// shared with the decision core).
type Announcement = model.Announcement

// SessionState is the BGP FSM state of a session.
type SessionState string

// Session states (RFC 4271 section 8.2.2).
const (
	StateIdle        SessionState = "idle"
	StateConnect     SessionState = "connect"
	StateActive      SessionState = "active"
	StateOpenSent    SessionState = "opensent"
	StateOpenConfirm SessionState = "openconfirm"
	StateEstablished SessionState = "established"
)

// PeerStatus is what the speaker knows about one session.
type PeerStatus struct {
	Name      string
	Kind      PeerKind
	Address   netip.Addr
	PeerASN   uint32
	State     SessionState
	AdminDown bool
	// Since is when the session reached Established (zero when not).
	Since time.Time
	// LastError says why the session last went down, if it did.
	LastError string
	Announced []netip.Prefix  // what this peer was sent
	Received  []model.Learned // accepted from this peer, sorted by prefix
	Rejected  []RejectedRoute // received but refused, sorted by prefix
}

// RejectedRoute is a route a peer sent that the import policy refused, and why.
type RejectedRoute struct {
	model.Learned
	filter.Rejection
}

// Speaker is a BGP speaker driven declaratively.
type Speaker interface {
	// SetPeers makes the speaker hold exactly these sessions; unchanged ones
	// are left alone, changed ones are replaced.
	SetPeers(ctx context.Context, peers []PeerConfig) error
	// SetAnnouncements makes every peer's Adj-RIB-Out equal to its list
	// (peers not in the map get nothing). An error names each peer or
	// prefix that could not be brought to its desired state.
	SetAnnouncements(ctx context.Context, desired map[string][]Announcement) error
	// Status reports every session.
	Status(ctx context.Context) ([]PeerStatus, error)
	// Sessions is Status without Announced: it does not walk the
	// Adj-RIBs-Out, which at 10,000 prefixes holds the speaker for tens of
	// milliseconds. For the control loop, which needs states and routes.
	Sessions(ctx context.Context) ([]PeerStatus, error)
	// Changed is signalled (level-triggered, capacity 1) whenever a
	// session changes state or a peer's routes change.
	Changed() <-chan struct{}
	// SetNever replaces Global.Never, without resetting any session.
	SetNever(ctx context.Context, never []filter.Rule) error
	// SetHeldDown keeps exactly the sessions in held (peer name -> RFC
	// 8203 message) administratively down and lets the others run: a
	// session newly held is closed with a Cease carrying its message, one
	// no longer held comes up. It lasts across SetPeers: a session added or
	// re-created while held starts down.
	SetHeldDown(ctx context.Context, held map[string]string) error
	// Reset closes a session at once because its BFD session went Down:
	// a Cease NOTIFICATION with subcode 10, BFD Down (RFC 9384), and an RFC
	// 8203 message; it reconnects by itself. A session held down is not
	// touched. (A drain's shutdown, SetHeldDown, keeps subcode 2,
	// Administrative Shutdown.)
	Reset(ctx context.Context, peer, message string) error
	// Close stops the speaker; sessions are closed with a Cease.
	Close()
}
