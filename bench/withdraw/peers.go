package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bgpgw/bgpgw/pkg/bgp/bgptest"
)

// peersPerProcess is how many stand-in peers one child process holds.
const peersPerProcess = 10

// peerProcess holds stand-in on-prem routers (up to peersPerProcess, each a
// GoBGP speaker with its own session), in a process of their own so that
// their work and garbage do not slow the speaker being measured. Each peer
// announces its learned prefixes (-learn) and prints "held INDEX COUNT
// RECEIVED SEEN" each time it holds none or all of bgpgw's prefixes: when
// the last UPDATE that got it there was read off the socket (GoBGP's
// receive timestamp), and when the peer's watcher saw it (Unix ns).
type peerProcess struct {
	cmd   *exec.Cmd
	first int
	lines []chan [3]int64 // per peer: held, received, seen
}

// peerAddr and peerASN are stand-in peer i's address and AS.
func peerAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(i / 200), byte(2 + i%200)})
}
func peerASN(i int) uint32 { return uint32(65010 + i) }

// learnedPrefix is the j-th prefix stand-in peer i announces: host routes
// in 44.i.0.0/16, which its tunnel accepts.
func learnedPrefix(i, j int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{44, byte(i), byte(j / 256), byte(j % 256)}), 32)
}

// startPeerProcess starts peers first..first+count-1, each expecting n
// prefixes from bgpgw and announcing learn of its own.
func startPeerProcess(port, first, count, n, learn int) (*peerProcess, error) {
	cmd := exec.Command(os.Args[0], "-peer-mode", strconv.Itoa(port), "-peer-n", strconv.Itoa(n),
		"-peer-index", strconv.Itoa(first), "-peer-count", strconv.Itoa(count), "-learn", strconv.Itoa(learn))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &peerProcess{cmd: cmd, first: first}
	for range count {
		p.lines = append(p.lines, make(chan [3]int64, 16))
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var idx, held, at, seen int64
			if _, err := fmt.Sscanf(sc.Text(), "held %d %d %d %d", &idx, &held, &at, &seen); err == nil {
				if k := int(idx) - first; k >= 0 && k < len(p.lines) {
					p.lines[k] <- [3]int64{held, at, seen}
				}
			}
		}
		for _, l := range p.lines {
			close(l)
		}
	}()
	return p, nil
}

// wait returns when peer k of the process reports holding want prefixes:
// when the last UPDATE was received, and when the peer's watcher saw it.
func (p *peerProcess) wait(k, want int, timeout time.Duration) (received, seen time.Time, err error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-p.lines[k]:
			if !ok {
				return time.Time{}, time.Time{}, fmt.Errorf("peer process exited")
			}
			if l[0] == int64(want) {
				return time.Unix(0, l[1]), time.Unix(0, l[2]), nil
			}
		case <-deadline:
			return time.Time{}, time.Time{}, fmt.Errorf("peer %d does not hold %d prefixes", p.first+k, want)
		}
	}
}

func (p *peerProcess) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// startPeers starts npeers stand-in peers in processes of peersPerProcess.
func startPeers(port, npeers, n, learn int) ([]*peerProcess, error) {
	var ps []*peerProcess
	for first := 0; first < npeers; first += peersPerProcess {
		p, err := startPeerProcess(port, first, min(peersPerProcess, npeers-first), n, learn)
		if err != nil {
			for _, q := range ps {
				q.stop()
			}
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// runPeers is the child process: peers first..first+count-1.
func runPeers(port, first, count, n, learn int) error {
	ctx := context.Background()
	var out sync.Mutex // one line at a time on stdout
	for i := first; i < first+count; i++ {
		peer, err := bgptest.Start(ctx, peerAddr(i).String(), peerASN(i), port, "127.0.0.1", 65515)
		if err != nil {
			return err
		}
		defer peer.Stop()
		var routes []bgptest.Route
		for j := range learn {
			routes = append(routes, bgptest.Route{Prefix: learnedPrefix(i, j)})
		}
		if len(routes) > 0 {
			if err := peer.Announce(routes...); err != nil {
				return err
			}
		}
		held := map[netip.Prefix]bool{}
		var mu sync.Mutex
		err = peer.WatchUpdates(ctx, func(u bgptest.Update) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			before := len(held)
			if u.Withdraw {
				delete(held, u.Prefix)
			} else {
				held[u.Prefix] = true
			}
			if after := len(held); after != before && (after == 0 || after == n) {
				out.Lock()
				fmt.Printf("held %d %d %d %d\n", i, after, u.At.UnixNano(), now.UnixNano())
				out.Unlock()
			}
		})
		if err != nil {
			return err
		}
	}
	select {} // until killed
}

// waitAll waits for every peer to hold want prefixes and returns the
// latest receive and watcher times among them.
func waitAll(ps []*peerProcess, want int, timeout time.Duration) (received, seen time.Time, err error) {
	for _, p := range ps {
		for k := range p.lines {
			r, s, err := p.wait(k, want, timeout)
			if err != nil {
				return time.Time{}, time.Time{}, err
			}
			if r.After(received) {
				received = r
			}
			if s.After(seen) {
				seen = s
			}
		}
	}
	return received, seen, nil
}

// cpuTime is the CPU (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percent(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return math.Round(1000*cpu.Seconds()/wall.Seconds()) / 10
}

// rssMiB is this process's resident memory now (VmRSS).
func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return math.Round(float64(kb)/102.4) / 10
		}
	}
	return 0
}

// printTable prints the results as a table.
func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peers\tannounced\tlearned/peer\twithdrawal p50 ms\tp99 ms\tstart-up ms\tRSS MiB\tCPU idle %\tCPU runs %\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t\n", r.Peers, r.Prefixes, r.Learned,
			r.P50ms, r.P99ms, r.StartupMs, r.RSSMiB, r.IdleCPUPercent, r.RunsCPUPercent)
	}
	_ = tw.Flush()
}
