package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCoverNeedsACoverageBuild(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("this test binary is itself built with coverage")
	}
	var stderr bytes.Buffer
	if code := run([]string{"--cover=" + t.TempDir()}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "make cover") {
		t.Fatalf("stderr %q does not say how to build for coverage", stderr.String())
	}
}

func TestCoverReportOfAMissingDirectoryIsAUsageError(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--cover-report=" + filepath.Join(t.TempDir(), "none")}, &bytes.Buffer{}, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2 (stderr %q)", code, stderr.String())
	}
}

// fakeCovdata answers `covdata func` per run directory from a table of
// which functions each run entered, as the real tool prints them.
func fakeCovdata(reached map[string][]coveredFunc) covdata {
	funcLines := func(fs []coveredFunc) []byte {
		var b bytes.Buffer
		for _, f := range snapshotPath {
			pct := 0.0
			for _, g := range fs {
				if g == f {
					pct = 50
				}
			}
			fmt.Fprintf(&b, "%s/file.go:10:\t\t%s\t\t%.1f%%\n", f.Pkg, f.Func, pct)
		}
		b.WriteString("total\t\t(statements)\t\t12.5%\n")
		return b.Bytes()
	}
	return func(args ...string) ([]byte, error) {
		var in string
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "-i="); ok {
				in = v
			}
		}
		switch args[0] {
		case "merge", "textfmt":
			return nil, nil
		case "percent":
			return []byte("\tgithub.com/hashicorp/raft\t\tcoverage: 61.5% of statements\n"), nil
		case "func":
			if strings.HasSuffix(in, "merged") {
				var all []coveredFunc
				for _, fs := range reached {
					all = append(all, fs...)
				}
				return funcLines(all), nil
			}
			return funcLines(reached[filepath.Base(in)]), nil
		}
		return nil, fmt.Errorf("unexpected covdata %v", args)
	}
}

func TestCoverTableNamesTheFirstSeedToReachEachFunction(t *testing.T) {
	dir := t.TempDir()
	install, restore, transfer := snapshotPath[13], snapshotPath[1], snapshotPath[4]
	// Directory names sort differently from seeds: seed 10's name sorts
	// before seed 2's, and the first reach is about seeds.
	runs := map[string]coverRun{
		"swarm.pebble.10": {Seed: 10, Scenario: "swarm", Engine: "pebble"},
		"swarm.pebble.2":  {Seed: 2, Scenario: "swarm", Engine: "pebble"},
		"swarm.bbolt.2":   {Seed: 2, Scenario: "swarm", Engine: "bbolt"},
		"swarm.pebble.3":  {Seed: 3, Scenario: "swarm", Engine: "pebble"},
	}
	for name, r := range runs {
		d := filepath.Join(dir, "runs", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r)
		if err := os.WriteFile(filepath.Join(d, "run.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tool := fakeCovdata(map[string][]coveredFunc{
		"swarm.pebble.10": {install, restore, transfer},
		"swarm.pebble.2":  {install},
		"swarm.bbolt.2":   {install},
		"swarm.pebble.3":  {restore},
	})
	table, err := buildCoverTable(dir, tool)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]string{}
	for _, r := range table.Funcs {
		first[r.Func] = r.FirstReached
	}
	want := map[coveredFunc]string{
		install:          "swarm/bbolt seed 2", // seed 2 on both engines: bbolt sorts first
		restore:          "swarm/pebble seed 3",
		transfer:         "swarm/pebble seed 10",
		snapshotPath[3]:  "", // reached by no run
		snapshotPath[20]: "",
	}
	for f, w := range want {
		if first[f.String()] != w {
			t.Errorf("%s first reached by %q, want %q", f, first[f.String()], w)
		}
	}
	if got := table.Packages["github.com/hashicorp/raft"]; got != 61.5 {
		t.Errorf("raft total %.1f%%, want 61.5%%", got)
	}
	if want := []string{"swarm/bbolt seed 2", "swarm/pebble seed 3", "swarm/pebble seed 10"}; strings.Join(table.Corpus, ";") != strings.Join(want, ";") {
		t.Errorf("corpus %q, want %q", table.Corpus, want)
	}
}

// TestCoverSweepReachesInstallSnapshot builds simrun with coverage, runs a
// small sweep in two workers and reads the table: snapshot-install makes a
// node catch up through InstallSnapshot at seed 1, so the table must show
// raft's installSnapshot reached there, each seed's coverage in its own
// directory.
func TestCoverSweepReachesInstallSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds simrun with coverage")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "simrun-cover")
	build := exec.Command("go", "build", "-cover", "-covermode=atomic",
		"-coverpkg=github.com/hashicorp/raft,github.com/raftsnap/testbed/cluster/...,github.com/raftsnap/testbed/snapshot/...,github.com/raftsnap/testbed/cmd/simrun",
		"-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -cover: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "cover")
	cmd := exec.Command(bin, "--seeds=1..2", "--jobs=2", "--cover="+dir, "--check-determinism")
	cmd.Env = append(os.Environ(), "GOCOVERDIR="+tmp)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("simrun --cover: %v\n%s", err, out)
	}
	for _, seed := range []int{1, 2} {
		if _, err := os.Stat(filepath.Join(dir, "runs", fmt.Sprintf("snapshot-install.pebble.%d", seed), "run.json")); err != nil {
			t.Errorf("seed %d has no coverage directory: %v", seed, err)
		}
	}
	report := exec.Command(bin, "--cover-report="+dir, "--json")
	report.Env = cmd.Env
	js, err := report.Output()
	if err != nil {
		t.Fatalf("simrun --cover-report: %v", err)
	}
	var table coverTable
	if err := json.Unmarshal(js, &table); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	if table.Runs != 2 {
		t.Errorf("%d runs in the table, want 2", table.Runs)
	}
	found := false
	for _, r := range table.Funcs {
		if r.Func == "hashicorp/raft Raft.installSnapshot" {
			found = true
			if r.Percent <= 0 || r.FirstReached != "snapshot-install/pebble seed 1" {
				t.Errorf("installSnapshot: %.1f%% first reached by %q, want > 0 by seed 1", r.Percent, r.FirstReached)
			}
		}
	}
	if !found {
		t.Errorf("the table lacks installSnapshot: %s", js)
	}
	if pct := table.Packages["github.com/hashicorp/raft"]; pct <= 10 || pct >= 100 {
		t.Errorf("hashicorp/raft coverage %.1f%%, want a measured share", pct)
	}
	if !strings.Contains(string(out), "Raft.installSnapshot") {
		t.Errorf("--cover printed no table:\n%s", out)
	}
}
