package pair

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"
)

// limiter lets a log line through at most once per second and counts what
// it held back in between.
type limiter struct {
	last       time.Time
	suppressed int
}

func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	suppressed, l.last, l.suppressed = l.suppressed, now, 0
	return true, suppressed
}

// sendLoop is the one goroutine that writes to the socket; it returns when
// ctx ends.
func (c *Channel) sendLoop(ctx context.Context, conn *net.UDPConn) {
	sch := schedule{refresh: c.refresh, repeat: c.repeat}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	timer.Stop()
	var lim limiter
	buf := make([]byte, 0, 1024)

	// A state recorded before Run goes out at once.
	select {
	case <-c.changed:
	default:
	}
	c.mu.Lock()
	has := c.hasState
	c.mu.Unlock()
	if has {
		now := time.Now()
		sch.change(now)
		buf = c.transmit(conn, buf, &lim, now)
	}
	for {
		if t, ok := sch.next(); ok {
			timer.Reset(time.Until(t))
		}
		select {
		case <-ctx.Done():
			return
		case <-c.changed:
			now := time.Now()
			sch.change(now)
			buf = c.transmit(conn, buf, &lim, now)
		case <-timer.C:
			if now := time.Now(); sch.due(now) {
				buf = c.transmit(conn, buf, &lim, now)
			}
		}
	}
}

// transmit sends the current state with the next Seq (every datagram
// written, even one the network then loses, uses one). It returns buf for
// reuse.
func (c *Channel) transmit(conn *net.UDPConn, buf []byte, lim *limiter, now time.Time) []byte {
	c.mu.Lock()
	if !c.hasState {
		c.mu.Unlock()
		return buf
	}
	m := Message{State: c.state, Epoch: c.epoch, Seq: c.seq + 1}
	c.mu.Unlock()

	b, err := Encode(buf[:0], m, c.key)
	if err != nil {
		c.sendErrors.Add(1)
		if ok, n := lim.allow(now); ok {
			c.log.Error("pair: state does not encode, partner hears nothing", "err", err, "suppressed", n)
		}
		return buf
	}
	// Only this goroutine writes seq; a state that does not encode uses none.
	c.mu.Lock()
	c.seq = m.Seq
	c.mu.Unlock()
	if _, err := conn.WriteToUDPAddrPort(b, c.remote); err != nil {
		c.sendErrors.Add(1)
		if ok, n := lim.allow(now); ok {
			c.log.Warn("pair: send failed", "remote", c.remote, "err", err, "suppressed", n)
		}
		return b
	}
	c.sent.Add(1)
	return b
}

// readLoop reads datagrams until the socket is closed.
func (c *Channel) readLoop(conn *net.UDPConn) {
	buf := make([]byte, maxDatagram+1) // one more, so that oversize shows
	var lim limiter
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if ok, k := lim.allow(now); ok {
				c.log.Warn("pair: receive failed", "err", err, "suppressed", k)
			}
			continue
		}
		if drop, err := c.handle(buf[:n], src, now); drop != "" {
			if ok, k := lim.allow(now); ok {
				// Never the payload, never the key: the source, the
				// reason and the decode error (which names no content).
				args := []any{"from", src, "reason", drop, "suppressed", k}
				if err != nil {
					args = append(args, "err", err)
				}
				c.log.Debug("pair: datagram dropped", args...)
			}
		}
	}
}

// handle filters one datagram and delivers it if accepted. drop is empty
// when accepted, else the reason (with the decode error, if any).
func (c *Channel) handle(b []byte, src netip.AddrPort, now time.Time) (drop string, err error) {
	if src.Addr().Unmap().WithZone("") != c.remoteAddr {
		c.wrongSender.Add(1)
		return "wrong source address", nil
	}
	m, err := Decode(b, c.key)
	if err != nil {
		if errors.Is(err, ErrAuth) {
			c.badAuth.Add(1)
			return "authentication failed", err
		}
		c.malformed.Add(1)
		return "undecodable", err
	}
	if m.Instance == c.self {
		c.wrongSender.Add(1)
		return "names our own instance (reflected)", nil
	}
	if c.partner != "" && m.Instance != c.partner {
		c.wrongSender.Add(1)
		return "names another instance than the partner", nil
	}
	first, prevEpoch := !c.window.seen, c.window.epoch
	if !c.window.Accept(m) {
		if !c.epochWentBack(m, now) {
			c.replayed.Add(1)
			return "replayed or reordered", nil
		}
		c.log.Warn("pair: the partner's epoch went back (its clock set back across a restart?): taken as a restart",
			"from", src, "epoch", m.Epoch, "was", prevEpoch)
		c.window = Window{}
		c.window.Accept(m)
	}
	c.recvd.Add(1)
	kept := m // Last's own copy: the consumer of Received may edit m
	kept.Devices, kept.Carrying = slices.Clone(m.Devices), slices.Clone(m.Carrying)
	c.mu.Lock()
	c.last, c.lastAt, c.hasLast = kept, now, true
	has := c.hasState
	c.mu.Unlock()
	c.deliver(m)
	if first || m.Epoch != prevEpoch {
		// The partner (re)started: answer at once rather than after up to
		// one Refresh.
		c.log.Info("pair: partner epoch", "from", src, "epoch", m.Epoch, "seq", m.Seq, "first", first)
		if has {
			c.kick()
		}
	}
	return "", nil
}

// epochWentBack reports whether m, refused by the window, is from a lower
// epoch while the epoch the window holds has been silent for
// staleEpochAfter refreshes: the partner restarted with its clock behind.
// Taking it as a restart keeps the pair from refusing a partner forever;
// a replayed old datagram gains nothing by it that the partner's BFD
// session, authenticated on its own, would not deny (a dead partner stays
// lost), and the partner's next datagram supersedes it.
func (c *Channel) epochWentBack(m Message, now time.Time) bool {
	if m.Epoch >= c.window.epoch {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hasLast && now.Sub(c.lastAt) >= staleEpochAfter*c.refresh
}

// staleEpochAfter is how many refreshes an epoch must be silent before a
// lower one is taken as the partner's restart.
const staleEpochAfter = 3

// deliver puts m on Received, dropping the oldest pending message when the
// buffer is full. handle is the only writer, so the loop ends at once.
func (c *Channel) deliver(m Message) {
	for {
		select {
		case c.received <- m:
			return
		default:
		}
		select {
		case <-c.received:
		default:
		}
	}
}
