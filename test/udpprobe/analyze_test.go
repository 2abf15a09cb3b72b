package main

import (
	"bytes"
	"reflect"
	"testing"
)

func recs(iv int64, seqs ...uint64) []rec {
	var rs []rec
	for _, s := range seqs {
		rs = append(rs, rec{seq: s, sendNs: 1000 + int64(s-1)*iv})
	}
	return rs
}

func TestAnalyze(t *testing.T) {
	const iv = 10
	for _, tc := range []struct {
		name       string
		recs       []rec
		expected   uint64
		lastSendNs int64
		want       gapStats
	}{
		{"none lost", recs(iv, 3, 1, 2, 4), 4, 1030, gapStats{}},
		{"middle", recs(iv, 1, 2, 6, 7, 9), 9, 1080,
			gapStats{lost: 4, gaps: 2, longest: 3, firstSeq: 3, startNs: 1020, endNs: 1050,
				runs: [][2]uint64{{3, 5}, {8, 8}}, runStarts: []int64{1020, 1070}}},
		{"head", recs(iv, 3, 4), 4, 1030,
			gapStats{lost: 2, gaps: 1, longest: 2, firstSeq: 1, startNs: 1000, endNs: 1020,
				runs: [][2]uint64{{1, 2}}, runStarts: []int64{1000}}},
		{"tail from fin", recs(iv, 1, 2), 5, 1040,
			gapStats{lost: 3, gaps: 1, longest: 3, firstSeq: 3, startNs: 1020, endNs: 1050,
				runs: [][2]uint64{{3, 5}}, runStarts: []int64{1020}}},
		{"tail, no send time", recs(iv, 1), 3, 0,
			gapStats{lost: 2, gaps: 1, longest: 2, firstSeq: 2, startNs: 1010, endNs: 1030,
				runs: [][2]uint64{{2, 3}}, runStarts: []int64{1010}}},
		{"first of equal runs", recs(iv, 1, 3, 5), 5, 1040,
			gapStats{lost: 2, gaps: 2, longest: 1, firstSeq: 2, startNs: 1010, endNs: 1020,
				runs: [][2]uint64{{2, 2}, {4, 4}}, runStarts: []int64{1010, 1030}}},
		{"all lost", nil, 3, 1020,
			gapStats{lost: 3, gaps: 1, longest: 3, firstSeq: 1, startNs: 1000, endNs: 1030,
				runs: [][2]uint64{{1, 3}}, runStarts: []int64{1000}}},
		{"nothing", nil, 0, 0, gapStats{}},
	} {
		if got := analyze(tc.recs, tc.expected, iv, 1000, tc.lastSendNs, maxLossRuns); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestAnalyzeRunsBounded: past the cap the runs are left out and flagged,
// while the counts and the longest run still cover every run.
func TestAnalyzeRunsBounded(t *testing.T) {
	// Every third seq below 30 is lost (9 runs of one), and the tail 31-33.
	var rs []rec
	for s := uint64(1); s <= 30; s++ {
		if s%3 != 0 || s == 30 {
			rs = append(rs, recs(10, s)...)
		}
	}
	g := analyze(rs, 33, 10, 1000, 1320, 4)
	want := [][2]uint64{{3, 3}, {6, 6}, {9, 9}, {12, 12}}
	if !reflect.DeepEqual(g.runs, want) || !g.truncated {
		t.Errorf("runs %v truncated %v, want %v truncated", g.runs, g.truncated, want)
	}
	if g.lost != 12 || g.gaps != 10 || g.longest != 3 || g.firstSeq != 31 {
		t.Errorf("counts %+v", g)
	}
	g = analyze(rs, 33, 10, 1000, 1320, 10)
	if len(g.runs) != 10 || g.truncated || g.runs[9] != [2]uint64{31, 33} {
		t.Errorf("exactly at the cap: runs %v truncated %v", g.runs, g.truncated)
	}
}

func TestPacketRoundTrip(t *testing.T) {
	p := packet{kind: kindFin, flow: 7, seq: 1 << 40, sendNs: -5, intervalNs: 1e6, startNs: 42}
	b := make([]byte, 64)
	p.marshal(b)
	got, err := unmarshal(b)
	if err != nil || got != p {
		t.Fatalf("got %+v, %v; want %+v", got, err, p)
	}
	if _, err := unmarshal(bytes.Repeat([]byte{'x'}, 64)); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := unmarshal(b[:headerSize-1]); err == nil {
		t.Error("short datagram accepted")
	}
}

func TestFlowStateCounts(t *testing.T) {
	f := &flowState{id: 1}
	for _, s := range []uint64{1, 2, 4, 3, 3, 6} {
		f.handle(packet{flow: 1, seq: s, sendNs: int64(s) * 1e6, intervalNs: 1e6, startNs: 1e6}, 0)
	}
	f.handle(packet{flow: 2, seq: 5}, 0)
	f.handle(packet{kind: kindFin, flow: 1, seq: 8, sendNs: 8e6}, 0)
	r := f.report()
	if r.Received != 5 || r.Duplicates != 1 || r.Reordered != 1 || r.Invalid != 1 ||
		r.MaxSeq != 6 || r.Expected != 8 || r.Lost != 3 || r.LongestGap != 2 || r.LongestGapFirstSeq != 7 ||
		r.LongestGapMs != 2 || r.LongestGapMeasuredMs != 2 || r.StartNs != 1e6 || r.GapsTruncated {
		t.Errorf("%+v", r)
	}
	// Lost: 5, and 7-8 (the tail, known from the fin).
	if want := [][2]uint64{{5, 5}, {7, 8}}; !reflect.DeepEqual(r.LossRuns, want) {
		t.Errorf("loss runs %v, want %v", r.LossRuns, want)
	}
}
