// Package timeline turns a run's record (its trace, what the state machines
// applied, the client history) into a timeline: tracks of spans, instants
// and counters that Perfetto and chrome://tracing open (WriteChrome) and
// that an HTML report draws without a viewer (WriteSVG).
//
// Nothing here is recorded specially for the timeline: a node's role and
// term are read off the wire, as the raft invariants checker reads them
// (a node that sends RequestVote in term T is a candidate of T, one that
// sends AppendEntries in term T leads T, a node that hears of a higher term
// follows it), so building a timeline cannot change a run or its trace
// hash. A leader that steps down without hearing of a higher term (it lost
// contact with a quorum) shows as leader until it does.
package timeline

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftsnap/testbed/checkers"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/sim"
)

// Span is something that lasted: a role in a term, a fault, a snapshot
// being sent, a client operation.
type Span struct {
	// Track is the process-level group (a node, "clients", "faults");
	// Row is the row inside it ("role", "snapshot → n1", "client 3").
	Track, Row string
	Name       string
	Start, End time.Duration
	// Kind classifies the span for colour: "leader", "candidate",
	// "follower", "down", "fault", "snapshot", "ok", "fail", "unknown".
	Kind string
	Args map[string]string
}

// Instant is a point event: a snapshot built, a crash point firing, a
// stream fault.
type Instant struct {
	Track, Row string
	Name       string
	At         time.Duration
	Args       map[string]string
}

// Sample is one value of a counter (a node's applied index, the commit
// index a leader sends).
type Sample struct {
	Track, Name string
	At          time.Duration
	Value       uint64
}

// Timeline is a run laid out on tracks.
type Timeline struct {
	Title    string
	End      time.Duration
	Spans    []Span
	Instants []Instant
	Samples  []Sample
	// Tracks lists the tracks in display order: nodes, clients, faults.
	Tracks []string
}

// Build lays out a run. events is its trace, log what its state machines
// applied and installed, history its client calls; any may be empty.
func Build(title string, events []sim.Event, log checkers.RunLog, history []cluster.Call) *Timeline {
	b := &builder{t: &Timeline{Title: title}, nodes: map[string]*nodeState{}, sends: map[string]time.Duration{},
		faults: map[string]time.Duration{}, recvSnap: map[string]pending{}, sendSnap: map[string]pending{}, paused: map[string]time.Duration{},
		commit: map[string]uint64{}}
	for _, e := range events {
		b.t.End = max(b.t.End, e.At)
		b.event(e)
	}
	for _, c := range history {
		b.t.End = max(b.t.End, c.Return, c.Invoke)
	}
	for _, a := range log.Applies {
		b.t.End = max(b.t.End, a.At)
	}
	b.finish(log, history)
	return b.t
}

type nodeState struct {
	role  string // "follower", "candidate", "leader", "down"
	term  uint64
	since time.Duration
	seen  bool
}

type pending struct {
	at    time.Duration
	name  string
	label string // the InstallSnapshot message
	note  string // what happened to it on the way
}

type builder struct {
	t        *Timeline
	nodes    map[string]*nodeState
	order    []string
	sends    map[string]time.Duration // message label -> send time
	faults   map[string]time.Duration // fault text -> start
	recvSnap map[string]pending       // node -> snapshot being received
	sendSnap map[string]pending       // message label -> snapshot being sent
	paused   map[string]time.Duration
	commit   map[string]uint64
}

func (b *builder) node(id string) *nodeState {
	n, ok := b.nodes[id]
	if !ok {
		n = &nodeState{role: "follower"}
		b.nodes[id] = n
		b.order = append(b.order, id)
	}
	return n
}

// become ends id's current role span at `at` and starts another.
func (b *builder) become(id, role string, term uint64, at time.Duration) {
	n := b.node(id)
	if n.seen && n.role == role && n.term == term {
		return
	}
	if n.seen && at > n.since {
		b.roleSpan(id, n, at)
	}
	n.role, n.term, n.since, n.seen = role, term, at, true
}

