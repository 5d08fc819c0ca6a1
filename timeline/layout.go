package timeline

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// lane is one drawn row: spans in it never overlap.
type lane struct {
	track, name string
	spans       []Span
	instants    []Instant
	ends        time.Duration
}

// layout puts every row of every track into lanes, in display order: a row
// whose spans overlap (two faults at once, a client's calls that outlive
// their timeout) gets more lanes, so viewers that nest spans by time draw
// each one whole.
func (t *Timeline) layout() []*lane {
	type key struct{ track, row string }
	rows := map[key][]*lane{}
	var keys []key
	get := func(track, row string) []*lane {
		k := key{track, row}
		if _, ok := rows[k]; !ok {
			keys = append(keys, k)
			rows[k] = []*lane{{track: track, name: row}}
		}
		return rows[k]
	}
	for _, s := range t.Spans {
		lanes := get(s.Track, s.Row)
		placed := false
		for _, l := range lanes {
			if len(l.spans) == 0 || l.ends <= s.Start {
				l.spans, l.ends, placed = append(l.spans, s), s.End, true
				break
			}
		}
		if !placed {
			l := &lane{track: s.Track, name: fmt.Sprintf("%s (%d)", s.Row, len(lanes)+1), spans: []Span{s}, ends: s.End}
			rows[key{s.Track, s.Row}] = append(lanes, l)
		}
	}
	for _, in := range t.Instants {
		lanes := get(in.Track, in.Row)
		lanes[0].instants = append(lanes[0].instants, in)
	}
	trackRank := map[string]int{}
	for i, tr := range t.Tracks {
		trackRank[tr] = i
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		ra, oka := trackRank[a.track]
		rb, okb := trackRank[b.track]
		if !oka {
			ra = len(trackRank)
		}
		if !okb {
			rb = len(trackRank)
		}
		if c := cmp.Compare(ra, rb); c != 0 {
			return c
		}
		if c := cmp.Compare(rowRank(a.row), rowRank(b.row)); c != 0 {
			return c
		}
		return compareRows(a.row, b.row)
	})
	var out []*lane
	for _, k := range keys {
		out = append(out, rows[k]...)
	}
	return out
}

func rowRank(row string) int {
	switch {
	case row == "role":
		return 0
	case row == "paused":
		return 1
	case row == "snapshot":
		return 2
	case strings.HasPrefix(row, "snapshot"):
		return 3
	}
	return 4
}

// compareRows orders "client 2" before "client 10".
func compareRows(a, b string) int {
	pa, na, oka := strings.Cut(a, " ")
	pb, nb, okb := strings.Cut(b, " ")
	if oka && okb && pa == pb {
		var x, y int
		if _, err := fmt.Sscan(na, &x); err == nil {
			if _, err := fmt.Sscan(nb, &y); err == nil {
				return cmp.Compare(x, y)
			}
		}
	}
	return cmp.Compare(a, b)
}
