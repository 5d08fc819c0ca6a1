//go:debug randseednop=0

// Simrun runs the testbed's deterministic simulations: one seed, a range of
// seeds, or a shard of a range, of a named scenario, and reports each run.
//
// Usage:
//
//	simrun [flags]
//
// Examples:
//
//	simrun --seed=1 --scenario=snapshot-install
//	simrun --seeds=1..200 --engine=bbolt --jobs=2
//	simrun --seeds=1..1000 --shard=3/8 --json
//	simrun --seeds=1..100 --check-determinism
//	JOB_COMPLETION_INDEX=3 simrun --seeds=1..1000 --shard=auto --shard-count=8 --json >shard-3.jsonl
//	simrun merge [--json] [--html=FILE] shard-*.jsonl
//
// Exit status: 0 if every seed passed, 1 if a seed failed a check, 2 for bad
// usage or input.
//
// Each run lives in a testing/synctest bubble (virtual time), which needs a
// *testing.T: simrun runs its seeds inside testing.Main with its own flags
// parsed first, so none of the -test.* flags show.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/cluster"
	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/scenarios"
)

// config is the parsed command line.
type config struct {
	opts             scenarios.Options
	seeds            []uint64
	jobs             int
	json             bool
	checkDeterminism bool
	listScenarios    bool
	saveSchedule     string
	worker           bool
	excludeKnown     bool
	bug              *canaries.Bug
	listBugs         bool
	listKnown        bool
	schedulePath     string
	scenarioSet      bool
	engineSet        bool
	storeSet         bool
	shrink           bool
	shrinkRuns       int
	shrinkOut        string
	differential     bool
	outDir           string
	seedTimeout      time.Duration
	durationSet      bool
	nodesSet         bool
	coverDir         string
	coverReport      string
	timelinePath     string
}

