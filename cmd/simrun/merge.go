package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"os"
	"slices"
	"strings"
)

// mergedRun is what merge reads of one seed's JSON object; the object
// itself is kept whole (Raw) so that fields merge does not know pass
// through unchanged.
type mergedRun struct {
	Seed           uint64   `json:"seed"`
	Scenario       string   `json:"scenario"`
	Engine         string   `json:"engine"`
	Bug            string   `json:"bug"`
	OK             bool     `json:"ok"`
	VirtualSeconds float64  `json:"virtual_seconds"`
	WallSeconds    float64  `json:"wall_seconds"`
	TraceHash      string   `json:"trace_hash"`
	Violations     []string `json:"violations"`
	Repro          string   `json:"repro"`
	// Known names the upstream bug a failure is (empty when none), and
	// Signature a failure's first violation shape (empty when ok).
	Known     *string `json:"known"`
	Signature *string `json:"signature"`
	Summary   bool    `json:"summary"`

	Raw  json.RawMessage `json:"-"`
	From string          `json:"-"`
}

func (r mergedRun) key() string {
	return fmt.Sprintf("%s/%s/%s/%d", r.Scenario, r.Engine, r.Bug, r.Seed)
}

func (r mergedRun) name() string {
	s := fmt.Sprintf("%s/%s seed %d", r.Scenario, r.Engine, r.Seed)
	if r.Bug != "" {
		s += " bug " + r.Bug
	}
	return s
}

// signature is the run's failure signature; runs written before simrun
// reported one fall back to the checker that raised the first violation.
func (r mergedRun) signature() string {
	if r.Signature != nil && *r.Signature != "" {
		return *r.Signature
	}
	if len(r.Violations) == 0 {
		return "(none)"
	}
	checker, _, _ := strings.Cut(r.Violations[0], ":")
	return checker + " (checker of the first violation; no signature recorded)"
}

func (r mergedRun) known() string {
	if r.Known != nil {
		return *r.Known
	}
	return ""
}

// Group is a set of failed runs that share a known bug or a signature.
type Group struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Runs  []string `json:"runs"`
	Repro string   `json:"repro"`
}

// SlowRun is one of the runs that took the most wall time.
type SlowRun struct {
	Run         string  `json:"run"`
	WallSeconds float64 `json:"wall_seconds"`
}

// MergeSummary is the last object of merge --json and what its text and
// HTML forms show.
type MergeSummary struct {
	Summary        bool      `json:"summary"`
	Files          int       `json:"files"`
	Runs           int       `json:"seeds_run"`
	Passed         int       `json:"passed"`
	Failed         int       `json:"failed"`
	FailedKnown    int       `json:"failed_known"`
	Duplicates     int       `json:"duplicates"`
	Conflicts      []string  `json:"conflicts,omitempty"`
	ByKnown        []Group   `json:"by_known"`
	BySignature    []Group   `json:"by_signature"`
	Slowest        []SlowRun `json:"slowest"`
	VirtualSeconds float64   `json:"virtual_seconds"`
	WallSeconds    float64   `json:"wall_seconds"`
	VirtualToWall  float64   `json:"virtual_to_wall"`
	// Repros are the failing runs' repro commands, failures that are not
	// a known upstream bug first.
	Repros []string `json:"repros"`
}

// runMerge is `simrun merge`: it reads per-shard JSON lines and prints one
// summary. Exit status: 0 every run passed, 1 a run failed, 2 bad input.
func runMerge(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simrun merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print every run's object once, in seed order, then one summary object")
	htmlPath := fs.String("html", "", "also write the summary as a self-contained HTML report to `FILE`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: simrun merge [--json] [--html=FILE] FILE...\n\nMerges the JSON lines of sharded runs (simrun --json) into one summary.\nExit status: 0 every run passed, 1 a run failed, 2 bad usage or input.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "simrun merge: %v\n", err)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "simrun merge: no files (want the JSON lines of simrun --json runs)")
		return 2
	}
	runs, sum, err := mergeFiles(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "simrun merge: %v\n", err)
		return 2
	}
	if *asJSON {
		w := bufio.NewWriter(stdout)
		for _, r := range runs {
			w.Write(r.Raw)
			w.WriteByte('\n')
		}
		b, _ := json.Marshal(sum)
		w.Write(b)
		w.WriteByte('\n')
		w.Flush()
	} else {
		writeMergeText(stdout, sum)
	}
	if *htmlPath != "" {
		var b bytes.Buffer
		if err := mergeTemplate.Execute(&b, sum); err != nil {
			fmt.Fprintf(stderr, "simrun merge: %v\n", err)
			return 2
		}
		if err := os.WriteFile(*htmlPath, b.Bytes(), 0o644); err != nil {
			fmt.Fprintf(stderr, "simrun merge: --html: %v\n", err)
			return 2
		}
	}
	if sum.Failed > 0 {
		return 1
	}
	return 0
}

