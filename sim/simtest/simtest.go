// Package simtest holds test helpers for running simulations: a synctest
// bubble with GOMAXPROCS=1, which DESIGN.md rule 1 requires for a seed to
// replay. Tests that seed raft's global math/rand with sim.SeedRaftGlobalRand
// must also carry the directive
//
//	//go:debug randseednop=0
//
// at the top of one of their _test.go files (before the package clause).
package simtest

import (
	"runtime"
	"testing"
	"testing/synctest"
)

// SingleProc sets GOMAXPROCS to 1 until the test ends. Tests using it must
// not run in parallel with others (GOMAXPROCS is process-wide).
func SingleProc(tb testing.TB) {
	tb.Helper()
	prev := runtime.GOMAXPROCS(1)
	tb.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}

// Run runs f in a synctest bubble (virtual time) with GOMAXPROCS=1, restoring
// GOMAXPROCS afterwards. Every goroutine f starts must have ended when f
// returns, or synctest fails the test: a free leak detector.
func Run(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	synctest.Test(t, f)
}
