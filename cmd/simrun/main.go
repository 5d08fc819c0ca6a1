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
//
// Exit status: 0 if every seed passed, 1 if a seed failed a check, 2 for bad
// usage or input.
//
// Each run lives in a testing/synctest bubble (virtual time), which needs a
// *testing.T: simrun runs its seeds inside testing.Main with its own flags
// parsed first, so none of the -test.* flags show.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/faults"
	"github.com/raftsnap/testbed/scenarios"
	"github.com/raftsnap/testbed/sim"
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
	scenarioSet      bool
	engineSet        bool
	shrink           bool
	shrinkRuns       int
	shrinkOut        string
	differential     bool
	outDir           string
	seedTimeout      time.Duration
	durationSet      bool
	nodesSet         bool
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
	shard := fs.String("shard", "", "run only shard `i/n` of the seeds: every n-th seed, starting with the i-th (0 <= i < n)")
	fs.StringVar(&c.opts.Scenario, "scenario", "snapshot-install", "the scenario to run (see --list-scenarios)")
	fs.StringVar(&c.opts.Engine, "engine", "pebble", "engine of every node: bbolt, pebble or mixed")
	fs.IntVar(&c.opts.Nodes, "nodes", 0, "initial cluster size (default: the scenario's)")
	fs.DurationVar(&c.opts.Duration, "duration", 0, "virtual length of the safety phase (default: the scenario's)")
	fs.StringVar(&c.outDir, "out", "", "write each failing seed's artifacts (porcupine's HTML visualization of a non-linearizable history) into `DIR`/<scenario>-<engine>-seed-<N>")
	fs.StringVar(&c.opts.TracePath, "trace", "", "write the run's trace to `FILE` as JSON lines (one seed only)")
	schedule := fs.String("schedule", "", "replay the fault schedule saved in `FILE` instead of generating one")
	fs.StringVar(&c.saveSchedule, "save-schedule", "", "save the run's fault schedule to `FILE` (one seed only)")
	fs.IntVar(&c.jobs, "jobs", 1, "run seeds in `K` worker processes")
	fs.DurationVar(&c.seedTimeout, "seed-timeout", 5*time.Minute, "a seed that runs longer than this in wall time is reported as hung and its worker process replaced")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per seed on standard output")
	fs.BoolVar(&c.checkDeterminism, "check-determinism", false, "run each seed twice and fail it if the trace hashes differ")
	fs.BoolVar(&c.listScenarios, "list-scenarios", false, "list the scenarios and exit")
	bugName := fs.String("bug", "", "plant the bug `NAME` (see --list-bugs) and hunt it: stop at the first seed whose checkers catch it; exit 0 if caught, 1 if not")
	fs.BoolVar(&c.listBugs, "list-bugs", false, "list the planted bugs (canaries) and exit")
	fs.BoolVar(&c.shrink, "shrink", false, "when a seed fails, search for a smaller fault schedule and safety phase that fail the same way, and print its repro")
	fs.IntVar(&c.shrinkRuns, "shrink-runs", 150, "at most `N` runs per shrink")
	fs.StringVar(&c.shrinkOut, "shrink-dir", ".", "write shrunk schedules into `DIR`")
	fs.BoolVar(&c.differential, "differential", false, "run each seed on bbolt and on Pebble and fail it if the engine-neutral traces or final states differ")
	fs.BoolVar(&c.excludeKnown, "exclude-known", false, "skip seeds that fail because of known bugs in dependencies (listed in README)")
	fs.BoolVar(&c.worker, "worker", false, "internal: run as a worker of --jobs")
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
	})
	if c.listScenarios || c.listBugs {
		return c, nil
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
		i, n, err := parseShard(*shard)
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
	if c.excludeKnown {
		var keep []uint64
		for _, s := range c.seeds {
			if k, ok := scenarios.Known(c.opts.Scenario, s); ok {
				fmt.Fprintf(stderr, "simrun: skipping seed %d: %s\n", s, k.Issue)
				continue
			}
			keep = append(keep, s)
		}
		c.seeds = keep
	}
	if c.jobs < 1 {
		return c, usagef("--jobs=%d: need at least 1", c.jobs)
	}
	if len(c.seeds) != 1 && (c.opts.TracePath != "" || c.saveSchedule != "") {
		return c, usagef("--trace and --save-schedule take one seed, not %d", len(c.seeds))
	}
	if *schedule != "" {
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

var rangeRE = regexp.MustCompile(`^(\d+)\.\.(\d+)$`)

func parseRange(s string) ([]uint64, error) {
	m := rangeRE.FindStringSubmatch(s)
	if m == nil {
		return nil, usagef("--seeds=%q: want A..B, for example 1..100", s)
	}
	a, errA := strconv.ParseUint(m[1], 10, 64)
	b, errB := strconv.ParseUint(m[2], 10, 64)
	if errA != nil || errB != nil || a > b {
		return nil, usagef("--seeds=%q: want A..B with A <= B", s)
	}
	if b-a >= 1_000_000 {
		return nil, usagef("--seeds=%q: at most 1000000 seeds per invocation (split it with --shard)", s)
	}
	var out []uint64
	for x := a; ; x++ {
		out = append(out, x)
		if x == b {
			break
		}
	}
	return out, nil
}

func parseShard(s string) (int, int, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 2 {
		return 0, 0, usagef("--shard=%q: want i/n, for example 0/4", s)
	}
	i, errI := strconv.Atoi(parts[0])
	n, errN := strconv.Atoi(parts[1])
	if errI != nil || errN != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, usagef("--shard=%q: want i/n with 0 <= i < n", s)
	}
	return i, n, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
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
	if c.listBugs {
		for _, b := range canaries.All() {
			fmt.Fprintf(stdout, "%-32s %-13s caught by %-18s in %s/%s: %s\n", b.Name, b.Layer, b.Catcher, b.Scenario, b.Engine, b.Description)
		}
		return 0
	}
	if c.bug != nil {
		c.jobs = 1 // a hunt stops at the first catch
	}
	out := &reporter{stdout: stdout, stderr: stderr, json: c.json, total: len(c.seeds), progress: isTerminal(stderr) && !c.worker, quiet: c.worker}
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

// runHere runs the seeds in this process, each in its own bubble inside a
// sub-test run by testing.Main (a bubble needs a *testing.T). testing.Main
// would exit on its own terms, so the test function exits the process
// itself once every seed's sub-test, and with it its temporary files, is
// done.
func runHere(c config, out *reporter) int {
	realStdout := os.Stdout
	test := func(t *testing.T) {
		code := 0
		var caught *scenarios.Report
		for _, seed := range c.seeds {
			var rep scenarios.Report
			passed := t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { rep = runSeed(t, c, seed) })
			if !passed && rep.OK {
				rep.OK = false
				rep.Violations = append(rep.Violations, "the simulation itself failed: a goroutine leaked or the bubble deadlocked")
			}
			if !rep.OK {
				code = 1
			}
			out.report(rep)
			if c.bug != nil && !rep.OK {
				caught = &rep
				break
			}
		}
		os.Stdout = realStdout
		out.finish()
		if c.bug != nil {
			code = huntSummary(c, out, caught)
		}
		os.Exit(code)
	}
	// The testing package prints its own lines on standard output; keep
	// them away from ours, and give it no arguments so that none of the
	// -test.* flags show.
	if devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stdout = devNull
	}
	os.Args = os.Args[:1]
	testing.Main(func(string, string) (bool, error) { return true, nil }, []testing.InternalTest{{Name: "simrun", F: test}}, nil, nil)
	return 1 // not reached: the test function exits
}

