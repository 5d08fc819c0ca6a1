package main

// Coverage of the code under test (--cover=DIR, --cover-report=DIR).
//
// A simrun built with Go's coverage instrumentation (make cover, or
//
//	go build -cover -covermode=atomic \
//	  -coverpkg=github.com/hashicorp/raft,./cluster/...,./snapshot/...,./cmd/simrun \
//	  -o bin/simrun-cover ./cmd/simrun
//
// ; the main package must be in -coverpkg, or the binary writes no data)
// records, with --cover=DIR, the coverage of every run in a directory of
// its own, DIR/runs/<scenario>.<engine>.<seed>[.<bug>]: after each seed the
// worker writes the counters with runtime/coverage and clears them
// (covermode atomic), so a directory holds exactly what that seed executed,
// whichever worker ran it. That makes the seed that first reached a
// function a question about single runs: walk the runs in seed order and
// ask `go tool covdata func` which functions each one entered, stopping
// once every function the merged profile reached has its first seed. The
// table then comes from the merged profile (DIR/merged, and
// DIR/coverage.txt in the text format `go tool cover -html` reads).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/coverage"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/raftsnap/testbed/scenarios"
)

// coverPackages are the packages whose coverage the report gives.
var coverPackages = []string{
	"github.com/hashicorp/raft",
	"github.com/raftsnap/testbed/cluster",
	"github.com/raftsnap/testbed/cluster/snapstore",
	"github.com/raftsnap/testbed/snapshot",
}

// coveredFunc is one function of the snapshot path the report follows, as
// `go tool covdata func` names it: the file's directory (its package's
// import path) and the function, with its receiver.
type coveredFunc struct {
	Pkg, Func string
}

func (f coveredFunc) String() string {
	return strings.TrimPrefix(strings.TrimPrefix(f.Pkg, "github.com/raftsnap/testbed/"), "github.com/") + " " + strings.TrimPrefix(f.Func, "*")
}

const raftPkg = "github.com/hashicorp/raft"

// snapshotPath lists the functions of issue 9: raft's snapshot, backup and
// recovery API, its snapshot, compaction, install and pipelining paths, and
// our snapshot store, FSM and stream.
var snapshotPath = []coveredFunc{
	{raftPkg, "*Raft.Snapshot"},
	{raftPkg, "*Raft.Restore"},
	{raftPkg, "*Raft.restoreUserSnapshot"},
	{raftPkg, "RecoverCluster"},
	{raftPkg, "*Raft.LeadershipTransfer"},
	{raftPkg, "*Raft.LeadershipTransferToServer"},
	{raftPkg, "*Raft.ReloadConfig"},
	{raftPkg, "*Raft.pipelineReplicate"},
	{raftPkg, "*Raft.pipelineSend"},
	{raftPkg, "*Raft.pipelineDecode"},
	{raftPkg, "*Raft.runSnapshots"},
	{raftPkg, "*Raft.takeSnapshot"},
	{raftPkg, "*Raft.sendLatestSnapshot"},
	{raftPkg, "*Raft.installSnapshot"},
	{raftPkg, "*Raft.compactLogs"},
	{raftPkg, "*Raft.compactLogsWithTrailing"},
	{raftPkg, "*Raft.removeOldLogs"},
	{raftPkg, "*Raft.restoreSnapshot"},
	{"github.com/raftsnap/testbed/cluster/snapstore", "*Store.Create"},
	{"github.com/raftsnap/testbed/cluster/snapstore", "*Store.Open"},
	{"github.com/raftsnap/testbed/cluster/snapstore", "*Store.List"},
	{"github.com/raftsnap/testbed/cluster/snapstore", "*Store.reap"},
	{"github.com/raftsnap/testbed/cluster", "*observedSnapshot.Persist"},
	{"github.com/raftsnap/testbed/cluster", "*FSM.Restore"},
	{"github.com/raftsnap/testbed/cluster", "RecoverFromSnapshots"},
	{"github.com/raftsnap/testbed/snapshot", "*FSMSnapshot.Persist"},
}

// coverRun names one recorded run; it is written beside its counters.
type coverRun struct {
	Seed     uint64 `json:"seed"`
	Scenario string `json:"scenario"`
	Engine   string `json:"engine"`
	Bug      string `json:"bug,omitempty"`
	dir      string
}

func (r coverRun) String() string {
	s := fmt.Sprintf("%s/%s seed %d", r.Scenario, r.Engine, r.Seed)
	if r.Bug != "" {
		s += " bug " + r.Bug
	}
	return s
}

