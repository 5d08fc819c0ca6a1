package snapstore

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

var testConfig = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "n1", Address: "a1"},
	{Suffrage: raft.Nonvoter, ID: "n2", Address: "a2"},
}}

func newStore(t *testing.T, fs vfs.FS, retain int) *Store {
	t.Helper()
	s, err := New(fs, "snaps", retain)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func randomData(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// writeSnapshot creates a snapshot holding data, written in uneven chunks.
func writeSnapshot(t *testing.T, s *Store, term, index uint64, data []byte) string {
	t.Helper()
	sink, err := s.Create(1, index, term, testConfig, index-1, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1000+len(rest)%7777)
		if _, err := sink.Write(rest[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return sink.ID()
}

func readSnapshot(t *testing.T, s *Store, id string) (*raft.SnapshotMeta, []byte, error) {
	t.Helper()
	meta, rc, err := s.Open(id)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return meta, b, err
}

func listIDs(t *testing.T, s *Store) []string {
	t.Helper()
	metas, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, m := range metas {
		ids = append(ids, m.ID)
	}
	return ids
}

func dirNames(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 3)
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("new store lists %v", ids)
	}
	data := randomData(1, 300_000)
	id := writeSnapshot(t, s, 2, 10, data)
	if id != "2-10-1" {
		t.Fatalf("ID = %q, want 2-10-1", id)
	}
	want := raft.SnapshotMeta{Version: 1, ID: id, Index: 10, Term: 2, Configuration: testConfig,
		ConfigurationIndex: 9, Size: int64(len(data))}
	metas, err := s.List()
	if err != nil || len(metas) != 1 || !reflect.DeepEqual(*metas[0], want) {
		t.Fatalf("List = %+v, %v; want [%+v]", metas, err, want)
	}
	meta, got, err := readSnapshot(t, s, id)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !reflect.DeepEqual(*meta, want) || !bytes.Equal(got, data) {
		t.Fatalf("Open = %+v and %d bytes; want %+v and the %d bytes written", *meta, len(got), want, len(data))
	}

	// An empty snapshot is a snapshot.
	empty := writeSnapshot(t, s, 2, 11, nil)
	if _, got, err := readSnapshot(t, s, empty); err != nil || len(got) != 0 {
		t.Fatalf("empty snapshot read back %d bytes, %v", len(got), err)
	}

	if _, _, err := s.Open("2-99-9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of an unknown ID: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "..", "../x", "2-10", "2-10-1.tmp", "02-10-1", "a-b-c"} {
		if _, _, err := s.Open(bad); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(%q): %v, want ErrNotFound", bad, err)
		}
	}
	if _, err := s.Create(0, 1, 1, testConfig, 0, nil); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("Create(version 0): %v, want ErrUnsupportedVersion", err)
	}
	if _, err := New(fs, "other", 0); !errors.Is(err, ErrInvalidRetain) {
		t.Fatalf("New(retain 0): %v, want ErrInvalidRetain", err)
	}
}

func TestIDsAndOrder(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 10)
	// Same index twice: distinct IDs. A higher term sorts first even at a
	// lower index.
	a := writeSnapshot(t, s, 1, 50, []byte("a"))
	b := writeSnapshot(t, s, 1, 50, []byte("b"))
	c := writeSnapshot(t, s, 2, 40, []byte("c"))
	d := writeSnapshot(t, s, 1, 60, []byte("d"))
	if got, want := []string{a, b, c, d}, []string{"1-50-1", "1-50-2", "2-40-3", "1-60-4"}; !slices.Equal(got, want) {
		t.Fatalf("IDs %v, want %v", got, want)
	}
	if got, want := listIDs(t, s), []string{c, d, b, a}; !slices.Equal(got, want) {
		t.Fatalf("List order %v, want %v", got, want)
	}
	// Sequence numbers continue after a restart; an interrupted snapshot's
	// number is not reused either.
	sink, err := s.Create(1, 70, 2, testConfig, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sink.ID() != "2-70-5" {
		t.Fatalf("ID %q, want 2-70-5", sink.ID())
	}
	s = newStore(t, fs, 10)
	if e := writeSnapshot(t, s, 3, 1, nil); e != "3-1-6" {
		t.Fatalf("ID after restart %q, want 3-1-6", e)
	}
}

