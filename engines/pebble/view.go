package pebble

import (
	"errors"
	"fmt"
	"sync"

	pdb "github.com/cockroachdb/pebble/v2"
	"github.com/raftsnap/testbed/engines"
)

// View takes a point-in-time view: a Pebble iterator, which pins the current
// memtables and sstable version (an excise leaves it intact, unlike a
// pebble.Snapshot). Taking it costs one iterator creation and one seek.
func (e *Engine) View() (engines.View, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	v, err := newView(e.db, &e.gate)
	if err = e.leave(err); err != nil {
		if v != nil { // Pebble failed fatally meanwhile
			err = errors.Join(err, v.Close())
		}
		return nil, err // not a typed nil inside the interface
	}
	return v, nil
}

// newView takes a view of db, registered with g.
func newView(db *pdb.DB, g *gate) (*view, error) {
	base, err := db.NewIter(&viewBounds)
	if err != nil {
		return nil, err
	}
	var applied engines.Applied
	if base.SeekGE(metaKey) && string(base.Key()) == string(metaKey) {
		var raw []byte
		if raw, err = base.ValueAndErr(); err == nil {
			applied, err = decodeApplied(raw)
		}
	}
	if err == nil {
		err = base.Error()
	}
	if err == nil && !g.addView() {
		err = engines.ErrClosed
	}
	if err != nil {
		return nil, errors.Join(err, base.Close())
	}
	return &view{gate: g, base: base, applied: applied, iters: map[*viewIter]struct{}{}}, nil
}

// view is the engines.View of a Pebble engine. Its base iterator is only
// cloned, never positioned again after the Applied read, so every Iter sees
// the same state.
type view struct {
	gate    *gate
	applied engines.Applied

	mu     sync.Mutex // guards the fields below
	base   *pdb.Iterator
	iters  map[*viewIter]struct{} // open iterators, closed by Close if left open
	closed bool
}

func (v *view) Applied() engines.Applied {
	a := v.applied
	a.Config = append([]byte(nil), a.Config...)
	if len(a.Config) == 0 {
		a.Config = nil
	}
	return a
}

func (v *view) Iter() (engines.ViewIterator, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("view: %w", engines.ErrClosed)
	}
	it, err := v.base.Clone(pdb.CloneOptions{IterOptions: &dataBounds})
	if err != nil {
		return nil, err
	}
	vi := &viewIter{view: v, it: it}
	v.iters[vi] = struct{}{}
	return vi, nil
}

// Close releases the view and any iterator of it still open (those then
// report ErrClosed).
func (v *view) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return fmt.Errorf("view: %w", engines.ErrClosed)
	}
	v.closed = true
	var err error
	for vi := range v.iters {
		err = errors.Join(err, vi.release())
	}
	v.iters = nil
	err = errors.Join(err, v.base.Close())
	v.base = nil
	v.gate.removeView()
	return err
}

// viewIter walks the user data of a view. Key and Value return Pebble's own
// buffers (prefix stripped), valid until the next call to Next.
type viewIter struct {
	view    *view
	it      *pdb.Iterator // nil once released
	started bool
	valid   bool
	done    bool  // Next has returned false
	err     error // sticky; set at the latest when released
}

func (vi *viewIter) Next() bool {
	if vi.it == nil || vi.err != nil {
		vi.valid = false
		return false
	}
	if !vi.started {
		vi.started = true
		vi.valid = vi.it.First()
	} else if vi.valid {
		vi.valid = vi.it.Next()
	}
	if !vi.valid {
		vi.done = true
	}
	return vi.valid
}

func (vi *viewIter) Key() []byte {
	if !vi.valid {
		return nil
	}
	return vi.it.Key()[1:]
}

func (vi *viewIter) Value() []byte {
	if !vi.valid {
		return nil
	}
	v, err := vi.it.ValueAndErr()
	if err != nil {
		vi.err = err
		vi.valid = false
		return nil
	}
	return v
}

func (vi *viewIter) Err() error {
	if vi.err != nil || vi.it == nil {
		return vi.err
	}
	return vi.it.Error()
}

func (vi *viewIter) Close() error {
	vi.view.mu.Lock()
	defer vi.view.mu.Unlock()
	if vi.it == nil {
		return fmt.Errorf("view iterator: %w", engines.ErrClosed)
	}
	delete(vi.view.iters, vi)
	return vi.release()
}

// release closes the Pebble iterator; the caller holds view.mu. Err keeps
// reporting how iteration ended: the Pebble error, nil after a clean end, or
// ErrClosed if it was cut short.
func (vi *viewIter) release() error {
	if vi.err == nil {
		vi.err = vi.it.Error()
	}
	if vi.err == nil && !vi.done {
		vi.err = fmt.Errorf("view iterator: %w", engines.ErrClosed)
	}
	err := vi.it.Close()
	vi.it = nil
	vi.valid = false
	return err
}
