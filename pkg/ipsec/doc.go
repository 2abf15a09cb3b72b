// Package ipsec will hold bgpgw's tunnel model and the VICI adapter that
// drives strongSwan's charon (the only package to import govici): load and
// initiate each configured tunnel, turn IKE/CHILD SA events into tunnel
// state events, and resync after a charon restart.
//
// Not implemented yet: this version runs with ipsec.mode "none", where the
// tunnels and their inside addresses are managed outside bgpgw.
package ipsec
