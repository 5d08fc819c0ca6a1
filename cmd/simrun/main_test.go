package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/scenarios"
)

func TestBadUsageExitsWithTwoAndNamesTheProblem(t *testing.T) {
	badSchedule := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(badSchedule, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args []string
		want string
	}{
		"unknown scenario":     {[]string{"--scenario=nope"}, `unknown scenario "nope"`},
		"malformed seed range": {[]string{"--seeds=9..x"}, "--seeds"},
		"backwards seed range": {[]string{"--seeds=9..3"}, "A <= B"},
		"bad shard":            {[]string{"--shard=3/3"}, "--shard"},
		"shard not a fraction": {[]string{"--shard=half"}, "--shard"},
		"unknown engine":       {[]string{"--engine=rocksdb"}, `unknown engine "rocksdb"`},
		"too few nodes":        {[]string{"--nodes=1"}, "--nodes=1"},
		"unknown flag":         {[]string{"--frobnicate"}, "frobnicate"},
		"stray argument":       {[]string{"extra"}, "unexpected arguments"},
		"unreadable schedule":  {[]string{"--schedule=" + filepath.Join(t.TempDir(), "missing.json")}, "--schedule"},
		"malformed schedule":   {[]string{"--schedule=" + badSchedule}, "malformed"},
		"trace of many seeds":  {[]string{"--seeds=1..2", "--trace=x"}, "one seed"},
		"no jobs":              {[]string{"--jobs=0"}, "--jobs"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(c.args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("stderr %q does not name %q", stderr.String(), c.want)
			}
		})
	}
}

func TestShardsPartitionTheSeeds(t *testing.T) {
	seen := map[uint64]int{}
	for i := range 3 {
		c, err := parse([]string{"--seeds=1..10", "--shard=" + string(rune('0'+i)) + "/3"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.seeds {
			seen[s]++
		}
	}
	for s := uint64(1); s <= 10; s++ {
		if seen[s] != 1 {
			t.Fatalf("seed %d in %d shards, want exactly 1", s, seen[s])
		}
	}
}

func TestListScenariosNamesTheDefault(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"--list-scenarios"}, &stdout, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout.String(), "snapshot-install") {
		t.Fatalf("list lacks snapshot-install: %q", stdout.String())
	}
}

