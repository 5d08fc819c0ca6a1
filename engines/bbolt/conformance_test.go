package bbolt

import (
	"path/filepath"
	"testing"

	"github.com/raftsnap/testbed/engines"
	"github.com/raftsnap/testbed/engines/enginetest"
)

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Opener {
		path := filepath.Join(t.TempDir(), "db")
		return func() (engines.Engine, error) { return Open(path, Options{NoSync: true}) }
	})
}
