package main

import "sort"

// maxLossRuns bounds the loss runs a flow's report lists; the counts (lost,
// gaps, longest) still cover every run.
const maxLossRuns = 10000

// rec is the first arrival of one data datagram.
type rec struct {
	seq    uint64
	sendNs int64 // from the payload
	recvNs int64 // local receive time
}

// gapStats describes the missing sequence numbers of a flow.
type gapStats struct {
	lost     uint64 // missing seqs in 1..expected
	gaps     int    // runs of consecutive missing seqs
	longest  uint64 // length of the longest run (the first one on a tie)
	firstSeq uint64 // first missing seq of the longest run
	// Estimated send time of the first missing datagram of the longest run
	// (send time of the datagram before it + interval) and send time of the
	// first datagram received after it; end-start is the measured outage.
	startNs, endNs int64
	// runs lists the runs of missing seqs in order, as [first, last], at
	// most maxRuns of them; truncated says later runs were left out.
	// runStarts holds, for each listed run, the estimated send time of its
	// first missing datagram (send time of the datagram before it +
	// interval).
	runs      [][2]uint64
	runStarts []int64
	truncated bool
}

// analyze finds the gaps in recs (first arrivals, any order; sorted in
// place) for a flow whose datagrams 1..expected were sent. startNs is the
// send time of seq 1 and lastSendNs the send time of seq expected (0 when
// unknown); they bound a gap at the head or the tail of the flow. At most
// maxRuns loss runs are listed.
func analyze(recs []rec, expected uint64, intervalNs, startNs, lastSendNs int64, maxRuns int) gapStats {
	sort.Slice(recs, func(i, j int) bool { return recs[i].seq < recs[j].seq })
	var g gapStats
	note := func(run uint64, first uint64, start, end int64) {
		g.lost += run
		g.gaps++
		if len(g.runs) < maxRuns {
			g.runs = append(g.runs, [2]uint64{first, first + run - 1})
			g.runStarts = append(g.runStarts, start)
		} else {
			g.truncated = true
		}
		if run > g.longest {
			g.longest, g.firstSeq, g.startNs, g.endNs = run, first, start, end
		}
	}
	// A virtual datagram 0 sent one interval before seq 1.
	prevSeq, prevSend := uint64(0), startNs-intervalNs
	for _, r := range recs {
		if r.seq > expected {
			break
		}
		if r.seq > prevSeq+1 {
			note(r.seq-prevSeq-1, prevSeq+1, prevSend+intervalNs, r.sendNs)
		}
		prevSeq, prevSend = r.seq, r.sendNs
	}
	if expected > prevSeq {
		run := expected - prevSeq
		start := prevSend + intervalNs
		end := start + int64(run)*intervalNs
		if lastSendNs != 0 {
			end = lastSendNs + intervalNs // a virtual datagram after the last
		}
		note(run, prevSeq+1, start, end)
	}
	return g
}
