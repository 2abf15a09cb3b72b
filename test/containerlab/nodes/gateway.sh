#!/bin/sh
# A gateway instance: addresses and routes from ip.batch, strongSwan's
# charon (kernel-libipsec), then, chosen by $GATEWAY:
#   bgpgw      bgpgw with bgpgw.yaml (it loads the tunnels into charon,
#              puts the inside addresses on ipsec0 and runs BGP + BFD, and
#              the pair channel to the other instance); the binary is
#              $BGPGW_BIN if set (namespace runner), else bgpgw from PATH
#              (the container image);
#   bgpgw-notakeover
#              the same with "takeover: more-specific" in the pair section
#              turned into "takeover: off": the partner is watched, routes
#              never change for it (the reference takeover is measured
#              against);
#   handbuilt  the same tunnels from handbuilt/swanctl.conf, the inside
#              addresses from handbuilt/ipsec0.batch and FRR (bgpd, bfdd:
#              BGP with BFD 100 ms x 3 to the on-prem device(s) and the
#              cloud router, 3 s/9 s timers) from handbuilt/frr.conf.
# With ONPREM_BFD=off (the *-nobfd topologies: the on-prem routers run no
# BFD) bgpgw reads bgpgw-nobfd.yaml instead of bgpgw.yaml (no BFD on the
# tunnels, a fast icmp check through each), and the hand-built FRR runs no
# BFD toward the on-prem devices (the cloud router keeps it). With
# ONPREM_ROUTER=bird (the *-bird topologies: the on-prem routers run BIRD,
# whose BFD toward a directly connected neighbor is single-hop) bgpgw's
# tunnels run single-hop BFD (bfd_single_hop_tunnels) and so does the
# hand-built FRR toward the on-prem devices (frr_bfd_single_hop).
# bgpgw's configuration as it runs is $BGPGW_CONF (lib.sh).
. /run/lab/nodes/lib.sh
wait_links
GATEWAY=${GATEWAY:-bgpgw}

# initiate_all brings every loaded connection up, retrying while its peer
# is not ready yet (nodes start concurrently, and a peer that answers
# before it has loaded its connections refuses for good). Afterwards
# charon's dpd_action and close_action restart what goes down.
initiate_all() {
	for c in $(swanctl --list-conns | sed -n 's/^\([^ :]*\): IKEv2.*/\1/p'); do
		n=0
		until swanctl --list-sas --ike "$c" 2>/dev/null | grep -q INSTALLED; do
			n=$((n + 1))
			[ $n -le 30 ] || die "tunnel $c does not come up: $(tail -n 20 "$LOG/charon.log")"
			swanctl --initiate --child "$c" --timeout 5 >/dev/null 2>&1 || sleep 0.5
		done
		log "tunnel $c up"
	done
}
router_sysctls
ip_batch "$NODE_DIR/ip.batch"
start_charon
case $GATEWAY in
bgpgw | bgpgw-notakeover)
	bin=${BGPGW_BIN:-bgpgw}
	conf=$NODE_DIR/bgpgw.yaml
	[ "$ONPREM_BFD" = on ] || conf=$NODE_DIR/bgpgw-nobfd.yaml
	install -m 0600 "$NODES/lab.psk" "$STATE/psk"
	install -m 0600 "$NODES/lab-pair.key" "$STATE/pair.key"
	src=$conf
	if [ "$ONPREM_ROUTER" = bird ]; then
		bfd_single_hop_tunnels "$conf" "$STATE/bgpgw-bird.yaml"
		src=$STATE/bgpgw-bird.yaml
	fi
	if [ "$GATEWAY" = bgpgw ]; then
		install -m 0644 "$src" "$BGPGW_CONF"
	else
		sed 's/^\(  takeover:\) more-specific$/\1 off/' "$src" >"$BGPGW_CONF"
		grep -q '^  takeover: off$' "$BGPGW_CONF" || die "$conf: no line \"  takeover: more-specific\" to turn off"
	fi
	"$bin" validate --config "$BGPGW_CONF" || die "$conf is not valid (as $BGPGW_CONF)"
	setsid -f "$bin" run --config "$BGPGW_CONF" >>"$LOG/bgpgw.log" 2>&1 </dev/null
	wait_for 150 "$bin" status --config "$BGPGW_CONF" ||
		die "bgpgw does not answer: $(tail -n 20 "$LOG/bgpgw.log")"
	log "bgpgw running ($GATEWAY, ${conf##*/}, on-prem router $ONPREM_ROUTER)"
	;;
handbuilt)
	# The inside addresses first: libipsec installs a route per policy
	# with a source address inside the local selector.
	ip_batch "$NODE_DIR/handbuilt/ipsec0.batch"
	load_swanctl "$NODE_DIR/handbuilt/swanctl.conf"
	initiate_all
	frr=$NODE_DIR/handbuilt/frr.conf
	if [ "$ONPREM_BFD" = off ]; then
		# No BFD toward the on-prem devices (tunnel neighbors, inside
		# addresses in 169.254/16); the cloud router keeps it.
		frr_without_bfd "$frr" "$STATE/handbuilt-frr.conf" '169\.254\.[0-9.]*'
		frr=$STATE/handbuilt-frr.conf
	elif [ "$ONPREM_ROUTER" = bird ]; then
		# Single-hop BFD toward the on-prem devices, as BIRD runs it.
		frr_bfd_single_hop "$frr" "$STATE/handbuilt-frr.conf" '169\.254\.[0-9.]*'
		frr=$STATE/handbuilt-frr.conf
	fi
	start_frr "$frr" bgpd bfdd
	log "hand-built gateway running (charon + FRR, on-prem BFD $ONPREM_BFD, on-prem router $ONPREM_ROUTER)"
	;;
*)
	die "GATEWAY=$GATEWAY: want bgpgw, bgpgw-notakeover or handbuilt"
	;;
esac