func TestCancelAndMisuse(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 2)
	sink, err := s.Create(1, 5, 1, testConfig, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(randomData(2, 100_000)); err != nil {
		t.Fatal(err)
	}
	// Not visible while being written.
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("List shows %v while a snapshot is being written", ids)
	}
	if _, _, err := s.Open(sink.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of an unfinished snapshot: %v, want ErrNotFound", err)
	}
	if err := sink.Cancel(); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if err := sink.Cancel(); err != nil {
		t.Fatalf("second Cancel: %v (raft may call it twice)", err)
	}
	if _, err := sink.Write([]byte("x")); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Write after Cancel: %v, want ErrSinkClosed", err)
	}
	if err := sink.Close(); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Close after Cancel: %v, want ErrSinkClosed", err)
	}
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("List shows %v after Cancel", ids)
	}
	if names := dirNames(t, fs, "snaps"); len(names) != 0 {
		t.Fatalf("Cancel left %v", names)
	}

	id := writeSnapshot(t, s, 1, 6, []byte("kept"))
	sink2, err := s.Create(1, 7, 1, testConfig, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink2.Write([]byte("x")); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Write after Close: %v, want ErrSinkClosed", err)
	}
	// raft closes the sink again after Persist has closed it.
	if err := sink2.Close(); err != nil {
		t.Fatalf("second Close: %v, want the first Close's nil", err)
	}
	if err := sink2.Cancel(); !errors.Is(err, ErrSinkClosed) {
		t.Fatalf("Cancel after Close: %v, want ErrSinkClosed", err)
	}
	if got := listIDs(t, s); !slices.Equal(got, []string{sink2.ID(), id}) {
		t.Fatalf("List = %v after Cancel-after-Close; the snapshot must stay", got)
	}
}

// rewrite replaces a file's content on fs.
func rewrite(t *testing.T, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	// A clone: vfs.File.Write may scribble on its argument.
	if _, err := f.Write(slices.Clone(b)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorruptDataIsDetected(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 5)
	data := randomData(3, 200_000)
	id := writeSnapshot(t, s, 1, 10, data)
	path := fs.PathJoin("snaps", id, dataFile)

	for _, at := range []int{0, 1, len(data) / 2, len(data) - 1} {
		bad := slices.Clone(data)
		bad[at] ^= 0x01
		rewrite(t, fs, path, bad)
		// Same size, so it is listed and opens; reading it must fail.
		if ids := listIDs(t, s); !slices.Equal(ids, []string{id}) {
			t.Fatalf("List = %v", ids)
		}
		if _, _, err := readSnapshot(t, s, id); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped byte %d: ReadAll error %v, want ErrCorrupt", at, err)
		}
		// A consumer that reads exactly Size bytes and stops gets the
		// verdict too: the read that completes the data is withheld.
		meta, rc, err := s.Open(id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, meta.Size)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped byte %d: ReadFull error %v, want ErrCorrupt", at, err)
		}
		rc.Close()
	}

	// A truncated or extended data file: Open refuses it and List hides it.
	for _, bad := range [][]byte{data[:len(data)-1], data[:4096], {}, append(slices.Clone(data), 0)} {
		rewrite(t, fs, path, bad)
		if _, _, err := s.Open(id); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("data of %d bytes: Open error %v, want ErrCorrupt", len(bad), err)
		}
		if ids := listIDs(t, s); len(ids) != 0 {
			t.Fatalf("List shows %v with a data file of the wrong size", ids)
		}
	}
	rewrite(t, fs, path, data)
	if _, got, err := readSnapshot(t, s, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("restored data: %v", err)
	}
	if err := fs.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(id); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing data file: Open error %v, want ErrCorrupt", err)
	}
}

