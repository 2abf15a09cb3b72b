# Shared by the node start scripts (POSIX sh). A node runs them inside its
# container under containerlab, or inside its namespaces under the runner
# (internal/clab). Either way the node's private, writable space is /run:
# nothing here writes anywhere else.
#
# Every start script takes the node's configuration directory, relative to
# this directory (e.g. active-active/gw1), as its first argument.

set -eu

NODES=/run/lab/nodes
[ $# -ge 1 ] || { echo "usage: $0 TOPOLOGY/NODE" >&2; exit 2; }
NODE_DIR=$NODES/$1
[ -d "$NODE_DIR" ] || { echo "$0: no directory $NODE_DIR" >&2; exit 2; }
STATE=/run/lab/var
LOG=/run/lab/log
mkdir -p "$STATE" "$LOG"
export STRONGSWAN_CONF="$NODES/strongswan.conf"
# The bgpgw configuration a gateway runs with: gateway.sh writes it from the
# node's bgpgw.yaml (bgpgw-nobfd.yaml with ONPREM_BFD=off) as $GATEWAY says;
# whoever talks to that bgpgw later (bgpgw status, drain, a restart by the
# failover suite) uses it.
BGPGW_CONF=$STATE/bgpgw.yaml

# ONPREM_BFD (from the topology's env: "off" on the on-prem routers and the
# gateways of the *-nobfd topologies): whether the on-prem routers run BFD
# toward the gateways.
case ${ONPREM_BFD:=on} in
on | off) ;;
*) echo "$0: ONPREM_BFD=$ONPREM_BFD: want on or off" >&2; exit 2 ;;
esac

# ONPREM_ROUTER (from the topology's env: "bird" on the on-prem routers and
# the gateways of the *-bird topologies): the on-prem routers' BGP
# implementation, FRR (frr.conf) or BIRD 2 (bird.conf). BIRD runs the BFD
# session of a directly connected neighbor single-hop, FRR that of a
# ttl-security neighbor multihop: the gateways follow (gateway.sh).
case ${ONPREM_ROUTER:=frr} in
frr) ;;
bird)
	[ "$ONPREM_BFD" = on ] || { echo "$0: ONPREM_ROUTER=bird with ONPREM_BFD=$ONPREM_BFD: no such lab" >&2; exit 2; }
	;;
*) echo "$0: ONPREM_ROUTER=$ONPREM_ROUTER: want frr or bird" >&2; exit 2 ;;
esac

log() { echo "$(hostname): $*"; }
die() { echo "$(hostname): error: $*" >&2; exit 1; }

# wait_for N CMD...: run CMD every 0.1 s until it succeeds, at most N times.
wait_for() {
	n=$1
	shift
	until "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.1
	done
}

# wait_links waits until the node has the $CLAB_INTFS interfaces its links
# give it (containerlab and the runner both set it; eth0 is containerlab's
# management interface).
wait_links() {
	want=${CLAB_INTFS:-0}
	i=0
	while :; do
		have=0
		for d in /sys/class/net/*; do
			case ${d##*/} in
			lo | eth0 | ipsec*) ;;
			*) have=$((have + 1)) ;;
			esac
		done
		[ "$have" -ge "$want" ] && return 0
		i=$((i + 1))
		[ $i -lt 300 ] || die "$have of $want interfaces after 30 s"
		sleep 0.1
	done
}

# sysctl_set KEY VALUE (no sysctl binary needed).
sysctl_set() {
	echo "$2" >"/proc/sys/$(echo "$1" | tr . /)"
}

