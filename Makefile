# bgpgw: `make demo` runs the lab demo, `make test` runs every test.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 60s

.PHONY: all build deps lint test check mutate unit integration demo bench bench-bfd bench-scale bench-routes bench-failover failover-ci fuzz clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/bgpgw ./cmd/bgpgw

# Debian packages for the lab (FRR, BIRD 2, strongSwan and its plugin
# packages, tcpdump, iproute2, nftables), installed when missing, then
# verified (FRR's daemons, bird and birdc, charon's plugins, the tools): a
# missing piece stops here with one line naming it. DEPS=check verifies
# without installing anything.
deps:
	./scripts/install-deps.sh $(if $(filter check,$(DEPS)),--check)
	$(GO) mod download

lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every test: unit tests, the in-process daemon tests (private netns) and the
# integration tests with real FRR in network namespaces. Needs root; tests
# that cannot run fail, they never skip.
test: deps lint
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v -e /test/bfd -e /test/xfrm -e /internal/guest)
	@# Each BFD rule of the core, mutated, must fail a test.
	$(MAKE) mutate
	@# The patched copy of govici (third_party/govici/BGPGW.md) is its own module.
	cd third_party/govici && $(GO) test -race -count=1 ./vici/
	@# So is GoBGP's (third_party/gobgp/BGPGW.md): its patches' regression tests.
	cd third_party/gobgp && $(GO) test -race -count=1 -run 'TestResetPeerCease|TestWithdrawAll' ./pkg/server/
	@# The BFD interop test checks detection within detection time + 50 ms:
	@# it runs alone, not beside the FRR-heavy packages.
	$(GO) test -race -count=1 -p 1 -timeout 10m ./test/bfd/...
	@# The failover suite on the active-active topology (and a silent instance
	@# on its variant without BFD on the on-prem router, five faults on its
	@# variant with BIRD on the on-prem router), alone on the machine:
	@# fails when a planned or pair fault loses a datagram, another fault's
	@# outage exceeds 1 s, or the pair does not come back.
	$(MAKE) failover-ci

# Every pure test, with -race, as any user, in under a minute once built:
# no root, no network namespace, no daemon (FRR, charon), no package to
# install, no network beyond loopback sockets the test opens itself.
# Packages are listed by directory (CHECK_PKGS), so a new package under pkg/
# or internal/ is in. Left out whole: cmd/bgpgw (its TestMain enters a
# private network namespace), test/integration and test/bfd (real FRR and
# strongSwan). pkg/bgp and pkg/health keep the tests that need their private
# network namespace, and the TestMain entering it, in files built with
# !nonetns, which -tags nonetns leaves out. In the other listed packages the
# tests that need root are named in CHECK_SKIP (each name is unique in the
# repo). A root test added to a listed package makes `make check` fail
# without root until it is tagged or named. `make test` runs every test.
CHECK_PKGS := ./pkg/... ./internal/... ./deploy/... ./test/udpprobe/
# pkg/route: a network namespace with veths
CHECK_SKIP := TestKernel|TestLinkWatcher|TestLinkWatcherResync
# pkg/ipsec: a network namespace, TUN and XFRM devices
CHECK_SKIP := $(CHECK_SKIP)|TestLibipsecKernel|TestXfrmKernel
# internal/lab: lab namespaces with FRR, BIRD and charon; /proc/sys/kernel
# writes; the bird binary (bird2)
CHECK_SKIP := $(CHECK_SKIP)|TestCharonTunnel|TestLabTwoRouters|TestTrafficNoLoss|TestTrafficFinish|TestTrafficOutage|TestAutogroupOff
CHECK_SKIP := $(CHECK_SKIP)|TestLabBIRD|TestCheckBIRDConfig
# internal/clab: deployed topologies; the bird binary (bird -p on the BIRD configurations)
CHECK_SKIP := $(CHECK_SKIP)|TestDeployActiveStandby|TestDeployActiveActive|TestDeployActiveActiveNoBFD|TestDeployTwoOnprem|TestDeployVNetToVNet|TestDeployRunner|TestDeployFailures
CHECK_SKIP := $(CHECK_SKIP)|TestDeployActiveActiveBird|TestBIRDConfigsParse
# deploy/systemd: systemd-analyze, installed with apt-get when missing
CHECK_SKIP := $(CHECK_SKIP)|TestUnitVerifies
# internal/guest: boots a QEMU guest (qemu-system-x86, linux-image-amd64, busybox-static)
CHECK_SKIP := $(CHECK_SKIP)|TestGuestBoot|TestGuestTimeLimit|TestGuestStops

check:
	$(GO) test -race -count=1 -timeout 5m -tags nonetns -skip '^($(CHECK_SKIP))$$' $(CHECK_PKGS)

# The core's BFD, pair and route rules, each mutated in a copy of the tree (30 mutations):
# every mutation must make go test ./pkg/core fail.
mutate:
	bash scripts/mutate-core.sh

