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
