package bbolt

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/raftsnap/testbed/engines"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Install streams src into a fresh staging bucket in transactions of about
// StagingTxBytes each, then swaps it in for the live data in one
// transaction that also records applied. No transaction is open while src
// is read, so a slow source never holds bbolt's writer lock.
//
// On any failure the staging bucket is deleted (if that fails too, the next
// Open deletes it) and the live data and Applied are untouched.
func (e *Engine) Install(src engines.Iterator, applied engines.Applied) (err error) {
	appliedRec, err := encodeApplied(applied)
	if err != nil {
		return err
	}
	if err := e.checkOpen(); err != nil {
		return err
	}
	staging := fmt.Appendf(bytes.Clone(stagingPrefix), "%016x", e.installSeq.Add(1))
	created := false
	defer func() {
		if err != nil && created {
			if dropErr := e.dropStaging(staging); dropErr != nil {
				err = errors.Join(err, dropErr)
			}
		}
	}()

	batch := stagingBatch{limit: e.stagingTxBytes}
	var prev []byte
	pairs := 0
	for src.Next() {
		key, value := src.Key(), src.Value()
		if err := checkPair(key, value); err != nil {
			return fmt.Errorf("bbolt: install pair %d: %w", pairs, err)
		}
		if pairs > 0 && bytes.Compare(prev, key) >= 0 {
			return fmt.Errorf("bbolt: install pair %d: key %q after %q: %w", pairs, key, prev, engines.ErrKeyOrder)
		}
		prev = append(prev[:0], key...)
		pairs++
		if batch.full(len(key) + len(value)) {
			created = true
			if err := e.flushStaging(staging, &batch); err != nil {
				return err
			}
		}
		batch.add(key, value)
	}
	if err := src.Err(); err != nil {
		return fmt.Errorf("bbolt: install source: %w", err)
	}
	// Always flush, even an empty batch: it creates the staging bucket an
	// empty source still needs.
	created = true
	if err := e.flushStaging(staging, &batch); err != nil {
		return err
	}
	return e.installUpdate(true, func(tx *bolt.Tx) error {
		return swap(tx, staging, appliedRec)
	})
}

// swap makes staging/data the live data and records applied, in the one
// transaction whose commit is the install's point of no return. The swap
// transaction must not write to staging/data itself: MoveBucket moves the
// bucket's committed root, and changes made to the bucket in the same
// transaction would be dropped.
func swap(tx *bolt.Tx, staging, appliedRec []byte) error {
	stagingParent := tx.Bucket(staging)
	if stagingParent == nil {
		return fmt.Errorf("bbolt: staging bucket %q vanished: %w", staging, ErrCorrupt)
	}
	live := tx.Bucket(liveBucket)
	if live == nil {
		return errNoDataBucket
	}
	if err := live.DeleteBucket(dataBucket); err != nil {
		return fmt.Errorf("bbolt: delete live data: %w", err)
	}
	if err := tx.MoveBucket(dataBucket, stagingParent, live); err != nil {
		return fmt.Errorf("bbolt: move staged data: %w", err)
	}
	if err := tx.DeleteBucket(staging); err != nil {
		return fmt.Errorf("bbolt: delete staging bucket: %w", err)
	}
	return tx.Bucket(metaBucket).Put(appliedKey, appliedRec)
}

// flushStaging writes the batch into staging/data, creating the bucket on
// the first call, commits, and empties the batch for reuse.
func (e *Engine) flushStaging(staging []byte, batch *stagingBatch) error {
	err := e.installUpdate(false, func(tx *bolt.Tx) error {
		parent, err := tx.CreateBucketIfNotExists(staging)
		if err != nil {
			return err
		}
		data, err := parent.CreateBucketIfNotExists(dataBucket)
		if err != nil {
			return err
		}
		// Keys arrive sorted, so every page but the last is final: fill it.
		data.FillPercent = 1.0
		return batch.putAll(data)
	})
	if err != nil {
		return err
	}
	batch.reset()
	return nil
}

// dropStaging deletes a failed install's staging bucket.
func (e *Engine) dropStaging(staging []byte) error {
	err := e.installUpdate(false, func(tx *bolt.Tx) error {
		err := tx.DeleteBucket(staging)
		if errors.Is(err, bolterrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("bbolt: drop staging bucket: %w", err)
	}
	return nil
}

// installUpdate runs one install transaction and tells the listener once it
// has committed. Every commit an install makes goes through here, so a
// listener sees every state a crash could leave.
func (e *Engine) installUpdate(swapped bool, fn func(*bolt.Tx) error) error {
	if err := e.db.Update(fn); err != nil {
		return mapErr(err)
	}
	if e.onInstallCommit != nil {
		e.onInstallCommit(swapped)
	}
	return nil
}

// stagingBatch holds copies of the pairs one staging transaction writes.
// bbolt's Put keeps the value slice until commit and the source's slices
// die at its next Next, so the pairs are copied into buf, which is reused
// after each commit: memory stays bounded by limit plus one pair.
type stagingBatch struct {
	limit int
	buf   []byte
	// ends[i] is where pair i's key and value end in buf; pair i starts
	// where pair i-1's value ends.
	ends []pairEnd
}

type pairEnd struct{ key, value int }

// full reports whether adding a pair of n bytes would take a non-empty batch
// past its limit.
func (b *stagingBatch) full(n int) bool {
	return len(b.buf) > 0 && len(b.buf)+n > b.limit
}

func (b *stagingBatch) add(key, value []byte) {
	if b.buf == nil {
		b.buf = make([]byte, 0, b.limit)
	}
	b.buf = append(b.buf, key...)
	k := len(b.buf)
	b.buf = append(b.buf, value...)
	b.ends = append(b.ends, pairEnd{key: k, value: len(b.buf)})
}

// putAll puts every pair into data. Slices are cut only now, after the last
// append, so a grown buf cannot leave them pointing at a stale array.
func (b *stagingBatch) putAll(data *bolt.Bucket) error {
	start := 0
	for _, end := range b.ends {
		if err := data.Put(b.buf[start:end.key], b.buf[end.key:end.value]); err != nil {
			return err
		}
		start = end.value
	}
	return nil
}

func (b *stagingBatch) reset() {
	// A single huge value may have grown buf far past limit; let it go
	// rather than keep it for the rest of the install.
	if cap(b.buf) > 2*b.limit {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	b.ends = b.ends[:0]
}
