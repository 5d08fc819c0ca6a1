package scenarios

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// benchChildEnv carries BenchmarkSimulate's request to its child process:
// "<sim|inmem>:<runs>".
const benchChildEnv = "SCENARIOS_BENCH_CHILD"

// TestSimulateChild runs the simulations BenchmarkSimulate measures. A
// benchmark has no *testing.T, which a synctest bubble needs, so the
// benchmark runs this test in a child process of the same test binary and
// reads the reports it prints.
func TestSimulateChild(t *testing.T) {
	req := os.Getenv(benchChildEnv)
	if req == "" {
		t.Skip("runs only as BenchmarkSimulate's child process")
	}
	mode, count, _ := strings.Cut(req, ":")
	runs, err := strconv.Atoi(count)
	if err != nil {
		t.Fatal(err)
	}
	for i := range runs {
		rep, err := Run(t, Options{Seed: uint64(i + 1), Scenario: "snapshot-install", Baseline: mode == "inmem"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rep)
		fmt.Printf("REPORT %s\n", b)
	}
}

// BenchmarkSimulate measures the default run (snapshot-install, 5 Pebble
// nodes) in virtual seconds per wall second, and the same cluster and
// workload over raft's InmemTransport with no faults, so the simulator's
// own cost shows as sim/inmem (wall time per virtual second, simulator over
// baseline). Wall time is measured inside the child around each bubble.
func BenchmarkSimulate(b *testing.B) {
	measure := func(mode string, runs int) (virtual, wall float64) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSimulateChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", benchChildEnv, mode, runs))
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("child: %v\n%s", err, out.String())
		}
		sc := bufio.NewScanner(&out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		n := 0
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "REPORT ")
			if !ok {
				continue
			}
			var rep Report
			if err := json.Unmarshal([]byte(line), &rep); err != nil {
				b.Fatal(err)
			}
			if !rep.OK {
				b.Fatalf("%s run of seed %d failed: %v", mode, rep.Seed, rep.Violations)
			}
			virtual += rep.VirtualSeconds
			wall += rep.WallSeconds
			n++
		}
		if n != runs {
			b.Fatalf("%s: %d reports, want %d", mode, n, runs)
		}
		return virtual, wall
	}
	b.Run("snapshot-install", func(b *testing.B) {
		simV, simW := measure("sim", b.N)
		baseV, baseW := measure("inmem", b.N)
		b.ReportMetric(simV/simW, "virtual:wall")
		b.ReportMetric(baseV/baseW, "inmem-virtual:wall")
		b.ReportMetric((simW/simV)/(baseW/baseV), "sim/inmem")
		b.ReportMetric(simW/float64(b.N)*1e3, "wall-ms/run")
	})
}
