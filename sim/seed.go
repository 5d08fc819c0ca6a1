package sim

import (
	"errors"
	mathrand "math/rand"
	"math/rand/v2"
	"time"
)

// Seed is the root of all randomness of a run, or of one of its subsystems.
// Subsystems get their own seed with [Seed.Child], so adding randomness to one
// of them does not shift the choices of the others.
type Seed uint64

// Child returns the seed of the named subsystem. It is a pure function of
// (s, name): stable across runs, processes and platforms.
func (s Seed) Child(name string) Seed {
	return Seed(s.Hash(hashString(name)))
}

// Rand returns a generator for a stream of choices made by a single
// goroutine, in program order (for example a fault schedule built before the
// run starts). Choices made concurrently by several goroutines must use
// [Seed.Hash] on a key that names the choice instead.
func (s Seed) Rand(name string) *rand.Rand {
	c := s.Child(name)
	return rand.New(rand.NewPCG(uint64(c), uint64(c.Child("pcg-stream"))))
}

// Hash mixes s with words into a uniformly distributed 64-bit value. It is
// pure, so a choice keyed by, say, (link, kind, counter) is the same whatever
// order the goroutines asking for it run in.
func (s Seed) Hash(words ...uint64) uint64 {
	h := mix64(uint64(s) ^ 0x6a09e667f3bcc908)
	for _, w := range words {
		h = mix64(h ^ mix64(w+0x9e3779b97f4a7c15))
	}
	return h
}

// mix64 is the splitmix64 finalizer: a bijection with good avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashString is 64-bit FNV-1a. hash/maphash is not usable: it is seeded per
// process, so names would hash differently in every run.
func hashString(s string) uint64 {
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 0x100000001b3
	}
	return h
}

// chance reports whether an event of probability p happens for the uniform
// hash h. p <= 0 never happens and p >= 1 always does.
func chance(h uint64, p float64) bool {
	if p <= 0 {
		return false
	}
	return float64(h>>11)*(1.0/(1<<53)) < p
}

// between maps the uniform hash h to a duration in [lo, hi]. hi <= lo gives lo.
func between(h uint64, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(h%uint64(hi-lo+1))
}

// ErrRandSeedNop is returned by [SeedRaftGlobalRand] when math/rand.Seed had
// no effect because the binary lacks the `//go:debug randseednop=0`
// directive; raft's election timeouts then do not follow the seed.
var ErrRandSeedNop = errors.New("sim: math/rand.Seed is a no-op: add //go:debug randseednop=0 to the main package or test file")

// SeedRaftGlobalRand seeds the global math/rand generator with seed.
// hashicorp/raft draws its election and heartbeat jitter from that global
// generator, so without this a run cannot replay. It must be called before any
// raft node starts (a concurrent draw would make the check below fail), and it
// only works in a binary whose main package or test file has the directive
//
//	//go:debug randseednop=0
//
// (Go 1.24 made rand.Seed a no-op by default); otherwise it returns
// [ErrRandSeedNop]. This is the one place the testbed touches the global
// math/rand.
func SeedRaftGlobalRand(seed Seed) error {
	v := int64(seed)
	mathrand.Seed(v) //nolint:staticcheck // raft reads the global generator; see doc comment.
	got := mathrand.Int63()
	want := mathrand.New(mathrand.NewSource(v)).Int63()
	mathrand.Seed(v) //nolint:staticcheck // restart the stream after the check draw.
	if got != want {
		return ErrRandSeedNop
	}
	return nil
}