// checkCoverBinary returns a usage error unless this binary can record
// per-run coverage: built with -cover and covermode atomic (ClearCounters
// needs it).
func checkCoverBinary() error {
	if err := coverage.WriteMeta(io.Discard); err != nil {
		return usagef("--cover needs a simrun built with coverage (make cover, or go build -cover -covermode=atomic -coverpkg=github.com/hashicorp/raft,./cluster/...,./snapshot/...,./cmd/simrun ./cmd/simrun): %v", err)
	}
	if err := coverage.ClearCounters(); err != nil {
		return usagef("--cover needs -covermode=atomic: %v", err)
	}
	return nil
}

// recordCoverage writes what the run of rep executed since the last call
// into its own directory under dir/runs, and clears the counters.
func recordCoverage(dir string, rep scenarios.Report) error {
	run := coverRun{Seed: rep.Seed, Scenario: rep.Scenario, Engine: rep.Engine, Bug: rep.Bug}
	name := fmt.Sprintf("%s.%s.%d", run.Scenario, run.Engine, run.Seed)
	if run.Bug != "" {
		name += "." + run.Bug
	}
	d := filepath.Join(dir, "runs", name)
	if err := os.RemoveAll(d); err != nil {
		return err
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(run)
	if err := os.WriteFile(filepath.Join(d, "run.json"), b, 0o644); err != nil {
		return err
	}
	if err := coverage.WriteMetaDir(d); err != nil {
		return err
	}
	if err := coverage.WriteCountersDir(d); err != nil {
		return err
	}
	return coverage.ClearCounters()
}

// coverRuns lists the runs recorded in dir in seed order (then scenario,
// engine and bug), the order "first reached" refers to.
func coverRuns(dir string) ([]coverRun, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "runs"))
	if err != nil {
		return nil, err
	}
	var runs []coverRun
	for _, e := range entries {
		d := filepath.Join(dir, "runs", e.Name())
		b, err := os.ReadFile(filepath.Join(d, "run.json"))
		if err != nil {
			continue // a run whose worker died before it finished writing
		}
		var r coverRun
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %v", d, err)
		}
		r.dir = d
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i], runs[j]
		if a.Seed != b.Seed {
			return a.Seed < b.Seed
		}
		if a.Scenario != b.Scenario {
			return a.Scenario < b.Scenario
		}
		if a.Engine != b.Engine {
			return a.Engine < b.Engine
		}
		return a.Bug < b.Bug
	})
	return runs, nil
}

// covdata runs `go tool covdata` with args and returns its output.
type covdata func(args ...string) ([]byte, error)

// goCovdata runs Go's covdata tool. It finds the tool's binary once
// (go tool -n) and runs it directly: the report calls it once per run, and
// going through the go command each time costs half a second.
func goCovdata(args ...string) ([]byte, error) {
	covdataOnce.Do(func() {
		covdataCmd = []string{"go", "tool", "covdata"}
		if out, err := exec.Command("go", "tool", "-n", "covdata").Output(); err == nil {
			if path := strings.TrimSpace(string(out)); path != "" {
				covdataCmd = []string{path}
			}
		}
	})
	var stderr bytes.Buffer
	cmd := exec.Command(covdataCmd[0], append(covdataCmd[1:], args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go tool covdata %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

var (
	covdataOnce sync.Once
	covdataCmd  []string
)

// funcCoverage parses `go tool covdata func` output: percent of statements
// per function, keyed by package and function, and the total line.
func funcCoverage(out []byte) (map[coveredFunc]float64, float64) {
	m := map[coveredFunc]float64{}
	total := -1.0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(fields[len(fields)-1], "%"), 64)
		if err != nil {
			continue
		}
		if fields[0] == "total" {
			total = pct
			continue
		}
		file, _, _ := strings.Cut(fields[0], ":")
		m[coveredFunc{Pkg: filepath.Dir(file), Func: fields[1]}] = pct
	}
	return m, total
}

// packagePercents parses `go tool covdata percent` output.
func packagePercents(out []byte) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// <package> coverage: 42.6% of statements
		if len(fields) >= 3 && fields[1] == "coverage:" {
			if pct, err := strconv.ParseFloat(strings.TrimSuffix(fields[2], "%"), 64); err == nil {
				m[fields[0]] = pct
			}
		}
	}
	return m
}

// coverTable is the report over a coverage directory.
type coverTable struct {
	Runs     int                `json:"runs"`
	Packages map[string]float64 `json:"packages"` // percent of statements
	Funcs    []coverTableRow    `json:"functions"`
	Corpus   []string           `json:"corpus"` // the first-reaching runs, in seed order
	pct      map[coveredFunc]float64
	first    map[coveredFunc]coverRun
}