func (b *builder) roleSpan(id string, n *nodeState, end time.Duration) {
	name := n.role
	if n.role != "down" {
		name = fmt.Sprintf("%s t%d", n.role, n.term)
	}
	b.t.Spans = append(b.t.Spans, Span{Track: id, Row: "role", Name: name, Start: n.since, End: end, Kind: n.role,
		Args: map[string]string{"term": strconv.FormatUint(n.term, 10)}})
}

// message is a parsed transport event detail: "AppendEntries n0->n1 #5 term=2 ...".
type message struct {
	typ, src, dst, label string
	fields               map[string]string
	rest                 string
}

func parseMessage(detail string) (message, bool) {
	f := strings.Fields(detail)
	if len(f) < 3 || !strings.HasPrefix(f[2], "#") {
		return message{}, false
	}
	src, dst, ok := strings.Cut(f[1], "->")
	if !ok {
		return message{}, false
	}
	m := message{typ: f[0], src: src, dst: dst, label: strings.Join(f[:3], " "), fields: map[string]string{}, rest: strings.Join(f[3:], " ")}
	for _, kv := range f[3:] {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m.fields[k] = v
		}
	}
	return m, true
}

func (m message) uint(k string) (uint64, bool) {
	v, err := strconv.ParseUint(m.fields[k], 10, 64)
	return v, err == nil
}

func (b *builder) event(e sim.Event) {
	switch e.Kind {
	case "start":
		b.node(e.Node)
		b.become(e.Node, "follower", b.node(e.Node).term, e.At)
		b.instant(e.Node, "role", "start", e.At, e.Detail)
	case "crash":
		b.become(e.Node, "down", b.node(e.Node).term, e.At)
		if p, ok := b.recvSnap[e.Node]; ok {
			b.span(e.Node, "snapshot ←", p.name, p.at, e.At, "fail", "crashed while receiving")
			delete(b.recvSnap, e.Node)
		}
	case "removed":
		b.become(e.Node, "down", b.node(e.Node).term, e.At)
	case "fault":
		b.faults[e.Detail] = e.At
	case "heal":
		if start, ok := b.faults[e.Detail]; ok {
			b.span("faults", faultRow(e.Detail), faultName(e.Detail), start, e.At, "fault", e.Detail)
			delete(b.faults, e.Detail)
		}
	case "fault-skipped", "crash-point-skipped", "crash-point-unfired":
		b.instant("faults", "skipped", e.Kind, e.At, e.Detail)
	case "pause":
		b.paused[e.Detail] = e.At
	case "resume":
		if start, ok := b.paused[e.Detail]; ok {
			b.span(e.Detail, "paused", "paused", start, e.At, "down", "network holds its messages")
			delete(b.paused, e.Detail)
		}
	case "partition", "bridge", "oneway", "isolate":
		b.instant("faults", "network", e.Kind, e.At, e.Detail)
	case "phase":
		b.instant("faults", "phase", e.Detail, e.At, "faults healed; the cluster must converge")
	case "snapshot-persist":
		b.instant(e.Node, "snapshot", "persist "+field(e.Detail, "index"), e.At, e.Detail)
	case "snapshot-restore":
		kind := "snapshot"
		if !strings.Contains(e.Detail, "err=<nil>") {
			kind = "fail"
		}
		if p, ok := b.recvSnap[e.Node]; ok {
			b.span(e.Node, "snapshot ←", p.name, p.at, e.At, kind, e.Detail)
			delete(b.recvSnap, e.Node)
		} else {
			b.instant(e.Node, "snapshot", "restore "+field(e.Detail, "index"), e.At, e.Detail)
		}
	case "crash-point", "crash-point-armed", "fail-stop", "disk-errors", "slow-disk-syncs", "restart-error", "futures-leaked":
		b.instant(e.Node, "snapshot", e.Kind, e.At, e.Detail)
	case "stream-fault":
		if f := strings.Fields(e.Detail); len(f) > 0 {
			b.instant(e.Node, "snapshot", "stream "+f[0], e.At, e.Detail)
		}
	case "send":
		if m, ok := parseMessage(e.Detail); ok {
			b.sends[m.label] = e.At
			if m.typ == "InstallSnapshot" {
				b.sendSnap[m.label] = pending{at: e.At, name: "send to " + m.dst}
			}
		}
	case "recv", "recv-dup":
		b.recv(e)
	case "reply", "fail", "drop":
		b.reply(e)
	}
}