// runSeed runs one seed (twice with --check-determinism).
func runSeed(t *testing.T, c config, seed uint64) scenarios.Report {
	opts := c.opts
	opts.Seed = seed
	if c.outDir != "" {
		opts.OutputDir = filepath.Join(c.outDir, fmt.Sprintf("%s-%s-seed-%d", opts.Scenario, opts.Engine, seed))
	}
	if c.bug != nil {
		opts.Mutation = c.bug.Mutation()
	}
	var rep scenarios.Report
	var err error
	if c.differential {
		var bb, pb scenarios.Report
		var diffs []string
		bb, pb, diffs, err = scenarios.Differential(t, opts)
		rep = pb
		rep.Engine = "bbolt+pebble"
		rep.Violations = append(append(prefixed("bbolt", bb.Violations), prefixed("pebble", pb.Violations)...), diffs...)
	} else {
		rep, err = scenarios.Run(t, opts)
	}
	if err != nil {
		return scenarios.Report{Seed: seed, Scenario: opts.Scenario, Engine: opts.Engine, Violations: []string{err.Error()}}
	}
	if c.saveSchedule != "" && rep.Schedule != nil {
		if err := rep.Schedule.Save(c.saveSchedule); err != nil {
			rep.Violations = append(rep.Violations, "saving schedule: "+err.Error())
		}
	}
	if c.checkDeterminism {
		opts.TracePath = ""
		again, err := scenarios.Run(t, opts)
		if err == nil && again.TraceHash != rep.TraceHash {
			rep.Violations = append(rep.Violations, fmt.Sprintf("determinism: trace hash %s then %s (%s)", short(rep.TraceHash), short(again.TraceHash), divergence(rep, again)))
		}
	}
	rep.Repro = repro(c, seed)
	rep.OK = len(rep.Violations) == 0
	if c.shrink && !rep.OK && !c.differential {
		shrinkSeed(t, c, opts, rep)
	}
	return rep
}

