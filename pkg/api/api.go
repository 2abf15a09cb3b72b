// Package api is the local control interface of a running bgpgw: HTTP over
// a unix socket (mode 0600), with a server the daemon runs and a client the
// CLI uses. Endpoints: GET /v1/status, POST /v1/drain, POST /v1/undrain,
// POST /v1/role/{primary|standby}.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Status is what `bgpgw status --json` prints. Its fields are a contract:
// add fields, do not rename or remove them.
type Status struct {
	Instance Instance `json:"instance"`
	// Drained is true from `bgpgw drain` (or SIGTERM) until undrain.
	Drained bool `json:"drained"`
	// DrainState is normal, draining (announced with GRACEFUL_SHUTDOWN)
	// or drained (withdrawn, sessions shut down).
	DrainState string   `json:"drain_state"`
	InstanceOK bool     `json:"instance_ok"` // every instance-scope health check passes
	Tunnels    []Tunnel `json:"tunnels"`
	Checks     []Check  `json:"checks"`
	Peers      []Peer   `json:"peers"`
	Routes     []Route  `json:"routes"`
	Errors     []string `json:"errors,omitempty"`
	// Reload is the outcome of the last reload (SIGHUP or bgpgw reload).
	Reload *Reload `json:"reload,omitempty"`
	// Pair is the partner's state and the takeovers (with pair: only).
	Pair *Pair `json:"pair,omitempty"`
}

// Pair is what this instance knows of its partner, and the devices it
// takes over from it.
type Pair struct {
	Partner   string `json:"partner"` // its address
	PartnerUp bool   `json:"partner_up"`
	Why       string `json:"why,omitempty"` // why the partner is not up
	BFD       *BFD   `json:"bfd,omitempty"` // the pair's BFD session
	// What the partner said last, and when.
	LastHeard       *time.Time `json:"last_heard,omitempty"`
	PartnerName     string     `json:"partner_name,omitempty"`
	PartnerDevices  []string   `json:"partner_devices,omitempty"`
	PartnerCarrying []string   `json:"partner_carrying,omitempty"`
	PartnerDraining bool       `json:"partner_draining"`
	PartnerChecksOK bool       `json:"partner_checks_ok"`
	// Carrying is what this instance tells the partner it carries.
	Carrying []string `json:"carrying"`
	Takeover string   `json:"takeover"` // the method: more-specific, med or off
	// Takeovers are the devices taken over now; History the last ended
	// ones (at most 16).
	Takeovers           []Takeover        `json:"takeovers"`
	History             []TakeoverRecord  `json:"history,omitempty"`
	TakeoversTotal      uint64            `json:"takeovers_total"`
	FalseTakeoversTotal uint64            `json:"false_takeovers_total"`
	TakeoversByDevice   map[string]uint64 `json:"takeovers_by_device,omitempty"`
	Channel             PairChannel       `json:"channel"`
}

// Takeover is a device taken over from the partner.
type Takeover struct {
	Device          string     `json:"device"`
	Reason          string     `json:"reason"`
	Since           time.Time  `json:"since"`
	DurationSeconds float64    `json:"duration_seconds"`
	ReleaseAt       *time.Time `json:"release_at,omitempty"` // the partner carries it again: the routes go then
	// False: the partner came back without having stopped carrying (the
	// link between the two was cut, or a false BFD Down).
	False bool `json:"false"`
}

// TakeoverRecord is a takeover that ended.
type TakeoverRecord struct {
	Device          string    `json:"device"`
	Reason          string    `json:"reason"`
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	DurationSeconds float64   `json:"duration_seconds"`
	False           bool      `json:"false"`
}

// PairChannel counts the state channel's datagrams since start. A dropped
// datagram (bad key, old sequence number, garbage, wrong sender) changes
// nothing.
type PairChannel struct {
	Sent        uint64 `json:"sent"`
	Received    uint64 `json:"received"`
	SendErrors  uint64 `json:"send_errors"`
	BadAuth     uint64 `json:"bad_auth"`
	Replayed    uint64 `json:"replayed"`
	Malformed   uint64 `json:"malformed"`
	WrongSender uint64 `json:"wrong_sender"`
}

