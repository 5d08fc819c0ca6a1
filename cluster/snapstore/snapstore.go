// Package snapstore owns a node's Raft snapshot files: a hashicorp/raft
// SnapshotStore on a vfs.FS, so that a simulated crash (a CrashClone of a
// crashable MemFS) takes the snapshots down with the rest of the node.
//
// It fixes what raft's own stores lack. Unlike FileSnapshotStore it uses
// only the vfs.FS, syncs every file and directory a completed snapshot
// depends on before the rename that publishes it, derives IDs from
// (term, index, sequence) instead of the wall clock, and checks a CRC-32C
// and the size of the data when it is read back. Unlike InmemSnapshotStore
// it never lists a snapshot before its Close succeeds, and Cancel discards.
//
// Layout under the store's directory:
//
//	<term>-<index>-<seq>/      a completed snapshot
//	    state.bin              the data, exactly as the sink received it
//	    meta.json              raft.SnapshotMeta, size and CRC-32C of state.bin
//	<id>.tmp/                  a snapshot being written; New removes it
//	<id>.del/                  a snapshot being reaped; New removes it
package snapstore

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

var (
	// ErrCorrupt is returned when a snapshot's data does not match its
	// recorded size or checksum, or its metadata cannot be read back.
	ErrCorrupt = errors.New("snapstore: snapshot corrupt")
	// ErrNotFound is returned by Open for an ID that names no completed
	// snapshot.
	ErrNotFound = errors.New("snapstore: snapshot not found")
	// ErrSinkClosed is returned by a sink's Write after Close or Cancel,
	// by Close after Cancel, and by Cancel after a successful Close.
	ErrSinkClosed = errors.New("snapstore: sink already closed or cancelled")
	// ErrUnsupportedVersion is returned by Create for a snapshot version
	// other than 1, the only one hashicorp/raft v1.x creates.
	ErrUnsupportedVersion = errors.New("snapstore: unsupported snapshot version")
	// ErrInvalidRetain is returned by New for a retain count below 1.
	ErrInvalidRetain = errors.New("snapstore: retain must be at least 1")
)

