package pebble

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/enginetest"
)

// TestConformance runs the shared engine conformance suite; each storage is
// a fresh memory filesystem that every Opener call reopens.
func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Opener {
		fs := vfs.NewMem()
		return func() (engines.Engine, error) { return Open("db", Options{FS: fs}) }
	})
}
