// Package bfd implements Bidirectional Forwarding Detection in
// asynchronous mode: RFC 5880, single-hop over IPv4/IPv6 (RFC 5881, UDP
// 3784, TTL 255 sent and required) and multihop (RFC 5883, UDP 4784, a
// configurable minimum TTL), with optional Keyed SHA1 and Meticulous Keyed
// SHA1 authentication.
//
// The package has three layers:
//
//   - codec.go: the control packet. Decode validates everything RFC 5880
//     section 6.8.6 checks before looking at a session; Packet.Append
//     encodes; SignSHA1 and VerifySHA1 compute the section 6.7.4 digest.
//   - session.go: Session, the protocol machine of section 6. It is pure:
//     a decoded packet or a clock reading goes in (Receive, Tick, Update,
//     SetAdminDown), the packet to send and the state change come out
//     (Output), and Next tells when to call Tick again. Tests drive it with
//     an explicit clock; jitter comes from an injected random source.
//   - manager.go, timers.go and socket_linux.go: Manager, the adapter that owns the
//     UDP sockets, demultiplexes received packets to sessions (by Your
//     Discriminator, else by peer address, interface and local address),
//     runs the sessions' timers from one goroutine and publishes state
//     changes on a channel.
//
// Not implemented: Demand mode (a peer's Demand bit is honoured: periodic
// packets stop while both sides are Up), the Echo function (Required Min
// Echo RX is sent as zero), simple password and MD5 authentication (the
// codec parses them; sessions refuse them) and the passive role.
package bfd
