// Package logstore owns a node's Raft log and Raft stable store: one Pebble
// database, on a caller-chosen vfs.FS, that implements hashicorp/raft's
// LogStore, StableStore and MonotonicLogStore. Keeping it on the same vfs.FS
// as the rest of a node's state lets a simulated crash (a CrashClone of a
// crashable MemFS) take the log, the vote and the term down together.
package logstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is returned by Get and GetUint64 for a missing key. Its text
// must be exactly "not found": hashicorp/raft compares the error string, not
// the value, to tell a fresh node from a broken store.
var ErrKeyNotFound = errors.New("not found")

// ErrCorrupt is returned when a stored record cannot be decoded.
var ErrCorrupt = errors.New("logstore: corrupt record")

// ErrClosed is returned by every operation after Close.
var ErrClosed = errors.New("logstore: closed")

// ErrFatal is returned by every operation once Pebble has reported a fatal
// error (through Logger.Fatalf): Pebble's state is then undefined, so the
// store refuses all further work rather than report success it cannot
// guarantee.
var ErrFatal = errors.New("logstore: pebble reported a fatal error")

// Options configures Open. The zero value is valid.
type Options struct {
	// FS is the filesystem the database lives on; nil means vfs.Default.
	FS vfs.FS
	// NoSync makes StoreLogs, DeleteRange and Set return before their
	// writes are durable. Unsafe for Raft; for benchmarks only.
	NoSync bool
	// Logger receives Pebble's messages. Nil discards them. Whatever the
	// logger, a Pebble Fatalf is first recorded so that the store fails
	// every later call with ErrFatal; a nil Logger never exits the process.
	Logger pebble.Logger
}

// Key layout: one byte of prefix, then the rest. Log keys sort by index
// because the index is big-endian; the two prefixes never interleave.
const (
	prefixLog    = 'l'
	prefixStable = 's'
)

// Small caches and memtables: a simulation runs many nodes in one process,
// and a Raft log is written sequentially and read back mostly from the tail.
const (
	cacheSize    = 1 << 20
	memTableSize = 1 << 20
)

// Store is a Raft LogStore and StableStore backed by Pebble. It is safe for
// concurrent use.
type Store struct {
	// mu is held for reading by every operation and for writing by Close,
	// so that no operation reaches a closed Pebble (which panics). It is
	// never held across a wait on time: Pebble on its own does not sleep
	// in the write path.
	mu     sync.RWMutex
	db     *pebble.DB // nil once closed
	writes *pebble.WriteOptions
	fatal  *fatalLogger
}

var (
	_ raft.LogStore          = (*Store)(nil)
	_ raft.StableStore       = (*Store)(nil)
	_ raft.MonotonicLogStore = (*Store)(nil)
)

// Open opens or creates the store in dir on opts.FS.
func Open(dir string, opts Options) (*Store, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	fatal := &fatalLogger{next: opts.Logger}
	popts := &pebble.Options{
		FS: fs,
		// Older formats pool channel-holding writer objects globally, which
		// breaks a second testing/synctest bubble in the same process.
		FormatMajorVersion: pebble.FormatNewest,
		CacheSize:          cacheSize,
		MemTableSize:       memTableSize,
		Logger:             fatal,
	}
	// Read sampling draws from the unseedable global math/rand/v2 and
	// schedules compactions from it, which would keep simulations from
	// replaying.
	popts.Experimental.ReadSamplingMultiplier = -1
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("logstore: open %s: %w", dir, err)
	}
	s := &Store{db: db, writes: pebble.Sync, fatal: fatal}
	if opts.NoSync {
		s.writes = pebble.NoSync
	}
	return s, nil
}

// Close closes the database. Operations after Close return ErrClosed; a
// second Close does too.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("logstore: close: %w", err)
	}
	return s.fatal.err()
}

// IsMonotonic reports true. The store itself tolerates gaps, but raft says
// declaring it is always correct, and its cost (deleting the whole log
// after a snapshot install or user restore) is one range tombstone here.
// In exchange, no entry from before an installed snapshot survives it:
// without this, raft keeps up to TrailingLogs stale entries, possibly from
// an older term, above the snapshot's index.
func (s *Store) IsMonotonic() bool { return true }

// FirstIndex returns the lowest stored index, 0 when the log is empty.
func (s *Store) FirstIndex() (uint64, error) { return s.edgeIndex(true) }

// LastIndex returns the highest stored index, 0 when the log is empty.
func (s *Store) LastIndex() (uint64, error) { return s.edgeIndex(false) }

