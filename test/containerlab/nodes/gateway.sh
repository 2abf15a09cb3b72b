#!/bin/sh
# A gateway instance: addresses and routes from ip.batch, strongSwan's
# charon (kernel-libipsec), then, chosen by $GATEWAY:
#   bgpgw      bgpgw with bgpgw.yaml (it loads the tunnels into charon,
#              puts the inside addresses on ipsec0 and runs BGP + BFD);
#              the binary is $BGPGW_BIN if set (namespace runner), else
#              bgpgw from PATH (the container image);
#   handbuilt  the same tunnels from handbuilt/swanctl.conf, the inside
#              addresses from handbuilt/ipsec0.batch and FRR (bgpd, bfdd:
#              BGP with BFD 100 ms x 3 to the on-prem device(s) and the
#              cloud router, 3 s/9 s timers) from handbuilt/frr.conf.
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
bgpgw)
	bin=${BGPGW_BIN:-bgpgw}
	install -m 0600 "$NODES/lab.psk" "$STATE/psk"
	"$bin" validate --config "$NODE_DIR/bgpgw.yaml" || die "bgpgw.yaml is not valid"
	setsid -f "$bin" run --config "$NODE_DIR/bgpgw.yaml" >>"$LOG/bgpgw.log" 2>&1 </dev/null
	wait_for 150 "$bin" status --config "$NODE_DIR/bgpgw.yaml" ||
		die "bgpgw does not answer: $(tail -n 20 "$LOG/bgpgw.log")"
	log "bgpgw running"
	;;
handbuilt)
	# The inside addresses first: libipsec installs a route per policy
	# with a source address inside the local selector.
	ip_batch "$NODE_DIR/handbuilt/ipsec0.batch"
	load_swanctl "$NODE_DIR/handbuilt/swanctl.conf"
	initiate_all
	start_frr "$NODE_DIR/handbuilt/frr.conf" bgpd bfdd
	log "hand-built gateway running (charon + FRR)"
	;;
*)
	die "GATEWAY=$GATEWAY: want bgpgw or handbuilt"
	;;
esac