# router_sysctls: forward, hash ECMP on L4 ports, and no reverse path
# filter (paths through the two gateways are asymmetric by design).
router_sysctls() {
	sysctl_set net.ipv4.ip_forward 1
	sysctl_set net.ipv4.fib_multipath_hash_policy 1
	for f in /proc/sys/net/ipv4/conf/*/rp_filter; do
		echo 0 >"$f"
	done
}

# ip_batch FILE: run the ip commands of FILE (iproute2 batch mode), if it exists.
ip_batch() {
	if [ -f "$1" ]; then
		ip -batch "$1" || die "ip -batch $1 failed"
	fi
}

# start_charon: strongSwan's charon with kernel-libipsec (userspace ESP on
# the TUN device ipsec0), VICI on its default socket /var/run/charon.vici.
#
# Lab-only: kernel-libipsec installs a route into ipsec0 for every outbound
# policy (the remote traffic selectors) in table 220, whatever
# charon.install_routes says, and charon looks that table up before main
# (rule 220). Those routes would outlive a BGP withdrawal and send the
# tunnel's inside /30 back into the tunnel on a tunnel-end node. The rule
# is removed: as with route-based tunnels in production, the node's own
# routes (bgpgw's, FRR's, the node script's) decide what enters ipsec0.
#
# Lab-only, too: charon runs at real-time priority (SCHED_RR 1). Its
# userspace ESP stands in for the kernel's, which runs in softirq context
# where no process delays it; at normal priority a busy machine (a compile
# on the two cores) kept charon waiting long enough for its ESP-in-UDP
# socket to overflow, and the lab lost packets that no gateway dropped
# (measured in the failover suite: 12 to 1,217 per fault, all counted by the
# gateways' and tunnel ends' Udp RcvbufErrors; none with SCHED_RR).
start_charon() {
	prio="chrt -r 1"
	if ! chrt -r 1 true 2>/dev/null; then
		log "warning: chrt -r 1 refused: charon at normal priority (the lab's data plane may drop packets on a busy machine)"
		prio=
	fi
	# shellcheck disable=SC2086 # $prio is a command prefix or nothing
	setsid -f $prio /usr/lib/ipsec/charon >>"$LOG/charon.out" 2>&1 </dev/null
	wait_for 150 swanctl --stats ||
		die "charon does not answer on VICI: $(tail -n 5 "$LOG/charon.out" "$LOG/charon.log" 2>&1)"
	wait_for 50 ip link show ipsec0 || die "charon created no ipsec0"
	ip link set ipsec0 up
	while ip rule show pref 220 | grep -q .; do
		ip rule del pref 220
	done
	log "charon running"
}

# load_swanctl FILE: load connections and secrets into charon.
load_swanctl() {
	out=$(swanctl --load-all --noprompt --file "$1" 2>&1) || die "swanctl --load-all $1: $out"
	case $out in
	*"loading connection"*failed* | *"loading shared secret"*failed*) die "swanctl --load-all $1: $out" ;;
	esac
}

# frr_without_bfd CONF OUT [PEER_RE]: CONF without BFD: the "bfd profile"
# lines of the neighbors matching PEER_RE (a sed regex; default: every
# neighbor) removed and, without PEER_RE, the bfd block too. Fails when a
# neighbor matching PEER_RE still mentions bfd.
frr_without_bfd() {
	re=${3:-[^ ]*}
	if [ $# -ge 3 ]; then
		sed -e "/^ neighbor $re bfd /d" "$1" >"$2"
	else
		sed -e "/^ neighbor $re bfd /d" -e '/^bfd$/,/^!$/d' "$1" >"$2"
	fi
	! grep -q "^ neighbor $re bfd" "$2" || die "$1: BFD lines left for $re in $2"
}

# start_frr CONF DAEMON...: zebra and the given FRR daemons with the
# default pathspace (/var/run/frr is private to the node), each reading
# CONF; returns when all answer vtysh.
start_frr() {
	conf=$1
	shift
	install -d -o frr -g frr -m 0755 /var/run/frr "$STATE/frr" "$LOG/frr"
	install -o frr -g frr -m 0640 "$conf" "$STATE/frr/frr.conf"
	for d in zebra "$@"; do
		/usr/lib/frr/"$d" -d -P 0 -f "$STATE/frr/frr.conf" --log "file:$LOG/frr/$d.log" \
			>>"$LOG/frr/start.log" 2>&1 </dev/null || die "FRR $d did not start: $(tail -n 5 "$LOG/frr/start.log")"
	done
	want="zebra $*"
	i=0
	while :; do
		up=$(vtysh -c 'show daemons' 2>/dev/null || true)
		missing=
		for d in $want; do
			case " $up " in
			*" $d "*) ;;
			*) missing="$missing $d" ;;
			esac
		done
		[ -z "$missing" ] && break
		i=$((i + 1))
		[ $i -lt 300 ] || die "FRR daemons not answering:$missing"
		sleep 0.1
	done
	log "FRR running ($want)"
}

# start_bird CONF: BIRD 2 with CONF (which logs to $LOG/bird.log), its
# control socket at the default /run/bird/bird.ctl (/run is private to the
# node, so a plain birdc talks to it); returns when birdc answers.
start_bird() {
	install -d -m 0755 /run/bird
	bird -c "$1" -P /run/bird/bird.pid >>"$LOG/bird.out" 2>&1 </dev/null ||
		die "BIRD did not start: $(tail -n 5 "$LOG/bird.out")"
	wait_for 300 birdc show status || die "BIRD does not answer: $(tail -n 5 "$LOG/bird.out" "$LOG/bird.log" 2>&1)"
	log "BIRD running"
}

# bfd_single_hop_tunnels IN OUT: bgpgw's configuration IN with its
# tunnels' BFD single-hop ("multihop: true" turned into "multihop: false"
# on the tunnels' one-line bfd settings), for an on-prem router that runs
# single-hop BFD (BIRD). The cloud peers and the pair keep theirs.
bfd_single_hop_tunnels() {
	sed '/^tunnels:/,/^[a-z_]*:/ s/^\(    bfd: {enabled: true, multihop:\) true,/\1 false,/' "$1" >"$2"
	! sed -n '/^tunnels:/,/^[a-z_]*:/p' "$2" | grep -q 'multihop: true' || die "$1: tunnel BFD still multihop in $2"
	sed -n '/^tunnels:/,/^[a-z_]*:/p' "$2" | grep -q 'bfd: {enabled: true, multihop: false,' ||
		die "$1: no tunnel BFD line to make single-hop"
}

# frr_bfd_single_hop CONF OUT PEER_RE: CONF with the BFD sessions of the
# neighbors matching PEER_RE (a sed regex) single-hop. FRR 8.4 runs the
# BFD of a neighbor with its own "ttl-security hops 1" multihop, but
# single-hop when the neighbor takes ttl-security from a peer-group: the
# neighbors' ttl-security lines become membership of peer-group
# ONPREM-1HOP, which carries it (GTSM unchanged). Fails when a matching
# neighbor keeps a ttl-security line of its own.
frr_bfd_single_hop() {
	sed -e '/^router bgp /a\
 neighbor ONPREM-1HOP peer-group\
 neighbor ONPREM-1HOP ttl-security hops 1' \
		-e "s/^ neighbor \($3\) ttl-security hops 1\$/ neighbor \1 peer-group ONPREM-1HOP/" "$1" >"$2"
	! grep -q "^ neighbor $3 ttl-security" "$2" || die "$1: ttl-security left for $3 in $2"
	grep -q "^ neighbor $3 peer-group ONPREM-1HOP\$" "$2" || die "$1: no neighbor $3 with ttl-security"
}
