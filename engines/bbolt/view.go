package bbolt

import (
	"fmt"
	"sync/atomic"

	"github.com/raftsnap/testbed/engines"
	bolt "go.etcd.io/bbolt"
)

// errViewClosed is returned by a view or iterator used after View.Close.
var errViewClosed = fmt.Errorf("bbolt: view closed: %w", engines.ErrClosed)

// view is a read-only bbolt transaction. bbolt keeps every page the
// transaction can reach (the freelist does not reuse them) until Rollback,
// so writes and installs after the view was taken never show through.
type view struct {
	e       *Engine
	tx      *bolt.Tx
	data    *bolt.Bucket
	applied engines.Applied
	// closed guards the cursors: a bbolt cursor on a rolled-back
	// transaction panics, so iterators check it on every step.
	closed atomic.Bool
}

// View begins a read-only transaction and reads the Applied inside it.
func (e *Engine) View() (engines.View, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, engines.ErrClosed
	}
	// Counted before Begin so that a concurrent Close refuses instead of
	// waiting on the transaction inside bbolt.
	e.views++
	e.mu.Unlock()

	v, err := e.beginView()
	if err != nil {
		e.viewDone()
		return nil, mapErr(err)
	}
	return v, nil
}

func (e *Engine) beginView() (*view, error) {
	tx, err := e.db.Begin(false)
	if err != nil {
		return nil, err
	}
	data, err := dataOf(tx)
	if err == nil {
		var applied engines.Applied
		if applied, err = appliedOf(tx); err == nil {
			return &view{e: e, tx: tx, data: data, applied: applied}, nil
		}
	}
	tx.Rollback()
	return nil, err
}

func (e *Engine) viewDone() {
	e.mu.Lock()
	e.views--
	e.mu.Unlock()
}

// Applied is the position read when the view was taken.
func (v *view) Applied() engines.Applied { return v.applied }

// Iter returns a new cursor over the view's data. Each iterator must be
// used by one goroutine at a time; two may be used one after the other or
// interleaved.
func (v *view) Iter() (engines.ViewIterator, error) {
	if v.closed.Load() {
		return nil, errViewClosed
	}
	return &iterator{view: v, cursor: v.data.Cursor()}, nil
}

// Close ends the read transaction, which lets bbolt reuse the pages it
// pinned.
func (v *view) Close() error {
	if v.closed.Swap(true) {
		return errViewClosed
	}
	err := v.tx.Rollback()
	v.e.viewDone()
	if err != nil {
		return fmt.Errorf("bbolt: close view: %w", err)
	}
	return nil
}

// iterator walks a view with a bbolt cursor. Key and Value point into the
// memory map: no copy, no allocation per pair.
type iterator struct {
	view       *view
	cursor     *bolt.Cursor
	key, value []byte
	started    bool
	done       bool
	closed     bool
	err        error
}

func (it *iterator) Next() bool {
	if it.done {
		return false
	}
	if it.view.closed.Load() {
		it.finish(errViewClosed)
		return false
	}
	if it.started {
		it.key, it.value = it.cursor.Next()
	} else {
		it.started = true
		it.key, it.value = it.cursor.First()
	}
	if it.key == nil {
		it.finish(nil)
		return false
	}
	return true
}

func (it *iterator) finish(err error) {
	it.done = true
	it.err = err
	it.key, it.value = nil, nil
}

func (it *iterator) Key() []byte   { return it.key }
func (it *iterator) Value() []byte { return it.value }
func (it *iterator) Err() error    { return it.err }

// Close releases nothing bbolt holds (the cursor lives in the view's
// transaction); it stops the iterator so that a later Next returns false.
// Err keeps reporting how iteration ended.
func (it *iterator) Close() error {
	if it.closed {
		return errIterClosed
	}
	it.closed = true
	it.done = true
	it.key, it.value = nil, nil
	return nil
}

// errIterClosed is returned by a second Close.
var errIterClosed = fmt.Errorf("bbolt: iterator closed: %w", engines.ErrClosed)