# Every fault on active-active with bgpgw, then one takeover fault: gw1
# silent before an on-prem router without BFD (active-active-nobfd), where
# only the pair's takeover keeps the outage under the 1 s limit (without it,
# up to the router's BGP hold time: 7-8.5 s measured); then the faults
# where the on-prem router's own behaviour counts (BFD, graceful shutdown,
# taking a gateway back) with BIRD instead of FRR on it
# (active-active-bird). One report: bench/out/failover-ci.json.
failover-ci: deps
	$(GO) run ./bench/failover -topologies active-active -stacks bgpgw -ci \
	  -out bench/out/failover-ci.json -svg bench/out/failover-ci -logs bench/out/failover-ci-logs
	$(GO) run ./bench/failover -topologies active-active-nobfd -stacks bgpgw -faults silent -ci \
	  -merge bench/out/failover-ci.json -out bench/out/failover-ci.json -svg bench/out/failover-ci \
	  -logs bench/out/failover-ci-logs
	$(GO) run ./bench/failover -topologies active-active-bird -stacks bgpgw -faults drain,kill-charon,silent,esp-drop,rejoin -ci \
	  -merge bench/out/failover-ci.json -out bench/out/failover-ci.json -svg bench/out/failover-ci \
	  -logs bench/out/failover-ci-logs

unit:
	$(GO) test -race -count=1 ./pkg/...

integration: deps
	$(GO) test -race -count=1 -timeout 20m ./test/... ./internal/... ./cmd/...

# The active-active topology of test/containerlab run through network
# namespaces (two bgpgw with strongSwan, FRR on both sides, hosts sending
# UDP both ways). First gw1 goes silent before an on-prem router without
# BFD (active-active-nobfd), with bgpgw's pair takeover and without it
# (bgpgw-notakeover), side by side; then, with BFD, gw1 drained and gw2's
# bgpgw killed. Prints the tables (the last one has every result) and where
# the SVG timelines are, and tears everything down. About 2 minutes.
demo: deps
	$(GO) run ./bench/failover -topologies active-active-nobfd -stacks bgpgw,bgpgw-notakeover -faults silent \
	  -out bench/out/demo.json -svg bench/out/demo
	$(GO) run ./bench/failover -topologies active-active -stacks bgpgw -faults drain,kill-daemon@gw2 \
	  -merge bench/out/demo.json -out bench/out/demo.json -svg bench/out/demo

# Health event to withdrawal received by a real BGP peer, through bgpgw's
# own loop, for 1, 100 and 10,000 prefixes (p50/p99 over 200 runs):
# bench/out/withdraw.json; then the same with four tunnel peers:
# bench/out/withdraw-4peers.json; then 10,000 prefixes without and with a
# /metrics scrape every 100 ms, in alternating blocks of the same run:
# bench/out/withdraw-scrape.json.
bench:
	$(GO) run ./bench/withdraw -runs 200 -out bench/out/withdraw.json
	$(GO) run ./bench/withdraw -runs 100 -sizes 100,10000 -peers 4 -out bench/out/withdraw-4peers.json
	$(GO) run ./bench/withdraw -runs 200 -sizes 10000 -scrape 100ms -out bench/out/withdraw-scrape.json

# Scale: 1, 10 and 100 tunnel peers (processes of their own, 10 peers each)
# x 100, 1,000 and 10,000 announced prefixes, 1,000 learned per peer: health
# event to the last peer's last withdrawal (p50/p99), start-up, RSS, CPU idle
# and during the runs: bench/out/scale.json and a table. Then 100 BFD
# sessions at 100 ms x 3 against FRR bfdd, idle machine: CPU,
# bench/out/scale-bfd.json.
bench-scale: deps
	$(GO) run ./bench/withdraw -runs 20 -sizes 100,1000,10000 -peers 1,10,100 -learn 1000 -idle 10s -out bench/out/scale.json
	$(GO) run ./bench/bfd -sessions 100 -interval 100ms -busy 0 -duration 2m -out bench/out/scale-bfd.json

# Kernel routes at scale: 100 veth tunnels x 1,000 learned prefixes in a
# private namespace; a tunnel failing (its routes out of the kernel) and
# coming back, through nexthop objects and per route (the fallback), p50/p99
# over 20 runs: bench/out/route-scale.json and a table. Needs root.
bench-routes:
	$(GO) test -run '^$$' -bench '^BenchmarkRouteScale$$' -benchtime 1x ./pkg/route/ -routescale.runs 20

# 10 BFD sessions at 50 ms x 3 against FRR bfdd for 10 minutes with a busy
# loop on the machine: false Downs and CPU, bench/out/bfd.json.
bench-bfd: deps
	$(GO) run ./bench/bfd -duration 10m

# Every topology (with and without BFD on the on-prem routers) and fault,
# bgpgw, bgpgw without takeover and the hand-built strongSwan + FRR stack:
# bench/out/failover.json, the SVG timelines and docs/failover-report.md.
bench-failover: deps
	$(GO) run ./bench/failover -svg docs/failover -report docs/failover-report.md -logs bench/out/failover-logs

fuzz:
	$(GO) test -run XXX -fuzz 'FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/config/
	$(GO) test -run XXX -fuzz 'FuzzParsePrefixRange$$' -fuzztime $(FUZZTIME) ./pkg/config/
	$(GO) test -run XXX -fuzz 'FuzzDecode$$' -fuzztime $(FUZZTIME) ./pkg/bfd/
	$(GO) test -run XXX -fuzz 'FuzzParseSAs$$' -fuzztime $(FUZZTIME) ./pkg/ipsec/
	$(GO) test -run XXX -fuzz 'FuzzParseCounters$$' -fuzztime $(FUZZTIME) ./internal/failover/
	$(GO) test -run XXX -fuzz 'FuzzDecode$$' -fuzztime $(FUZZTIME) ./pkg/pair/
	$(GO) test -run XXX -fuzz 'FuzzParseBIRD$$' -fuzztime $(FUZZTIME) ./internal/lab/

clean:
	rm -rf bin
