package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftsnap/testbed/scenarios"
)

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
	if c.coverDir != "" {
		worst = coverReport(c.coverDir, out.stdout, out.stderr, c.json)
	}
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
// panic (and classified by it), and a new worker takes the rest. It
// returns 2 if a worker cannot be started; the parent judges the seeds
// from their reports.
func runWorker(c config, exe string, base []string, seeds []uint64, out *reporter, mu *sync.Mutex) int {
	for len(seeds) > 0 {
		list := make([]string, len(seeds))
		for i, s := range seeds {
			list[i] = strconv.FormatUint(s, 10)
		}
		cmd := exec.Command(exe, append(append([]string{}, base...), "--json", "--worker", "--seed-list="+strings.Join(list, ","))...)
		if c.coverDir != "" {
			// The runtime writes what a worker ran after its last seed
			// (nothing of a seed) at exit; it wants a place for it.
			cmd.Env = append(os.Environ(), "GOCOVERDIR="+filepath.Join(c.coverDir, "process"))
			if err := os.MkdirAll(filepath.Join(c.coverDir, "process"), 0o755); err != nil {
				fmt.Fprintf(out.stderr, "simrun: %v\n", err)
				return 2
			}
		}
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
		// A worker exits 1 when one of its seeds failed; the parent judges
		// the seeds from their reports, so only a seed left unreported
		// matters here.
		_ = cmd.Wait()
		var rest []uint64
		for _, s := range seeds {
			if !done[s] {
				rest = append(rest, s)
			}
		}
		if !hung && len(rest) == 0 {
			return 0
		}
		// The worker died running rest[0].
		panicText := tail.panicText()
		why := "the simulation process crashed running this seed: " + tail.panicLine()
		if hung {
			why = fmt.Sprintf("the run hung: no report for %v of wall time (goroutines dumped above)", c.seedTimeout)
			panicText = ""
		}
		rep := scenarios.Report{Seed: rest[0], Scenario: c.opts.Scenario, Engine: c.opts.Engine, Repro: repro(c, rest[0]),
			Violations: []string{why}}
		rep.Known, rep.Signature = scenarios.Classify(rep, nil, panicText), scenarios.Signature(rep.Violations)
		mu.Lock()
		out.report(rep)
		mu.Unlock()
		seeds = rest[1:]
	}
	return 0
}

// tailWriter passes a worker's stderr through and remembers its first
// panic: the "panic: " line and the stack after it, which the fingerprints
// of known upstream bugs read (scenarios.Classify).
type tailWriter struct {
	w     io.Writer
	mu    sync.Mutex
	panic []string
	buf   []byte
}

// panicLines bounds the stack kept after a panic line: the panicking
// goroutine's frames come first.
const panicLines = 64

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
		if len(t.panic) == 0 && strings.HasPrefix(line, "panic: ") || len(t.panic) > 0 && len(t.panic) < panicLines {
			t.panic = append(t.panic, line)
		}
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func (t *tailWriter) panicLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.panic) == 0 {
		return "no panic message"
	}
	return t.panic[0]
}

// panicText is the panic line and the stack after it; "" if none.
func (t *tailWriter) panicText() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.panic, "\n")
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
