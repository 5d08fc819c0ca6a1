package snapshot

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"
)

func checkInPieces(stream []byte, sizes []int) error {
	var c Checker
	for len(stream) > 0 {
		n := len(stream)
		if len(sizes) > 0 {
			n = min(n, sizes[0])
			sizes = sizes[1:]
		}
		_, _ = c.Write(stream[:n])
		stream = stream[n:]
	}
	return c.Check()
}

func TestCheckerAcceptsEveryWholeStreamWrittenInAnyPieces(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stream := encode(t, genHeader(t), genPairs(t, 40))
		sizes := rapid.SliceOfN(rapid.IntRange(1, 9), 0, 200).Draw(t, "writeSizes")
		if err := checkInPieces(stream, sizes); err != nil {
			t.Fatalf("whole stream refused: %v", err)
		}
	})
}

func TestCheckerRefusesCorruptOrTruncatedStreams(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stream := encode(t, genHeader(t), genPairs(t, 40))
		sizes := rapid.SliceOfN(rapid.IntRange(1, 9), 0, 200).Draw(t, "writeSizes")
		bad := bytes.Clone(stream)
		if rapid.Bool().Draw(t, "truncate") {
			bad = bad[:rapid.IntRange(0, len(bad)-1).Draw(t, "cut")]
		} else {
			bad[rapid.IntRange(0, len(bad)-1).Draw(t, "pos")] ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
		}
		if err := checkInPieces(bad, sizes); err == nil {
			t.Fatalf("damaged stream of %d bytes (from %d) accepted", len(bad), len(stream))
		}
	})
}

func TestVerifyingStoreNeverKeepsADamagedSnapshot(t *testing.T) {
	stream := encode(t, Header{Index: 3, Term: 1}, []pair{{[]byte("a"), []byte("1")}, {[]byte("b"), []byte("2")}})
	corrupt := bytes.Clone(stream)
	corrupt[len(corrupt)/2] ^= 0x10
	for name, body := range map[string][]byte{"corrupt": corrupt, "truncated": stream[:len(stream)-3], "intact": stream} {
		t.Run(name, func(t *testing.T) {
			file, err := raft.NewFileSnapshotStore(t.TempDir(), 2, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			store := VerifyingStore(file)
			sink, err := store.Create(raft.SnapshotVersionMax, 3, 1, raft.Configuration{}, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sink.Write(body); err != nil {
				t.Fatal(err)
			}
			err = sink.Close()
			metas, _ := store.List()
			if name == "intact" {
				if err != nil || len(metas) != 1 {
					t.Fatalf("intact snapshot: close error %v, %d kept", err, len(metas))
				}
				_, rc, err := store.Open(metas[0].ID)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(rc)
				if !bytes.Equal(got, stream) {
					t.Fatal("kept snapshot differs from what was written")
				}
				return
			}
			if err == nil {
				t.Fatalf("%s snapshot closed without error", name)
			}
			if !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("unexpected error %v", err)
			}
			if len(metas) != 0 {
				t.Fatalf("damaged snapshot is listed: %+v", metas[0])
			}
		})
	}
}

// bytesStore is a raft.SnapshotStore over byte slices, for Open tests.
type bytesStore struct {
	raft.SnapshotStore
	data map[string][]byte
}

func (s bytesStore) List() ([]*raft.SnapshotMeta, error) {
	var out []*raft.SnapshotMeta
	for id := range s.data {
		out = append(out, &raft.SnapshotMeta{ID: id})
	}
	return out, nil
}

func (s bytesStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	return &raft.SnapshotMeta{ID: id}, io.NopCloser(bytes.NewReader(s.data[id])), nil
}

// A stored snapshot that rotted after it was kept (one byte flipped
// anywhere) is refused by Open before the caller reads a byte, left out of
// List from then on, and reported; an intact one opens as it was stored.
func TestVerifyingStoreRefusesASnapshotThatRotted(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stream := encode(t, genHeader(t), genPairs(t, 20))
		rotten := bytes.Clone(stream)
		rotten[rapid.IntRange(0, len(rotten)-1).Draw(t, "offset")] ^= byte(rapid.IntRange(1, 255).Draw(t, "flip"))
		var reported []string
		v := NewVerifyingStore(bytesStore{data: map[string][]byte{"good": stream, "rotten": rotten}},
			func(id string, err error) { reported = append(reported, id) })
		if _, _, err := v.Open("rotten"); !errors.Is(err, ErrRefused) {
			t.Fatalf("rotten snapshot opened: %v", err)
		}
		_, rc, err := v.Open("good")
		if err != nil {
			t.Fatalf("intact snapshot refused: %v", err)
		}
		got, _ := io.ReadAll(rc)
		if !bytes.Equal(got, stream) {
			t.Fatal("intact snapshot opened with other bytes")
		}
		metas, _ := v.List()
		if len(metas) != 1 || metas[0].ID != "good" || len(reported) != 1 || reported[0] != "rotten" {
			t.Fatalf("listed %v, reported %v; want only good listed and rotten reported", metas, reported)
		}
	})
}
