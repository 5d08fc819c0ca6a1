// Package pebble owns the Pebble (LSM) implementation of engines.Engine.
//
// Layout of the Pebble keyspace: every user key k is stored as 'd'+k, and the
// engines.Applied position sits under the single meta key "m". Both lie inside
// [d, n), so one IngestAndExcise over that span replaces data and position in
// one atomic step. A point-in-time view is a Pebble Iterator, not a
// pebble.Snapshot: an excise empties an open Snapshot, while an open Iterator
// keeps the version it was created on.
//
// Install streams its source into sstables in a staging directory under the
// engine's directory and ingests them with an excise of the whole keyspace.
// Staged files of an install interrupted by a crash are removed by Open.
package pebble

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftsnap/testbed/engines"
)

// Options configures an engine. The zero value opens on the real disk with
// synced commits and a logger that never exits the process.
type Options struct {
	// FS is the filesystem the engine lives on; nil means vfs.Default (disk).
	// The simulator passes vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// NoSync commits batches without waiting for the WAL to be synced: a
	// crash may then lose the latest writes (never tear one).
	NoSync bool
	// Logger receives Pebble's messages. nil discards them. Whatever logger
	// is given, a Pebble fatal error (Fatalf) is also recorded by the engine,
	// which then fails every later operation with ErrFailed; the nil logger's
	// Fatalf returns instead of exiting the process as Pebble's default does.
	Logger pdb.Logger
	// InstallFileSize is the size at which Install starts a new staged
	// sstable; 0 means 16 MiB (small files keep the writer's per-file index, and so the
	// install's heap, from growing with the snapshot).
	InstallFileSize int64
}

// Sizes chosen for many engines sharing one process in the simulator while
// staying well above the install and streaming throughput floors.
const (
	cacheSize              = 8 << 20
	memTableSize           = 4 << 20
	blockSize              = 32 << 10
	defaultInstallFileSize = 16 << 20
	stagingDirName         = "install-staging"
)

// ErrViewsOpen is returned by Close while views are still open: they pin
// Pebble state that must be released before the DB closes.
var ErrViewsOpen = errors.New("pebble engine: views still open")

// ErrFailed is returned by every operation after Pebble reported a fatal
// error (for example a failed WAL or MANIFEST write); the engine must be
// closed and reopened.
var ErrFailed = errors.New("pebble engine: fatal storage error")

// ErrCorrupt is returned when the stored applied position cannot be decoded.
var ErrCorrupt = errors.New("pebble engine: corrupt applied-position record")

// ErrUnknownOp is returned by Write for an op whose Kind is neither OpPut nor
// OpDelete.
var ErrUnknownOp = errors.New("pebble engine: unknown op kind")

// Keyspace layout. exciseSpan covers data and meta and nothing else.
const dataPrefix = 'd'

var (
	metaKey    = []byte("m")
	dataLower  = []byte{dataPrefix}
	dataUpper  = []byte{dataPrefix + 1}
	exciseSpan = pdb.KeyRange{Start: []byte("d"), End: []byte("n")}
	// viewBounds covers everything a view reads: data and the meta key.
	viewBounds = pdb.IterOptions{LowerBound: exciseSpan.Start, UpperBound: exciseSpan.End}
	// dataBounds restricts view iterators to user data.
	dataBounds = pdb.IterOptions{LowerBound: dataLower, UpperBound: dataUpper}
)

// Engine is a Pebble database implementing engines.Engine.
type Engine struct {
	db    *pdb.DB
	popts *pdb.Options // with defaults filled in, for sstable writer options
	fs    vfs.FS
	// dir is the engine's directory; dbDir is where its DB lives: dir
	// itself, or a subdirectory of it once a checkpoint was restored
	// (see RestoreCheckpoint).
	dir, dbDir string
	logger     pdb.Logger
	stagingDir string
	fileSize   int64
	writeOpts  *pdb.WriteOptions
	fatal      *fatalRecorder
	gate       gate
	installSeq atomic.Uint64 // names each install's staging subdirectory
}

var _ engines.Engine = (*Engine)(nil)

// Open opens (creating if needed) the engine stored in dir and removes
// what a crash left of an install (staged files) or of a restore from a
// checkpoint (see RestoreCheckpoint).
func Open(dir string, opts Options) (*Engine, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebble engine: create %s: %w", dir, err)
	}
	stagingDir := fs.PathJoin(dir, stagingDirName)
	// An install's staged files are only referenced by the DB after a
	// successful ingest (which links them into the DB directory), so whatever
	// is left here belongs to no one.
	if err := fs.RemoveAll(stagingDir); err != nil {
		return nil, fmt.Errorf("pebble engine: remove install leftovers: %w", err)
	}
	live, err := liveDBDir(fs, dir)
	if err != nil {
		return nil, err
	}
	fileSize := opts.InstallFileSize
	if fileSize <= 0 {
		fileSize = defaultInstallFileSize
	}
	writeOpts := pdb.Sync
	if opts.NoSync {
		writeOpts = pdb.NoSync
	}
	e := &Engine{
		fs:         fs,
		dir:        dir,
		stagingDir: stagingDir,
		fileSize:   fileSize,
		writeOpts:  writeOpts,
		logger:     opts.Logger,
	}
	if err := e.openDB(live); err != nil {
		return nil, err
	}
	return e, nil
}