// Reload is the outcome of a configuration reload. A rejected reload
// leaves the running configuration in place.
type Reload struct {
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	Errors  []string  `json:"errors,omitempty"`  // why it was rejected
	Changes []string  `json:"changes,omitempty"` // what it changed, e.g. "tunnel t3 added"
}

// Tunnel says whether a tunnel carries traffic, and why not.
type Tunnel struct {
	Name          string     `json:"name"`
	Carrying      bool       `json:"carrying"`
	Reason        string     `json:"reason,omitempty"`
	Flaps         int        `json:"flaps"`
	HoldDownUntil *time.Time `json:"hold_down_until,omitempty"`
	IPsec         *IPsec     `json:"ipsec,omitempty"` // when bgpgw manages the tunnel (ipsec.mode xfrm or libipsec)
}

// IPsec is the state of a tunnel's IKE and CHILD SAs in charon.
type IPsec struct {
	// State is "up" (CHILD_SA installed), "connecting" or "down".
	State     string     `json:"state"`
	IKEState  string     `json:"ike_state,omitempty"`  // charon's IKE_SA state, e.g. ESTABLISHED
	ChildSPIs []string   `json:"child_spis,omitempty"` // inbound/outbound SPIs of the installed CHILD_SA
	Since     *time.Time `json:"since,omitempty"`      // when State last changed
	Error     string     `json:"error,omitempty"`      // why the tunnel is not up (charon's words)
	Interface string     `json:"interface,omitempty"`  // where the inside address is
	Rekeys    uint64     `json:"rekeys"`               // IKE and CHILD rekeys seen
}

