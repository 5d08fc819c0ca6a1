package enginetest

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The planted-bug tests make rapid fail on purpose. Unless told
	// otherwise, keep rapid from saving each failure under testdata/rapid
	// (and replaying it first next time), and from spending long on
	// shrinking failures nobody reads.
	setUnlessGiven("rapid.nofailfile", "true")
	setUnlessGiven("rapid.shrinktime", "100ms")
	if testing.Short() {
		// rapid divides checks by 5 and steps by 2 under -short, which
		// leaves the rarer planted view bugs undetected now and then. The
		// package takes about a second at full strength, so keep it.
		setUnlessGiven("rapid.checks", "500")
		setUnlessGiven("rapid.steps", "60")
	}
	os.Exit(m.Run())
}

// setUnlessGiven sets a rapid flag that neither the command line nor its
// RAPID_ environment variable set.
func setUnlessGiven(name, value string) {
	_, given := os.LookupEnv(strings.ToUpper(strings.ReplaceAll(name, ".", "_")))
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	if given {
		return
	}
	if err := flag.Set(name, value); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func memStorageFor(bugs memBugs) func(*testing.T) Opener {
	return func(*testing.T) Opener { return newMemStorage(bugs).opener() }
}

func TestReferenceEnginePassesTheSuite(t *testing.T) {
	Run(t, memStorageFor(memBugs{}))
}

// TestRecorderPassesTheReferenceEngine shows that the recording reporter the
// planted-bug test uses reports no failure of its own making, so a failure it
// records is the planted bug's.
func TestRecorderPassesTheReferenceEngine(t *testing.T) {
	for _, c := range checks {
		if r := runRecorded(c, memBugs{}); r.failed || r.skipped {
			t.Errorf("%s on the reference engine: failed=%v skipped=%v\n%s", c.name, r.failed, r.skipped, r.output())
		}
	}
}

// TestSuiteReportsPlantedBugs runs the suite against reference engines each
// with one planted contract violation: every check listed for a bug must
// report it (other checks may report it too; they are not run, to keep the
// test fast).
func TestSuiteReportsPlantedBugs(t *testing.T) {
	const (
		model         = "ModelBasedStateMachine"
		pointInTime   = "ViewIsPointInTimeWhileWritesAndInstallRun"
		otherGorout   = "ViewIsReadableFromAnotherGoroutineAfterInstall"
		concurrent    = "ConcurrentReadersSeeWholeBatches"
		absentKeys    = "InstallRemovesKeysAbsentFromSource"
		emptySource   = "InstallOfEmptySourceLeavesNoKeys"
		installPos    = "InstallRecordsAppliedIncludingConfig"
		manyKeys      = "InstallOfManyKeysRoundTrips"
		emptyKey      = "EmptyKeyIsRejectedWithErrEmptyKey"
		tooLarge      = "OversizedKeyOrValueIsRejectedWithErrTooLarge"
		rejectedBatch = "RejectedBatchWritesNothing"
		closed        = "ClosedEngineReturnsErrClosed"
		installReopen = "InstallSurvivesReopen"
		writesReopen  = "WritesSurviveReopen"
		syncer        = "SyncerSyncsAndRefusesWhenClosed"
	)
	planted := []struct {
		bugs     memBugs
		caughtBy []string
	}{
		{memBugs{viewReadsLiveData: true}, []string{model, pointInTime, otherGorout}},
		{memBugs{viewTakenAtIter: true}, []string{model, pointInTime, otherGorout}},
		{memBugs{installEmptiesViews: true}, []string{model, pointInTime, otherGorout}},
		{memBugs{installKeepsStaleKeys: true}, []string{model, absentKeys, emptySource, manyKeys}},
		{memBugs{installCommitsOnError: true}, []string{model, installReopen}},
		{memBugs{installIgnoresSourceErr: true}, []string{model, installReopen}},
		{memBugs{installSkipsOrderCheck: true}, []string{model}},
		{memBugs{installDropsConfig: true}, []string{model, installPos}},
		{memBugs{installNotDurable: true}, []string{model, installReopen}},
		{memBugs{writeIgnoresApplied: true}, []string{model, writesReopen, installPos}},
		{memBugs{writeFirstOpWins: true}, []string{model}},
		{memBugs{writeEmptyValueDeletes: true}, []string{model, writesReopen}},
		{memBugs{writeRetainsBuffers: true}, []string{model}},
		{memBugs{writeNotAtomicOnReject: true}, []string{rejectedBatch}},
		{memBugs{writeVisibleOpByOp: true}, []string{concurrent}},
		{memBugs{getReturnsInternalSlice: true}, []string{model}},
		{memBugs{acceptsEmptyKey: true}, []string{emptyKey, rejectedBatch}},
		{memBugs{acceptsOversizedKey: true}, []string{tooLarge, rejectedBatch}},
		{memBugs{ignoresClose: true}, []string{closed}},
		// Install sources come sorted, so only writes disorder this engine.
		{memBugs{iteratesInInsertionOrder: true}, []string{model, pointInTime, otherGorout, writesReopen}},
		{memBugs{syncIgnoresClose: true}, []string{syncer}},
	}
	byName := map[string]check{}
	for _, c := range checks {
		byName[c.name] = c
	}
	isPlanted := map[string]bool{}
	for _, p := range planted {
		isPlanted[bugName(p.bugs)] = true
	}
	for f := range reflect.TypeFor[memBugs]().Fields() {
		if !isPlanted[f.Name] {
			t.Errorf("memBugs.%s is never planted", f.Name)
		}
	}
	for _, p := range planted {
		name := bugName(p.bugs)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, want := range p.caughtBy {
				c, ok := byName[want]
				if !ok {
					t.Fatalf("no check named %s", want)
				}
				r := runRecorded(c, p.bugs)
				if !r.failed {
					t.Errorf("%s did not report the planted bug %s; its output:\n%s", want, name, firstLines(r.output(), 12))
					continue
				}
				t.Logf("%s reports it:\n%s", want, firstLines(r.output(), 6))
			}
		})
	}
}

