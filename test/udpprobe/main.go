// Command udpprobe measures packet loss and outages with numbered UDP
// datagrams, for the failover tests.
//
//	udpprobe send -to ADDR:PORT [-ports N] [-interval 1ms] [-duration 30s] [-count N] [-size 64] [-sport P] [-out FILE]
//	udpprobe recv -listen [ADDR]:PORT [-ports N] [-duration D] [-linger 100ms] [-ready FILE] [-out FILE]
//
// A sender sends numbered datagrams (seq 1, 2, ...) on N flows: flow i goes
// from its own source port to destination port PORT+i, so L4 ECMP hashing
// spreads the flows. Every interval it sends one datagram per flow, following
// a fixed schedule; when late it catches up with at most a few datagrams back
// to back. It stops after -duration or -count datagrams per flow, whichever
// comes first (or on SIGTERM/SIGINT), then sends a few "fin" datagrams per
// flow with the last seq, and writes a JSON summary.
//
// A receiver listens on PORT..PORT+N-1 and, on SIGTERM/SIGINT or after
// -duration, writes a JSON report per flow: received, lost (missing seqs up to
// the last one sent, known from the fin, else the highest received), the
// longest run of missing seqs (the outage) with its start and duration, the
// runs of missing seqs themselves (up to 10,000, for timelines), reordered
// and duplicate datagrams.
//
// Times are wall-clock Unix nanoseconds: sender and receiver on one host
// (e.g. in two network namespaces) share the clock. One sender and one
// receiver measure one direction; run a pair each way for both.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("udpprobe ")
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "send":
		err = runSend(os.Args[2:])
	case "recv":
		err = runRecv(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: udpprobe send -to ADDR:PORT [flags] | udpprobe recv -listen [ADDR]:PORT [flags]; -h for flags")
	os.Exit(2)
}

// splitHostPort parses ADDR:PORT and checks that n flows fit above PORT.
func splitHostPort(s string, n int) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if n < 1 || n > 1024 || port+n-1 > 65535 {
		return "", 0, fmt.Errorf("bad number of ports %d from %d (1-1024, up to 65535)", n, port)
	}
	return host, port, nil
}

// writeJSON writes v to path (atomically) or to stdout when path is "".
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "" {
		_, err = os.Stdout.Write(data)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".udpprobe-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
