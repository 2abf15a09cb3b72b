package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is what a check probes.
type Kind string

// Check kinds.
const (
	KindLink    Kind = "link"    // a network interface's state, from kernel events
	KindICMP    Kind = "icmp"    // ICMP echo request and reply
	KindTCP     Kind = "tcp"     // TCP connect, then close
	KindHTTP    Kind = "http"    // HTTP GET
	KindCommand Kind = "command" // a command's exit status
)

// Check is one health check.
type Check struct {
	Name string
	Kind Kind
	// Target is, by kind: link, the interface name; icmp, an IP address (IPv6 link-local with
	// its zone: "fe80::1%eth0"); tcp, host:port; http, an http or https URL; command, the
	// program (a path, or a name looked up in PATH), run with Args.
	Target string
	Args   []string // command only
	// Interval is the time between the starts of two probes. Link checks ignore it: they
	// are event-driven.
	Interval time.Duration
	// Timeout bounds each probe; it must be below Interval. Link checks ignore it.
	Timeout time.Duration
}

// IsProbe tells whether the check is run by probing on a ticker (all kinds but link).
func (c Check) IsProbe() bool { return c.Kind != KindLink }

// Result is one outcome of a check.
type Result struct {
	Check string // the check's name
	OK    bool
	// Detail is a short reason for a failure ("connect: connection refused", "link eth1 down",
	// "no such link", "exit status 1", "timeout after 500ms"); empty when OK.
	Detail string
	At     time.Time // from the runner's clock, when the outcome was known
}

// Probe runs one probe: nil means healthy. It must return soon after ctx is done.
type Probe func(ctx context.Context) error

// maxDetail bounds Result.Detail and the command output kept in it.
const maxDetail = 200

// validate checks c for the fields common to all kinds; NewProbe checks the target's form.
func validate(c Check) error {
	if c.Name == "" {
		return errors.New("check without a name")
	}
	switch c.Kind {
	case KindLink, KindICMP, KindTCP, KindHTTP, KindCommand:
	default:
		return fmt.Errorf("check %q: unknown kind %q (want link, icmp, tcp, http or command)", c.Name, c.Kind)
	}
	if c.Target == "" {
		return fmt.Errorf("check %q: empty target", c.Name)
	}
	if len(c.Args) > 0 && c.Kind != KindCommand {
		return fmt.Errorf("check %q: args are for command checks only", c.Name)
	}
	if c.Kind == KindLink {
		if len(c.Target) > 15 || strings.ContainsAny(c.Target, "/ \t\n:") || c.Target == "." || c.Target == ".." {
			return fmt.Errorf("check %q: %q is not an interface name", c.Name, c.Target)
		}
		return nil
	}
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("check %q: interval %s must be positive", c.Name, c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("check %q: timeout %s must be positive", c.Name, c.Timeout)
	case c.Timeout >= c.Interval:
		return fmt.Errorf("check %q: timeout %s must be below the interval %s", c.Name, c.Timeout, c.Interval)
	}
	return nil
}

// truncate cuts s to at most n bytes (plus an ellipsis) without leaving a cut UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
