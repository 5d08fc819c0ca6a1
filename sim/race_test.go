//go:build race

package sim_test

// raceEnabled: the race detector randomizes goroutine scheduling
// (runtime.randomizeScheduler), so no run replays under -race.
const raceEnabled = true
