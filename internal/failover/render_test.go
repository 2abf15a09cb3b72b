package failover

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bgpgw/bgpgw/internal/lab"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./internal/failover -update to create it")
	require.Equal(t, string(want), string(got))
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, Table(&b, sample()))
	golden(t, "table.golden", b.Bytes())
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, Markdown(&b, sample(), "failover"))
	golden(t, "report.md.golden", b.Bytes())
}

func TestSVGGolden(t *testing.T) {
	for _, r := range sample().Results {
		if r.Stack == StackBgpgw && (r.Fault == FaultSilent || r.Fault == FaultESPDrop) {
			var b bytes.Buffer
			require.NoError(t, SVG(&b, r))
			golden(t, SVGName(r)+".golden", b.Bytes())
		}
	}
}

// wellFormed parses an SVG document with encoding/xml and counts its
// elements by name.
func wellFormed(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	count := map[string]int{}
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Space + " " + se.Name.Local
			}
			count[se.Name.Local]++
		}
	}
	require.Equal(t, "http://www.w3.org/2000/svg svg", root)
	return count
}

func TestSVGWellFormed(t *testing.T) {
	rep := sample()
	rep.Results = append(rep.Results, Result{Topology: `<odd & "name">`, Fault: "x'y", Stack: "s]]>"})
	for _, r := range rep.Results {
		var b bytes.Buffer
		require.NoError(t, SVG(&b, r))
		wellFormed(t, b.Bytes())
	}
	dir := t.TempDir()
	require.NoError(t, WriteSVGs(dir, rep))
	names, err := filepath.Glob(filepath.Join(dir, "*.svg"))
	require.NoError(t, err)
	assert.Len(t, names, len(rep.Results))
	assert.Contains(t, names, filepath.Join(dir, "active-active_silent_bgpgw.svg"))
}

// TestSVGBounded: a flow that lost every other datagram, past the cap of
// listed runs, draws one element per pixel column at most, and the part
// after the last listed run is shown as unknown.
func TestSVGBounded(t *testing.T) {
	var runs [][2]uint64
	for s := uint64(1500); len(runs) < 10000; s += 2 {
		runs = append(runs, [2]uint64{s, s})
	}
	f := flow(0, 30000, runs...)
	f.GapsTruncated = true
	r := result("active-active", StackBgpgw, FaultTunnelFlaps,
		dir(DirOnPremToCloud, f, f, f, f), dir(DirCloudToOnPrem, f, f, f, f))
	var b bytes.Buffer
	require.NoError(t, SVG(&b, r))
	count := wellFormed(t, b.Bytes())
	assert.LessOrEqual(t, count["rect"], 8*svgPlotW+4)
	assert.Less(t, b.Len(), 500_000)
	assert.Contains(t, b.String(), "loss runs truncated")

	px := flowPixels(timeWindow(r), f)
	assert.Equal(t, pxDelivered, px[0], "before the first run")
	assert.Contains(t, px, pxPartial, "every other datagram lost")
	assert.NotContains(t, px, pxLost)
	assert.Equal(t, pxUnknown, px[len(px)-1], "after the last listed run")
}

func TestFlowPixels(t *testing.T) {
	// 60 s of traffic, the fault at 2 s: the window spans -1 s .. +58 s at
	// most; one lost datagram at 30 s still shows, as partly lost.
	f := flow(0, 60000, [2]uint64{30001, 30001})
	r := result("t", StackBgpgw, FaultSilent, dir(DirOnPremToCloud, f))
	w := timeWindow(r)
	assert.Equal(t, t0+sec, w.start)
	assert.Equal(t, r.FaultAtNs, w.origin)
	assert.Equal(t, t0+32*sec, w.end, "1 s after the last loss, on a tick")
	px := flowPixels(w, f)
	lost := 0
	for i, s := range px {
		switch s {
		case pxPartial:
			lost++
			assert.InDelta(t, float64(svgPlotW)*29/31, float64(i), 1)
		case pxDelivered:
		default:
			t.Errorf("pixel %d: state %d", i, s)
		}
	}
	assert.Equal(t, 1, lost)

	// Traffic that ends early stops the window.
	short := flow(0, 2500, [2]uint64{2001, 2100})
	w = timeWindow(result("t", StackBgpgw, FaultSilent, dir(DirOnPremToCloud, short)))
	assert.Equal(t, t0+2*sec+600*int64(time.Millisecond), w.end, "2.5 s rounded up to a 200 ms tick")
	px = flowPixels(w, short)
	assert.Equal(t, pxDelivered, px[0])
	assert.Equal(t, pxLost, px[svgPlotW*105/160], "at 2.05 s")
	assert.Equal(t, []uint8{pxDelivered, pxPartial, pxLost}, px[svgPlotW*100/160-1:svgPlotW*100/160+2],
		"at 2 s: the pixel that holds the first lost datagram is partly lost")
	assert.Equal(t, pxDelivered, px[svgPlotW*149/160], "at 2.49 s")
	assert.Equal(t, pxNone, px[len(px)-1], "after the traffic")
}

func TestJSONRoundTrip(t *testing.T) {
	rep := sample()
	rep.Goals = Goals(rep.Results)
	path := filepath.Join(t.TempDir(), "out", "failover.json")
	require.NoError(t, WriteJSON(path, rep))
	got, err := ReadJSON(path)
	require.NoError(t, err)
	assert.Equal(t, rep, got)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"loss_runs": [`)
	assert.Contains(t, string(data), `"name": "on-prem->cloud"`)
	left, err := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp"))
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestNewDirection(t *testing.T) {
	start := time.Unix(0, t0)
	d := NewDirection(DirCloudToOnPrem, lab.TrafficReport{Interval: time.Millisecond, Sent: 200, Lost: 7,
		MaxOutage: 5 * time.Millisecond, SenderSkipped: 3, Flows: []lab.FlowReport{
			{Flow: 0, Sent: 100, Lost: 7, Outage: 5 * time.Millisecond, Start: start,
				LossRuns: [][2]uint64{{3, 4}, {50, 54}}},
			{Flow: 1, Sent: 100, GapsTruncated: true},
		}})
	assert.Equal(t, Direction{Name: DirCloudToOnPrem, Sent: 200, Lost: 7, OutageMs: 5, SenderSkipped: 3, Flows: []Flow{
		{Flow: 0, StartNs: t0, IntervalNs: 1e6, Sent: 100, Lost: 7, OutageMs: 5, LossRuns: [][2]uint64{{3, 4}, {50, 54}}},
		{Flow: 1, IntervalNs: 1e6, Sent: 100, GapsTruncated: true},
	}}, d)
}

func TestSVGName(t *testing.T) {
	assert.Equal(t, "active-active-2x_esp-drop_bgpgw.svg",
		SVGName(Result{Topology: "Active-Active 2x", Fault: "esp-drop", Stack: "bgpgw"}))
	assert.False(t, strings.ContainsAny(SVGName(Result{Topology: "../x/y"}), "/"))
}
