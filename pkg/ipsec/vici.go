package ipsec

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"

	"github.com/bgpgw/bgpgw/pkg/config"
)

// callTimeout bounds every VICI command: govici drops a session for good
// when a reply is slower than its default without a deadline.
const callTimeout = 5 * time.Second

// initiateTimeout is what charon is given to bring an IKE_SA and its
// CHILD_SA up (its own timeout, in the message, and ours on the call).
const initiateTimeout = 10 * time.Second

// events are the charon events a tunnel's state depends on.
var events = []string{"ike-updown", "child-updown", "ike-rekey", "child-rekey"}

// charon is one command session to charon's VICI socket. Its methods are
// called from one goroutine at a time.
type charon struct {
	socket string
	s      *vici.Session
}

func dial(socket string) (*charon, error) {
	s, err := vici.NewSession(vici.WithSocketPath(socket))
	if err != nil {
		return nil, fmt.Errorf("charon unreachable at %s: %w", socket, err)
	}
	return &charon{socket: socket, s: s}, nil
}

func (c *charon) Close() { _ = c.s.Close() }

func (c *charon) call(ctx context.Context, cmd string, in map[string]any) (*vici.Message, error) {
	msg, err := vici.MarshalMessage(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := c.s.Call(ctx, cmd, msg)
	if err != nil {
		return out, fmt.Errorf("%s: %w", cmd, err)
	}
	return out, nil
}

// load loads tunnel t's pre-shared key and connection. The key travels
// only in the request; errors never contain it.
func (c *charon) load(ctx context.Context, mode config.IPsecMode, announce []netip.Prefix, t config.Tunnel) error {
	name := ConnName(t.Name)
	if _, err := c.call(ctx, "load-shared", map[string]any{
		"id": name, "type": "IKE", "data": t.PSK.Reveal(), "owners": []string{t.RemoteAddress.String()},
	}); err != nil {
		return fmt.Errorf("charon refused the pre-shared key: %w", err)
	}
	if _, err := c.call(ctx, "load-conn", connMessage(mode, announce, t)); err != nil {
		return fmt.Errorf("charon refused the connection: %w", err)
	}
	return nil
}

// unload terminates the tunnel's SAs (a DELETE to the peer, forced after a
// second) and removes its connection and key from charon.
func (c *charon) unload(ctx context.Context, tunnel string) error {
	name := ConnName(tunnel)
	var errs []error
	if _, err := c.call(ctx, "terminate", map[string]any{"ike": name, "force": "yes", "timeout": "1000"}); err != nil &&
		!isNotFound(err) {
		errs = append(errs, err)
	}
	if _, err := c.call(ctx, "unload-conn", map[string]any{"name": name}); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	if _, err := c.call(ctx, "unload-shared", map[string]any{"id": name}); err != nil && !isNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// isNotFound reports charon's answer for something already gone.
func isNotFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "not found") || strings.Contains(s, "no matching")
}

// listSAs returns charon's IKE_SAs of bgpgw's connections. Without block,
// charon skips the IKE_SAs that are busy (checked out by a thread
// processing a message or a job), so a connection missing from the answer
// may still be up; with block, charon waits for each of them.
func (c *charon) listSAs(ctx context.Context, block bool) (map[string][]SA, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	in := vici.NewMessage()
	if !block {
		_ = in.Set("noblock", "yes")
	}
	var msgs []map[string]any
	for m, err := range c.s.CallStreaming(ctx, "list-sas", "list-sa", in) {
		if err != nil {
			return nil, fmt.Errorf("list-sas: %w", err)
		}
		msgs = append(msgs, toMap(m))
	}
	return parseSAs(msgs), nil
}

// subscribe opens a second session that receives tunnel events on ch; the
// channel closes when charon goes away.
func subscribe(socket string, ch chan vici.Event) (*vici.Session, error) {
	s, err := vici.NewSession(vici.WithSocketPath(socket))
	if err != nil {
		return nil, fmt.Errorf("charon unreachable at %s: %w", socket, err)
	}
	s.NotifyEvents(ch)
	if err := s.Subscribe(events...); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("subscribe to charon events: %w", err)
	}
	return s, nil
}

// initiate brings tunnel up in its own session (the call blocks until
// charon is done) and returns charon's error with the log line that says
// why, if it failed.
func initiate(ctx context.Context, socket, tunnel string) error {
	s, err := vici.NewSession(vici.WithSocketPath(socket))
	if err != nil {
		return fmt.Errorf("charon unreachable at %s: %w", socket, err)
	}
	defer func() { _ = s.Close() }()
	ctx, cancel := context.WithTimeout(ctx, initiateTimeout+callTimeout)
	defer cancel()
	name := ConnName(tunnel)
	in, err := vici.MarshalMessage(map[string]any{"child": name, "ike": name,
		"timeout": fmt.Sprint(initiateTimeout.Milliseconds()), "init-limits": "no", "loglevel": "1"})
	if err != nil {
		return err
	}
	var logs []string
	for m, err := range s.CallStreaming(ctx, "initiate", "control-log", in) {
		if err != nil {
			return errors.New(failureReason(fmt.Errorf("initiate: %w", err), logs))
		}
		if msg := str(m.Get("msg")); msg != "" {
			logs = append(logs, msg)
		}
	}
	return nil
}

// toMap converts a VICI message into plain values: string, []string and
// map[string]any for sections.
func toMap(m *vici.Message) map[string]any {
	out := map[string]any{}
	for _, k := range m.Keys() {
		switch v := m.Get(k).(type) {
		case *vici.Message:
			out[k] = toMap(v)
		default:
			out[k] = v
		}
	}
	return out
}