func (b *builder) recv(e sim.Event) {
	m, ok := parseMessage(e.Detail)
	if !ok {
		return
	}
	term, _ := m.uint("term")
	sent, ok := b.sends[m.label]
	if !ok {
		sent = e.At
	}
	switch m.typ {
	case "RequestVote":
		if s := b.node(m.src); s.role != "down" && (term > s.term || term == s.term && s.role == "follower") {
			b.become(m.src, "candidate", term, sent)
		}
	case "AppendEntries", "Heartbeat", "InstallSnapshot":
		if s := b.node(m.src); s.role != "down" && (term > s.term || term == s.term && s.role != "leader") {
			b.become(m.src, "leader", term, sent)
		}
		if c, ok := m.uint("commit"); ok && c > b.commit[m.src] {
			b.commit[m.src] = c
			b.t.Samples = append(b.t.Samples, Sample{Track: m.src, Name: "commit index (as sent)", At: sent, Value: c})
		}
		if m.typ == "InstallSnapshot" && e.Kind == "recv" {
			b.recvSnap[m.dst] = pending{at: e.At, name: fmt.Sprintf("receive from %s index %s", m.src, m.fields["last"]), label: m.label}
		}
		if p, ok := b.sendSnap[m.label]; ok && m.typ == "InstallSnapshot" {
			p.name = fmt.Sprintf("send to %s index %s", m.dst, m.fields["last"])
			b.sendSnap[m.label] = p
		}
	}
	if d := b.node(m.dst); d.role != "down" && term > d.term {
		b.become(m.dst, "follower", term, e.At)
	}
}

func (b *builder) reply(e sim.Event) {
	m, ok := parseMessage(e.Detail)
	if !ok {
		return
	}
	if p, ok := b.sendSnap[m.label]; ok {
		// A dropped message or reply still holds the sender until its
		// RPC fails: the span ends there, with the drop noted.
		if e.Kind == "drop" {
			p.note = strings.TrimSpace(p.note + " dropped: " + m.rest + ";")
			b.sendSnap[m.label] = p
			return
		}
		kind, why := "snapshot", "acknowledged"
		switch {
		case e.Kind == "fail":
			kind, why = "fail", "failed: "+m.rest
		case m.fields["ok"] != "true":
			kind, why = "fail", "refused"
		}
		b.span(e.Node, "snapshot → "+m.dst, p.name, p.at, e.At, kind, strings.TrimSpace(p.note+" "+why))
		delete(b.sendSnap, m.label)
		// The receiver restored nothing from it if its receive is still open.
		if r, ok := b.recvSnap[m.dst]; ok && r.label == m.label {
			b.span(m.dst, "snapshot ←", r.name, r.at, e.At, "fail", "no restore: the sender's RPC ended ("+strings.TrimSpace(p.note+" "+why)+")")
			delete(b.recvSnap, m.dst)
		}
	}
	if e.Kind == "reply" {
		if term, ok := m.uint("term"); ok {
			if s := b.node(m.src); s.role != "down" && term > s.term {
				b.become(m.src, "follower", term, e.At)
			}
		}
	}
}

func (b *builder) span(track, row, name string, start, end time.Duration, kind, detail string) {
	b.t.Spans = append(b.t.Spans, Span{Track: track, Row: row, Name: name, Start: start, End: max(end, start), Kind: kind,
		Args: map[string]string{"detail": detail}})
}

func (b *builder) instant(track, row, name string, at time.Duration, detail string) {
	b.t.Instants = append(b.t.Instants, Instant{Track: track, Row: row, Name: name, At: at, Args: map[string]string{"detail": detail}})
}

