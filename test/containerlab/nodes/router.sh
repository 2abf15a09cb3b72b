#!/bin/sh
# A router: forwarding with L4 ECMP hashing, addresses and routes from
# ip.batch, and FRR (zebra, bgpd, staticd, bfdd) when the node has a
# frr.conf. The "internet" node between the sites is a router without FRR.
# With ONPREM_BFD=off (the on-prem routers of the *-nobfd topologies) FRR
# runs without BFD: frr.conf's "bfd profile" neighbor lines and bfd block
# left out, no bfdd. With ONPREM_ROUTER=bird (the on-prem routers of the
# *-bird topologies) a node with a bird.conf runs BIRD 2 with it instead
# of FRR.
. /run/lab/nodes/lib.sh
wait_links
router_sysctls
ip_batch "$NODE_DIR/ip.batch"
if [ "$ONPREM_ROUTER" = bird ] && [ -f "$NODE_DIR/bird.conf" ]; then
	# The on-prem router of a *-bird topology: BIRD 2 instead of FRR.
	start_bird "$NODE_DIR/bird.conf"
elif [ -f "$NODE_DIR/frr.conf" ]; then
	if [ "$ONPREM_BFD" = off ]; then
		frr_without_bfd "$NODE_DIR/frr.conf" "$STATE/frr-nobfd.conf"
		start_frr "$STATE/frr-nobfd.conf" bgpd staticd
		log "FRR without BFD (ONPREM_BFD=off)"
	else
		start_frr "$NODE_DIR/frr.conf" bgpd staticd bfdd
	fi
fi
log "router ready"