// bugName names the one planted bug set in bugs.
func bugName(bugs memBugs) string {
	s := strings.TrimPrefix(fmt.Sprintf("%+v", bugs), "{")
	for _, field := range strings.Fields(strings.TrimSuffix(s, "}")) {
		if name, ok := strings.CutSuffix(field, ":true"); ok {
			return name
		}
	}
	return "none"
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines[n] = "..."
	}
	return strings.Join(lines, "\n")
}

// runRecorded runs one check against fresh reference storage with the given
// bugs, reporting to a recorder. Like the testing package it runs the check
// in its own goroutine, so that FailNow can end it with runtime.Goexit.
func runRecorded(c check, bugs memBugs) *recorder {
	r := &recorder{name: "planted/" + c.name}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			// A panic is a failure too; Goexit is not a panic, so recover
			// returns nil for FailNow and SkipNow.
			if p := recover(); p != nil {
				r.Errorf("panic: %v", p)
			}
		}()
		c.run(r, func() Opener { return newMemStorage(bugs).opener() })
	}()
	<-done
	return r
}

// recorder is a rapid.TB that records failures instead of reporting them.
type recorder struct {
	name string

	mu      sync.Mutex
	failed  bool
	skipped bool
	out     strings.Builder
}

func (r *recorder) Helper()      {}
func (r *recorder) Name() string { return r.name }

func (r *recorder) Logf(format string, args ...any) { r.log(fmt.Sprintf(format, args...)) }
func (r *recorder) Log(args ...any)                 { r.log(fmt.Sprint(args...)) }

func (r *recorder) log(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.WriteString(strings.TrimSuffix(s, "\n"))
	r.out.WriteByte('\n')
}

func (r *recorder) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

func (r *recorder) Skipf(format string, args ...any) { r.Logf(format, args...); r.SkipNow() }
func (r *recorder) Skip(args ...any)                 { r.Log(args...); r.SkipNow() }

func (r *recorder) SkipNow() {
	r.mu.Lock()
	r.skipped = true
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Errorf(format string, args ...any) { r.Logf(format, args...); r.Fail() }
func (r *recorder) Error(args ...any)                 { r.Log(args...); r.Fail() }
func (r *recorder) Fatalf(format string, args ...any) { r.Logf(format, args...); r.FailNow() }
func (r *recorder) Fatal(args ...any)                 { r.Log(args...); r.FailNow() }

func (r *recorder) FailNow() {
	r.Fail()
	runtime.Goexit()
}

func (r *recorder) Fail() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
}

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// TestRecorderStopsTheCheckOnFatal shows the recorder behaves like testing:
// Fatalf records a failure and ends the check at once, Errorf goes on.
func TestRecorderStopsTheCheckOnFatal(t *testing.T) {
	reached := false
	r := runRecorded(check{name: "fatal", run: func(tb rapid.TB, _ func() Opener) {
		tb.Errorf("first")
		tb.Fatalf("second")
		reached = true
	}}, memBugs{})
	if !r.failed || reached {
		t.Fatalf("failed=%v, code after Fatalf reached=%v; want failed and not reached", r.failed, reached)
	}
	if got := r.output(); got != "first\nsecond\n" {
		t.Fatalf("output %q", got)
	}
}