const (
	dataFile  = "state.bin"
	metaFile  = "meta.json"
	tmpSuffix = ".tmp"
	delSuffix = ".del"

	// metaFormat versions the meta.json layout, independently of raft's
	// snapshot version.
	metaFormat = 1

	bufSize = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Store is a raft.SnapshotStore on a vfs.FS. It is safe for concurrent use.
// One Store must own its directory.
type Store struct {
	fs     vfs.FS
	dir    string
	retain int

	// mu guards lastSeq; it is held for no I/O at all.
	mu      sync.Mutex
	lastSeq uint64 // the highest sequence number handed out or found on disk
	// reaping serializes reaps (a one-slot semaphore). A reap holds it
	// across renames and syncs, which a slow disk can make take time; a
	// goroutine waiting on a channel is durably blocked inside a synctest
	// bubble, whereas one waiting on a sync.Mutex is not and would stop
	// the bubble's clock, and with it the slow sync it waits for.
	reaping chan struct{}
}

var _ raft.SnapshotStore = (*Store)(nil)

// New opens the store in dir on fs (nil means vfs.Default), creating the
// directory if needed, and removes what interrupted snapshots and reaps
// left behind. Create keeps the newest retain snapshots.
func New(fs vfs.FS, dir string, retain int) (*Store, error) {
	if retain < 1 {
		return nil, ErrInvalidRetain
	}
	if fs == nil {
		fs = vfs.Default
	}
	s := &Store{fs: fs, dir: dir, retain: retain, reaping: make(chan struct{}, 1)}
	if err := mkdirAllSynced(fs, dir); err != nil {
		return nil, fmt.Errorf("snapstore: create %s: %w", dir, err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("snapstore: list %s: %w", dir, err)
	}
	removed := false
	for _, name := range names {
		base, leftover := strings.CutSuffix(name, tmpSuffix)
		if !leftover {
			base, leftover = strings.CutSuffix(name, delSuffix)
		}
		if _, _, seq, ok := parseID(base); ok {
			s.lastSeq = max(s.lastSeq, seq)
		}
		if leftover {
			if err := fs.RemoveAll(fs.PathJoin(dir, name)); err != nil {
				return nil, fmt.Errorf("snapstore: remove leftover %s: %w", name, err)
			}
			removed = true
		}
	}
	if removed {
		if err := syncDir(fs, dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Create starts a snapshot. Its ID is "<term>-<index>-<seq>", seq one more
// than any sequence number this store has seen, so that two snapshots at
// the same index never collide and IDs never depend on the clock. Only
// version 1 is accepted; the meta's deprecated Peers field, read only for
// version 0, is left empty.
func (s *Store) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, version)
	}
	s.mu.Lock()
	s.lastSeq++
	id := formatID(term, index, s.lastSeq)
	s.mu.Unlock()

	tmp := s.fs.PathJoin(s.dir, id+tmpSuffix)
	if err := s.fs.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("snapstore: create %s: %w", tmp, err)
	}
	f, err := s.fs.Create(s.fs.PathJoin(tmp, dataFile), vfs.WriteCategoryUnspecified)
	if err != nil {
		_ = s.fs.RemoveAll(tmp)
		return nil, fmt.Errorf("snapstore: create data file: %w", err)
	}
	return &sink{
		store: s,
		tmp:   tmp,
		file:  f,
		buf:   make([]byte, 0, bufSize),
		crc:   crc32.New(castagnoli),
		meta: raft.SnapshotMeta{
			Version:            version,
			ID:                 id,
			Index:              index,
			Term:               term,
			Configuration:      configuration.Clone(),
			ConfigurationIndex: configurationIndex,
		},
	}, nil
}

// List returns the completed snapshots, newest first by (term, index,
// seq). A directory without readable, consistent metadata or whose data
// file has the wrong size is not a completed snapshot and is left out.
func (s *Store) List() ([]*raft.SnapshotMeta, error) {
	snaps, err := s.complete()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, len(snaps))
	for i, m := range snaps {
		out[i] = &m.Meta
	}
	return out, nil
}

// Open returns a snapshot's metadata and a reader that streams its data
// and checks it: once the recorded size has been read, the reader confirms
// the file ends there and the CRC-32C matches, and otherwise returns an
// error wrapping ErrCorrupt instead of the last bytes read (so a consumer
// that reads the whole snapshot, to io.EOF or with io.ReadFull, cannot miss
// it). A consumer that stops reading early gets no verdict.
func (s *Store) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if _, _, _, ok := parseID(id); !ok {
		return nil, nil, fmt.Errorf("%w: %q is not a snapshot ID", ErrNotFound, id)
	}
	m, err := s.readMeta(id)
	if err != nil {
		return nil, nil, err
	}
	path := s.fs.PathJoin(s.dir, id, dataFile)
	f, err := s.fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s has metadata but no data file", ErrCorrupt, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("snapstore: open %s: %w", path, err)
	}
	if err := checkSize(f, m.Meta.Size); err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s: %w", id, err)
	}
	meta := m.Meta
	meta.Configuration = meta.Configuration.Clone()
	return &meta, newVerifyingReader(f, m.Meta.Size, m.CRC32C), nil
}

// storedMeta is the content of meta.json.
type storedMeta struct {
	Format int
	Meta   raft.SnapshotMeta
	// CRC32C is the Castagnoli CRC of state.bin; its size is Meta.Size.
	CRC32C uint32
}

// encodeMeta renders m as one line of JSON followed by a line holding the
// CRC-32C of that JSON in hex, so that a damaged meta.json is rejected
// rather than half-believed.
func encodeMeta(m *storedMeta) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(body, "\n%08x\n", crc32.Checksum(body, castagnoli)), nil
}

