#!/bin/sh
# A router: forwarding with L4 ECMP hashing, addresses and routes from
# ip.batch, and FRR (zebra, bgpd, staticd, bfdd) when the node has a
# frr.conf. The "internet" node between the sites is a router without FRR.
. /run/lab/nodes/lib.sh
wait_links
router_sysctls
ip_batch "$NODE_DIR/ip.batch"
if [ -f "$NODE_DIR/frr.conf" ]; then
	start_frr "$NODE_DIR/frr.conf" bgpd staticd bfdd
fi
log "router ready"