func TestCorruptMetaIsHidden(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 5)
	older := writeSnapshot(t, s, 1, 5, []byte("older"))
	id := writeSnapshot(t, s, 1, 10, []byte("newer"))
	path := fs.PathJoin("snaps", id, metaFile)
	meta := readFile(t, fs, path)

	for i := range meta {
		bad := slices.Clone(meta)
		bad[i] ^= 0x20
		rewrite(t, fs, path, bad)
		if ids := listIDs(t, s); !slices.Equal(ids, []string{older}) {
			t.Fatalf("meta byte %d changed: List = %v, want only %s", i, ids, older)
		}
		if _, _, err := s.Open(id); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("meta byte %d changed: Open error %v, want ErrCorrupt", i, err)
		}
	}
	for _, bad := range [][]byte{{}, meta[:len(meta)-1], meta[:len(meta)/2]} {
		rewrite(t, fs, path, bad)
		if ids := listIDs(t, s); !slices.Equal(ids, []string{older}) {
			t.Fatalf("meta of %d bytes: List = %v, want only %s", len(bad), ids, older)
		}
	}
	// A meta that is intact but describes another snapshot is not believed.
	rewrite(t, fs, path, readFile(t, fs, fs.PathJoin("snaps", older, metaFile)))
	if _, _, err := s.Open(id); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("meta of another snapshot: Open error %v, want ErrCorrupt", err)
	}
	if err := fs.Remove(path); err != nil {
		t.Fatal(err)
	}
	if ids := listIDs(t, s); !slices.Equal(ids, []string{older}) {
		t.Fatalf("missing meta: List = %v", ids)
	}
}