// mergeFiles reads every run of the files: each run once (a run repeated
// with the same trace hash, as a retried shard writes it, counts once; with
// another hash it is a conflict), in seed order, and their summary.
// Summary objects (a hunt's, merge's own) are skipped, so merged output can
// be merged again.
func mergeFiles(paths []string) ([]mergedRun, MergeSummary, error) {
	sum := MergeSummary{Summary: true, Files: len(paths)}
	seen := map[string]int{}
	var runs []mergedRun
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, sum, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		line := 0
		for sc.Scan() {
			line++
			text := bytes.TrimSpace(sc.Bytes())
			if len(text) == 0 {
				continue
			}
			var r mergedRun
			if err := json.Unmarshal(text, &r); err != nil {
				f.Close()
				return nil, sum, fmt.Errorf("%s:%d: not a simrun --json object: %v", path, line, err)
			}
			if r.Summary {
				continue
			}
			if r.Scenario == "" || r.Engine == "" {
				f.Close()
				return nil, sum, fmt.Errorf("%s:%d: a run object needs seed, scenario and engine", path, line)
			}
			r.Raw, r.From = bytes.Clone(text), fmt.Sprintf("%s:%d", path, line)
			if i, dup := seen[r.key()]; dup {
				sum.Duplicates++
				if runs[i].TraceHash != r.TraceHash || runs[i].OK != r.OK {
					sum.Conflicts = append(sum.Conflicts, fmt.Sprintf("%s: %s says trace %.12s ok=%v, %s says trace %.12s ok=%v",
						r.name(), runs[i].From, runs[i].TraceHash, runs[i].OK, r.From, r.TraceHash, r.OK))
				}
				continue
			}
			seen[r.key()] = len(runs)
			runs = append(runs, r)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, sum, fmt.Errorf("%s: %v", path, err)
		}
	}
	slices.SortStableFunc(runs, func(a, b mergedRun) int {
		return cmp.Or(cmp.Compare(a.Seed, b.Seed), cmp.Compare(a.Scenario, b.Scenario), cmp.Compare(a.Engine, b.Engine), cmp.Compare(a.Bug, b.Bug))
	})
	known, sigs := map[string]*Group{}, map[string]*Group{}
	add := func(groups map[string]*Group, name string, r mergedRun) {
		g, ok := groups[name]
		if !ok {
			g = &Group{Name: name, Repro: r.Repro}
			groups[name] = g
		}
		g.Count++
		if len(g.Runs) < 20 {
			g.Runs = append(g.Runs, r.name())
		}
	}
	var unknownRepros, knownRepros []string
	for _, r := range runs {
		sum.Runs++
		sum.VirtualSeconds += r.VirtualSeconds
		sum.WallSeconds += r.WallSeconds
		if r.OK {
			sum.Passed++
			continue
		}
		sum.Failed++
		add(sigs, r.signature(), r)
		if k := r.known(); k != "" {
			sum.FailedKnown++
			add(known, k, r)
			knownRepros = append(knownRepros, r.Repro+"   # "+k)
		} else {
			add(known, "(not a known upstream bug)", r)
			unknownRepros = append(unknownRepros, r.Repro)
		}
	}
	sum.ByKnown, sum.BySignature = sortedGroups(known), sortedGroups(sigs)
	sum.Repros = append(unknownRepros, knownRepros...)
	if sum.WallSeconds > 0 {
		sum.VirtualToWall = sum.VirtualSeconds / sum.WallSeconds
	}
	slow := slices.Clone(runs)
	slices.SortStableFunc(slow, func(a, b mergedRun) int { return cmp.Compare(b.WallSeconds, a.WallSeconds) })
	for _, r := range slow[:min(len(slow), 10)] {
		sum.Slowest = append(sum.Slowest, SlowRun{Run: r.name(), WallSeconds: r.WallSeconds})
	}
	return runs, sum, nil
}

