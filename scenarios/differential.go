package scenarios

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/raftsnap/testbed/sim"
)

// engineNames matches what differs by design between the traces of one
// seed on two engines: the engine's name in run details ("engine=bbolt")
// and the package prefix of errors an engine returns ("bbolt: install
// source: <cause>" on one, "pebble engine: install source: <cause>" on the
// other).
var engineNames = regexp.MustCompile(`engine=[a-z]+|\b(bbolt|pebble engine): `)

// engineNeutral returns the trace with engine names blanked.
func engineNeutral(events []sim.Event) []sim.Event {
	out := make([]sim.Event, len(events))
	for i, e := range events {
		e.Detail = engineNames.ReplaceAllStringFunc(e.Detail, func(m string) string {
			if strings.HasPrefix(m, "engine=") {
				return "engine=*"
			}
			return "<engine>: "
		})
		out[i] = e
	}
	return out
}

// EngineNeutralHash hashes a trace with engine names blanked, so that runs
// of one seed on different engines can be compared.
func EngineNeutralHash(events []sim.Event) string {
	return sim.HashEvents(engineNeutral(events))
}

// Differential runs one seed on bbolt and on Pebble and reports how they
// differ: engine work takes no virtual time, so the same seed should give
// the same raft history (the same engine-neutral trace) and the same final
// state on both. Both runs take only the faults both engines take the same
// way (Options.CommonFaults). It returns both reports and the differences found.
func Differential(t *testing.T, opts Options) (bbolt, pebble Report, diffs []string, err error) {
	opts.TracePath = ""
	opts.CommonFaults = true
	opts.Engine = EngineBbolt
	if bbolt, err = Run(t, opts); err != nil {
		return
	}
	opts.Engine = EnginePebble
	if pebble, err = Run(t, opts); err != nil {
		return
	}
	diffs = compareEngines(bbolt, pebble)
	return bbolt, pebble, diffs, nil
}

// compareEngines lists how the runs of one seed on bbolt and on Pebble
// differ: where their engine-neutral traces first part, and their final
// states.
func compareEngines(bbolt, pebble Report) (diffs []string) {
	hb, hp := EngineNeutralHash(bbolt.Events), EngineNeutralHash(pebble.Events)
	if hb != hp {
		nb, np := engineNeutral(bbolt.Events), engineNeutral(pebble.Events)
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
	return diffs
}