func decodeMeta(b []byte) (*storedMeta, error) {
	body, sum, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(sum) != fmt.Sprintf("%08x\n", crc32.Checksum(body, castagnoli)) {
		return nil, fmt.Errorf("%w: meta checksum mismatch", ErrCorrupt)
	}
	m := &storedMeta{}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%w: meta: %v", ErrCorrupt, err)
	}
	if m.Format != metaFormat {
		return nil, fmt.Errorf("%w: meta format %d, want %d", ErrCorrupt, m.Format, metaFormat)
	}
	return m, nil
}

// readMeta reads and checks the metadata of the completed snapshot id.
func (s *Store) readMeta(id string) (*storedMeta, error) {
	path := s.fs.PathJoin(s.dir, id, metaFile)
	f, err := s.fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("snapstore: open %s: %w", path, err)
	}
	defer f.Close()
	// meta.json is small unless damaged; do not let damage make it huge.
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("snapstore: read %s: %w", path, err)
	}
	m, err := decodeMeta(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	term, index, _, _ := parseID(id)
	if m.Meta.ID != id || m.Meta.Term != term || m.Meta.Index != index || m.Meta.Size < 0 {
		return nil, fmt.Errorf("%w: %s: meta describes %s (term %d, index %d, size %d)",
			ErrCorrupt, id, m.Meta.ID, m.Meta.Term, m.Meta.Index, m.Meta.Size)
	}
	return m, nil
}

// complete returns the completed snapshots, newest first.
func (s *Store) complete() ([]*storedMeta, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snapstore: list %s: %w", s.dir, err)
	}
	var out []*storedMeta
	for _, name := range names {
		if _, _, _, ok := parseID(name); !ok {
			continue // tmp, del or foreign
		}
		m, err := s.readMeta(name)
		if err != nil {
			continue
		}
		if st, err := s.fs.Stat(s.fs.PathJoin(s.dir, name, dataFile)); err != nil || st.Size() != m.Meta.Size {
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *storedMeta) int { return compareIDs(b.Meta.ID, a.Meta.ID) })
	return out, nil
}

// reap removes the completed snapshots beyond the newest retain, never
// keep. Each is first renamed to <id>.del and the rename made durable, so
// that a crash mid-removal leaves something New cleans up rather than a
// half-deleted snapshot that still looks complete.
func (s *Store) reap(keep string) error {
	s.reaping <- struct{}{}
	defer func() { <-s.reaping }()
	snaps, err := s.complete()
	if err != nil {
		return err
	}
	var doomed []string
	kept := 0
	for _, m := range snaps {
		if kept < s.retain || m.Meta.ID == keep {
			kept++
			continue
		}
		doomed = append(doomed, m.Meta.ID)
	}
	if len(doomed) == 0 {
		return nil
	}
	for _, id := range doomed {
		if err := s.fs.Rename(s.fs.PathJoin(s.dir, id), s.fs.PathJoin(s.dir, id+delSuffix)); err != nil {
			return fmt.Errorf("snapstore: reap %s: %w", id, err)
		}
	}
	if err := syncDir(s.fs, s.dir); err != nil {
		return err
	}
	for _, id := range doomed {
		if err := s.fs.RemoveAll(s.fs.PathJoin(s.dir, id+delSuffix)); err != nil {
			return fmt.Errorf("snapstore: reap %s: %w", id, err)
		}
	}
	return nil
}

func formatID(term, index, seq uint64) string {
	return fmt.Sprintf("%d-%d-%d", term, index, seq)
}

// parseID accepts exactly what formatID produces.
func parseID(id string) (term, index, seq uint64, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var v [3]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		v[i] = n
	}
	if formatID(v[0], v[1], v[2]) != id { // no leading zeros or signs
		return 0, 0, 0, false
	}
	return v[0], v[1], v[2], true
}

// compareIDs orders IDs by term, then index, then sequence number.
func compareIDs(a, b string) int {
	at, ai, as, _ := parseID(a)
	bt, bi, bs, _ := parseID(b)
	switch {
	case at != bt:
		return cmpUint(at, bt)
	case ai != bi:
		return cmpUint(ai, bi)
	default:
		return cmpUint(as, bs)
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func checkSize(f vfs.File, want int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != want {
		return fmt.Errorf("%w: data file has %d bytes, meta says %d", ErrCorrupt, st.Size(), want)
	}
	return nil
}

// syncDir makes dir's entries (creations, renames, removals) durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("snapstore: open dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapstore: sync dir %s: %w", dir, err)
	}
	return nil
}