// Check is the last result of a health check.
type Check struct {
	Name   string     `json:"name"`
	Scope  string     `json:"scope"` // instance or tunnel:NAME
	OK     *bool      `json:"ok"`    // null until the first result
	Detail string     `json:"detail,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

// Instance identifies the gateway instance.
type Instance struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	Role string `json:"role,omitempty"`
}

// Peer is one BGP session.
type Peer struct {
	Name             string     `json:"name"`
	Kind             string     `json:"kind"` // tunnel or cloud
	Address          string     `json:"address"`
	PeerASN          uint32     `json:"peer_asn"`
	State            string     `json:"state"`
	AdminDown        bool       `json:"admin_down,omitempty"`
	EstablishedSince *time.Time `json:"established_since,omitempty"`
	UptimeSeconds    float64    `json:"uptime_seconds"`
	LastError        string     `json:"last_error,omitempty"`
	BFD              *BFD       `json:"bfd,omitempty"` // when BFD is enabled for the peer
	Announced        []string   `json:"announced"`
	Received         []string   `json:"received"`
	Rejected         []string   `json:"rejected"`
	// RejectedRoutes says why routes in Rejected were refused: the first
	// MaxRejectedRoutes by prefix. RejectedReasons counts every refused
	// route by reason (pkg/filter's keywords).
	RejectedRoutes  []RejectedRoute `json:"rejected_routes,omitempty"`
	RejectedReasons map[string]int  `json:"rejected_reasons,omitempty"`
	// The number of prefixes in each list; status for metrics leaves the
	// lists out (nil) and gives only these.
	AnnouncedCount int `json:"announced_count"`
	ReceivedCount  int `json:"received_count"`
	RejectedCount  int `json:"rejected_count"`
}

// MaxRejectedRoutes bounds Peer.RejectedRoutes.
const MaxRejectedRoutes = 100

// RejectedRoute is a route a peer sent that bgpgw refused, and why.
type RejectedRoute struct {
	Prefix string `json:"prefix"`
	ASPath string `json:"as_path"` // as routers show it: "65010 {65020 65021}"
	Reason string `json:"reason"`  // a stable keyword: default-route, cloud-prefix, not-in-accept-list, ...
	Detail string `json:"detail"`
}

// BFD is the state of a peer's BFD session.
type BFD struct {
	State           string  `json:"state"`
	RemoteState     string  `json:"remote_state"`
	Diag            string  `json:"diag"`
	TxIntervalMs    float64 `json:"tx_interval_ms"` // negotiated
	RxIntervalMs    float64 `json:"rx_interval_ms"` // negotiated
	DetectionTimeMs float64 `json:"detection_time_ms"`
	Sent            uint64  `json:"sent"`
	Received        uint64  `json:"received"`
	StateChanges    uint64  `json:"state_changes"`
	AuthFailures    uint64  `json:"auth_failures"`
}

// Route is a kernel route bgpgw installed.
type Route struct {
	Prefix   string   `json:"prefix"`
	NextHops []string `json:"next_hops"`
}

// Backend is what the daemon exposes to the API.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Drain(ctx context.Context) error
	Undrain(ctx context.Context) error
	SetRole(ctx context.Context, role string) error
	// Reload reads the configuration file again and applies the difference,
	// or rejects it and keeps the running configuration. The plan is what
	// it applied.
	Reload(ctx context.Context) (Plan, error)
	// Plan tells what loading the configuration file at path would change,
	// without applying anything. A file that does not load is not an
	// error: Plan.Invalid says why.
	Plan(ctx context.Context, path string) (Plan, error)
}

// Server serves the API on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

// Listen creates the socket at path, mode 0600. A stale socket left by a
// dead daemon is replaced; a socket that answers means another bgpgw runs,
// and is an error.
func Listen(path string, b Backend) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("api socket %s: another bgpgw is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api socket %s: remove stale socket: %w", path, err)
		}
	}
	old := syscall.Umask(0o177) // the socket is born 0600: no window where others could connect
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.Status(r.Context())
		writeJSON(w, st, err)
	})
	action := func(f func(context.Context) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if err := f(r.Context()); err != nil {
				writeError(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /v1/drain", action(b.Drain))
	mux.HandleFunc("POST /v1/undrain", action(b.Undrain))
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		p, err := b.Reload(r.Context())
		writeJSON(w, p, err)
	})
	mux.HandleFunc("POST /v1/plan", func(w http.ResponseWriter, r *http.Request) {
		var req planRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.File == "" {
			http.Error(w, "plan: want a JSON body {\"file\": PATH}", http.StatusBadRequest)
			return
		}
		p, err := b.Plan(r.Context(), req.File)
		writeJSON(w, p, err)
	})
	mux.HandleFunc("POST /v1/role/{role}", func(w http.ResponseWriter, r *http.Request) {
		action(func(ctx context.Context) error { return b.SetRole(ctx, r.PathValue("role")) })(w, r)
	})
	s := &Server{path: path, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	return s, nil
}

// writeJSON answers v, or err when it is not nil.
func writeJSON(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// Serve answers requests until Close.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// Close stops serving, waiting up to 2 s for requests in flight, and
// removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	_ = os.Remove(s.path)
	return err
}

// Client talks to a running daemon.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{path: path, hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

func (c *Client) do(ctx context.Context, method, path string) ([]byte, error) {
	return c.doBody(ctx, method, path, nil)
}

func (c *Client) doBody(ctx context.Context, method, path string, reqBody io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://bgpgw"+path, reqBody)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach bgpgw at %s (is it running?): %w", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read reply from %s: %w", c.path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("bgpgw: %s", string(bytesTrim(body)))
	}
	return body, nil
}

func bytesTrim(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Status fetches the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	body, err := c.do(ctx, http.MethodGet, "/v1/status")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

// Drain asks the daemon to drain.
func (c *Client) Drain(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/drain")
	return err
}

// SetRole changes the instance's role in an active-standby pair.
func (c *Client) SetRole(ctx context.Context, role string) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/role/"+url.PathEscape(role))
	return err
}

// Reload asks the daemon to reload its configuration file and returns
// what it applied.
func (c *Client) Reload(ctx context.Context) (Plan, error) {
	return c.plan(c.do(ctx, http.MethodPost, "/v1/reload"))
}

// Plan asks the daemon what loading the configuration file at path (as
// the daemon sees it) would change.
func (c *Client) Plan(ctx context.Context, path string) (Plan, error) {
	b, err := json.Marshal(planRequest{File: path})
	if err != nil {
		return Plan{}, err
	}
	return c.plan(c.doBody(ctx, http.MethodPost, "/v1/plan", bytes.NewReader(b)))
}

func (c *Client) plan(body []byte, err error) (Plan, error) {
	var p Plan
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("decode plan: %w", err)
	}
	return p, nil
}

type planRequest struct {
	File string `json:"file"`
}

// Undrain asks the daemon to undrain.
func (c *Client) Undrain(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/undrain")
	return err
}
