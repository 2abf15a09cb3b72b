#!/usr/bin/env bash
# Mutation proof for pkg/core's BFD, pair and route rules (pkg/core/bfd.go, pair.go, output.go): each mutation
# breaks one rule with one small source change, in a temporary copy of the
# repository (never in place), and runs `go test ./pkg/core/`. A mutation
# the tests catch (they fail) prints "caught" and the failing tests; one they
# miss prints "MISSED". A mutation whose pattern is not found exactly once,
# or that does not compile, is an error of this script.
#
#   scripts/mutate-core.sh
#
# Exits 0 when every mutation is caught, 1 when one is missed, 2 on error.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir "$work/repo" "$work/pristine"
tar -C "$root" --exclude=./.git --exclude=./bench/out -cf - . | tar -C "$work/repo" -xf -
cp -a "$work/repo/pkg/core/." "$work/pristine/"
cd "$work/repo"

# replace FILE OLD NEW: OLD must occur exactly once in pkg/core/FILE.
replace() {
	python3 - "pkg/core/$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
src = open(path).read()
n = src.count(old)
if n != 1:
    sys.exit(f"mutate-core: {path}: pattern found {n} times, want 1:\n{old}")
open(path, "w").write(src.replace(old, new))
EOF
}

# run: go test ./pkg/core/ on the current copy, output in $work/out.
run() { go test -count=1 ./pkg/core/ >"$work/out" 2>&1; }

# failed lists the tests that failed in $work/out: the transcripts by name,
# the random test's seeds as one.
failed() {
	grep -o -- '--- FAIL: [^ ]*' "$work/out" | sed -e 's/--- FAIL: //' -e 's#^\(TestTransitionsInRandomOrder\)/.*#\1#' |
		grep -vx TestTranscripts | sort -u | paste -sd ' '
}

if ! run; then
	cat "$work/out"
	echo "mutate-core: the unmutated copy fails its tests" >&2
	exit 2
fi

missed=0
# mutation NAME FILE OLD NEW
mutation() {
	rm -rf pkg/core && cp -a "$work/pristine" pkg/core
	replace "$2" "$3" "$4" || exit 2
	if ! go test -count=1 -run '^$' ./pkg/core/ >"$work/out" 2>&1; then
		cat "$work/out"
		echo "mutate-core: $1: does not compile" >&2
		exit 2
	fi
	if run; then
		printf 'MISSED  %s\n' "$1"
		missed=1
	else
		printf 'caught  %s  (%s)\n' "$1" "$(failed)"
	fi
}

# Rule 1: a Down counts only after the session was Up.
mutation "rule 1: a Down counts without a prior Up" bfd.go \
	'case p.wasUp && ev.Old == BFDUp:' 'case ev.Old == BFDUp:'
# Rule 2: the peer's AdminDown is not a failure.
mutation "rule 2: no AdminDown branch" bfd.go \
	$'\tcase ev.Remote == BFDAdminDown || ev.New == BFDAdminDown:\n\t\tp.wasUp, p.up = false, true\n' ''
mutation "rule 2: AdminDown keeps wasUp (a later Down counts)" bfd.go \
	'p.wasUp, p.up = false, true' 'p.up = true'
# Rule 3: a counted Down takes the tunnel out and decides a reset.
mutation "rule 3: Gen not incremented" bfd.go \
	'Gen: p.reset.Gen + 1' 'Gen: p.reset.Gen'
mutation "rule 3: up not set false" bfd.go \
	$'\t\tp.up = false\n' ''
mutation "rule 3: not at once (no refresh)" bfd.go \
	$'\t}\n\tc.refresh(now)\n}' $'\t}\n}'
# Rule 4: a cloud peer's Down only resets its session.
mutation "rule 4: cloud peer Down withdraws its announcements" output.go \
	$'\t\tif announcing {\n' $'\t\tif announcing && c.bfdUp(cp.Name) {\n'
mutation "rule 4: no reset for a cloud peer" output.go \
	'(tunnel || c.isCloudPeer(peer))' '(tunnel)'