type coverTableRow struct {
	Func         string  `json:"function"`
	Percent      float64 `json:"percent"`
	FirstReached string  `json:"first_reached,omitempty"`
}

// buildCoverTable merges every run in dir (into dir/merged and
// dir/coverage.txt) and finds each function's first-reaching run.
func buildCoverTable(dir string, tool covdata) (coverTable, error) {
	var t coverTable
	runs, err := coverRuns(dir)
	if err != nil {
		return t, err
	}
	if len(runs) == 0 {
		return t, fmt.Errorf("no runs recorded in %s/runs", dir)
	}
	t.Runs = len(runs)
	merged := filepath.Join(dir, "merged")
	if err := os.RemoveAll(merged); err != nil {
		return t, err
	}
	if err := os.MkdirAll(merged, 0o755); err != nil {
		return t, err
	}
	dirs := make([]string, len(runs))
	for i, r := range runs {
		dirs[i] = r.dir
	}
	pkgs := "-pkg=" + strings.Join(coverPackages, ",")
	if _, err := tool("merge", "-i="+strings.Join(dirs, ","), "-o="+merged); err != nil {
		return t, err
	}
	if _, err := tool("textfmt", "-i="+merged, "-o="+filepath.Join(dir, "coverage.txt")); err != nil {
		return t, err
	}
	out, err := tool("percent", "-i="+merged, pkgs)
	if err != nil {
		return t, err
	}
	t.Packages = packagePercents(out)
	out, err = tool("func", "-i="+merged, pkgs)
	if err != nil {
		return t, err
	}
	t.pct, _ = funcCoverage(out)
	// The first run that reached each function the merged profile reached:
	// one covdata call per run, in seed order, until none is left.
	t.first = map[coveredFunc]coverRun{}
	left := 0
	for _, f := range snapshotPath {
		if t.pct[f] > 0 {
			left++
		}
	}
	for _, r := range runs {
		if left == 0 {
			break
		}
		out, err := tool("func", "-i="+r.dir, pkgs)
		if err != nil {
			return t, err
		}
		pct, _ := funcCoverage(out)
		for _, f := range snapshotPath {
			if _, seen := t.first[f]; !seen && pct[f] > 0 {
				t.first[f] = r
				left--
			}
		}
	}
	corpus := map[string]bool{}
	for _, f := range snapshotPath {
		row := coverTableRow{Func: f.String(), Percent: t.pct[f]}
		if r, ok := t.first[f]; ok {
			row.FirstReached = r.String()
			corpus[r.String()] = true
		}
		t.Funcs = append(t.Funcs, row)
	}
	for _, r := range runs {
		if corpus[r.String()] {
			t.Corpus = append(t.Corpus, r.String())
			delete(corpus, r.String())
		}
	}
	return t, nil
}

// print writes the table as text: the snapshot-path functions, then the
// packages, then the corpus of first-reaching runs.
func (t coverTable) print(w io.Writer, dir string) {
	fmt.Fprintf(w, "coverage of %d runs in %s (merged: %s, %s)\n", t.Runs, dir, filepath.Join(dir, "merged"), filepath.Join(dir, "coverage.txt"))
	fmt.Fprintf(w, "%-46s %8s  %s\n", "function", "stmts", "first reached by")
	for _, r := range t.Funcs {
		first := r.FirstReached
		if first == "" {
			first = "NOT REACHED"
		}
		fmt.Fprintf(w, "%-46s %7.1f%%  %s\n", r.Func, r.Percent, first)
	}
	for _, p := range coverPackages {
		if pct, ok := t.Packages[p]; ok {
			fmt.Fprintf(w, "%-46s %7.1f%%\n", "total "+strings.TrimPrefix(strings.TrimPrefix(p, "github.com/raftsnap/testbed/"), "github.com/"), pct)
		}
	}
	fmt.Fprintf(w, "corpus: %d runs reach every function reached: %s\n", len(t.Corpus), strings.Join(t.Corpus, "; "))
}

// coverReport prints the table over dir; it returns simrun's exit status.
func coverReport(dir string, stdout, stderr io.Writer, asJSON bool) int {
	t, err := buildCoverTable(dir, goCovdata)
	if err != nil {
		fmt.Fprintf(stderr, "simrun: coverage report: %v\n", err)
		if errors.Is(err, os.ErrNotExist) {
			return 2
		}
		return 1
	}
	if asJSON {
		b, _ := json.Marshal(t)
		fmt.Fprintln(stdout, string(b))
	} else {
		t.print(stdout, dir)
	}
	return 0
}
