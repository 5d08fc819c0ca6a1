//go:debug randseednop=0
package scenarios

import (
	"testing"
)

func TestSnapshotInstallSeed1(t *testing.T) {
	for _, engine := range []string{EnginePebble, EngineBbolt} {
		t.Run(engine, func(t *testing.T) {
			rep, err := Run(t, Options{Seed: 1, Scenario: "snapshot-install", Engine: engine})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", rep)
			if !rep.OK {
				t.Fatalf("violations: %v", rep.Violations)
			}
		})
	}
}
