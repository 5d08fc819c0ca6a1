package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestShardAutoReadsTheBatchSystem(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	cases := []struct {
		name  string
		count int
		env   func(string) string
		want  string // "" means a usage error
	}{
		{"kubernetes indexed job", 8, env("JOB_COMPLETION_INDEX", "3"), "3/8"},
		{"count from the environment", 0, env("JOB_COMPLETION_INDEX", "0", "SHARD_COUNT", "4"), "0/4"},
		{"a CI matrix", 0, env("SHARD_INDEX", "2", "SHARD_COUNT", "3"), "2/3"},
		{"flag beats environment count", 5, env("SHARD_INDEX", "4", "SHARD_COUNT", "3"), "4/5"},
		{"both indexes agree", 2, env("JOB_COMPLETION_INDEX", "1", "SHARD_INDEX", "1"), "1/2"},
		{"indexes disagree", 2, env("JOB_COMPLETION_INDEX", "1", "SHARD_INDEX", "0"), ""},
		{"no index", 4, env(), ""},
		{"no count", 0, env("JOB_COMPLETION_INDEX", "1"), ""},
		{"index out of range", 4, env("JOB_COMPLETION_INDEX", "4"), ""},
		{"index not a number", 4, env("SHARD_INDEX", "x"), ""},
		{"count not a number", 0, env("SHARD_INDEX", "0", "SHARD_COUNT", "many"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := autoShard(c.count, c.env)
			if c.want == "" {
				var ue usageError
				if !errors.As(err, &ue) {
					t.Fatalf("got %q, %v; want a usage error", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestShardAutoWithoutAnIndexIsBadUsage(t *testing.T) {
	t.Setenv("JOB_COMPLETION_INDEX", "")
	t.Setenv("SHARD_INDEX", "")
	var stderr bytes.Buffer
	if code := run([]string{"--seeds=1..4", "--shard=auto", "--shard-count=2"}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2 (%s)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "JOB_COMPLETION_INDEX") {
		t.Fatalf("stderr %q does not say what to set", stderr.String())
	}
}

func writeLines(t *testing.T, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMergeGroupsFailuresAndCountsEachRunOnce(t *testing.T) {
	a := writeLines(t, "a.jsonl",
		`{"seed":3,"scenario":"s","engine":"pebble","ok":false,"virtual_seconds":40,"wall_seconds":2,"trace_hash":"c3","violations":["liveness: stuck"],"repro":"r3","known":"raft-697","signature":"liveness: livelock"}`,
		`{"seed":1,"scenario":"s","engine":"pebble","ok":true,"virtual_seconds":40,"wall_seconds":0.5,"trace_hash":"a1","violations":null,"repro":"r1","known":"","signature":""}`,
		`{"summary":true,"bug":"x"}`)
	b := writeLines(t, "b.jsonl",
		`{"seed":2,"scenario":"s","engine":"pebble","ok":false,"virtual_seconds":40,"wall_seconds":1,"trace_hash":"b2","violations":["snapshot-integrity: bad"],"repro":"r2","known":"","signature":"snapshot-integrity: state differs"}`,
		`{"seed":1,"scenario":"s","engine":"pebble","ok":true,"virtual_seconds":40,"wall_seconds":0.6,"trace_hash":"a1","violations":null,"repro":"r1","known":"","signature":""}`,
		`{"seed":4,"scenario":"s","engine":"pebble","ok":false,"virtual_seconds":40,"wall_seconds":1,"trace_hash":"d4","violations":["liveness: stuck again"],"repro":"r4","known":"raft-697","signature":"liveness: livelock","extra":"kept"}`)
	var out, stderr bytes.Buffer
	if code := run([]string{"merge", "--json", a, b}, &out, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1 (runs failed); %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 4 runs and a summary:\n%s", len(lines), out.String())
	}
	for i, want := range []string{`"seed":1`, `"seed":2`, `"seed":3`, `"seed":4`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %s, want %s (seed order)", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[3], `"extra":"kept"`) {
		t.Errorf("fields merge does not know were dropped: %s", lines[3])
	}
	var sum MergeSummary
	if err := json.Unmarshal([]byte(lines[4]), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Runs != 4 || sum.Passed != 1 || sum.Failed != 3 || sum.FailedKnown != 2 || sum.Duplicates != 1 || len(sum.Conflicts) != 0 {
		t.Errorf("summary %+v", sum)
	}
	if len(sum.ByKnown) != 2 || sum.ByKnown[0].Name != "raft-697" || sum.ByKnown[0].Count != 2 {
		t.Errorf("by known %+v", sum.ByKnown)
	}
	if len(sum.BySignature) != 2 || sum.BySignature[0].Name != "liveness: livelock" || sum.BySignature[1].Count != 1 {
		t.Errorf("by signature %+v", sum.BySignature)
	}
	if len(sum.Repros) != 3 || sum.Repros[0] != "r2" {
		t.Errorf("repros %v, want the unknown failure's first", sum.Repros)
	}
	if sum.Slowest[0].WallSeconds != 2 {
		t.Errorf("slowest %+v", sum.Slowest)
	}

	out.Reset()
	html := filepath.Join(t.TempDir(), "merge.html")
	run([]string{"merge", "--html=" + html, a, b}, &out, &stderr)
	if !strings.Contains(out.String(), "4 runs, 1 passed, 3 failed (2 of them known upstream bugs)") || !strings.Contains(out.String(), "raft-697") {
		t.Errorf("text summary:\n%s", out.String())
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("Failures by known upstream bug")) || !bytes.Contains(page, []byte("snapshot-integrity: state differs")) {
		t.Errorf("HTML report (%v):\n%.500s", err, page)
	}
}

func TestMergeFlagsAConflictAndRejectsBadInput(t *testing.T) {
	a := writeLines(t, "a.jsonl", `{"seed":1,"scenario":"s","engine":"pebble","ok":true,"trace_hash":"a1"}`)
	b := writeLines(t, "b.jsonl", `{"seed":1,"scenario":"s","engine":"pebble","ok":true,"trace_hash":"ff"}`)
	var out bytes.Buffer
	run([]string{"merge", a, b}, &out, &bytes.Buffer{})
	if !strings.Contains(out.String(), "CONFLICT: s/pebble seed 1") {
		t.Errorf("a run with two trace hashes is not flagged:\n%s", out.String())
	}
	bad := writeLines(t, "bad.jsonl", `{"seed":1,"scenario":"s","engine":"pebble","ok":true}`, `seed=2 scenario=s ok`)
	var stderr bytes.Buffer
	if code := run([]string{"merge", bad}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "bad.jsonl:2") {
		t.Errorf("exit %d, stderr %q; want 2 naming bad.jsonl:2", code, stderr.String())
	}
	if code := run([]string{"merge"}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Errorf("merge of no files: exit %d, want 2", code)
	}
}

// A sweep run as four shards of a batch system (Kubernetes' index in
// JOB_COMPLETION_INDEX) merges into the same runs as the sweep run whole,
// seed for seed. The range holds a known upstream seed (74, without
// pipelining, as the known-bug cases run), so the merge has a failure to
// carry.
func TestMergeOfFourShardsEqualsTheUnshardedSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 2x8 seeds")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "simrun")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sweep := func(out string, env ...string) {
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// Seed 74 hits hashicorp/raft#697 without pipelining on the copying store (KnownIssues).
		cmd := exec.Command(exe, "--seeds=70..77", "--json", "--jobs=2", "--no-pipelining", "--snapshot-store=copy")
		if len(env) > 0 {
			cmd.Args = append(cmd.Args, "--shard=auto", "--shard-count=4")
		}
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout = f
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err = cmd.Run()
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
		}
	}
	whole := filepath.Join(dir, "whole.jsonl")
	sweep(whole)
	var shards []string
	for i := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("shard-%d.jsonl", i))
		sweep(p, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
		shards = append(shards, p)
	}
	var merged bytes.Buffer
	if code := run(append([]string{"merge", "--json"}, shards...), &merged, &bytes.Buffer{}); code != 1 {
		t.Fatalf("merge exit %d, want 1 (seed 74 is a known upstream failure)", code)
	}
	wholeRuns, _, err := mergeFiles([]string{whole})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(merged.String()), "\n")
	if len(lines) != len(wholeRuns)+1 || len(wholeRuns) != 8 {
		t.Fatalf("merge printed %d lines for %d runs of the whole sweep", len(lines), len(wholeRuns))
	}
	failed := 0
	for i, r := range wholeRuns {
		got, want := withoutWallTime(t, []byte(lines[i])), withoutWallTime(t, r.Raw)
		if got != want {
			t.Errorf("seed %d differs:\nsharded %s\nwhole   %s", r.Seed, got, want)
		}
		if !r.OK {
			failed++
		}
	}
	if failed == 0 {
		t.Error("test premise: the range holds a failing seed")
	}
}

// withoutWallTime is a run's object without the one field that differs run
// to run.
func withoutWallTime(t *testing.T, line []byte) string {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	delete(m, "wall_seconds")
	b, _ := json.Marshal(m)
	return string(b)
}
