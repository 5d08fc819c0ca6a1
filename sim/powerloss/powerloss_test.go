package powerloss

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func page(b byte) []byte { return bytes.Repeat([]byte{b}, PageSize) }

// A file with two synced pages, then page 1 rewritten and page 2 appended
// without a sync: a power loss that loses both gives back the synced
// file, one that keeps both the current one, and a torn page is new up to
// its sector count and old after it.
func TestApplyLosesKeepsAndTearsUnsyncedPages(t *testing.T) {
	src := t.TempDir()
	r := NewRecorder()
	f, err := os.Create(filepath.Join(src, "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(b []byte, off int64) {
		t.Helper()
		if _, err := r.WriteAt(f, b, off); err != nil {
			t.Fatal(err)
		}
	}
	write(append(page('a'), page('b')...), 0)
	if err := r.Sync(f); err != nil {
		t.Fatal(err)
	}
	write(page('B'), PageSize)
	write(page('C'), 2*PageSize)
	if r.Unsynced() != 2 {
		t.Fatalf("%d unsynced pages, want 2", r.Unsynced())
	}
	for name, tc := range map[string]struct {
		fates []Fate
		want  []byte
		stats Stats
	}{
		"lost": {[]Fate{Lost, Lost}, bytes.Join([][]byte{page('a'), page('b'), make([]byte, PageSize)}, nil), Stats{Lost: 2}},
		"kept": {[]Fate{Kept, Kept}, bytes.Join([][]byte{page('a'), page('B'), page('C')}, nil), Stats{Kept: 2}},
		"torn": {[]Fate{{Sectors: 3}, Kept}, bytes.Join([][]byte{page('a'), page('B')[:3*SectorSize], page('b')[3*SectorSize:], page('C')}, nil), Stats{Kept: 1, Torn: 1}},
	} {
		dst := t.TempDir()
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, "db"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		var ranks []int
		st, err := r.Apply(src, dst, func(rel string, rank int) Fate {
			if rel != "db" {
				t.Errorf("%s: decide called for %q", name, rel)
			}
			ranks = append(ranks, rank)
			return tc.fates[rank]
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(filepath.Join(dst, "db"))
		if !bytes.Equal(got, tc.want) || st != tc.stats || len(ranks) != 2 || ranks[0] != 0 || ranks[1] != 1 {
			t.Errorf("%s: stats %v ranks %v, file matches: %v", name, st, ranks, bytes.Equal(got, tc.want))
		}
	}
}

// bbolt, run through a Recorder, survives a power loss at either sync of a
// commit: at the first (data pages written, meta not) and at the second
// (meta written, not synced) the commit is lost whole when its pages are,
// and the file opens with the previous commit; kept (or torn after the
// first sector, which holds the whole meta) the second gives the new
// commit. Without the power loss the lost cases would read the new
// value.
func TestBboltSurvivesPowerLossAtEitherSync(t *testing.T) {
	for _, tc := range []struct {
		name   string
		atSync int
		fate   Fate
		want   string
	}{
		{"data pages lost", 1, Lost, "v1"},
		{"meta page lost", 2, Lost, "v1"},
		// bbolt's meta fits in the first sector: torn after it, it is whole.
		{"meta page torn after its first sector", 2, Fate{Sectors: 1}, "v2"},
		{"meta page kept", 2, Kept, "v2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			rec := NewRecorder()
			hook := &strikeAt{Recorder: rec, src: src, dst: t.TempDir(), t: t, fate: tc.fate}
			db, err := bolt.Open(filepath.Join(src, "db"), 0o600, &bolt.Options{FileHook: hook})
			if err != nil {
				t.Fatal(err)
			}
			put := func(v string) {
				if err := db.Update(func(tx *bolt.Tx) error {
					b, err := tx.CreateBucketIfNotExists([]byte("b"))
					if err != nil {
						return err
					}
					return b.Put([]byte("k"), []byte(v))
				}); err != nil {
					t.Fatal(err)
				}
			}
			put("v1")
			hook.countdown = tc.atSync
			put("v2")
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if hook.struck == nil {
				t.Fatal("the power loss never struck")
			}
			after, err := bolt.Open(filepath.Join(hook.dst, "db"), 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("opening what the power loss left (%v): %v", hook.struck, err)
			}
			defer after.Close()
			var got string
			if err := after.View(func(tx *bolt.Tx) error {
				got = string(tx.Bucket([]byte("b")).Get([]byte("k")))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("after the power loss (%v) k = %q, want %q", hook.struck, got, tc.want)
			}
		})
	}
}

// strikeAt copies src to dst and applies a power loss there at the
// countdown-th sync from when countdown is set.
type strikeAt struct {
	*Recorder
	src, dst  string
	t         *testing.T
	fate      Fate
	countdown int
	struck    *Stats
}

func (s *strikeAt) Sync(f *os.File) error {
	if s.countdown > 0 {
		s.countdown--
		if s.countdown == 0 {
			data, err := os.ReadFile(f.Name())
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(s.dst, filepath.Base(f.Name())), data, 0o600); err != nil {
				return err
			}
			st, err := s.Apply(s.src, s.dst, func(string, int) Fate { return s.fate })
			if err != nil {
				return err
			}
			if st == (Stats{}) {
				return errors.New("nothing unsynced at the strike")
			}
			s.struck = &st
		}
	}
	return s.Recorder.Sync(f)
}