func TestVerifyingReader(t *testing.T) {
	data := randomData(4, 10_000)
	sum := crc32Of
	for _, tc := range []struct {
		name    string
		stream  []byte
		size    int64
		crc     uint32
		corrupt bool
	}{
		{"exact", data, int64(len(data)), sum(data), false},
		{"empty", nil, 0, sum(nil), false},
		{"short stream", data[:9000], int64(len(data)), sum(data), true},
		{"long stream", append(slices.Clone(data), 1), int64(len(data)), sum(data), true},
		{"wrong crc", data, int64(len(data)), sum(data) + 1, true},
		{"empty but data", []byte{0}, 0, sum(nil), true},
	} {
		for _, chunk := range []int{1, 7, 4096, 1 << 20} {
			v := newVerifyingReader(io.NopCloser(bytes.NewReader(tc.stream)), tc.size, tc.crc)
			var got []byte
			buf := make([]byte, chunk)
			var err error
			for {
				var n int
				n, err = v.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if tc.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s, chunk %d: error %v, want ErrCorrupt", tc.name, chunk, err)
				}
				if int64(len(got)) >= tc.size && tc.size > 0 {
					t.Fatalf("%s, chunk %d: delivered all %d bytes before failing", tc.name, chunk, len(got))
				}
			} else if err != io.EOF || !bytes.Equal(got, tc.stream) {
				t.Fatalf("%s, chunk %d: %d bytes, %v", tc.name, chunk, len(got), err)
			}
			// The verdict sticks.
			if _, again := v.Read(buf); again != err {
				t.Fatalf("%s: second Read after the end returned %v, first %v", tc.name, again, err)
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestRetainReaps(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 2)
	var ids []string
	for i := uint64(1); i <= 5; i++ {
		ids = append(ids, writeSnapshot(t, s, 1, i*10, randomData(i, 5000)))
	}
	if got, want := listIDs(t, s), []string{ids[4], ids[3]}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if got, want := dirNames(t, fs, "snaps"), []string{ids[3], ids[4]}; !slices.Equal(got, want) {
		t.Fatalf("directory holds %v, want %v", got, want)
	}
	for i, id := range ids[3:] {
		if _, got, err := readSnapshot(t, s, id); err != nil || !bytes.Equal(got, randomData(uint64(i+4), 5000)) {
			t.Fatalf("%s: %v", id, err)
		}
	}

	// A snapshot that sorts below the newest (as an install from a leader
	// with an older snapshot can) is not reaped by its own Close: raft
	// opens it right after.
	s1 := newStore(t, vfs.NewMem(), 1)
	newer := writeSnapshot(t, s1, 3, 100, []byte("newer"))
	installed := writeSnapshot(t, s1, 3, 50, []byte("installed"))
	if _, got, err := readSnapshot(t, s1, installed); err != nil || string(got) != "installed" {
		t.Fatalf("just-closed snapshot: %q, %v", got, err)
	}
	if got := listIDs(t, s1); !slices.Equal(got, []string{newer, installed}) {
		t.Fatalf("List = %v", got)
	}
	// The next Close reaps down to retain.
	last := writeSnapshot(t, s1, 4, 10, []byte("last"))
	if got := listIDs(t, s1); !slices.Equal(got, []string{last}) {
		t.Fatalf("List = %v, want [%s]", got, last)
	}
}

func TestNewRemovesLeftovers(t *testing.T) {
	fs := vfs.NewMem()
	s := newStore(t, fs, 2)
	id := writeSnapshot(t, s, 1, 10, []byte("done"))
	sink, err := s.Create(1, 20, 1, testConfig, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("interrupted")); err != nil {
		t.Fatal(err)
	}
	// A half-reaped snapshot and a foreign file.
	if err := fs.MkdirAll(fs.PathJoin("snaps", "1-5-0"+delSuffix), 0o755); err != nil {
		t.Fatal(err)
	}
	rewrite(t, fs, fs.PathJoin("snaps", "README"), []byte("not ours"))

	s = newStore(t, fs, 2) // as after a crash
	if got, want := dirNames(t, fs, "snaps"), []string{id, "README"}; !slices.Equal(got, want) {
		t.Fatalf("after New the directory holds %v, want %v", got, want)
	}
	if got := listIDs(t, s); !slices.Equal(got, []string{id}) {
		t.Fatalf("List = %v", got)
	}
}

func TestOnDisk(t *testing.T) {
	dir := t.TempDir()
	s, err := New(nil, dir+"/a/b/snaps", 1)
	if err != nil {
		t.Fatal(err)
	}
	data := randomData(5, 100_000)
	id := writeSnapshot(t, s, 1, 1, data)
	if _, got, err := readSnapshot(t, s, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	id2 := writeSnapshot(t, s, 1, 2, data[:10])
	if got := listIDs(t, s); !slices.Equal(got, []string{id2}) {
		t.Fatalf("List = %v", got)
	}
	if names := dirNames(t, vfs.Default, dir+"/a/b/snaps"); !slices.Equal(names, []string{id2}) {
		t.Fatalf("directory holds %v", names)
	}
	if strings.Contains(id2, "/") {
		t.Fatal("ID contains a path separator")
	}
}

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// scribbleFS is a filesystem whose files' Write flips every byte of its
// argument after writing it, as vfs.File allows (and MemFS does in race
// and invariants builds).
type scribbleFS struct{ vfs.FS }

type scribbleFile struct{ vfs.File }

func (fs scribbleFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return scribbleFile{f}, nil
}

func (f scribbleFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	for i := range p {
		p[i] ^= 0xff
	}
	return n, err
}

// TestSinkLeavesCallerBytesAlone: the sink follows io.Writer's contract
// even on a vfs.File that does not, and checksums what it was given.
func TestSinkLeavesCallerBytesAlone(t *testing.T) {
	s := newStore(t, scribbleFS{vfs.NewMem()}, 1)
	data := randomData(6, 3*bufSize+123)
	sink, err := s.Create(1, 1, 1, testConfig, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	arg := slices.Clone(data)
	for _, chunk := range [][]byte{arg[:10], arg[10 : 2*bufSize], arg[2*bufSize:]} {
		if _, err := sink.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(arg, data) {
		t.Fatalf("Write modified its argument")
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got, err := readSnapshot(t, s, sink.ID()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
}
