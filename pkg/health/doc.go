// Package health will hold bgpgw's health checks as data (kind, target,
// interval, timeout, rise, fall, scope) with an injected clock: link state
// from netlink events, ICMP echo, TCP connect, HTTP GET and commands. Their
// results feed the decision core as events.
//
// Not implemented yet: this version announces whenever the BGP session
// of a tunnel is up.
package health
