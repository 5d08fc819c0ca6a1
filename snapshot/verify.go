package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// Checker is an io.Writer that checks, at almost no cost, that the bytes
// written to it form a complete version-1 stream: the right magic and
// version, and a final CRC32C that matches everything before it. It keeps
// the checksum of all but the last four bytes seen and those four bytes, so
// it needs no knowledge of record boundaries. It does not check key order
// or counts; the full Decoder does that at restore time.
type Checker struct {
	crc  uint32
	head []byte // the first headerFixedLen bytes
	tail [4]byte
	n    int64
}

// Write folds p into the running check. It never fails.
func (c *Checker) Write(p []byte) (int, error) {
	if len(c.head) < headerFixedLen {
		c.head = append(c.head, p[:min(len(p), headerFixedLen-len(c.head))]...)
	}
	// Everything except the newest four bytes is covered by the CRC.
	all := len(p)
	switch {
	case c.n < 4 && int64(all)+c.n <= 4:
		copy(c.tail[c.n:], p)
	case all >= 4:
		held := int(min(c.n, 4))
		c.crc = crc32.Update(c.crc, castagnoli, c.tail[:held])
		c.crc = crc32.Update(c.crc, castagnoli, p[:all-4])
		copy(c.tail[:], p[all-4:])
	default:
		// Fewer than four new bytes: the oldest held bytes leave the tail.
		held := int(min(c.n, 4))
		window := append(c.tail[:held:held], p...)
		out := len(window) - 4
		c.crc = crc32.Update(c.crc, castagnoli, window[:out])
		copy(c.tail[:], window[out:])
	}
	c.n += int64(all)
	return all, nil
}

// Check reports whether what was written is a whole, intact stream.
func (c *Checker) Check() error {
	if len(c.head) < headerFixedLen || c.n < headerFixedLen+endRecordLen {
		if !bytes.HasPrefix(Magic[:], c.head[:min(len(c.head), len(Magic))]) {
			return ErrBadMagic
		}
		return fmt.Errorf("%w: only %d bytes", ErrTruncated, c.n)
	}
	if !bytes.Equal(c.head[:len(Magic)], Magic[:]) {
		return ErrBadMagic
	}
	if v, flags := binary.LittleEndian.Uint32(c.head[8:12]), binary.LittleEndian.Uint32(c.head[12:16]); v != Version || flags != 0 {
		return fmt.Errorf("%w: version %d, flags %#x", ErrUnsupportedVersion, v, flags)
	}
	if want := binary.LittleEndian.Uint32(c.tail[:]); want != c.crc {
		return fmt.Errorf("%w (or truncated): last four bytes %08x, CRC of the rest %08x", ErrChecksum, want, c.crc)
	}
	return nil
}

// ErrRefused is returned by a VerifyingStore's Open for a stored snapshot
// that cannot be read back whole and intact.
var ErrRefused = errors.New("snapshot: stored snapshot refused")

// VerifyingStore wraps a raft.SnapshotStore so that a sink refuses to keep
// a stream that is not a whole, intact version-1 stream: its Close cancels
// the underlying sink and fails. Raft keeps an InstallSnapshot body in its
// store before it calls FSM.Restore and checks only the byte count; without
// this a corrupted body would stay in the store as the newest snapshot (and
// a node that later leads would send it on to others).
//
// It also checks a stored snapshot before Open hands it out, because what
// was whole when it was kept can rot on disk: Open reads it through once
// and opens it again only if it is whole and intact, so a damaged snapshot
// is neither sent (not one byte of it) nor restored. A refused snapshot
// fails Open with ErrRefused and is left out of List from then on, so raft
// turns to the next one; see NewVerifyingStore for how a node recovers.
func VerifyingStore(s raft.SnapshotStore) raft.SnapshotStore { return NewVerifyingStore(s, nil) }

// NewVerifyingStore is VerifyingStore that also calls onRefused (if not
// nil) when Open refuses a snapshot, so that the node can take a fresh one
// from its state machine: without it a leader whose newest snapshot rotted
// has only older ones to send, which a follower behind the compacted log
// cannot catch up from.
func NewVerifyingStore(s raft.SnapshotStore, onRefused func(id string, err error)) raft.SnapshotStore {
	return &verifyingStore{SnapshotStore: s, onRefused: onRefused, refused: map[string]bool{}}
}

type verifyingStore struct {
	raft.SnapshotStore
	onRefused func(id string, err error)

	mu      sync.Mutex
	refused map[string]bool
}

// List leaves out the snapshots Open refused.
func (v *verifyingStore) List() ([]*raft.SnapshotMeta, error) {
	metas, err := v.SnapshotStore.List()
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.DeleteFunc(metas, func(m *raft.SnapshotMeta) bool { return v.refused[m.ID] }), nil
}

// Open checks the whole stored stream before opening it for the caller.
func (v *verifyingStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	_, rc, err := v.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	var c Checker
	_, err = io.Copy(&c, rc)
	err = errors.Join(err, rc.Close())
	if err == nil {
		err = c.Check()
	}
	if err != nil {
		v.mu.Lock()
		v.refused[id] = true
		v.mu.Unlock()
		err = fmt.Errorf("%w: %s is not whole and intact: %w", ErrRefused, id, err)
		if v.onRefused != nil {
			v.onRefused(id, err)
		}
		return nil, nil, err
	}
	return v.SnapshotStore.Open(id)
}

func (v *verifyingStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := v.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &verifyingSink{SnapshotSink: sink}, nil
}

type verifyingSink struct {
	raft.SnapshotSink
	check Checker
}

func (s *verifyingSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	_, _ = s.check.Write(p[:n])
	return n, err
}

func (s *verifyingSink) Close() error {
	if err := s.check.Check(); err != nil {
		return errors.Join(fmt.Errorf("snapshot: refusing to keep snapshot %s: %w", s.ID(), err), s.SnapshotSink.Cancel())
	}
	return s.SnapshotSink.Close()
}

var _ io.Writer = (*Checker)(nil)