func sortedGroups(m map[string]*Group) []Group {
	out := []Group{}
	for _, g := range m {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Name, b.Name)) })
	return out
}

func writeMergeText(w io.Writer, s MergeSummary) {
	fmt.Fprintf(w, "merged %d files: %d runs, %d passed, %d failed (%d of them known upstream bugs); %d duplicates\n",
		s.Files, s.Runs, s.Passed, s.Failed, s.FailedKnown, s.Duplicates)
	fmt.Fprintf(w, "virtual %.0fs in wall %.0fs (%.0f:1)\n", s.VirtualSeconds, s.WallSeconds, s.VirtualToWall)
	for _, c := range s.Conflicts {
		fmt.Fprintf(w, "CONFLICT: %s\n", c)
	}
	groups := func(title string, gs []Group) {
		if len(gs) == 0 {
			return
		}
		fmt.Fprintf(w, "\nfailures by %s:\n", title)
		for _, g := range gs {
			more := ""
			if g.Count > len(g.Runs) {
				more = fmt.Sprintf(", ... %d more", g.Count-len(g.Runs))
			}
			fmt.Fprintf(w, "  %4d  %s\n        %s%s\n", g.Count, g.Name, strings.Join(g.Runs, ", "), more)
		}
	}
	groups("known upstream bug", s.ByKnown)
	groups("signature", s.BySignature)
	if len(s.Slowest) > 0 {
		fmt.Fprintf(w, "\nslowest runs (wall):\n")
		for _, r := range s.Slowest {
			fmt.Fprintf(w, "  %6.2fs  %s\n", r.WallSeconds, r.Run)
		}
	}
	if len(s.Repros) > 0 {
		fmt.Fprintf(w, "\nrepro commands (failures not known first):\n")
		for _, r := range s.Repros {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
}

var mergeTemplate = template.Must(template.New("merge").Funcs(template.FuncMap{"join": strings.Join}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>simrun merge: {{.Runs}} runs, {{.Failed}} failed</title><style>` + style + `</style></head>
<body>
<h1>{{.Runs}} runs from {{.Files}} files: {{.Passed}} passed, {{if .Failed}}<span class="violation">{{.Failed}} failed</span> ({{.FailedKnown}} known upstream bugs){{else}}<span class="ok">none failed</span>{{end}}</h1>
<p>Virtual {{printf "%.0f" .VirtualSeconds}} s in wall {{printf "%.0f" .WallSeconds}} s ({{printf "%.0f" .VirtualToWall}}:1); {{.Duplicates}} duplicate objects.</p>
{{range .Conflicts}}<p class="violation">CONFLICT: {{.}}</p>{{end}}
{{define "groups"}}<table><tr><th>count</th><th>group</th><th>runs</th><th>repro (first)</th></tr>
{{range .}}<tr><td>{{.Count}}</td><td>{{.Name}}</td><td>{{join .Runs ", "}}{{if gt .Count (len .Runs)}}, …{{end}}</td><td><code>{{.Repro}}</code></td></tr>
{{end}}</table>{{end}}
{{if .ByKnown}}<h2 id="by-known">Failures by known upstream bug</h2>{{template "groups" .ByKnown}}{{end}}
{{if .BySignature}}<h2 id="by-signature">Failures by signature</h2>{{template "groups" .BySignature}}{{end}}
<h2>Slowest runs</h2>
<table><tr><th>wall</th><th>run</th></tr>{{range .Slowest}}<tr><td>{{printf "%.2f" .WallSeconds}} s</td><td>{{.Run}}</td></tr>{{end}}</table>
{{if .Repros}}<h2 id="repros">Repro commands</h2><pre>{{join .Repros "\n"}}</pre>{{end}}
</body></html>
`))