// mkdirAllSynced creates dir and any missing parents, and syncs the parent
// of each directory it created so that the whole path survives a crash.
func mkdirAllSynced(fs vfs.FS, dir string) error {
	var missing []string
	for p := dir; ; {
		_, err := fs.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
		parent := fs.PathDir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range missing {
		if err := syncDir(fs, fs.PathDir(p)); err != nil {
			return err
		}
	}
	return nil
}

// sink writes one snapshot into its tmp directory. It is safe for use by
// one goroutine at a time (raft's Persist, then Close or Cancel), and
// guards its state so that misuse gets an error, not a corrupt snapshot.
type sink struct {
	store *Store
	tmp   string

	mu        sync.Mutex
	done      bool  // Close or Cancel has run
	closed    bool  // Close has run
	closeErr  error // what the first Close returned
	published bool  // Close got as far as publishing the snapshot
	file      vfs.File
	// buf batches small writes. The sink never hands its caller's slice
	// to the file: vfs.File.Write may modify the slice it is given (MemFS
	// does, in race and invariants builds), which io.Writer forbids.
	buf  []byte
	crc  hash.Hash32
	size int64
	err  error // first write error; Close then fails
	meta raft.SnapshotMeta
}

func (k *sink) ID() string { return k.meta.ID }

func (k *sink) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return 0, ErrSinkClosed
	}
	if k.err != nil {
		return 0, k.err
	}
	k.crc.Write(p)
	k.size += int64(len(p))
	for written := 0; written < len(p); {
		n := copy(k.buf[len(k.buf):cap(k.buf)], p[written:])
		k.buf = k.buf[:len(k.buf)+n]
		written += n
		if len(k.buf) == cap(k.buf) {
			if err := k.flush(); err != nil {
				return written, err
			}
		}
	}
	return len(p), nil
}

// flush writes out buf; a failure is sticky and fails Close.
func (k *sink) flush() error {
	if len(k.buf) == 0 {
		return nil
	}
	_, err := k.file.Write(k.buf)
	k.buf = k.buf[:0]
	if err != nil {
		k.err = fmt.Errorf("snapstore: write %s: %w", k.meta.ID, err)
	}
	return k.err
}

// Close publishes the snapshot. In order: flush and sync the data, write
// and sync meta.json, sync the tmp directory (its entries), rename it to
// the final name, sync the parent (the rename). A crash before the rename
// is durable leaves only a tmp directory; after it, a complete snapshot.
// Then older snapshots beyond the retain count are reaped; a reap error is
// returned, but the new snapshot stays published.
//
// A second Close returns what the first returned: raft's takeSnapshot
// calls Close after FSMSnapshot.Persist, whose contract is to close the
// sink itself. Close after Cancel returns ErrSinkClosed: the data is gone,
// and raft must not believe in the snapshot.
func (k *sink) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return k.closeErr
	}
	if k.done {
		return ErrSinkClosed
	}
	k.done, k.closed = true, true
	k.closeErr = k.close()
	return k.closeErr
}

func (k *sink) close() error {
	if err := k.publish(); err != nil {
		if k.file != nil {
			_ = k.file.Close()
		}
		_ = k.store.fs.RemoveAll(k.tmp)
		return err
	}
	if err := k.store.reap(k.meta.ID); err != nil {
		return fmt.Errorf("snapshot %s published, but reaping older ones failed: %w", k.meta.ID, err)
	}
	return nil
}