// pebbleOptions are the Pebble options of every DB an engine opens: its
// own, and the checkpoints it reads. Each Open gets a fresh set.
func pebbleOptions(fs vfs.FS, logger pdb.Logger) *pdb.Options {
	popts := &pdb.Options{
		FS: fs,
		// Older table formats use a row-block writer that pools channels
		// globally, which breaks the second testing/synctest bubble of a
		// process (DESIGN.md rule 10). The columnar writer also needs
		// Experimental.EnableColumnarBlocks, which EnsureDefaults turns on;
		// left off, DB.TableFormat falls back to the row-block format.
		// FormatNewest also allows IngestAndExcise.
		FormatMajorVersion: pdb.FormatNewest,
		CacheSize:          cacheSize,
		MemTableSize:       memTableSize,
		Logger:             logger,
	}
	for i := range popts.Levels {
		popts.Levels[i].BlockSize = blockSize
		// Compression costs CPU that many simulated nodes share on few
		// cores, for disk space nobody here needs: on 100-byte random
		// values Snappy took install from ~200 to ~150 MB/s and view
		// streaming from ~1.3 GB/s to ~0.55 GB/s.
		popts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	// Read sampling draws from the process-wide, unseedable math/rand/v2
	// and schedules compactions from it, so a simulated run would not
	// replay; the simulator's data sets are too small to need it.
	popts.Experimental.ReadSamplingMultiplier = -1
	popts.EnsureDefaults()
	return popts
}

// openDB opens the engine's DB in dbDir.
func (e *Engine) openDB(dbDir string) error {
	fatal := &fatalRecorder{next: e.logger}
	popts := pebbleOptions(e.fs, fatal)
	db, err := pdb.Open(dbDir, popts)
	if err != nil {
		return fmt.Errorf("pebble engine: open %s: %w", dbDir, err)
	}
	if err := fatal.failure(); err != nil {
		return errors.Join(err, db.Close())
	}
	e.db, e.popts, e.fatal, e.dbDir = db, popts, fatal, dbDir
	return nil
}

// enter admits an operation, or says why it may not run. Every successful
// enter must be paired with leave.
func (e *Engine) enter() error {
	if err := e.fatal.failure(); err != nil {
		return err
	}
	if !e.gate.enter() {
		return engines.ErrClosed
	}
	return nil
}

// leave ends an operation; a fatal error Pebble reported meanwhile overrides
// err, because Pebble may carry on after one as if nothing had happened.
func (e *Engine) leave(err error) error {
	e.gate.leave()
	if ferr := e.fatal.failure(); ferr != nil {
		return errors.Join(ferr, err)
	}
	return err
}

// checkKey enforces the limits shared by all engines.
func checkKey(key []byte) error {
	if len(key) == 0 {
		return engines.ErrEmptyKey
	}
	if len(key) > engines.MaxKeyLen {
		return fmt.Errorf("%w: key of %d bytes", engines.ErrTooLarge, len(key))
	}
	return nil
}

func checkValue(value []byte) error {
	if len(value) > engines.MaxValueLen {
		return fmt.Errorf("%w: value of %d bytes", engines.ErrTooLarge, len(value))
	}
	return nil
}

func dataKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = dataPrefix
	copy(k[1:], key)
	return k
}

// Get returns a copy of the value stored under key.
func (e *Engine) Get(key []byte) (value []byte, found bool, err error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := e.enter(); err != nil {
		return nil, false, err
	}
	value, found, err = e.get(dataKey(key))
	return value, found, e.leave(err)
}

