// Package xfrm proves bgpgw's production data plane, ipsec.mode xfrm (kernel
// ESP, one XFRM interface per tunnel bound to its SAs by if_id, routes
// choosing the tunnel), in a real kernel.
//
// This machine's kernel has neither kernel ESP nor XFRM interfaces, so
// TestGuest, on the host, builds bgpgw, the UDP probe and this package's
// tests with the build tag "guest", and runs them in a QEMU guest booted
// with Debian's own kernel, whose root is the host's, read-only
// (internal/guest). Inside, the tests build their labs from network
// namespaces with internal/lab: two bgpgw instances with charon, an on-prem
// VPN device (strongSwan or libreswan, route-based) with FRR behind it, and
// a cloud-side FRR router. The tagged tests fail at once when run anywhere
// else.
package xfrm
