package snapshot

import (
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/raftsnap/testbed/engines"
)

// FSMSnapshot is a raft.FSMSnapshot over an engine's point-in-time view.
// Taking it costs what taking the view costs (microseconds), which matters
// because raft calls FSM.Snapshot on the goroutine that applies entries;
// Persist then streams the view on raft's snapshot goroutine while applies
// and even a Restore go on.
type FSMSnapshot struct {
	view engines.View
	// Stats describes the last successful Persist.
	Stats Stats
}

// NewFSMSnapshot wraps a view; the snapshot owns it and closes it in Release.
func NewFSMSnapshot(view engines.View) *FSMSnapshot { return &FSMSnapshot{view: view} }

// Persist streams the view into sink in the version-1 format. On any error
// it cancels the sink, so raft's snapshot store never keeps a partial
// snapshot; on success it closes the sink.
func (s *FSMSnapshot) Persist(sink raft.SnapshotSink) error {
	stats, err := s.persist(sink)
	if err != nil {
		return errors.Join(err, sink.Cancel())
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("snapshot: closing sink: %w", err)
	}
	s.Stats = stats
	return nil
}

func (s *FSMSnapshot) persist(w io.Writer) (Stats, error) {
	it, err := s.view.Iter()
	if err != nil {
		return Stats{}, err
	}
	stats, err := Encode(w, HeaderFor(s.view.Applied()), it)
	return stats, errors.Join(err, it.Close())
}

// Release closes the view; raft always calls it, persisted or not.
func (s *FSMSnapshot) Release() {
	_ = s.view.Close() // nothing useful can be done with a close error here
}

// Restore streams a snapshot from r into e's atomic Install and returns the
// header it carried. A stream that is corrupt, truncated, of another
// version or out of order fails with this package's typed errors, and e is
// left exactly as it was.
func Restore(e engines.Engine, r io.Reader) (Header, error) {
	dec, err := NewDecoder(r)
	if err != nil {
		return Header{}, err
	}
	h := dec.Header()
	if err := e.Install(dec, h.Applied()); err != nil {
		return h, err
	}
	return h, nil
}