func (b *builder) finish(log checkers.RunLog, history []cluster.Call) {
	end := b.t.End
	for _, id := range b.order {
		if n := b.nodes[id]; n.seen && end > n.since {
			b.roleSpan(id, n, end)
		}
	}
	for text, start := range b.faults {
		b.span("faults", faultRow(text), faultName(text), start, end, "fault", text+" (never healed)")
	}
	for id, start := range b.paused {
		b.span(id, "paused", "paused", start, end, "down", "still paused at the end")
	}
	for id, p := range b.recvSnap {
		b.span(id, "snapshot ←", p.name, p.at, end, "unknown", "no restore recorded")
	}
	for label, p := range b.sendSnap {
		m, _ := parseMessage(label)
		b.span(m.src, "snapshot → "+m.dst, p.name, p.at, end, "unknown", "no reply recorded")
	}
	// Applied index per node: every apply, each install, each restart.
	type point struct {
		node  string
		at    time.Duration
		index uint64
	}
	var pts []point
	for _, a := range log.Applies {
		pts = append(pts, point{a.Node, a.At, a.Index})
	}
	for _, in := range log.Installs {
		pts = append(pts, point{in.Node, in.At, in.Index})
	}
	for _, s := range log.Starts {
		pts = append(pts, point{s.Node, s.At, s.Applied})
	}
	slices.SortStableFunc(pts, func(a, b point) int { return cmp.Compare(a.at, b.at) })
	last := map[string]uint64{}
	for _, p := range pts {
		if v, ok := last[p.node]; ok && v == p.index {
			continue
		}
		last[p.node] = p.index
		b.node(p.node)
		b.t.Samples = append(b.t.Samples, Sample{Track: p.node, Name: "applied index", At: p.at, Value: p.index})
	}
	clients := map[int]bool{}
	for _, c := range history {
		ret := c.Return
		if ret < c.Invoke {
			ret = end
		}
		clients[c.Client] = true
		args := map[string]string{"outcome": c.Outcome.String(), "node": string(c.Node)}
		if c.Err != "" {
			args["error"] = c.Err
		}
		if c.Command.Op.String() == "get" {
			args["read mode"] = c.Mode.String()
		}
		b.t.Spans = append(b.t.Spans, Span{Track: "clients", Row: clientRow(c.Client), Name: describeCall(c), Start: c.Invoke, End: ret,
			Kind: c.Outcome.String(), Args: args})
	}
	slices.SortFunc(b.order, compareNodes)
	b.t.Tracks = append(b.t.Tracks, b.order...)
	if len(clients) > 0 {
		b.t.Tracks = append(b.t.Tracks, "clients")
	}
	b.t.Tracks = append(b.t.Tracks, "faults")
	slices.SortStableFunc(b.t.Spans, func(x, y Span) int { return cmp.Compare(x.Start, y.Start) })
	slices.SortStableFunc(b.t.Instants, func(x, y Instant) int { return cmp.Compare(x.At, y.At) })
	slices.SortStableFunc(b.t.Samples, func(x, y Sample) int { return cmp.Compare(x.At, y.At) })
}

func clientRow(id int) string {
	if id < 0 {
		return "liveness probe"
	}
	return fmt.Sprintf("client %d", id)
}

func describeCall(c cluster.Call) string {
	op := c.Command.Op.String()
	s := op + " " + string(c.Command.Key)
	if op != "get" && op != "delete" && len(c.Command.Value) > 0 {
		s += "=" + clip(string(c.Command.Value), 12)
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// compareNodes orders n2 before n10.
func compareNodes(a, b string) int {
	na, ea := strconv.Atoi(strings.TrimLeft(a, "n"))
	nb, eb := strconv.Atoi(strings.TrimLeft(b, "n"))
	if ea == nil && eb == nil {
		return cmp.Compare(na, nb)
	}
	return cmp.Compare(a, b)
}

// faultRow and faultName read a fault's text, "t=3s +17s crash target=n1 ...".
func faultRow(text string) string {
	f := strings.Fields(text)
	if len(f) >= 3 {
		return f[2]
	}
	return "fault"
}

func faultName(text string) string {
	f := strings.Fields(text)
	if len(f) >= 3 {
		return strings.Join(f[2:], " ")
	}
	return text
}

func field(detail, key string) string {
	for _, kv := range strings.Fields(detail) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return "?"
}
