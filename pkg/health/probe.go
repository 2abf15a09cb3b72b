package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// NewProbe returns the probe of a check of kind icmp, tcp, http or command, after checking
// the check and its target's form. Link checks are not probes: see [LinkWatcher].
//
//   - icmp sends one echo request to Target from a raw socket (so bgpgw must run as root or
//     with CAP_NET_RAW) and waits for the matching reply (same identifier, sequence number
//     and payload, from Target); an ICMP error about the request fails the probe at once.
//   - tcp connects to Target, then closes the connection.
//   - http sends GET Target on a new connection, with no proxy and a client timeout of
//     Timeout; any 2xx or 3xx status is healthy (a redirect is not followed); the body is
//     discarded.
//   - command runs Target with Args in a process group of its own, killed with ctx; exit
//     status 0 is healthy. At most 200 bytes of its output are kept, in the failure's reason.
func NewProbe(c Check) (Probe, error) {
	if err := validate(c); err != nil {
		return nil, err
	}
	var (
		p   Probe
		err error
	)
	switch c.Kind {
	case KindICMP:
		p, err = icmpProbe(c.Target)
	case KindTCP:
		p, err = tcpProbe(c.Target)
	case KindHTTP:
		p, err = httpProbe(c.Target, c.Timeout)
	case KindCommand:
		p, err = commandProbe(c.Target, c.Args)
	default:
		err = fmt.Errorf("kind %s is not a probe", c.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("check %q: %w", c.Name, err)
	}
	return p, nil
}

func tcpProbe(target string) (Probe, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("tcp target %q: want host:port", target)
	}
	return func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return shortErr(err)
		}
		return conn.Close()
	}, nil
}

func httpProbe(target string, timeout time.Duration) (Probe, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("http target: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http target %q: want an http:// or https:// URL with a host", target)
	}
	client := &http.Client{
		// No proxy from the environment: the check is about the path from this host.
		// No keep-alive: every probe proves that the server still accepts connections.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: timeout,
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "bgpgw-health")
		resp, err := client.Do(req)
		if err != nil {
			return shortErr(err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("HTTP status %s", resp.Status)
		}
		return nil
	}, nil
}

func commandProbe(name string, args []string) (Probe, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	args = append([]string(nil), args...)
	return func(ctx context.Context) error {
		var out headWriter
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		// Kill the whole process group, so that a script's children die with it; WaitDelay
		// bounds the wait for a child that escaped the group and keeps the output pipe.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		if err == nil {
			return nil
		}
		if o := strings.Join(strings.Fields(out.String()), " "); o != "" {
			return fmt.Errorf("%w: %s", err, o)
		}
		return err
	}, nil
}

// headWriter keeps the first maxDetail bytes written to it and discards the rest.
type headWriter struct{ b bytes.Buffer }

func (w *headWriter) Write(p []byte) (int, error) {
	if room := maxDetail + 1 - w.b.Len(); room > 0 { // one more byte tells a cut
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *headWriter) String() string { return truncate(w.b.String(), maxDetail) }

// shortErr drops the parts of a network error that repeat the check's own target ("dial tcp
// 127.0.0.1:80: ", "Get \"http://...\": "), keeping the reason.
func shortErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