func (e *Engine) get(k []byte) ([]byte, bool, error) {
	v, closer, err := e.db.Get(k)
	if errors.Is(err, pdb.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	// Pebble's slice is only valid until closer.Close.
	out := make([]byte, len(v))
	copy(out, v)
	return out, true, closer.Close()
}

// Write applies b atomically with b.Applied, synced unless Options.NoSync.
func (e *Engine) Write(b engines.Batch) error {
	for i := range b.Ops {
		op := &b.Ops[i]
		if err := checkKey(op.Key); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		switch op.Kind {
		case engines.OpPut:
			if err := checkValue(op.Value); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
		case engines.OpDelete:
		default:
			return fmt.Errorf("op %d: %w %d", i, ErrUnknownOp, op.Kind)
		}
	}
	meta, err := encodeApplied(b.Applied)
	if err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		return err
	}
	batch := e.db.NewBatch()
	for i := range b.Ops {
		op := &b.Ops[i]
		// Deferred ops build the prefixed key in the batch's own buffer,
		// saving an allocation per op.
		var d *pdb.DeferredBatchOp
		if op.Kind == engines.OpPut {
			d = batch.SetDeferred(1+len(op.Key), len(op.Value))
			copy(d.Value, op.Value)
		} else {
			d = batch.DeleteDeferred(1 + len(op.Key))
		}
		d.Key[0] = dataPrefix
		copy(d.Key[1:], op.Key)
		if err = d.Finish(); err != nil {
			break
		}
	}
	if err == nil {
		err = batch.Set(metaKey, meta, nil)
	}
	if err == nil {
		err = e.db.Apply(batch, e.writeOpts)
	}
	err = errors.Join(err, batch.Close())
	return e.leave(err)
}

// Applied returns the position recorded by the last Write or Install.
func (e *Engine) Applied() (engines.Applied, error) {
	if err := e.enter(); err != nil {
		return engines.Applied{}, err
	}
	v, found, err := e.get(metaKey)
	var a engines.Applied
	if err == nil && found {
		a, err = decodeApplied(v)
	}
	return a, e.leave(err)
}

// Close closes the engine. It fails with ErrViewsOpen while views are open,
// leaving the engine usable; it waits for operations in flight.
func (e *Engine) Close() error {
	if err := e.gate.close(); err != nil {
		return err
	}
	err := e.db.Close()
	if ferr := e.fatal.failure(); ferr != nil {
		err = errors.Join(ferr, err)
	}
	return err
}

// gate admits operations until Close, lets Close wait for the ones in flight
// and refuses Close while views are open. Close waits on a channel, not a
// mutex, so that inside a testing/synctest bubble it counts as durably
// blocked while, say, an Install waits on a slow virtual-time source.
type gate struct {
	mu      sync.Mutex // guards the fields below; never held across a wait
	closed  bool
	active  int           // operations in flight
	views   int           // open views
	drained chan struct{} // closed when active drops to zero once closed is set
}

func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.active++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.drained != nil {
		close(g.drained)
		g.drained = nil
	}
}

// addView registers a view; it fails once Close has begun, so that no view
// outlives the DB. Called between enter and leave.
func (g *gate) addView() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.views++
	return true
}

func (g *gate) removeView() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.views--
}

// reopen admits operations again after close, for an engine that closed
// its DB only to open another (RestoreCheckpoint).
func (g *gate) reopen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = false
}

func (g *gate) close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return engines.ErrClosed
	}
	if g.views > 0 {
		n := g.views
		g.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrViewsOpen, n)
	}
	g.closed = true
	var wait chan struct{}
	if g.active > 0 {
		wait = make(chan struct{})
		g.drained = wait
	}
	g.mu.Unlock()
	if wait != nil {
		<-wait
	}
	return nil
}

// fatalRecorder is the Pebble logger: it forwards to the caller's logger, if
// any, and remembers the first Fatalf so the engine can fail from then on.
// Without a caller's logger it never exits the process.
type fatalRecorder struct {
	next pdb.Logger
	err  atomic.Pointer[error]
}

func (l *fatalRecorder) Infof(format string, args ...any) {
	if l.next != nil {
		l.next.Infof(format, args...)
	}
}

func (l *fatalRecorder) Errorf(format string, args ...any) {
	if l.next != nil {
		l.next.Errorf(format, args...)
	}
}

func (l *fatalRecorder) Fatalf(format string, args ...any) {
	err := fmt.Errorf("%w: %s", ErrFailed, fmt.Sprintf(format, args...))
	l.err.CompareAndSwap(nil, &err)
	if l.next != nil {
		l.next.Fatalf(format, args...)
	}
}

func (l *fatalRecorder) failure() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}

var _ engines.Syncer = (*Engine)(nil)

// Sync makes every applied batch durable: with Options.NoSync batches reach
// the WAL unsynced, and an empty synced LogData syncs the WAL up to and
// including them (Pebble syncs the WAL in order). Without NoSync every
// batch was synced when it was applied and installs are durable when they
// return, so there is nothing to do.
func (e *Engine) Sync() error {
	if err := e.enter(); err != nil {
		return err
	}
	if e.writeOpts == pdb.Sync {
		return e.leave(nil)
	}
	err := e.db.LogData(nil, pdb.Sync)
	if err != nil {
		err = fmt.Errorf("pebble engine: sync: %w", err)
	}
	return e.leave(err)
}
