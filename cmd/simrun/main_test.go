package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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

func TestExcludeKnownSkipsListedSeedsByName(t *testing.T) {
	var known uint64
	for _, k := range scenarios.KnownIssues {
		if k.Scenario == "snapshot-install" {
			known = k.Seed
			break
		}
	}
	if known < 2 {
		t.Fatal("test premise: a known upstream seed (above 1) of snapshot-install")
	}
	c, err := parse([]string{fmt.Sprintf("--seeds=%d..%d", known-1, known+1), "--exclude-known"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.seeds {
		if s == known {
			t.Fatalf("seeds %v include known seed %d", c.seeds, known)
		}
	}
	for _, s := range []uint64{known - 1, known + 1} {
		if _, isKnown := scenarios.Known("snapshot-install", s); !isKnown && !slices.Contains(c.seeds, s) {
			t.Fatalf("seeds %v lack seed %d, which is not known", c.seeds, s)
		}
	}
}
