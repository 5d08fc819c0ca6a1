// Package bbolt owns the bbolt (B+tree) implementation of engines.Engine.
//
// The file holds three top-level buckets: "meta" with the encoded
// engines.Applied, "live" whose single child bucket "data" holds the
// key-value pairs, and, only while an install is under way, one
// "staging-<n>" bucket per install whose child "data" receives the streamed
// pairs. An install ends with one transaction that deletes live/data, moves
// staging-<n>/data into live and records the new Applied, so a crash at any
// point leaves either the old or the new contents. Open deletes staging
// buckets an interrupted install left behind.
//
// A view is a read-only bbolt transaction. While one is open bbolt cannot
// remap the file without waiting for it, which would stall every writer, so
// the file is mapped generously up front (Options.InitialMmapSize).
package bbolt

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftsnap/testbed/engines"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults for zero Options fields.
const (
	// DefaultInitialMmapSize leaves room for a few hundred MiB of data plus an
	// install's staged copy before bbolt has to remap.
	DefaultInitialMmapSize = 256 << 20
	// DefaultStagingTxBytes sizes install transactions: big enough that
	// per-commit costs (fsync, freelist, meta) vanish, small enough that the
	// heap stays bounded.
	DefaultStagingTxBytes = 8 << 20
)

// lockTimeout bounds the wait for the file lock, so that opening a database
// that is still open (in this process or another) fails instead of hanging.
const lockTimeout = time.Second

// ErrCorrupt is returned when the database holds something this package did
// not write: a malformed Applied record or a missing bucket.
var ErrCorrupt = errors.New("bbolt: corrupt database")

// ErrUnknownOp is returned by Write for an Op whose Kind is neither
// engines.OpPut nor engines.OpDelete.
var ErrUnknownOp = errors.New("bbolt: unknown op kind")

// ErrViewsOpen is returned by Close while views are still open: bbolt would
// wait for them forever. The engine stays open.
var ErrViewsOpen = errors.New("bbolt: close with views still open")

var (
	metaBucket      = []byte("meta")
	appliedKey      = []byte("applied")
	liveBucket      = []byte("live")
	dataBucket      = []byte("data")
	stagingPrefix   = []byte("staging-")
	errNoDataBucket = fmt.Errorf("bbolt: live/data bucket missing: %w", ErrCorrupt)
)

// Options configures an Engine. The zero value is usable.
type Options struct {
	// NoSync skips fsync on commit and on file growth. Committed
	// transactions then survive a process crash but not a power loss: use
	// it only where the simulation models process crashes alone.
	NoSync bool
	// InitialMmapSize is the size of the first memory map, in bytes;
	// <= 0 means DefaultInitialMmapSize. While a view is open, a write
	// that must grow the map blocks until the view closes.
	InitialMmapSize int
	// StagingTxBytes is the key plus value bytes each install staging
	// transaction carries; <= 0 means DefaultStagingTxBytes. The install
	// buffers that much, and bbolt holds about three times that until
	// the commit.
	StagingTxBytes int
	// OnInstallCommit, if set, is an event listener called on the
	// installing goroutine after every transaction an Install commits:
	// with swapped false after each staging transaction (and after the
	// clean-up of a failed install), with swapped true after the one that
	// makes the new contents live. It serves metrics and crash-point tests;
	// it may read the engine but should return quickly.
	OnInstallCommit func(swapped bool)
	// ArrayFreelist allocates pages from bbolt's array freelist instead of
	// its hashmap freelist: slower on large fragmented files, but the page
	// numbers of a write then follow from the writes alone (the hashmap
	// freelist allocates in Go's random map order), so a simulated power
	// loss that tears pages tears the same ones on every run.
	ArrayFreelist bool
	// FileHook, if set, performs the database file's writes and syncs
	// (see third_party/bbolt): a simulator records there what a power
	// loss would lose.
	FileHook bolt.FileHook
}

