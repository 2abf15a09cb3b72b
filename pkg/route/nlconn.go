package route

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nlConn is a NETLINK_ROUTE socket of its own, in one network namespace, for the requests
// that vishvananda/netlink v1.3.1 cannot make (nexthop objects, routes with RTA_NH_ID) and
// for batches of route changes. Not safe for concurrent use: the installer's lock serialises.
type nlConn struct {
	fd  int
	pid uint32 // the socket's port id
	seq uint32
	buf []byte
}

const (
	// nlRcvBuf is the receive buffer asked for (forced as root): a batch's errors and a
	// dump's messages must fit.
	nlRcvBuf = 4 << 20
	// nlRecvSize is the largest datagram read: the kernel fills a dump's datagrams up to
	// 32 KiB at most.
	nlRecvSize = 64 << 10
	// nlTimeout bounds the wait for one answer of the kernel.
	nlTimeout = 30 * time.Second
	// batchSize is the number of requests sent in one datagram. Only errors and the last
	// request's acknowledgement come back, so the answers fit the receive buffer.
	batchSize = 128
	// nlmsgerrAttrMsg is NLMSGERR_ATTR_MSG: the kernel's text explaining an error.
	nlmsgerrAttrMsg = 1
)

// dialNetlink opens the socket in ns (> 0) or in the current namespace. A socket stays in the
// namespace it was created in; the thread that enters ns never runs anything else (it is
// locked and exits with its goroutine), so no goroutine is left in the wrong namespace.
func dialNetlink(ns netns.NsHandle) (*nlConn, error) {
	if ns <= 0 {
		return openNetlink()
	}
	type result struct {
		c   *nlConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := netns.Set(ns); err != nil {
			ch <- result{nil, fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		c, err := openNetlink()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func openNetlink() (*nlConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	c := &nlConn{fd: fd, buf: make([]byte, nlRecvSize)}
	if err := c.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

func (c *nlConn) setup() error {
	if err := unix.Bind(c.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	sa, err := unix.Getsockname(c.fd)
	if err != nil {
		return fmt.Errorf("netlink getsockname: %w", err)
	}
	c.pid = sa.(*unix.SockaddrNetlink).Pid
	if unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, nlRcvBuf) != nil {
		_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, nlRcvBuf) // capped by rmem_max
	}
	tv := unix.NsecToTimeval(nlTimeout.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return fmt.Errorf("netlink timeout: %w", err)
		}
	}
	// Error texts (extended ACK), errors without a copy of the request, and strict checking
	// of dump requests so that the kernel filters routes by table and protocol. Kernels
	// without one of them only lose comfort (or filtering, which the reader redoes).
	_ = unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	return nil
}

func (c *nlConn) close() { unix.Close(c.fd) }

// nlRequest is one netlink message to send: its type, flags (NLM_F_REQUEST is added) and
// body (the family header and the attributes).
type nlRequest struct {
	typ   uint16
	flags uint16
	body  []byte
}

func (c *nlConn) nextSeq() uint32 {
	c.seq++
	return c.seq
}

func appendMsg(b []byte, r nlRequest, seq uint32, ack bool) []byte {
	flags := r.flags | unix.NLM_F_REQUEST
	if ack {
		flags |= unix.NLM_F_ACK
	}
	b = binary.NativeEndian.AppendUint32(b, uint32(unix.NLMSG_HDRLEN+len(r.body)))
	b = binary.NativeEndian.AppendUint16(b, r.typ)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, r.body...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func (c *nlConn) send(b []byte) error {
	for {
		err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return fmt.Errorf("netlink send: no room within %s: %w", nlTimeout, err)
		}
		return err
	}
}

// receive reads one datagram and calls fn for each message of it.
func (c *nlConn) receive(fn func(h unix.NlMsghdr, data []byte) error) error {
	var n int
	for {
		var err error
		n, _, err = unix.Recvfrom(c.fd, c.buf, unix.MSG_TRUNC) // n: the datagram's whole size
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return fmt.Errorf("netlink: no answer within %s: %w", nlTimeout, err)
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		break
	}
	if n > len(c.buf) {
		return fmt.Errorf("netlink: a datagram of %d bytes, more than %d", n, len(c.buf))
	}
	b := c.buf[:n]
	for len(b) >= unix.NLMSG_HDRLEN {
		h := unix.NlMsghdr{
			Len:   binary.NativeEndian.Uint32(b[0:4]),
			Type:  binary.NativeEndian.Uint16(b[4:6]),
			Flags: binary.NativeEndian.Uint16(b[6:8]),
			Seq:   binary.NativeEndian.Uint32(b[8:12]),
			Pid:   binary.NativeEndian.Uint32(b[12:16]),
		}
		if h.Len < unix.NLMSG_HDRLEN || int(h.Len) > len(b) {
			return fmt.Errorf("netlink: malformed message of %d bytes in %d", h.Len, len(b))
		}
		if err := fn(h, b[unix.NLMSG_HDRLEN:h.Len]); err != nil {
			return err
		}
		b = b[min(nlAlign(int(h.Len)), len(b)):]
	}
	return nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// nlError is an error the kernel answered, with its explanation when it gave one.
type nlError struct {
	errno syscall.Errno
	msg   string
}

func (e *nlError) Error() string {
	if e.msg == "" {
		return e.errno.Error()
	}
	return e.errno.Error() + ": " + e.msg
}

func (e *nlError) Unwrap() error { return e.errno }

// parseError reads the payload of an NLMSG_ERROR (or the error of an NLMSG_DONE): nil for an
// acknowledgement.
func parseError(h unix.NlMsghdr, data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("netlink: short error message")
	}
	code := int32(binary.NativeEndian.Uint32(data))
	if code == 0 {
		return nil
	}
	e := &nlError{errno: syscall.Errno(-code)}
	if h.Type != unix.NLMSG_ERROR || h.Flags&unix.NLM_F_ACK_TLVS == 0 || len(data) < 4+unix.NLMSG_HDRLEN {
		return e
	}
	// The request's header (its body too unless capped), then the attributes.
	skip := unix.NLMSG_HDRLEN
	if h.Flags&unix.NLM_F_CAPPED == 0 {
		skip = int(binary.NativeEndian.Uint32(data[4:8]))
	}
	if 4+nlAlign(skip) > len(data) {
		return e
	}
	_ = walkAttrs(data[4+nlAlign(skip):], func(typ uint16, v []byte) error {
		if typ == nlmsgerrAttrMsg {
			e.msg = unix.ByteSliceToString(v)
		}
		return nil
	})
	return e
}

// do sends one request and waits for its answer; fn (if set) gets every message of the answer
// that is not the final acknowledgement.
func (c *nlConn) do(r nlRequest, fn func(typ uint16, data []byte) error) error {
	seq := c.nextSeq()
	if err := c.send(appendMsg(nil, r, seq, true)); err != nil {
		return err
	}
	for {
		done := false
		var answer error
		err := c.receive(func(h unix.NlMsghdr, data []byte) error {
			if h.Seq != seq || h.Pid != c.pid || done {
				return nil // an answer to an earlier request, abandoned
			}
			if h.Type == unix.NLMSG_ERROR {
				done, answer = true, parseError(h, data)
				return nil
			}
			if fn != nil {
				return fn(h.Type, data)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if done {
			return answer
		}
	}
}

// dump sends a dump request and calls fn for every message of the answer. A dump that the
// kernel reports interrupted by a change (NLM_F_DUMP_INTR) is read to its end, then reported
// with netlink.ErrDumpInterrupted, as the netlink package does.
func (c *nlConn) dump(r nlRequest, fn func(typ uint16, data []byte) error) error {
	seq := c.nextSeq()
	r.flags |= unix.NLM_F_DUMP
	if err := c.send(appendMsg(nil, r, seq, false)); err != nil {
		return err
	}
	intr := false
	var fnErr error
	for {
		done := false
		var answer error
		err := c.receive(func(h unix.NlMsghdr, data []byte) error {
			if h.Seq != seq || h.Pid != c.pid || done {
				return nil
			}
			if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch h.Type {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				done = true
				if len(data) >= 4 {
					answer = parseError(h, data)
				}
			default:
				if fnErr == nil {
					fnErr = fn(h.Type, data) // the rest is read, not parsed
				}
			}
			return nil
		})
		switch {
		case err != nil:
			return err
		case !done:
			continue
		case answer != nil:
			return answer
		case fnErr != nil:
			return fnErr
		case intr:
			return netlink.ErrDumpInterrupted
		}
		return nil
	}
}

// batch sends the requests, batchSize to a datagram, and returns one answer per request (nil:
// done). Only the last request of a datagram asks for an acknowledgement: the kernel handles
// the messages of a datagram in order and answers every failure, so the last one's answer
// closes the datagram.
func (c *nlConn) batch(reqs []nlRequest) []error {
	errs := make([]error, len(reqs))
	var b []byte
	for start := 0; start < len(reqs); start += batchSize {
		end := min(start+batchSize, len(reqs))
		first := c.seq + 1
		b = b[:0]
		for k := start; k < end; k++ {
			b = appendMsg(b, reqs[k], c.nextSeq(), k == end-1)
		}
		last := c.seq
		if err := c.send(b); err != nil {
			for k := start; k < end; k++ {
				errs[k] = err
			}
			continue
		}
		if err := c.collect(first, last, errs[start:end]); err != nil {
			// The answers are lost (the socket overflowed, or no answer came): what the
			// kernel did with the rest of this datagram is unknown.
			for k := start; k < end; k++ {
				if errs[k] == nil {
					errs[k] = fmt.Errorf("outcome unknown: %w", err)
				}
			}
		}
	}
	return errs
}

// collect reads the answers to the requests numbered first..last (errs[k] for first+k) until
// the last one's.
func (c *nlConn) collect(first, last uint32, errs []error) error {
	for {
		done := false
		err := c.receive(func(h unix.NlMsghdr, data []byte) error {
			if h.Pid != c.pid || h.Type != unix.NLMSG_ERROR || h.Seq-first > last-first {
				return nil
			}
			errs[h.Seq-first] = parseError(h, data)
			if h.Seq == last {
				done = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// walkAttrs calls fn for each netlink attribute in b (type without its flag bits).
func walkAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofRtAttr || l > len(b) {
			return errors.New("malformed netlink attribute")
		}
		if err := fn(typ, b[unix.SizeofRtAttr:l]); err != nil {
			return err
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return nil
}

// appendAttr appends an attribute, padded.
func appendAttr(b []byte, typ uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.SizeofRtAttr+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func appendU32Attr(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}
