package main

import (
	"bytes"
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
			gapStats{lost: 4, gaps: 2, longest: 3, firstSeq: 3, startNs: 1020, endNs: 1050}},
		{"head", recs(iv, 3, 4), 4, 1030,
			gapStats{lost: 2, gaps: 1, longest: 2, firstSeq: 1, startNs: 1000, endNs: 1020}},
		{"tail from fin", recs(iv, 1, 2), 5, 1040,
			gapStats{lost: 3, gaps: 1, longest: 3, firstSeq: 3, startNs: 1020, endNs: 1050}},
		{"tail, no send time", recs(iv, 1), 3, 0,
			gapStats{lost: 2, gaps: 1, longest: 2, firstSeq: 2, startNs: 1010, endNs: 1030}},
		{"first of equal runs", recs(iv, 1, 3, 5), 5, 1040,
			gapStats{lost: 2, gaps: 2, longest: 1, firstSeq: 2, startNs: 1010, endNs: 1020}},
		{"nothing", nil, 0, 0, gapStats{}},
	} {
		if got := analyze(tc.recs, tc.expected, iv, 1000, tc.lastSendNs); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
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
		r.LongestGapMs != 2 || r.LongestGapMeasuredMs != 2 {
		t.Errorf("%+v", r)
	}
}