// With --exclude-known a seed that fails only with a known upstream bug is
// reported as known and does not fail the sweep; any other failure does,
// and the summary groups failures by known bug and by signature.
func TestExcludeKnownPassesOnlyKnownFailures(t *testing.T) {
	ok := scenarios.Report{Seed: 1, OK: true}
	livelock := scenarios.Report{Seed: 74, Violations: []string{"liveness: n4 applied 497, leader committed 507, 30s after healing"},
		Known: scenarios.RaftSnapshotLivelock, Signature: "liveness: _ applied _, leader committed _, _s after healing"}
	livelock2 := livelock
	livelock2.Seed = 120
	lagging := scenarios.Report{Seed: 9, Violations: []string{"liveness: n1 applied 5, leader committed 7, 30s after healing"},
		Signature: "liveness: _ applied _, leader committed _, _s after healing"}
	for _, c := range []struct {
		name         string
		excludeKnown bool
		reports      []scenarios.Report
		failed       int
		summary      []string
	}{
		{"known only, excluded", true, []scenarios.Report{ok, livelock, livelock2}, 0, []string{
			"  2 seeds, known upstream bug hashicorp/raft#697: 74 120",
			"3 seeds: 1 passed, 0 failed, 2 known upstream (--exclude-known)"}},
		{"known and new, excluded", true, []scenarios.Report{livelock, lagging, ok}, 1, []string{
			"  1 seed, known upstream bug hashicorp/raft#697: 74",
			"  1 seed, new failure: liveness: _ applied _, leader committed _, _s after healing: 9",
			"3 seeds: 1 passed, 1 failed, 1 known upstream (--exclude-known)"}},
		{"known, not excluded", false, []scenarios.Report{livelock, ok}, 1, []string{
			"  1 seed, known upstream bug hashicorp/raft#697: 74",
			"2 seeds: 1 passed, 1 failed (1 of them known upstream bugs)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			r := &reporter{stdout: &stdout, stderr: &stderr, total: len(c.reports), excludeKnown: c.excludeKnown}
			for _, rep := range c.reports {
				r.report(rep)
			}
			r.finish()
			if r.failed != c.failed {
				t.Errorf("%d seeds fail the sweep, want %d", r.failed, c.failed)
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			if got := lines[len(lines)-len(c.summary):]; !slices.Equal(got, c.summary) {
				t.Errorf("summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.summary, "\n"))
			}
		})
	}
}

// Every seed's JSON object carries "known" and "signature" (simrun merge
// reads them), empty for a seed that passed.
func TestJSONCarriesKnownAndSignature(t *testing.T) {
	for _, rep := range []scenarios.Report{{Seed: 1, OK: true}, {Seed: 74, Violations: []string{"x"}, Known: scenarios.RaftSnapshotLivelock, Signature: "x"}} {
		var stdout bytes.Buffer
		r := &reporter{stdout: &stdout, stderr: &bytes.Buffer{}, json: true, total: 1}
		r.report(rep)
		var got map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got["known"] != rep.Known || got["signature"] != rep.Signature {
			t.Errorf("seed %d: known=%v signature=%v, want %q %q", rep.Seed, got["known"], got["signature"], rep.Known, rep.Signature)
		}
	}
}

// A worker that dies of a panic leaves its panic line and the stack after
// it, which the panic fingerprint reads.
func TestTailWriterKeepsThePanicAndItsStack(t *testing.T) {
	var passed bytes.Buffer
	tw := &tailWriter{w: &passed}
	out := "simrun: some line\npanic: log not found\n\ngoroutine 76 [running, synctest bubble 1]:\n" +
		"github.com/hashicorp/raft.(*Raft).processLogs(0x272c3949cb08, 0x85, 0x0)\n\t/src/raft/raft.go:1365 +0x8a7\npanic: a second one\n"
	for _, chunk := range []string{out[:30], out[30:70], out[70:]} {
		if _, err := tw.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if passed.String() != out {
		t.Errorf("stderr not passed through: %q", passed.String())
	}
	if tw.panicLine() != "panic: log not found" {
		t.Errorf("panic line %q", tw.panicLine())
	}
	rep := scenarios.Report{Violations: []string{"the simulation process crashed running this seed: " + tw.panicLine()}}
	if got := scenarios.Classify(rep, nil, tw.panicText()); got != scenarios.RaftLogNotFoundPanic {
		t.Errorf("classified %q from %q", got, tw.panicText())
	}
	if (&tailWriter{}).panicText() != "" {
		t.Error("panic text without a panic")
	}
}

// A differential run is known only when each engine's run is explained by
// the same bug on its own trace and the runs do not differ: snapshot-install
// 74 livelocks alike on bbolt and on Pebble.
func TestDifferentialOfAKnownSeedIsKnown(t *testing.T) {
	c := config{opts: scenarios.Options{Scenario: "snapshot-install", Engine: scenarios.EnginePebble, SnapshotStore: cluster.StoreCopy, NoPipelining: true}, differential: true}
	rep := runSeed(t, c, 74)
	if rep.OK || rep.Known != scenarios.RaftSnapshotLivelock {
		t.Fatalf("known=%q, want %q; violations: %v", rep.Known, scenarios.RaftSnapshotLivelock, rep.Violations)
	}
	if !strings.HasPrefix(rep.Signature, "bbolt: liveness: ") {
		t.Errorf("signature %q", rep.Signature)
	}
}

func TestReproOfAReplayedScheduleNamesTheSchedule(t *testing.T) {
	path := filepath.Join("..", "..", "testdata", "repro", "raft-697.json")
	c, err := parse([]string{"--seed=74", "--schedule=" + path}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := repro(c, 74); !strings.HasSuffix(got, " --schedule="+path) {
		t.Fatalf("repro %q does not replay %s", got, path)
	}
	if got := plannedSchedule(c.opts); got.String() != c.opts.Schedule.String() {
		t.Fatalf("planned schedule is not the replayed one:\n%s\nwant\n%s", got, c.opts.Schedule)
	}
}
