// Package pair is the state channel between the two instances of a bgpgw
// pair: an authenticated, replay-protected exchange of small UDP datagrams
// over the cloud-side network. Each instance tells its partner, at once
// and then periodically, which on-prem devices it has tunnels to, which of
// them it carries traffic for, whether it is draining and whether its
// instance-scope health checks pass.
//
// Liveness is not this package's job: a separate authenticated BFD session
// says whether the partner is alive. This channel says what a live partner
// is doing. A consumer that needs to know how fresh the partner's word is
// reads the arrival time from [Channel.Last].
//
// The package has three parts:
//
//   - wire.go: [Encode] and [Decode], the datagram format. Every datagram
//     ends with an HMAC-SHA256 over everything before it; Decode checks the
//     magic, the version and the MAC before it parses the body, and accepts
//     only the canonical encoding (sorted, unique lists; reserved flag bits
//     zero; no trailing bytes), so a decoded message re-encodes to the same
//     bytes.
//   - window.go: [Window], the replay protection. A sender picks an epoch
//     when it starts (its wall clock in nanoseconds) and numbers its
//     datagrams within the epoch; a receiver accepts a message only if its
//     (epoch, seq) is above every one accepted before.
//   - channel.go, loops.go and schedule.go: [Channel], the UDP transport.
//     [Channel.Send] records the state to advertise; one goroutine
//     transmits it at once on a change, again at the Repeat offsets (for
//     loss), and every Refresh. Another goroutine reads, filters (source
//     address, MAC, instance name, replay) and delivers accepted messages
//     on [Channel.Received].
//
// Security notes. The key authenticates both directions (one shared key per
// pair); it is never logged and never put in an error. Nothing from a
// datagram's payload is logged either. Replay protection lives in memory:
// right after this instance starts, a captured datagram from an earlier
// partner epoch can be accepted once, and it is superseded by the partner's
// next datagram (within one Refresh). The epoch relies on the wall clock
// moving forward across a restart: if a host restarts with its clock set
// back, its partner refuses its datagrams (counted as Replayed) while the
// old epoch is still heard, and takes the lower epoch as a restart once the
// old one has been silent for three Refreshes (a replayed datagram gains
// little by it: the partner's liveness is its BFD session's, authenticated
// apart, and its next datagram supersedes it).
package pair