// huntSummary reports a bug hunt: which checker caught the planted bug,
// and at which seed. A hunt succeeds (exit 0) when the bug was caught.
func huntSummary(c config, out *reporter, caught *scenarios.Report) int {
	type summary struct {
		Summary   bool   `json:"summary"`
		Bug       string `json:"bug"`
		Caught    bool   `json:"caught"`
		FirstSeed uint64 `json:"first_seed,omitempty"`
		CaughtBy  string `json:"caught_by,omitempty"`
		Expected  string `json:"expected_checker"`
		Seeds     int    `json:"seeds_run"`
	}
	s := summary{Summary: true, Bug: c.bug.Name, Expected: c.bug.Catcher, Seeds: out.done}
	if caught != nil {
		s.Caught, s.FirstSeed, s.CaughtBy = true, caught.Seed, canaries.CheckerOf(caught.Violations[0])
	}
	if c.json {
		b, _ := json.Marshal(s)
		fmt.Fprintln(out.stdout, string(b))
	} else if s.Caught {
		fmt.Fprintf(out.stdout, "bug %s: caught at seed %d by %s (expected %s), after %d seeds\n", s.Bug, s.FirstSeed, s.CaughtBy, s.Expected, s.Seeds)
	} else {
		fmt.Fprintf(out.stdout, "bug %s: NOT caught in %d seeds\n", s.Bug, s.Seeds)
	}
	if s.Caught {
		return 0
	}
	return 1
}

func prefixed(engine string, vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = engine + ": " + v
	}
	return out
}

