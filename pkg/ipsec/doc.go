// Package ipsec builds and watches bgpgw's IPsec tunnels through
// strongSwan's charon. It is the only package that imports govici.
//
// Manager keeps every configured tunnel loaded in charon (its pre-shared
// key and an IKEv2 connection) and up: it initiates and retries with a
// backoff, turns charon's IKE/CHILD up, down and rekey events into one
// state per tunnel (read back from list-sas, so a dropped event only delays
// a state by the resync interval), and survives charon restarts by
// reconnecting, reloading the connections and resyncing. While charon
// cannot be reached, every tunnel is down with that reason. A tunnel stays
// up while its SAs are rekeyed, and while its IKE_SA is too busy to be
// listed. In xfrm mode it has the data plane delete the ESP states of the
// tunnels that no CHILD_SA of charon's holds (a killed charon leaves its
// SAs in the kernel).
//
// DataPlane is the netlink half: one XFRM interface per tunnel (xfrm mode)
// or the inside addresses on charon's TUN device (libipsec mode).
package ipsec
