package scenarios

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/bbolt"
)

// userEngine stands for a user's own engine: the bbolt engine behind a
// wrapper that counts the installs it is asked for.
type userEngine struct {
	engines.Engine
	installs *atomic.Int64
}

func (e userEngine) Install(src engines.Iterator, applied engines.Applied) error {
	e.installs.Add(1)
	return e.Engine.Install(src, applied)
}

func newUserEngine(installs *atomic.Int64) func(dir string) (engines.Engine, error) {
	return func(dir string) (engines.Engine, error) {
		e, err := bbolt.Open(filepath.Join(dir, "user.db"), bbolt.Options{NoSync: true})
		if err != nil {
			return nil, err
		}
		return userEngine{Engine: e, installs: installs}, nil
	}
}

// A caller's engine factory runs a scenario under the same faults: every
// node opens the user's engine (through cluster.CustomStorage), snapshots
// install into it, crashes copy its directory, and the run is judged as
// any other.
func TestCustomEngineRunsAScenario(t *testing.T) {
	var installs atomic.Int64
	rep, err := Run(t, Options{Seed: 3, Scenario: "snapshot-install", NewEngine: newUserEngine(&installs)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Engine != EngineCustom {
		t.Errorf("engine %q, want %q", rep.Engine, EngineCustom)
	}
	if !rep.OK {
		t.Fatalf("violations: %v", rep.Violations)
	}
	if installs.Load() == 0 || rep.SnapshotsInstalled == 0 || rep.Crashes == 0 {
		t.Fatalf("the user's engine was not exercised: %d installs asked of it, %d reported, %d crashes", installs.Load(), rep.SnapshotsInstalled, rep.Crashes)
	}
}

// mixed-engines puts the user's engine beside Pebble nodes.
func TestCustomEngineBesidePebble(t *testing.T) {
	var installs atomic.Int64
	rep, err := Run(t, Options{Seed: 2, Scenario: "mixed-engines", Engine: EngineCustom, NewEngine: newUserEngine(&installs)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Engine != EngineMixedCustom {
		t.Errorf("engine %q, want %q", rep.Engine, EngineMixedCustom)
	}
	if !rep.OK {
		t.Fatalf("violations: %v", rep.Violations)
	}
}

func TestCustomEngineNeedsAFactory(t *testing.T) {
	for _, engine := range []string{EngineCustom, EngineMixedCustom} {
		if _, err := Run(t, Options{Scenario: "snapshot-install", Engine: engine}); !errors.Is(err, ErrUsage) {
			t.Errorf("%s without NewEngine: got %v, want ErrUsage", engine, err)
		}
	}
}