// Engine is an engines.Engine over one bbolt file. It is safe for
// concurrent use.
type Engine struct {
	db              *bolt.DB
	stagingTxBytes  int
	onInstallCommit func(swapped bool)
	// installSeq names each install's staging bucket, so concurrent
	// installs never share one.
	installSeq atomic.Uint64

	mu sync.Mutex
	// closed and views are guarded by mu. Invariant: closed implies
	// views == 0, because Close refuses while views are open.
	closed bool
	views  int
}

var _ engines.Engine = (*Engine)(nil)

// Open opens or creates the database at path and removes what an
// interrupted install left behind.
func Open(path string, opts Options) (*Engine, error) {
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	if opts.StagingTxBytes <= 0 {
		opts.StagingTxBytes = DefaultStagingTxBytes
	}
	freelist := bolt.FreelistMapType
	if opts.ArrayFreelist {
		freelist = bolt.FreelistArrayType
	}
	var db *bolt.DB
	err := notPanicking(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:         lockTimeout,
			NoSync:          opts.NoSync,
			NoGrowSync:      opts.NoSync,
			InitialMmapSize: opts.InitialMmapSize,
			FreelistType:    freelist,
			FileHook:        opts.FileHook,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	if err := notPanicking(func() error { return db.Update(prepare) }); err != nil {
		db.Close()
		return nil, fmt.Errorf("bbolt: open %s: %w", path, err)
	}
	return &Engine{db: db, stagingTxBytes: opts.StagingTxBytes, onInstallCommit: opts.OnInstallCommit}, nil
}

// notPanicking runs fn and turns a panic into an error wrapping ErrCorrupt.
// bbolt panics instead of returning an error when a page is not what its
// parent says it is (a damaged file, e.g. one a power loss tore on a disk
// that lost its fsyncs); a node that cannot open its state should say so,
// not end its process.
func notPanicking(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

// prepare deletes leftover staging buckets, creates the buckets a new file
// lacks and checks that the Applied record decodes.
func prepare(tx *bolt.Tx) error {
	var stale [][]byte
	c := tx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if bytes.HasPrefix(k, stagingPrefix) {
			stale = append(stale, bytes.Clone(k))
		}
	}
	for _, name := range stale {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("delete leftover %q: %w", name, err)
		}
	}
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	live, err := tx.CreateBucketIfNotExists(liveBucket)
	if err != nil {
		return err
	}
	if _, err := live.CreateBucketIfNotExists(dataBucket); err != nil {
		return err
	}
	if v := meta.Get(appliedKey); v != nil {
		if _, err := decodeApplied(v); err != nil {
			return err
		}
	}
	return nil
}

// checkOpen returns ErrClosed once Close has run. bbolt itself also refuses
// work after Close; mapErr translates that for operations racing with it.
func (e *Engine) checkOpen() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return engines.ErrClosed
	}
	return nil
}

// mapErr turns bbolt's "database not open" into engines.ErrClosed.
func mapErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("bbolt: %w", engines.ErrClosed)
	}
	return err
}

// checkKey rejects keys no engine accepts.
func checkKey(key []byte) error {
	if len(key) == 0 {
		return engines.ErrEmptyKey
	}
	if len(key) > engines.MaxKeyLen {
		return fmt.Errorf("bbolt: key of %d bytes: %w", len(key), engines.ErrTooLarge)
	}
	return nil
}

// checkPair rejects pairs no engine accepts.
func checkPair(key, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > engines.MaxValueLen {
		return fmt.Errorf("bbolt: value of %d bytes: %w", len(value), engines.ErrTooLarge)
	}
	return nil
}

// dataOf returns the live data bucket of tx.
func dataOf(tx *bolt.Tx) (*bolt.Bucket, error) {
	live := tx.Bucket(liveBucket)
	if live == nil {
		return nil, errNoDataBucket
	}
	data := live.Bucket(dataBucket)
	if data == nil {
		return nil, errNoDataBucket
	}
	return data, nil
}

