package timeline

import (
	"encoding/json"
	"io"
	"time"
)

// chromeEvent is one entry of the Chrome trace-event format (the "JSON
// Object Format" that chrome://tracing and Perfetto read): ph "X" is a
// complete span, "i" an instant, "C" a counter sample, "M" metadata
// naming a process (track) or thread (lane). Times are in microseconds.
type chromeEvent struct {
	Name string         `json:"name"`
	Cat  string         `json:"cat,omitempty"`
	Ph   string         `json:"ph"`
	Ts   float64        `json:"ts"`
	Dur  *float64       `json:"dur,omitempty"`
	Pid  int            `json:"pid"`
	Tid  int            `json:"tid"`
	S    string         `json:"s,omitempty"`
	Args map[string]any `json:"args,omitempty"`
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// WriteChrome writes the timeline as a Chrome trace-event JSON object:
// one process per track (each node, the clients, the faults), one thread
// per lane, counters on the node's process.
func (t *Timeline) WriteChrome(w io.Writer) error {
	var evs []chromeEvent
	pids := map[string]int{}
	pid := func(track string) int {
		if p, ok := pids[track]; ok {
			return p
		}
		p := len(pids) + 1
		pids[track] = p
		evs = append(evs,
			chromeEvent{Name: "process_name", Ph: "M", Pid: p, Args: map[string]any{"name": track}},
			chromeEvent{Name: "process_sort_index", Ph: "M", Pid: p, Args: map[string]any{"sort_index": p}})
		return p
	}
	for _, tr := range t.Tracks {
		pid(tr)
	}
	tids := map[string]int{}
	for _, l := range t.layout() {
		p := pid(l.track)
		tid := tids[l.track] + 1
		tids[l.track] = tid
		evs = append(evs,
			chromeEvent{Name: "thread_name", Ph: "M", Pid: p, Tid: tid, Args: map[string]any{"name": l.name}},
			chromeEvent{Name: "thread_sort_index", Ph: "M", Pid: p, Tid: tid, Args: map[string]any{"sort_index": tid}})
		for _, s := range l.spans {
			dur := micros(s.End - s.Start)
			evs = append(evs, chromeEvent{Name: s.Name, Cat: s.Kind, Ph: "X", Ts: micros(s.Start), Dur: &dur, Pid: p, Tid: tid, Args: anyArgs(s.Args)})
		}
		for _, in := range l.instants {
			evs = append(evs, chromeEvent{Name: in.Name, Ph: "i", S: "t", Ts: micros(in.At), Pid: p, Tid: tid, Args: anyArgs(in.Args)})
		}
	}
	for _, s := range t.Samples {
		evs = append(evs, chromeEvent{Name: s.Name, Ph: "C", Ts: micros(s.At), Pid: pid(s.Track), Args: map[string]any{"value": s.Value}})
	}
	return json.NewEncoder(w).Encode(struct {
		TraceEvents     []chromeEvent     `json:"traceEvents"`
		DisplayTimeUnit string            `json:"displayTimeUnit"`
		OtherData       map[string]string `json:"otherData"`
	}{evs, "ms", map[string]string{"title": t.Title, "clock": "virtual time of the simulated run"}})
}

func anyArgs(m map[string]string) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