func (k *sink) publish() error {
	fs, id := k.store.fs, k.meta.ID
	if k.err != nil {
		return k.err
	}
	if err := k.flush(); err != nil {
		return err
	}
	if err := k.file.Sync(); err != nil {
		return fmt.Errorf("snapstore: sync %s: %w", id, err)
	}
	err := k.file.Close()
	k.file = nil
	if err != nil {
		return fmt.Errorf("snapstore: close %s: %w", id, err)
	}

	k.meta.Size = k.size
	b, err := encodeMeta(&storedMeta{Format: metaFormat, Meta: k.meta, CRC32C: k.crc.Sum32()})
	if err != nil {
		return fmt.Errorf("snapstore: encode meta of %s: %w", id, err)
	}
	if err := writeFileSynced(fs, fs.PathJoin(k.tmp, metaFile), b); err != nil {
		return err
	}
	if err := syncDir(fs, k.tmp); err != nil {
		return err
	}
	if err := fs.Rename(k.tmp, fs.PathJoin(k.store.dir, id)); err != nil {
		return fmt.Errorf("snapstore: publish %s: %w", id, err)
	}
	k.published = true
	// From here on the snapshot may already be visible. If this sync
	// fails, Close still reports failure (raft then neither restores nor
	// compacts), and the snapshot, complete either way, may or may not
	// survive a crash.
	return syncDir(fs, k.store.dir)
}

// Cancel discards the snapshot. It may be called more than once (raft
// cancels after a Persist that may have cancelled already). After a Close
// that published the snapshot it returns ErrSinkClosed and removes nothing.
func (k *sink) Cancel() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.published {
		return ErrSinkClosed
	}
	if k.done {
		return nil
	}
	k.done = true
	if k.file != nil {
		_ = k.file.Close()
		k.file = nil
	}
	if err := k.store.fs.RemoveAll(k.tmp); err != nil {
		return fmt.Errorf("snapstore: cancel %s: %w", k.meta.ID, err)
	}
	return nil
}

func writeFileSynced(fs vfs.FS, path string, b []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("snapstore: create %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapstore: write %s: %w", path, err)
	}
	return nil
}

// verifyingReader streams a data file and checks its size and CRC-32C when
// the expected size has been read.
type verifyingReader struct {
	f       io.Closer // nil once closed
	r       *bufio.Reader
	want    int64
	wantCRC uint32
	crc     hash.Hash32
	size    int64
	err     error // sticky: io.EOF once verified, or the failure
}

func newVerifyingReader(f io.ReadCloser, size int64, crc uint32) *verifyingReader {
	return &verifyingReader{f: f, r: bufio.NewReaderSize(f, bufSize), want: size, wantCRC: crc, crc: crc32.New(castagnoli)}
}

// Read never returns bytes beyond the recorded size, and withholds the
// bytes of the read that reaches it if the check fails.
func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if rest := v.want - v.size; int64(len(p)) > rest {
		p = p[:rest]
	}
	n := 0
	if len(p) > 0 {
		var err error
		n, err = v.r.Read(p)
		v.crc.Write(p[:n])
		v.size += int64(n)
		if err == io.EOF && v.size < v.want {
			v.err = fmt.Errorf("%w: data ends after %d bytes, meta says %d", ErrCorrupt, v.size, v.want)
			return 0, v.err
		}
		if err != nil && err != io.EOF {
			v.err = fmt.Errorf("snapstore: read: %w", err)
			return 0, v.err
		}
	}
	if v.size < v.want {
		return n, nil
	}
	// The recorded size has been read: the file must end here and match.
	if _, err := v.r.Peek(1); err == nil {
		v.err = fmt.Errorf("%w: data runs past the %d bytes meta records", ErrCorrupt, v.want)
		return 0, v.err
	} else if err != io.EOF {
		v.err = fmt.Errorf("snapstore: read: %w", err)
		return 0, v.err
	}
	if got := v.crc.Sum32(); got != v.wantCRC {
		v.err = fmt.Errorf("%w: data CRC-32C %08x, meta says %08x", ErrCorrupt, got, v.wantCRC)
		return 0, v.err
	}
	v.err = io.EOF
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (v *verifyingReader) Close() error {
	if v.f == nil {
		return nil
	}
	err := v.f.Close()
	v.f = nil
	return err
}
