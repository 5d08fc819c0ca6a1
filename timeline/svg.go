package timeline

import (
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Colours by span kind; the legend shows them.
var colours = map[string]string{
	"leader":    "#2e7d32",
	"candidate": "#f9a825",
	"follower":  "#90caf9",
	"down":      "#424242",
	"fault":     "#e57373",
	"snapshot":  "#7e57c2",
	"ok":        "#81c784",
	"fail":      "#d32f2f",
	"unknown":   "#ffb74d",
}

const (
	labelWidth = 190
	rowHeight  = 16
	plotHeight = 34
	axisHeight = 40
)

// WriteSVG draws the timeline as a self-contained SVG of the given width:
// one row per lane, a small plot of each node's counters under its rows,
// every span and instant with its details as a tooltip.
func (t *Timeline) WriteSVG(w io.Writer, width int) error {
	lanes := t.layout()
	counters := map[string][]Sample{}
	for _, s := range t.Samples {
		counters[s.Track] = append(counters[s.Track], s)
	}
	end := max(t.End, time.Second)
	plotW := float64(width - labelWidth - 10)
	x := func(d time.Duration) float64 { return labelWidth + plotW*float64(d)/float64(end) }

	var body strings.Builder
	y := axisHeight + 22
	prevTrack := ""
	flushCounters := func(track string) {
		samples := counters[track]
		if len(samples) == 0 {
			return
		}
		y = t.drawCounters(&body, track, samples, x, y, end)
		delete(counters, track)
	}
	for _, l := range lanes {
		if l.track != prevTrack {
			if prevTrack != "" {
				flushCounters(prevTrack)
			}
			fmt.Fprintf(&body, `<line x1="0" x2="%d" y1="%d" y2="%d" stroke="#bbb"/>`+"\n", width, y+1, y+1)
			fmt.Fprintf(&body, `<text x="4" y="%d" font-weight="bold">%s</text>`+"\n", y+14, esc(l.track))
			y += rowHeight + 2
			prevTrack = l.track
		}
		fmt.Fprintf(&body, `<text x="14" y="%d" fill="#444">%s</text>`+"\n", y+12, esc(l.name))
		for _, s := range l.spans {
			x0, x1 := x(s.Start), x(s.End)
			wd := math.Max(x1-x0, 3) // a millisecond install still shows
			fmt.Fprintf(&body, `<rect class="span %s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				esc(s.Kind), x0, y+1, wd, rowHeight-2, colour(s.Kind), esc(tooltip(s.Name, s.Start, s.End, s.Args)))
			if wd > float64(7*len(s.Name)) {
				fg := "#fff"
				if s.Kind == "follower" || s.Kind == "candidate" || s.Kind == "ok" || s.Kind == "unknown" {
					fg = "#000"
				}
				fmt.Fprintf(&body, `<text x="%.1f" y="%d" fill="%s" pointer-events="none">%s</text>`+"\n", x0+3, y+12, fg, esc(s.Name))
			}
		}
		for _, in := range l.instants {
			cx := x(in.At)
			fmt.Fprintf(&body, `<path class="instant" d="M%.1f %d l4 6 l-4 6 l-4 -6 z" fill="#000"><title>%s</title></path>`+"\n",
				cx, y+2, esc(tooltip(in.Name, in.At, in.At, in.Args)))
		}
		y += rowHeight
	}
	if prevTrack != "" {
		flushCounters(prevTrack)
	}
	for _, track := range slices.Sorted(maps.Keys(counters)) {
		y = t.drawCounters(&body, track, counters[track], x, y, end)
	}
	height := y + 10

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(w, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(w, `<text x="4" y="14" font-size="13" font-weight="bold">%s</text>`+"\n", esc(t.Title))
	// Legend.
	lx := 4.0
	for _, k := range []string{"leader", "candidate", "follower", "down", "fault", "snapshot", "ok", "fail", "unknown"} {
		fmt.Fprintf(w, `<rect x="%.0f" y="20" width="10" height="10" fill="%s"/><text x="%.0f" y="29">%s</text>`+"\n", lx, colours[k], lx+13, legendName(k))
		lx += 26 + float64(6*len(legendName(k)))
	}
	fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="25" y2="25" stroke="#1565c0"/><text x="%.0f" y="29">applied index</text>`+"\n", lx, lx+16, lx+20)
	lx += 100
	fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="25" y2="25" stroke="#c62828" stroke-dasharray="3 2"/><text x="%.0f" y="29">commit index a leader sends</text>`+"\n", lx, lx+16, lx+20)
	// Axis: a tick every step of virtual time.
	step := tickStep(end)
	for d := time.Duration(0); d <= end; d += step {
		fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" fill="#666">%v</text>`+"\n",
			x(d), x(d), axisHeight+4, height, x(d)+2, axisHeight+16, d)
	}
	if _, err := io.WriteString(w, body.String()); err != nil {
		return err
	}
	_, err := io.WriteString(w, "</svg>\n")
	return err
}

// drawCounters plots a track's counters (applied index, commit index) as
// step lines in one band, scaled to the largest value of the run.
func (t *Timeline) drawCounters(b *strings.Builder, track string, samples []Sample, x func(time.Duration) float64, y int, end time.Duration) int {
	top := uint64(1)
	for _, s := range t.Samples {
		top = max(top, s.Value)
	}
	byName := map[string][]Sample{}
	for _, s := range samples {
		byName[s.Name] = append(byName[s.Name], s)
	}
	fmt.Fprintf(b, `<text x="14" y="%d" fill="#444">index (max %d)</text>`+"\n", y+12, top)
	styles := map[string]string{"applied index": `stroke="#1565c0"`, "commit index (as sent)": `stroke="#c62828" stroke-dasharray="3 2"`}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		var pts []string
		prev := 0.0
		for i, s := range byName[name] {
			py := float64(y+plotHeight-2) - float64(plotHeight-6)*float64(s.Value)/float64(top)
			if i > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.At), prev))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.At), py))
			prev = py
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(end), prev))
		style := styles[name]
		if style == "" {
			style = `stroke="#555"`
		}
		fmt.Fprintf(b, `<polyline class="counter" fill="none" %s points="%s"><title>%s %s</title></polyline>`+"\n", style, strings.Join(pts, " "), esc(track), esc(name))
	}
	return y + plotHeight
}

func tickStep(end time.Duration) time.Duration {
	for _, s := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute} {
		if end/s <= 20 {
			return s
		}
	}
	return end / 10
}

func legendName(kind string) string {
	switch kind {
	case "ok", "fail", "unknown":
		return "op " + kind
	case "down":
		return "down/paused"
	}
	return kind
}

func colour(kind string) string {
	if c, ok := colours[kind]; ok {
		return c
	}
	return "#9e9e9e"
}

func tooltip(name string, start, end time.Duration, args map[string]string) string {
	s := fmt.Sprintf("%s\n%v", name, start)
	if end != start {
		s += fmt.Sprintf(" .. %v (%v)", end, end-start)
	}
	for _, k := range slices.Sorted(maps.Keys(args)) {
		if args[k] != "" {
			s += fmt.Sprintf("\n%s: %s", k, args[k])
		}
	}
	return s
}

func esc(s string) string { return html.EscapeString(s) }