// shrinkSeed searches for a smaller failing schedule for a failing seed and
// prints it with its repro command.
func shrinkSeed(t *testing.T, c config, opts scenarios.Options, rep scenarios.Report) {
	res, err := scenarios.Shrink(t, opts, rep, c.shrinkRuns, func(o *scenarios.Options) {
		if c.bug != nil {
			o.Mutation = c.bug.Mutation()
		}
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "  shrink seed %d: %v\n", opts.Seed, err)
		return
	}
	path := filepath.Join(c.shrinkOut, fmt.Sprintf("shrunk-%s-seed-%d.json", opts.Scenario, opts.Seed))
	if err := res.Minimal.Save(path); err != nil {
		fmt.Fprintf(os.Stderr, "  shrink seed %d: saving: %v\n", opts.Seed, err)
		return
	}
	before, after := scenarios.Size(res.Original), scenarios.Size(res.Minimal)
	ftBefore, ftAfter := scenarios.FaultTime(res.Original), scenarios.FaultTime(res.Minimal)
	fmt.Fprintf(os.Stderr, "  shrunk seed %d in %d runs (%s violations kept): %d faults (%v of fault time) over %v -> %d faults (%v) over %v: %.1fx fewer faults, %.1fx less fault time, %.1fx shorter run\n",
		opts.Seed, res.Runs, res.Checker, before, ftBefore, res.Original.Duration, after, ftAfter, res.Minimal.Duration,
		float64(before)/float64(max(after, 1)), ftBefore.Seconds()/max(ftAfter.Seconds(), 0.001), res.Original.Duration.Seconds()/res.Minimal.Duration.Seconds())
	fmt.Fprintf(os.Stderr, "  minimal schedule:\n%s", indent(res.Minimal.String()))
	fmt.Fprintf(os.Stderr, "  minimal repro: go run ./cmd/simrun --seed=%d --scenario=%s --engine=%s%s --schedule=%s\n", opts.Seed, opts.Scenario, opts.Engine, bugFlag(c), path)
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func divergence(a, b scenarios.Report) string {
	ea, eb := a.Events, b.Events
	i := sim.FirstDivergence(ea, eb)
	if i < 0 {
		return "same events"
	}
	at := func(ev []sim.Event) string {
		if i < len(ev) {
			e := ev[i]
			return fmt.Sprintf("%v %s %s %s", e.At, e.Node, e.Kind, e.Detail)
		}
		return "end of trace"
	}
	return fmt.Sprintf("first divergent event #%d: %q vs %q", i, at(ea), at(eb))
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func bugFlag(c config) string {
	if c.bug != nil {
		return " --bug=" + c.bug.Name
	}
	return ""
}

func repro(c config, seed uint64) string {
	r := fmt.Sprintf("go run ./cmd/simrun --seed=%d --scenario=%s --engine=%s%s", seed, c.opts.Scenario, c.opts.Engine, bugFlag(c))
	if c.nodesSet {
		r += fmt.Sprintf(" --nodes=%d", c.opts.Nodes)
	}
	if c.durationSet {
		r += fmt.Sprintf(" --duration=%v", c.opts.Duration)
	}
	return r
}

// runWorkers splits the seeds across c.jobs child processes of this binary
// and merges their JSON reports.
func runWorkers(c config, args []string, out *reporter) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(out.stderr, "simrun: finding own executable: %v\n", err)
		return 2
	}
	base := stripFlags(args, "seed", "seeds", "shard", "jobs", "json", "worker")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := make([]int, c.jobs)
	for j := range c.jobs {
		var mine []uint64
		for k, s := range c.seeds {
			if k%c.jobs == j {
				mine = append(mine, s)
			}
		}
		if len(mine) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[j] = runWorker(c, exe, base, mine, out, &mu)
		}()
	}
	wg.Wait()
	out.finish()
	worst := 0
	for _, code := range codes {
		worst = max(worst, code)
	}
	if out.failed > 0 {
		worst = max(worst, 1)
	}
	return worst
}

// runWorker runs seeds in a worker process and reports each. A worker can
// die in the middle of a seed: a dependency that panics on one of its own
// goroutines (hashicorp/raft does, see README) takes the whole process
// with it. The seed it was running is then reported as failed, with the
// panic, and a new worker takes the rest.
func runWorker(c config, exe string, base []string, seeds []uint64, out *reporter, mu *sync.Mutex) int {
	code := 0
	for len(seeds) > 0 {
		list := make([]string, len(seeds))
		for i, s := range seeds {
			list[i] = strconv.FormatUint(s, 10)
		}
		cmd := exec.Command(exe, append(append([]string{}, base...), "--json", "--worker", "--seed-list="+strings.Join(list, ","))...)
		tail := &tailWriter{w: out.stderr}
		cmd.Stderr = tail
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintf(out.stderr, "simrun: %v\n", err)
			return 2
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(out.stderr, "simrun: starting worker: %v\n", err)
			return 2
		}
		done := map[uint64]bool{}
		lines := make(chan []byte)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(pipe)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				lines <- bytes.Clone(sc.Bytes())
			}
		}()
		// A seed that reports nothing for seedTimeout of wall time is hung
		// (a run that stopped advancing virtual time): dump the worker's
		// goroutines (SIGQUIT) and report the seed like a crash.
		hung := false
		watchdog := time.NewTimer(c.seedTimeout)
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break read
				}
				var rep scenarios.Report
				if err := json.Unmarshal(line, &rep); err != nil {
					continue
				}
				done[rep.Seed] = true
				mu.Lock()
				out.report(rep)
				mu.Unlock()
				watchdog.Reset(c.seedTimeout)
			case <-watchdog.C:
				hung = true
				_ = cmd.Process.Signal(syscall.SIGQUIT)
				for range lines {
				}
				break read
			}
		}
		watchdog.Stop()
		err = cmd.Wait()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit) && exit.ExitCode() == 1:
			code = max(code, 1)
		case err != nil:
			code = max(code, 1)
		}
		var rest []uint64
		for _, s := range seeds {
			if !done[s] {
				rest = append(rest, s)
			}
		}
		if !hung && (err == nil || len(rest) == 0 || exit != nil && exit.ExitCode() == 1) {
			return code
		}
		// The worker died running rest[0].
		why := "the simulation process crashed running this seed: " + tail.panicLine()
		if hung {
			why = fmt.Sprintf("the run hung: no report for %v of wall time (goroutines dumped above)", c.seedTimeout)
		}
		mu.Lock()
		out.report(scenarios.Report{Seed: rest[0], Scenario: c.opts.Scenario, Engine: c.opts.Engine, Repro: repro(c, rest[0]),
			Violations: []string{why}})
		mu.Unlock()
		seeds = rest[1:]
	}
	return code
}

