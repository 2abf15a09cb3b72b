// Package health runs bgpgw's health checks. A check is data ([Check]: a kind, a target, an
// interval and a timeout); a [Runner] runs the checks and sends every outcome as a [Result]
// to bgpgw's decision core, where it is one more event. This package only observes: the core
// applies the rise and fall counts and decides what a failing check takes out of service.
//
// Probe checks (icmp, tcp, http, command) run on a ticker of an injected [Clock], each probe
// bounded by the check's timeout, so tests drive time by hand. Link checks are event-driven:
// a [LinkWatcher] (pkg/route's, over netlink) reports every change of a link's state as it
// happens, without polling.
package health
