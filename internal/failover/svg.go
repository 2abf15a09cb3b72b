package failover

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Timeline geometry, in SVG user units (pixels). The plot is svgPlotW
// pixel columns wide; each row is drawn from its columns' states, so the
// size of a timeline does not grow with the datagrams or loss runs.
const (
	svgWidth  = 960
	svgLabelW = 190 // row labels left of the plot
	svgPlotW  = 740
	svgTop    = 76 // y of the first row
	svgRowH   = 16
	svgBarH   = 10
	svgDirGap = 8 // extra space between the directions' rows
)

// Pixel states: each pixel column of a row is classified by the datagrams
// whose send slots [t, t+interval) overlap it.
const (
	pxNone      uint8 = iota // no datagram sent then
	pxDelivered              // all delivered
	pxPartial                // some lost
	pxLost                   // all lost
	pxUnknown                // past the last listed loss run of a truncated list
)

var pxFill = [...]string{pxDelivered: "#2ca02c", pxPartial: "#ff9f1c", pxLost: "#d62728", pxUnknown: "#bdbdbd"}

var pxLegend = [...]string{pxDelivered: "delivered", pxPartial: "partly lost", pxLost: "lost",
	pxUnknown: "not known (loss runs truncated)"}

// window is the span of time a timeline shows, Unix ns; origin is the
// fault (x = 0 s), step the tick spacing.
type window struct{ origin, start, end, step int64 }

func (w window) x(t int64) float64 {
	return svgLabelW + float64(t-w.start)/float64(w.end-w.start)*svgPlotW
}

// at is the time of the left edge of pixel column p.
func (w window) at(p int64) int64 { return w.start + p*(w.end-w.start)/svgPlotW }

// px returns the pixel column that holds t, unclamped.
func (w window) px(t int64) int64 { return floorDiv((t-w.start)*svgPlotW, w.end-w.start) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

var tickSteps = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute}

// timeWindow shows from 1 s before the fault to 1 s after the last loss
// run or the clear time, at least 2 s after the fault, but no further than
// the traffic ran (when it ran past the fault); the end is rounded up to a
// tick. Without a fault time, x = 0 is the start of the traffic.
func timeWindow(r Result) window {
	var first, lastSent, lastLoss int64
	for _, d := range r.Directions {
		for _, f := range d.Flows {
			if !timed(f) {
				continue
			}
			if first == 0 || f.StartNs < first {
				first = f.StartNs
			}
			lastSent = max(lastSent, f.StartNs+int64(f.Sent)*f.IntervalNs)
			if n := len(f.LossRuns); n > 0 {
				lastLoss = max(lastLoss, f.StartNs+int64(f.LossRuns[n-1][1])*f.IntervalNs)
			}
		}
	}
	w := window{origin: r.FaultAtNs}
	if w.origin == 0 {
		w.origin = first
	}
	sec := int64(time.Second)
	w.start = w.origin - sec
	w.end = max(w.origin+2*sec, lastLoss+sec)
	if r.ClearedAtNs != 0 {
		w.end = max(w.end, r.ClearedAtNs+sec)
	}
	if lastSent > w.origin {
		w.end = min(w.end, lastSent)
	}
	for _, s := range tickSteps {
		w.step = int64(s)
		if (w.end-w.start)/w.step <= 12 {
			break
		}
	}
	k := (w.end - w.origin + w.step - 1) / w.step
	w.end = w.origin + k*w.step
	return w
}

func timed(f Flow) bool { return f.StartNs != 0 && f.IntervalNs > 0 && f.Sent > 0 }

// seqs returns the seqs of f whose send slots overlap pixel column p
// (first > last: none).
func seqs(w window, f Flow, p int64) (first, last uint64) {
	a, b := w.at(p)-f.StartNs, w.at(p+1)-f.StartNs
	if b <= 0 {
		return 1, 0
	}
	first = uint64(max(0, floorDiv(a, f.IntervalNs))) + 1
	last = uint64(min(int64(f.Sent), -floorDiv(-b, f.IntervalNs)))
	return first, last
}