// appliedOf reads the Applied recorded in tx.
func appliedOf(tx *bolt.Tx) (engines.Applied, error) {
	meta := tx.Bucket(metaBucket)
	if meta == nil {
		return engines.Applied{}, fmt.Errorf("bbolt: meta bucket missing: %w", ErrCorrupt)
	}
	v := meta.Get(appliedKey)
	if v == nil {
		return engines.Applied{}, nil
	}
	return decodeApplied(v)
}

// Get returns a copy of the value under key. An empty or over-long key is
// bad input and gets the same error Write would give it.
func (e *Engine) Get(key []byte) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := e.checkOpen(); err != nil {
		return nil, false, err
	}
	var value []byte
	var found bool
	err := e.db.View(func(tx *bolt.Tx) error {
		data, err := dataOf(tx)
		if err != nil {
			return err
		}
		// A cursor rather than Bucket.Get, whose nil result cannot tell an
		// absent key from an empty value.
		k, v := data.Cursor().Seek(key)
		if k == nil || !bytes.Equal(k, key) {
			return nil
		}
		found = true
		value = append([]byte{}, v...)
		return nil
	})
	if err != nil {
		return nil, false, mapErr(err)
	}
	return value, found, nil
}

// Write applies b in one bbolt transaction, recording b.Applied in it. It
// checks every op before it writes anything.
func (e *Engine) Write(b engines.Batch) error {
	for i, op := range b.Ops {
		switch op.Kind {
		case engines.OpPut:
			if err := checkPair(op.Key, op.Value); err != nil {
				return fmt.Errorf("bbolt: write op %d: %w", i, err)
			}
		case engines.OpDelete:
			if err := checkKey(op.Key); err != nil {
				return fmt.Errorf("bbolt: write op %d: %w", i, err)
			}
		default:
			return fmt.Errorf("bbolt: write op %d has kind %d: %w", i, op.Kind, ErrUnknownOp)
		}
	}
	applied, err := encodeApplied(b.Applied)
	if err != nil {
		return err
	}
	if err := e.checkOpen(); err != nil {
		return err
	}
	err = e.db.Update(func(tx *bolt.Tx) error {
		data, err := dataOf(tx)
		if err != nil {
			return err
		}
		for _, op := range b.Ops {
			if op.Kind == engines.OpPut {
				err = data.Put(op.Key, op.Value)
			} else {
				err = data.Delete(op.Key)
			}
			if err != nil {
				return err
			}
		}
		return tx.Bucket(metaBucket).Put(appliedKey, applied)
	})
	return mapErr(err)
}

// Applied returns the position recorded by the last Write or Install.
func (e *Engine) Applied() (engines.Applied, error) {
	if err := e.checkOpen(); err != nil {
		return engines.Applied{}, err
	}
	var a engines.Applied
	err := e.db.View(func(tx *bolt.Tx) error {
		var err error
		a, err = appliedOf(tx)
		return err
	})
	return a, mapErr(err)
}

// Close closes the database. It refuses with ErrViewsOpen while views are
// open; a second Close returns engines.ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return engines.ErrClosed
	}
	if e.views > 0 {
		n := e.views
		e.mu.Unlock()
		return fmt.Errorf("bbolt: %d views open: %w", n, ErrViewsOpen)
	}
	e.closed = true
	e.mu.Unlock()
	// bbolt waits for running transactions, an install's included.
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("bbolt: close: %w", err)
	}
	return nil
}

var _ engines.Syncer = (*Engine)(nil)

// Sync makes every committed transaction durable: with Options.NoSync
// commits reach the file but not the disk, and bbolt's own DB.Sync
// fdatasyncs the file. Without NoSync every commit was synced, so there is
// nothing to do.
func (e *Engine) Sync() error {
	if err := e.checkOpen(); err != nil {
		return err
	}
	if !e.db.NoSync {
		return nil
	}
	if err := e.db.Sync(); err != nil {
		return fmt.Errorf("bbolt: sync: %w", err)
	}
	return nil
}
