#!/bin/sh
# The on-prem end of one IPsec tunnel, a node between the on-prem router
# and the internet. Lab-only: kernel-libipsec picks the SA of a packet by
# its addresses (one ipsec0 per charon), so an on-prem device with tunnels
# to two gateway instances ends each tunnel in a node of its own, and the
# router's routing table picks the tunnel. The node is made invisible to
# the router and the gateway:
#   - proxy ARP: the router has the tunnel's inside /30 on its link to this
#     node and reaches the gateway's inside address as if directly
#     connected (FRR's eBGP connected check, BGP next hops);
#   - TTL restore: packets between inside addresses leave this node with
#     TTL 255 again, so GTSM (bgpgw; FRR ttl-security hops 1) and BFD see
#     a direct neighbor (ttl-restore.nft).
# Everything toward the cloud side (10.0.0.0/8 and 169.254.0.0/16, except
# the on-prem LAN and the router's inside address, routed toward lan by
# ip.batch) goes into the tunnel.
# Files: ip.batch (addresses, routes to the router and the internet),
# swanctl.conf (responder, 0.0.0.0/0 both ways: the initiator's selectors
# are taken).
. /run/lab/nodes/lib.sh
wait_links
router_sysctls
sysctl_set net.ipv4.conf.all.proxy_arp 1
ip_batch "$NODE_DIR/ip.batch"
start_charon
load_swanctl "$NODE_DIR/swanctl.conf"
ip route add 10.0.0.0/8 dev ipsec0
ip route add 169.254.0.0/16 dev ipsec0
nft -f "$NODES/ttl-restore.nft" || die "nft -f ttl-restore.nft failed"
log "tunnel end ready"