// flowPixels classifies each pixel column of f's row. The work is bounded
// by the pixel columns plus the loss runs.
func flowPixels(w window, f Flow) []uint8 {
	px := make([]uint8, svgPlotW)
	if !timed(f) {
		return px
	}
	lost := make([]uint64, svgPlotW)
	for _, run := range f.LossRuns {
		a, b := max(run[0], 1), min(run[1], uint64(f.Sent))
		if a > b {
			continue
		}
		t0 := max(w.start, f.StartNs+int64(a-1)*f.IntervalNs)
		t1 := min(w.end-1, f.StartNs+int64(b)*f.IntervalNs-1)
		if t0 > t1 {
			continue // outside the window
		}
		for p := w.px(t0); p <= w.px(t1); p++ {
			first, last := seqs(w, f, p)
			if lo, hi := max(a, first), min(b, last); lo <= hi {
				lost[p] += hi - lo + 1
			}
		}
	}
	var listed uint64 // seqs up to here are known
	if n := len(f.LossRuns); f.GapsTruncated && n > 0 {
		listed = f.LossRuns[n-1][1]
	}
	for p := range px {
		first, last := seqs(w, f, int64(p))
		switch {
		case first > last:
		case listed > 0 && first > listed:
			px[p] = pxUnknown
		case lost[p] == 0:
			px[p] = pxDelivered
		case lost[p] >= last-first+1:
			px[p] = pxLost
		default:
			px[p] = pxPartial
		}
	}
	return px
}

// svgWriter accumulates the document; numbers are formatted with one
// decimal so the output is stable.
type svgWriter struct{ bytes.Buffer }

func (s *svgWriter) f(format string, a ...any) { fmt.Fprintf(s, format, a...) }

func (s *svgWriter) text(x, y float64, attrs, txt string) {
	s.f(`<text x="%.1f" y="%.1f"%s>`, x, y, attrs)
	_ = xml.EscapeText(s, []byte(txt))
	s.WriteString("</text>\n")
}

