#!/bin/sh
# A host: addresses and routes from ip.batch.
. /run/lab/nodes/lib.sh
wait_links
ip_batch "$NODE_DIR/ip.batch"
log "host ready"