func (s *Store) edgeIndex(first bool) (idx uint64, err error) {
	err = s.read(func(db *pebble.DB) error {
		it, err := db.NewIter(&pebble.IterOptions{
			LowerBound: []byte{prefixLog},
			UpperBound: []byte{prefixLog + 1},
		})
		if err != nil {
			return err
		}
		var ok bool
		if first {
			ok = it.First()
		} else {
			ok = it.Last()
		}
		if ok {
			idx, err = decodeLogKey(it.Key())
		}
		if cerr := it.Close(); err == nil {
			err = cerr
		}
		return err
	})
	return idx, err
}

// GetLog reads the entry at index into log; raft.ErrLogNotFound if absent.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	return s.read(func(db *pebble.DB) error {
		val, closer, err := db.Get(logKey(index))
		if errors.Is(err, pebble.ErrNotFound) {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return err
		}
		// decodeLog copies out of val, which is valid only until Close.
		derr := decodeLog(val, log)
		cerr := closer.Close()
		if derr != nil {
			return derr
		}
		if log.Index != index {
			return fmt.Errorf("%w: entry under index %d claims index %d", ErrCorrupt, index, log.Index)
		}
		return cerr
	})
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one atomic batch, durable on return unless
// NoSync. An entry at an existing index replaces it.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return s.read(func(*pebble.DB) error { return nil })
	}
	return s.write(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		var buf []byte
		for _, l := range logs {
			buf = appendLog(buf[:0], l)
			// Batch.Set copies key and value, so buf can be reused.
			if err := b.Set(logKey(l.Index), buf, nil); err != nil {
				return err
			}
		}
		return b.Commit(s.writes)
	})
}

// DeleteRange deletes the entries with min <= index <= max with one range
// tombstone, durable on return unless NoSync. min > max deletes nothing.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return s.read(func(*pebble.DB) error { return nil })
	}
	end := []byte{prefixLog + 1} // the end of the log keyspace, for max = MaxUint64
	if max < ^uint64(0) {
		end = logKey(max + 1)
	}
	return s.write(func(db *pebble.DB) error {
		return db.DeleteRange(logKey(min), end, s.writes)
	})
}

// Set stores val under key, durable on return unless NoSync.
func (s *Store) Set(key []byte, val []byte) error {
	return s.write(func(db *pebble.DB) error {
		return db.Set(stableKey(key), val, s.writes)
	})
}

// Get returns a copy of the value under key, or (nil, ErrKeyNotFound).
// A key set to an empty value returns a non-nil empty slice.
func (s *Store) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.read(func(db *pebble.DB) error {
		val, closer, err := db.Get(stableKey(key))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrKeyNotFound
		}
		if err != nil {
			return err
		}
		out = append([]byte{}, val...)
		return closer.Close()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SetUint64 stores val under key as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value SetUint64 stored under key, or
// (0, ErrKeyNotFound).
func (s *Store) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("%w: uint64 under %q has %d bytes", ErrCorrupt, key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

// read runs f against the open database, turning a closed store or a
// recorded fatal error into an error.
func (s *Store) read(f func(db *pebble.DB) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	if err := s.fatal.err(); err != nil {
		return err
	}
	return f(s.db)
}

// write is read plus a check afterwards: Pebble reports a failed commit
// through Logger.Fatalf and, if that returns, reports success to the
// caller, so a write is only trusted if no fatal error was recorded by then.
func (s *Store) write(f func(db *pebble.DB) error) error {
	return s.read(func(db *pebble.DB) error {
		if err := f(db); err != nil {
			return err
		}
		return s.fatal.err()
	})
}

func logKey(index uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

func decodeLogKey(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != prefixLog {
		return 0, fmt.Errorf("%w: log key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

func stableKey(key []byte) []byte {
	return append([]byte{prefixStable}, key...)
}

// fatalLogger records the first Fatalf so that the store can fail every
// later call, then forwards to the caller's logger, if any. With no caller
// logger it discards everything and never exits the process.
type fatalLogger struct {
	next  pebble.Logger
	first atomic.Pointer[error]
}

func (l *fatalLogger) Infof(format string, args ...interface{}) {
	if l.next != nil {
		l.next.Infof(format, args...)
	}
}

func (l *fatalLogger) Errorf(format string, args ...interface{}) {
	if l.next != nil {
		l.next.Errorf(format, args...)
	}
}

func (l *fatalLogger) Fatalf(format string, args ...interface{}) {
	err := fmt.Errorf("%w: %s", ErrFatal, fmt.Sprintf(format, args...))
	l.first.CompareAndSwap(nil, &err)
	if l.next != nil {
		l.next.Fatalf(format, args...)
	}
}

func (l *fatalLogger) err() error {
	if p := l.first.Load(); p != nil {
		return *p
	}
	return nil
}