// tailWriter passes a worker's stderr through and remembers its panic line.
type tailWriter struct {
	w     io.Writer
	mu    sync.Mutex
	panic string
	buf   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		line := string(t.buf[:i])
		t.buf = t.buf[i+1:]
		if strings.HasPrefix(line, "panic: ") && t.panic == "" {
			t.panic = line
		}
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func (t *tailWriter) panicLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.panic == "" {
		return "no panic message"
	}
	return t.panic
}

// stripFlags removes the named flags (both -f=v and -f v forms for
// non-boolean ones) from args.
func stripFlags(args []string, names ...string) []string {
	drop := map[string]bool{}
	for _, n := range names {
		drop[n] = true
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		name, _, hasValue := strings.Cut(a, "=")
		if strings.HasPrefix(args[i], "-") && drop[name] {
			if !hasValue && name != "json" && name != "worker" && i+1 < len(args) {
				i++
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// reporter prints reports as text or JSON lines, and a progress line on a
// terminal.
type reporter struct {
	stdout, stderr io.Writer
	json           bool
	progress       bool
	total, done    int
	failed         int
	started        time.Time
	// quiet leaves violations to the parent process (for --jobs workers).
	quiet bool
}

func (r *reporter) report(rep scenarios.Report) {
	if r.started.IsZero() {
		r.started = time.Now()
	}
	r.done++
	if !rep.OK {
		r.failed++
	}
	if r.progress {
		fmt.Fprint(r.stderr, "\r\033[K")
	}
	if r.json {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(r.stdout, string(b))
	} else {
		status := "ok"
		if !rep.OK {
			status = "FAIL"
		}
		ratio := 0.0
		if rep.WallSeconds > 0 {
			ratio = rep.VirtualSeconds / rep.WallSeconds
		}
		fmt.Fprintf(r.stdout, "seed=%d scenario=%s engine=%s %s virtual=%.1fs wall=%.2fs (%.0f:1) snapshots built=%d installed=%d faults=%s ops=%d trace=%s\n",
			rep.Seed, rep.Scenario, rep.Engine, status, rep.VirtualSeconds, rep.WallSeconds, ratio,
			rep.SnapshotsBuilt, rep.SnapshotsInstalled, formatCounts(rep.Faults), rep.Ops, short(rep.TraceHash))
	}
	if !rep.OK && !r.quiet {
		for _, v := range rep.Violations {
			fmt.Fprintf(r.stderr, "  seed %d: %s\n", rep.Seed, v)
		}
		fmt.Fprintf(r.stderr, "  repro: %s\n", rep.Repro)
	}
	if r.progress && r.total > 1 {
		fmt.Fprintf(r.stderr, "%d/%d seeds, %d failed, %s", r.done, r.total, r.failed, time.Since(r.started).Round(time.Second))
	}
}

func (r *reporter) finish() {
	if r.progress && r.total > 1 {
		fmt.Fprintln(r.stderr)
	}
	if r.total > 1 && !r.json {
		fmt.Fprintf(r.stdout, "%d seeds: %d passed, %d failed\n", r.done, r.done-r.failed, r.failed)
	}
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
