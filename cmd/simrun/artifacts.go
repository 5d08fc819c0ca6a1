package main

import (
	"bytes"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/raftsnap/testbed/scenarios"
	"github.com/raftsnap/testbed/timeline"
)

// writeArtifacts writes what the flags ask of one seed's run: its timeline
// (--timeline) and, for a failing seed with --out, a self-contained HTML
// report and the timeline beside porcupine's visualization.
func writeArtifacts(c config, opts scenarios.Options, rep scenarios.Report) error {
	if c.timelinePath == "" && (opts.OutputDir == "" || rep.OK) {
		return nil
	}
	tl := timeline.Build(runTitle(rep), rep.Events, rep.Log, rep.History)
	if c.timelinePath != "" {
		if err := writeTimeline(tl, c.timelinePath); err != nil {
			return fmt.Errorf("--timeline: %v", err)
		}
	}
	if opts.OutputDir == "" || rep.OK {
		return nil
	}
	if err := os.MkdirAll(opts.OutputDir, 0o755); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	if err := writeTimeline(tl, filepath.Join(opts.OutputDir, "timeline.json")); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	page, err := seedReport(rep, tl, opts.OutputDir)
	if err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	if err := os.WriteFile(filepath.Join(opts.OutputDir, "report.html"), page, 0o644); err != nil {
		return fmt.Errorf("--out: %v", err)
	}
	return nil
}

func writeTimeline(tl *timeline.Timeline, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tl.WriteChrome(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runTitle(rep scenarios.Report) string {
	t := fmt.Sprintf("seed %d, %s on %s", rep.Seed, rep.Scenario, rep.Engine)
	if rep.Bug != "" {
		t += ", planted bug " + rep.Bug
	}
	return t
}

// seedReport renders report.html of one failing seed. Everything it shows
// is inline (the timeline as SVG, porcupine's page in an iframe's srcdoc),
// so it opens from a CI artifact with no network.
func seedReport(rep scenarios.Report, tl *timeline.Timeline, dir string) ([]byte, error) {
	var svg bytes.Buffer
	if err := tl.WriteSVG(&svg, 1500); err != nil {
		return nil, err
	}
	type embedded struct {
		Name string
		Page string
	}
	var porcupine []embedded
	matches, _ := filepath.Glob(filepath.Join(dir, "linearizability-*.html"))
	sort.Strings(matches)
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		porcupine = append(porcupine, embedded{filepath.Base(m), string(b)})
	}
	schedule := ""
	if rep.Schedule != nil {
		schedule = rep.Schedule.String()
	}
	var out bytes.Buffer
	err := seedTemplate.Execute(&out, map[string]any{
		"Title":     runTitle(rep),
		"Rep":       rep,
		"Faults":    formatCounts(rep.Faults),
		"Schedule":  schedule,
		"SVG":       template.HTML(svg.String()), // built by timeline.WriteSVG, which escapes every text it draws
		"Porcupine": porcupine,
		"Shrink":    rep.Repro + " --shrink",
		"Timeline":  rep.Repro + " --timeline=timeline.json",
		"Trace":     rep.Repro + " --trace=trace.jsonl",
	})
	return out.Bytes(), err
}

const style = `body{font-family:sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.5em}
pre{background:#f5f5f5;padding:.6em;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2em .6em;text-align:left}
.violation{color:#b71c1c} .ok{color:#1b5e20}
.scroll{overflow-x:auto;border:1px solid #ddd}
iframe{width:100%;height:600px;border:1px solid #ddd}`

var seedTemplate = template.Must(template.New("seed").Funcs(template.FuncMap{"join": strings.Join}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title><style>` + style + `</style></head>
<body>
<h1>{{.Title}}: {{if .Rep.OK}}<span class="ok">passed</span>{{else}}<span class="violation">FAILED</span>{{end}}</h1>
<table>
<tr><th>virtual time</th><td>{{printf "%.1f" .Rep.VirtualSeconds}} s (wall {{printf "%.2f" .Rep.WallSeconds}} s)</td></tr>
<tr><th>trace</th><td>{{.Rep.TraceEvents}} events, hash {{.Rep.TraceHash}}</td></tr>
<tr><th>snapshots</th><td>built {{.Rep.SnapshotsBuilt}}, installed {{.Rep.SnapshotsInstalled}}, refused {{.Rep.SnapshotsRefused}}</td></tr>
<tr><th>faults</th><td>{{.Faults}}</td></tr>
<tr><th>client operations</th><td>{{.Rep.Ops}} {{range $k, $v := .Rep.OpsByOutcome}}{{$k}}={{$v}} {{end}}</td></tr>
<tr><th>linearizable</th><td>{{range $k, $v := .Rep.Linearizable}}{{$k}}: {{$v}} {{end}}</td></tr>
</table>
<h2 id="violations">Violations</h2>
<ul>{{range .Rep.Violations}}<li class="violation">{{.}}</li>{{else}}<li>none</li>{{end}}</ul>
{{if .Rep.Notes}}<h2>Notes</h2><ul>{{range .Rep.Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Reproduce</h2>
<pre>{{.Rep.Repro}}</pre>
<p>Shrink it to a smaller failing schedule:</p><pre>{{.Shrink}}</pre>
<p>The same run as a trace-event file for <a href="https://ui.perfetto.dev">Perfetto</a> or chrome://tracing (timeline.json beside this page is that file), or as its raw trace:</p>
<pre>{{.Timeline}}
{{.Trace}}</pre>
<h2 id="timeline">Timeline</h2>
<p>One band per node (role and term as read off the wire, down and paused spans, snapshot builds, sends and receives, its applied index and the commit index it sends), the clients' operations by outcome, and the faults. Hover for details.</p>
<div class="scroll">{{.SVG}}</div>
<h2>Fault schedule</h2>
<pre>{{if .Schedule}}{{.Schedule}}{{else}}(none recorded){{end}}</pre>
{{range .Porcupine}}<h2>Porcupine: {{.Name}}</h2>
<iframe title="{{.Name}}" srcdoc="{{.Page}}"></iframe>
{{end}}
</body></html>
`))
