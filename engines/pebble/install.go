package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftsnap/testbed/engines"
)

// Install replaces the whole contents by src's pairs and records applied. The
// pairs (prefixed) and the meta key are streamed into staged sstables, which
// one IngestAndExcise over the whole keyspace then makes the DB's contents in
// a single version edit: before it nothing of the install is visible, after
// it nothing of the old contents is. Memory stays bounded by the sstable
// writer's buffers whatever the number of pairs.
func (e *Engine) Install(src engines.Iterator, applied engines.Applied) error {
	meta, err := encodeApplied(applied)
	if err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		return err
	}
	return e.leave(e.install(src, meta))
}

func (e *Engine) install(src engines.Iterator, meta []byte) (err error) {
	dir := e.fs.PathJoin(e.stagingDir, strconv.FormatUint(e.installSeq.Add(1), 10))
	if err := e.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pebble engine: install: create staging directory: %w", err)
	}
	st := &stager{
		fs:       e.fs,
		dir:      dir,
		opts:     e.popts.MakeWriterOptions(0, e.db.TableFormat()),
		fileSize: e.fileSize,
	}
	defer func() {
		if err != nil {
			st.abort()
		}
		// A successful ingest has already moved the staged files into the
		// DB. A failure to remove what is left is only worth reporting when
		// the install failed anyway: after a success it would wrongly say
		// nothing was committed, and Open removes leftovers regardless.
		if rerr := e.fs.RemoveAll(dir); rerr != nil && err != nil {
			err = errors.Join(err, fmt.Errorf("pebble engine: install: remove staging directory: %w", rerr))
		}
	}()

	var prev []byte           // previous user key, to check the order
	key := []byte{dataPrefix} // prefixed key, reused for every pair
	for n := 0; src.Next(); n++ {
		k, v := src.Key(), src.Value()
		if err := checkKey(k); err != nil {
			return fmt.Errorf("pebble engine: install pair %d: %w", n, err)
		}
		if err := checkValue(v); err != nil {
			return fmt.Errorf("pebble engine: install pair %d: %w", n, err)
		}
		if n > 0 && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("pebble engine: install pair %d: %w: %q after %q", n, engines.ErrKeyOrder, k, prev)
		}
		prev = append(prev[:0], k...)
		key = append(key[:1], k...)
		if err := st.add(key, v); err != nil {
			return fmt.Errorf("pebble engine: install: %w", err)
		}
	}
	if err := src.Err(); err != nil {
		return fmt.Errorf("pebble engine: install source: %w", err)
	}
	// metaKey sorts after every data key, so it ends the last table.
	if err := st.add(metaKey, meta); err != nil {
		return fmt.Errorf("pebble engine: install: %w", err)
	}
	if err := st.finish(); err != nil {
		return fmt.Errorf("pebble engine: install: %w", err)
	}
	if _, err := e.db.IngestAndExcise(context.Background(), st.paths, nil, nil, exciseSpan); err != nil {
		return fmt.Errorf("pebble engine: install: ingest: %w", err)
	}
	return nil
}

// stager writes sorted pairs into a sequence of sstables in dir, starting a
// new one once the current one reaches fileSize. Finished tables are synced
// (objstorageprovider's file writable syncs on Finish), as Ingest requires.
type stager struct {
	fs       vfs.FS
	dir      string
	opts     sstable.WriterOptions
	fileSize int64
	w        *sstable.Writer // table being written, nil between tables
	paths    []string        // finished and current tables
}

func (s *stager) add(key, value []byte) error {
	if s.w == nil {
		path := s.fs.PathJoin(s.dir, strconv.Itoa(len(s.paths))+".sst")
		f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("create staged table: %w", err)
		}
		s.paths = append(s.paths, path)
		s.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), s.opts)
	}
	if err := s.w.Set(key, value); err != nil {
		return fmt.Errorf("write staged table: %w", err)
	}
	if int64(s.w.Raw().EstimatedSize()) >= s.fileSize {
		return s.closeTable()
	}
	return nil
}

func (s *stager) closeTable() error {
	w := s.w
	s.w = nil
	if err := w.Close(); err != nil {
		return fmt.Errorf("finish staged table: %w", err)
	}
	return nil
}

func (s *stager) finish() error {
	if s.w == nil {
		return nil
	}
	return s.closeTable()
}

// abort closes a table left open by a failed install; its file is removed
// with the staging directory.
func (s *stager) abort() {
	if s.w != nil {
		_ = s.w.Close()
		s.w = nil
	}
}