# Rule 5: a reload that removes a session forgets its state.
mutation "rule 5: state kept when BFD is disabled" bfd.go \
	'case had && kept && name == peer:' 'case had && (!kept || name == peer):'
mutation "rule 5: state kept when local address or multihop change" bfd.go \
	'bfdKey{t.InsideRemote, t.InsideLocal.Addr(), t.BFD.Multihop}' 'bfdKey{peer: t.InsideRemote}'
mutation "rule 5: state forgotten on a timer-only change" bfd.go \
	'continue // the same session (its timers or keys may change)' 'c.bfd[peer] = &peerBFD{up: true, reset: p.reset}; continue'
mutation "rule 5: a renamed peer (same session) forgets its state" bfd.go \
	'moved[name] = p' '_ = name'
mutation "rule 5: reset Gen restarts on reload" bfd.go \
	'reset: p.reset}' 'reset: Reset{Reason: p.reset.Reason}}'
mutation "rule 5: resets of peers no longer configured" output.go \
	'(tunnel || c.isCloudPeer(peer))' '(tunnel || true)'
mutation "rule 5: late events of a removed session accepted" bfd.go \
	'if _, ok := bfdKeys(c.cfg)[peer]; !ok {' 'if _, ok := c.tunnels[peer]; !ok && !c.isCloudPeer(peer) {'

# The pair rules (pkg/core/pair.go).
mutation "pair: no startup grace" pair.go \
	'if now.Before(c.pair.started.Add(c.cfg.Pair.ReleaseDelay)) {' 'if false {'
mutation "pair: takeover of a device the partner has not" pair.go \
	'if v.Heard && !slices.Contains(v.Devices, d) {' 'if false {'
mutation "pair: partner draining ignored" pair.go \
	'case v.Draining:' 'case false:'
mutation "pair: released at once" pair.go \
	't.releaseAt = now.Add(pc.ReleaseDelay)' 't.releaseAt = now'
mutation "pair: kept after this instance stops carrying" pair.go \
	'if !carrying[d] || pc.Takeover == config.TakeoverOff {' 'if pc.Takeover == config.TakeoverOff {'
mutation "pair: false takeover not told" pair.go \
	'v.Epoch == t.epoch && v.Drops == t.drops' 'v.Epoch == t.epoch && false'
mutation "pair: carrying while draining" pair.go \
	'if c.drain != Normal || !c.instance.open(now) {' 'if c.drain == Drained || !c.instance.open(now) {'
mutation "pair: a starting partner (heard, BFD not Up yet) taken as lost" pair.go \
	'case !v.Up && !c.pair.everUp:' 'case !v.Up && !v.Heard:'
mutation "pair: a partner that never carried the device replaced" pair.go \
	'case !c.pair.seen[d]:' 'case false:'
mutation "pair: halves wrong" pair.go \
	'b[p.Bits()/8] |= 0x80 >> (p.Bits() % 8)' 'b[p.Bits()/8] |= 0x40 >> (p.Bits() % 8)'

# The route rules (pkg/core/output.go): AS path and RFC 1997.
mutation "routes: NO_EXPORT passed on" output.go \
	'if best[p].route.Exportable() {' 'if true {'
mutation "routes: NO_EXPORT's takeover halves passed on" output.go \
	'return !best[p].route.Exportable() })' 'return false })'
mutation "routes: learned AS path dropped" output.go \
	'a.ASPath = best[p].route.ASPath' 'a.ASPath = nil'
mutation "routes: a longer AS path routed too (ECMP over every tunnel)" output.go \
	'case n == model.PathLen(b.route.ASPath):' 'case n >= model.PathLen(b.route.ASPath):'
mutation "routes: the last shortest path passed on, not the first" output.go \
	'case n < model.PathLen(b.route.ASPath):' 'case n <= model.PathLen(b.route.ASPath):'

if [ "$missed" -ne 0 ]; then
	echo "mutate-core: some mutations were MISSED" >&2
	exit 1
fi
echo "mutate-core: every mutation caught"