// usageError is a bad flag or input: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("simrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	seed := fs.Uint64("seed", 1, "run this one seed")
	seedRange := fs.String("seeds", "", "run a range of seeds, `A..B` inclusive (overrides --seed)")
	shard := fs.String("shard", "", "run only shard `i/n` of the seeds: every n-th seed, starting with the i-th (0 <= i < n); auto reads i from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SHARD_INDEX, n from --shard-count or SHARD_COUNT")
	shardCount := fs.Int("shard-count", 0, "with --shard=auto, the number of shards `N` (default: $SHARD_COUNT)")
	fs.StringVar(&c.opts.Scenario, "scenario", "snapshot-install", "the scenario to run (see --list-scenarios)")
	fs.StringVar(&c.opts.Engine, "engine", "pebble", "engine of every node: bbolt, pebble or mixed")
	fs.StringVar(&c.opts.SnapshotStore, "snapshot-store", cluster.StoreZeroCopy, "snapshot store of every node: zero-copy (a local snapshot is a durable reference to the engine, streamed from a view only when sent), copy (every local snapshot streams the state into a file), checkpoint (a local snapshot is a Pebble checkpoint, streamed from it when sent, restored locally when the engine is behind it; bbolt and custom engines, which cannot checkpoint, run zero-copy) or mixed (zero-copy on even nodes, copy on odd)")
	fs.IntVar(&c.opts.Nodes, "nodes", 0, "initial cluster size (default: the scenario's)")
	fs.DurationVar(&c.opts.Duration, "duration", 0, "virtual length of the safety phase (default: the scenario's)")
	fs.StringVar(&c.outDir, "out", "", "write each failing seed's artifacts into `DIR`/<scenario>-<engine>-seed-<N>: report.html (violations, fault schedule, timeline, repro and shrink commands; opens offline), timeline.json, and porcupine's visualization of a non-linearizable history")
	fs.StringVar(&c.opts.TracePath, "trace", "", "write the run's trace to `FILE` as JSON lines (one seed only)")
	fs.StringVar(&c.timelinePath, "timeline", "", "write the run's timeline to `FILE` in the Chrome trace-event format (open it in ui.perfetto.dev or chrome://tracing; one seed only)")
	schedule := fs.String("schedule", "", "replay the fault schedule saved in `FILE` instead of generating one")
	fs.StringVar(&c.saveSchedule, "save-schedule", "", "save the run's fault schedule to `FILE` (one seed only)")
	fs.IntVar(&c.jobs, "jobs", 1, "run seeds in `K` worker processes")
	fs.DurationVar(&c.seedTimeout, "seed-timeout", 5*time.Minute, "a seed that runs longer than this in wall time is reported as hung and its worker process replaced")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per seed on standard output")
	fs.BoolVar(&c.checkDeterminism, "check-determinism", false, "run each seed twice and fail it if the trace hashes differ")
	fs.BoolVar(&c.listScenarios, "list-scenarios", false, "list the scenarios and exit")
	bugName := fs.String("bug", "", "plant the bug `NAME` (see --list-bugs) and hunt it: stop at the first seed whose checkers catch it; exit 0 if caught, 1 if not")
	fs.BoolVar(&c.listBugs, "list-bugs", false, "list the planted bugs (canaries) and exit")
	fs.BoolVar(&c.listKnown, "list-known", false, "list the known upstream bugs and their fingerprints and exit")
	fs.BoolVar(&c.shrink, "shrink", false, "when a seed fails, search for a smaller fault schedule and safety phase that fail the same way, and print its repro")
	fs.IntVar(&c.shrinkRuns, "shrink-runs", 150, "at most `N` runs per shrink")
	fs.StringVar(&c.shrinkOut, "shrink-dir", ".", "write shrunk schedules into `DIR`")
	fs.BoolVar(&c.differential, "differential", false, "run each seed on bbolt and on Pebble and fail it if the engine-neutral traces or final states differ")
	fs.BoolVar(&c.excludeKnown, "exclude-known", false, "a seed whose failure a known upstream bug's fingerprint explains (README, Known upstream bugs) is reported as known and does not fail the run; every seed is still run and classified")
	fs.BoolVar(&c.worker, "worker", false, "internal: run as a worker of --jobs")
	fs.BoolVar(&c.opts.NoPipelining, "no-pipelining", false, "replicate one AppendEntries at a time (default: pipelined, as over raft's NetworkTransport); the known-bug regression seeds were found this way")
	fs.StringVar(&c.coverDir, "cover", "", "record the Go coverage of each run in `DIR`/runs (needs a simrun built by make cover) and print the coverage table of every run in DIR")
	fs.StringVar(&c.coverReport, "cover-report", "", "print the coverage table of the runs recorded in `DIR` and exit")
	seedList := fs.String("seed-list", "", "run these comma-separated seeds (overrides --seed and --seeds)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: simrun [flags]\n\nRuns deterministic simulations of hashicorp/raft clusters and judges each run.\nExit status: 0 all seeds passed, 1 a seed failed, 2 bad usage.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return c, usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	fs.Visit(func(f *flag.Flag) {
		c.durationSet = c.durationSet || f.Name == "duration"
		c.nodesSet = c.nodesSet || f.Name == "nodes"
		c.scenarioSet = c.scenarioSet || f.Name == "scenario"
		c.engineSet = c.engineSet || f.Name == "engine"
		c.storeSet = c.storeSet || f.Name == "snapshot-store"
	})
	if c.listScenarios || c.listBugs || c.listKnown || c.coverReport != "" {
		return c, nil
	}
	if c.coverDir != "" {
		if err := checkCoverBinary(); err != nil {
			return c, err
		}
	}
	if *bugName != "" {
		b, ok := canaries.Lookup(*bugName)
		if !ok {
			var names []string
			for _, b := range canaries.All() {
				names = append(names, b.Name)
			}
			return c, usagef("--bug=%q: unknown bug (known: %s)", *bugName, strings.Join(names, ", "))
		}
		c.bug = &b
		if !c.scenarioSet {
			c.opts.Scenario = b.Scenario
		}
		if !c.engineSet {
			c.opts.Engine = b.Engine
		}
		if !c.storeSet && b.SnapshotStore != "" {
			c.opts.SnapshotStore = b.SnapshotStore
		}
		if c.differential || c.shrink && c.jobs > 1 {
			return c, usagef("--bug cannot be combined with --differential or with --shrink and --jobs")
		}
	}
	c.opts.Seed = *seed
	c.seeds = []uint64{*seed}
	if *seedRange != "" {
		seeds, err := parseRange(*seedRange)
		if err != nil {
			return c, err
		}
		c.seeds = seeds
	}
	if *seedList != "" {
		c.seeds = nil
		for _, f := range strings.Split(*seedList, ",") {
			s, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return c, usagef("--seed-list: %q is not a seed", f)
			}
			c.seeds = append(c.seeds, s)
		}
	}
	if *shard != "" {
		spec := *shard
		if spec == "auto" {
			var err error
			if spec, err = autoShard(*shardCount, os.Getenv); err != nil {
				return c, err
			}
			fmt.Fprintf(stderr, "simrun: --shard=auto: shard %s\n", spec)
		}
		i, n, err := parseShard(spec)
		if err != nil {
			return c, err
		}
		var mine []uint64
		for k, s := range c.seeds {
			if k%n == i {
				mine = append(mine, s)
			}
		}
		c.seeds = mine
	}
	if c.jobs < 1 {
		return c, usagef("--jobs=%d: need at least 1", c.jobs)
	}
	if len(c.seeds) != 1 && (c.opts.TracePath != "" || c.saveSchedule != "" || c.timelinePath != "") {
		return c, usagef("--trace, --timeline and --save-schedule take one seed, not %d", len(c.seeds))
	}
	if *schedule != "" {
		c.schedulePath = *schedule
		s, err := faults.Load(*schedule)
		if err != nil {
			return c, usagef("--schedule=%s: %v", *schedule, err)
		}
		c.opts.Schedule = &s
	}
	if _, _, err := scenarios.Resolve(c.opts); err != nil {
		return c, usageError{strings.TrimPrefix(err.Error(), scenarios.ErrUsage.Error()+": ")}
	}
	return c, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "merge" {
		return runMerge(args[1:], stdout, stderr)
	}
	c, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "simrun: %v\n", err)
		return 2
	}
	if c.listScenarios {
		for _, s := range scenarios.Scenarios() {
			fmt.Fprintf(stdout, "%-18s %s\n", s.Name, s.Description)
		}
		return 0
	}
	if c.coverReport != "" {
		return coverReport(c.coverReport, stdout, stderr, c.json)
	}
	if c.listKnown {
		for _, f := range scenarios.Fingerprints {
			fmt.Fprintf(stdout, "%s\n    %s\n", f.Name, f.Description)
		}
		return 0
	}
	if c.listBugs {
		for _, b := range canaries.All() {
			where := b.Scenario + "/" + b.Engine
			if b.SnapshotStore != "" {
				where += " --snapshot-store=" + b.SnapshotStore
			}
			fmt.Fprintf(stdout, "%-32s %-13s caught by %-18s in %s: %s\n", b.Name, b.Layer, b.Catcher, where, b.Description)
		}
		return 0
	}
	if c.bug != nil {
		c.jobs = 1 // a hunt stops at the first catch
	}
	out := &reporter{stdout: stdout, stderr: stderr, json: c.json, total: len(c.seeds), progress: isTerminal(stderr) && !c.worker, quiet: c.worker, excludeKnown: c.excludeKnown}
	// Seeds run in worker processes (one unless --jobs asks for more): a
	// dependency that panics on one of its own goroutines (hashicorp/raft's
	// "log not found", see README) ends the process it runs in, and that
	// must fail the seed (exit 1, with the panic) rather than end simrun
	// with Go's exit code 2, which here means bad usage. A hunt (--bug)
	// stops at its first catch and runs here.
	if !c.worker && c.bug == nil {
		return runWorkers(c, args, out)
	}
	return runHere(c, out)
}
