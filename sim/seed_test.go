package sim

import (
	mathrand "math/rand"
	"testing"
	"time"
)

// The golden values pin the derivation: a change would silently make every
// recorded seed replay a different run.
func TestSeedDerivationIsStable(t *testing.T) {
	if got := uint64(Seed(1).Child("network")); got != 337769700053468854 {
		t.Errorf("Seed(1).Child(network) = %d; the derivation changed", got)
	}
	if got := Seed(1).Hash(1, 2, 3); got != 4020513368219564614 {
		t.Errorf("Seed(1).Hash(1,2,3) = %d; the derivation changed", got)
	}
	if got := Seed(42).Rand("x").Uint64(); got != 12751666292207474798 {
		t.Errorf("Seed(42).Rand(x).Uint64() = %d; the derivation changed", got)
	}
}

func TestSeedChildrenAreDistinct(t *testing.T) {
	seen := map[Seed]string{}
	for _, parent := range []Seed{0, 1, 2, 1 << 63} {
		for _, name := range []string{"", "network", "networ", "disk", "faults", "n1", "n2"} {
			c := parent.Child(name)
			key := name + "@" + string(rune('0'+parent%10))
			if prev, dup := seen[c]; dup {
				t.Errorf("child %s collides with %s", key, prev)
			}
			seen[c] = key
			if c == parent {
				t.Errorf("child %s equals its parent", key)
			}
			if c != parent.Child(name) {
				t.Errorf("child %s is not a pure function", key)
			}
		}
	}
}

func TestSeedRandStreams(t *testing.T) {
	a, b, c := Seed(7).Rand("workload"), Seed(7).Rand("workload"), Seed(7).Rand("faults")
	same, differ := true, false
	for range 100 {
		x, y, z := a.Uint64(), b.Uint64(), c.Uint64()
		same = same && x == y
		differ = differ || x != z
	}
	if !same {
		t.Error("two streams of the same seed and name differ")
	}
	if !differ {
		t.Error("streams of different names are equal")
	}
}

func TestSeedHashIsOrderSensitiveAndPure(t *testing.T) {
	s := Seed(3)
	if s.Hash(1, 2) == s.Hash(2, 1) {
		t.Error("Hash(1,2) == Hash(2,1)")
	}
	if s.Hash(1, 2) != s.Hash(1, 2) {
		t.Error("Hash is not pure")
	}
	if s.Hash() == Seed(4).Hash() || s.Hash(0) == s.Hash() {
		t.Error("Hash ignores the seed or the word count")
	}
}

func TestChanceAndBetween(t *testing.T) {
	s := Seed(11)
	const n = 200000
	hits := 0
	for i := range uint64(n) {
		h := s.Hash(i)
		if chance(h, 0.3) {
			hits++
		}
		if chance(h, 0) || !chance(h, 1) {
			t.Fatal("p=0 happened or p=1 did not")
		}
		d := between(h, 5*time.Millisecond, 7*time.Millisecond)
		if d < 5*time.Millisecond || d > 7*time.Millisecond {
			t.Fatalf("between gave %v", d)
		}
	}
	if f := float64(hits) / n; f < 0.295 || f > 0.305 {
		t.Errorf("chance(0.3) happened %.4f of the time", f)
	}
	if d := between(s.Hash(1), 9, 3); d != 9 {
		t.Errorf("between with hi < lo = %v, want lo", d)
	}
}

// This binary carries //go:debug randseednop=0 (in cluster_test.go), so
// seeding the global generator must take effect.
func TestSeedRaftGlobalRand(t *testing.T) {
	if err := SeedRaftGlobalRand(99); err != nil {
		t.Fatal(err)
	}
	first := []int64{mathrand.Int63(), mathrand.Int63()}
	if err := SeedRaftGlobalRand(99); err != nil {
		t.Fatal(err)
	}
	if a, b := mathrand.Int63(), mathrand.Int63(); a != first[0] || b != first[1] {
		t.Error("global math/rand does not replay after SeedRaftGlobalRand")
	}
	want := mathrand.New(mathrand.NewSource(99)).Int63()
	if err := SeedRaftGlobalRand(99); err != nil {
		t.Fatal(err)
	}
	if got := mathrand.Int63(); got != want {
		t.Errorf("first draw %d, want %d (the stream of rand.NewSource(seed))", got, want)
	}
}
