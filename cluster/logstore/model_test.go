package logstore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"pgregory.net/rapid"
)

// TestAgainstModel drives the store with random StoreLogs, DeleteRange,
// GetLog and reopen steps and compares it after each with a map: FirstIndex
// and LastIndex must be the smallest and largest present index, whatever
// gaps the steps leave.
func TestAgainstModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		fs := vfs.NewMem()
		s, err := Open("raft", Options{FS: fs})
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { _ = s.Close() }()
		model := map[uint64]*raft.Log{}

		check := func(rt *rapid.T) {
			var lo, hi uint64
			for i := range model {
				if lo == 0 || i < lo {
					lo = i
				}
				if i > hi {
					hi = i
				}
			}
			if f, err := s.FirstIndex(); err != nil || f != lo {
				rt.Fatalf("FirstIndex = %d, %v; model %d", f, err, lo)
			}
			if l, err := s.LastIndex(); err != nil || l != hi {
				rt.Fatalf("LastIndex = %d, %v; model %d", l, err, hi)
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"StoreLogs": func(rt *rapid.T) {
				first := rapid.Uint64Range(1, 60).Draw(rt, "first")
				n := rapid.Uint64Range(1, 10).Draw(rt, "n")
				term := rapid.Uint64Range(1, 5).Draw(rt, "term")
				batch := entries(first, first+n-1, term)
				if err := s.StoreLogs(batch); err != nil {
					rt.Fatal(err)
				}
				for _, e := range batch {
					model[e.Index] = e
				}
			},
			"DeleteRange": func(rt *rapid.T) {
				lo := rapid.Uint64Range(0, 75).Draw(rt, "min")
				hi := rapid.Uint64Range(0, 75).Draw(rt, "max")
				if err := s.DeleteRange(lo, hi); err != nil {
					rt.Fatal(err)
				}
				for i := lo; i <= hi; i++ {
					delete(model, i)
				}
			},
			"GetLog": func(rt *rapid.T) {
				i := rapid.Uint64Range(0, 75).Draw(rt, "index")
				var got raft.Log
				err := s.GetLog(i, &got)
				want, ok := model[i]
				switch {
				case !ok && err != raft.ErrLogNotFound:
					rt.Fatalf("GetLog(%d) = %v, want ErrLogNotFound", i, err)
				case ok && err != nil:
					rt.Fatalf("GetLog(%d): %v", i, err)
				case ok && !sameLog(&got, want):
					rt.Fatalf("GetLog(%d) = %+v, want %+v", i, got, *want)
				}
			},
			"Reopen": func(rt *rapid.T) {
				if err := s.Close(); err != nil {
					rt.Fatal(err)
				}
				if s, err = Open("raft", Options{FS: fs}); err != nil {
					rt.Fatal(err)
				}
			},
			"": check,
		})
	})
}