// bars draws a row's pixel states as one rect per run of equal states:
// delivered and unknown first, then the losses on top, at least 2 pixels
// wide so that one lost datagram stays visible.
func (s *svgWriter) bars(px []uint8, y int, used *[len(pxFill)]bool) {
	for _, loss := range []bool{false, true} {
		for a := 0; a < len(px); {
			b := a + 1
			for b < len(px) && px[b] == px[a] {
				b++
			}
			st := px[a]
			used[st] = true
			if st != pxNone && (st == pxLost || st == pxPartial) == loss {
				x, w := a, b-a
				if loss && w < 2 {
					x, w = min(a, len(px)-2), 2
				}
				s.f(`<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, svgLabelW+x, y, w, svgBarH, pxFill[st])
			}
			a = b
		}
	}
}

// SVG draws r's timeline: time relative to the fault on the x axis, a row
// per flow per direction, delivered datagrams green, lost red (and grey
// where a truncated list of loss runs leaves it unknown), a line at the
// fault and a dashed one at the clear time.
func SVG(w io.Writer, r Result) error {
	win := timeWindow(r)
	var s svgWriter
	rows := 0
	for _, d := range r.Directions {
		rows += len(d.Flows)
	}
	yAxis := svgTop + rows*svgRowH + max(0, len(r.Directions)-1)*svgDirGap + 4
	if rows == 0 {
		yAxis += 2 * svgRowH
	}
	height := yAxis + 62
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	title := fmt.Sprintf("%s / %s / %s", r.Topology, r.Fault, r.Stack)
	s.WriteString("<title>")
	_ = xml.EscapeText(&s, []byte("failover timeline: "+title))
	s.WriteString("</title>\n")
	s.f(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)
	s.text(12, 22, ` font-size="15" font-weight="bold"`, title)
	s.text(12, 42, "", summary(r))
	if extra := caveats(r); extra != "" {
		s.text(12, 58, ` font-size="11" fill="#b04000"`, extra)
	}

	// Grid and ticks.
	for t := win.origin + (win.start-win.origin)/win.step*win.step; t <= win.end; t += win.step {
		x := win.x(t)
		s.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e6e6e6"/>`+"\n", x, svgTop-6, x, yAxis)
		s.text(x, float64(yAxis+15), ` text-anchor="middle" font-size="11"`, tickLabel(t-win.origin))
	}
	s.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#666666"/>`+"\n", svgLabelW, yAxis, svgLabelW+svgPlotW, yAxis)
	axis := "time from the fault"
	if r.FaultAtNs == 0 {
		axis = "time from the start of the traffic (fault time unknown)"
	}
	s.text(svgLabelW+svgPlotW/2, float64(yAxis+31), ` text-anchor="middle" font-size="11"`, axis)

	// Rows.
	used := [len(pxFill)]bool{pxDelivered: true, pxLost: true}
	y := svgTop
	if rows == 0 {
		s.text(svgLabelW+svgPlotW/2, float64(y+svgRowH), ` text-anchor="middle" fill="#b04000"`, "no traffic measured")
	}
	for i, d := range r.Directions {
		if i > 0 {
			y += svgDirGap
		}
		for _, f := range d.Flows {
			label := fmt.Sprintf("%s flow %d", d.Name, f.Flow)
			if !timed(f) {
				label += " (no timing)"
			}
			s.text(svgLabelW-8, float64(y+svgBarH), ` text-anchor="end" font-size="11"`, label)
			s.f("<g>")
			s.WriteString("<title>")
			_ = xml.EscapeText(&s, []byte(fmt.Sprintf("%s flow %d: sent %d, lost %d, longest outage %s",
				d.Name, f.Flow, f.Sent, f.Lost, FormatMs(f.OutageMs))))
			s.WriteString("</title>")
			s.bars(flowPixels(win, f), y, &used)
			s.WriteString("</g>\n")
			y += svgRowH
		}
	}

	// The fault and the clear time.
	mark := func(t int64, label, attrs string) {
		if t < win.start || t > win.end {
			return
		}
		x := win.x(t)
		s.f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"%s/>`+"\n", x, svgTop-16, x, yAxis, attrs)
		s.text(x+3, svgTop-8, ` font-size="11"`, label)
	}
	if r.FaultAtNs != 0 {
		mark(r.FaultAtNs, "fault", ` stroke="#000000" stroke-width="1.5"`)
	}
	if r.ClearedAtNs != 0 {
		mark(r.ClearedAtNs, "cleared", ` stroke="#1f77b4" stroke-width="1.5" stroke-dasharray="4 3"`)
	}

	// Legend.
	ly := yAxis + 46
	x := svgLabelW
	for st, label := range pxLegend {
		if !used[st] || label == "" {
			continue
		}
		s.f(`<rect x="%d" y="%d" width="12" height="%d" fill="%s"/>`+"\n", x, ly-svgBarH+1, svgBarH, pxFill[st])
		s.text(float64(x+16), float64(ly), ` font-size="11"`, label)
		x += 30 + 7*len(label)
	}
	s.WriteString("</svg>\n")
	_, err := w.Write(s.Bytes())
	return err
}

// summary is the timeline's second line: the figures of r.
func summary(r Result) string {
	if r.Error != "" {
		return "ERROR: " + r.Error
	}
	var parts []string
	for _, d := range r.Directions {
		parts = append(parts, fmt.Sprintf("outage %s %s, lost %d", d.Name, FormatMs(d.OutageMs), d.Lost))
	}
	parts = append(parts, "converged "+FormatMs(r.ConvergedMs))
	if r.Recovered {
		parts = append(parts, "recovered")
	} else {
		parts = append(parts, "NOT recovered")
	}
	return strings.Join(parts, "; ") + "; verdict " + verdict(r)
}

// caveats is the timeline's third line: notes and what makes it approximate.
func caveats(r Result) string {
	var parts []string
	for _, d := range r.Directions {
		if d.SenderSkipped > 0 {
			parts = append(parts, fmt.Sprintf("%s: the sender skipped %d slots, later times approximate", d.Name, d.SenderSkipped))
		}
		for _, f := range d.Flows {
			if f.GapsTruncated {
				parts = append(parts, d.Name+": loss runs truncated")
				break
			}
		}
	}
	if r.Notes != "" {
		parts = append(parts, r.Notes)
	}
	return strings.Join(parts, "; ")
}

// tickLabel formats an offset from the fault: "-1 s", "0", "+0.5 s".
func tickLabel(ns int64) string {
	if ns == 0 {
		return "0"
	}
	s := strconv.FormatFloat(float64(ns)/1e9, 'f', -1, 64) + " s"
	if ns > 0 {
		s = "+" + s
	}
	return s
}

// WriteSVGs writes the timeline of every result into dir, as
// dir/SVGName(r).
func WriteSVGs(dir string, rep Report) error {
	for _, r := range rep.Results {
		var b bytes.Buffer
		if err := SVG(&b, r); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, SVGName(r)), b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
