package scenarios

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/raftsnap/testbed/sim"
)

// engineField matches the engine name in trace details ("engine=bbolt"),
// the one thing that differs by design between the two engines' traces.
var engineField = regexp.MustCompile(`engine=[a-z]+`)

// EngineNeutralHash hashes a trace with engine names blanked, so that runs
// of one seed on different engines can be compared.
func EngineNeutralHash(events []sim.Event) string {
	neutral := make([]sim.Event, len(events))
	for i, e := range events {
		e.Detail = engineField.ReplaceAllString(e.Detail, "engine=*")
		neutral[i] = e
	}
	return sim.HashEvents(neutral)
}

// Differential runs one seed on bbolt and on Pebble and reports how they
// differ: engine work takes no virtual time, so the same seed should give
// the same raft history (the same engine-neutral trace) and the same final
// state on both. It returns both reports and the differences found.
func Differential(t *testing.T, opts Options) (bbolt, pebble Report, diffs []string, err error) {
	opts.TracePath = ""
	opts.Engine = EngineBbolt
	if bbolt, err = Run(t, opts); err != nil {
		return
	}
	opts.Engine = EnginePebble
	if pebble, err = Run(t, opts); err != nil {
		return
	}
	hb, hp := EngineNeutralHash(bbolt.Events), EngineNeutralHash(pebble.Events)
	if hb != hp {
		neutral := func(ev []sim.Event) []sim.Event {
			out := make([]sim.Event, len(ev))
			for i, e := range ev {
				e.Detail = engineField.ReplaceAllString(e.Detail, "engine=*")
				out[i] = e
			}
			return out
		}
		nb, np := neutral(bbolt.Events), neutral(pebble.Events)
		i := sim.FirstDivergence(nb, np)
		at := func(ev []sim.Event) string {
			if i >= 0 && i < len(ev) {
				return fmt.Sprintf("%v %s %s %s", ev[i].At, ev[i].Node, ev[i].Kind, ev[i].Detail)
			}
			return "end of trace"
		}
		diffs = append(diffs, fmt.Sprintf("differential: traces differ from event #%d: bbolt %q, pebble %q", i, at(nb), at(np)))
	}
	if bbolt.FinalDigest != pebble.FinalDigest || bbolt.FinalIndex != pebble.FinalIndex {
		diffs = append(diffs, fmt.Sprintf("differential: final state differs: bbolt %s at index %d, pebble %s at index %d",
			bbolt.FinalDigest, bbolt.FinalIndex, pebble.FinalDigest, pebble.FinalIndex))
	}
	return bbolt, pebble, diffs, nil
}
