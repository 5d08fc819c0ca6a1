package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// FormatVersion is the version of the JSON form of a schedule written by
// [Save]; [Load] accepts only this version.
const FormatVersion = 1

// Errors of a schedule file that is not a schedule; [Load] also returns
// [Schedule.Validate]'s errors for a well-formed file with bad content.
var (
	ErrMalformed = errors.New("malformed schedule file")
	ErrVersion   = errors.New("unsupported schedule file version")
)

// Save writes s to path as indented JSON (see [Schedule.MarshalJSON]). It
// does not validate s, so that whatever a run used can be recorded.
func (s Schedule) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("faults: save %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("faults: save %s: %w", path, err)
	}
	return nil
}

// Load reads a schedule written by [Save] (or by hand) and validates it. A
// file that is not JSON, or has fields a schedule does not have, gives
// ErrMalformed; another version, ErrVersion; bad content, an error wrapping
// ErrInvalid (see [Schedule.Validate]).
func Load(path string) (Schedule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Schedule{}, fmt.Errorf("faults: load: %w", err)
	}
	var s Schedule
	if err := json.Unmarshal(b, &s); err != nil {
		if !errors.Is(err, ErrVersion) && !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return Schedule{}, fmt.Errorf("faults: load %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return Schedule{}, fmt.Errorf("faults: load %s: %w", path, err)
	}
	return s, nil
}

// duration is a time.Duration in JSON as its text, e.g. "1m2.5s", which
// people can read and edit.
type duration time.Duration

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	*d = duration(v)
	return nil
}

// strict decodes b into v, rejecting fields v does not have, so that a typo
// in a hand-edited file is an error rather than a default.
func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

type scheduleJSON struct {
	Version  int      `json:"version"`
	Seed     uint64   `json:"seed"`
	Nodes    int      `json:"nodes"`
	Duration duration `json:"duration"`
	Mix      Mix      `json:"mix"`
	Faults   []Fault  `json:"faults"`
}

// MarshalJSON writes the file form: {"version": 1, "seed", "nodes",
// "duration" (the safety phase), "mix", "faults": [...]}, with durations as
// text ("12.5s").
func (s Schedule) MarshalJSON() ([]byte, error) {
	w := scheduleJSON{Version: FormatVersion, Seed: s.Seed, Nodes: s.Nodes, Duration: duration(s.Duration), Mix: s.Mix, Faults: s.Faults}
	if w.Faults == nil {
		w.Faults = []Fault{} // "faults": [] reads better than null
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the form MarshalJSON writes; it checks the version
// first, so that a file of another version gives ErrVersion whatever its
// fields. It does not validate the content.
func (s *Schedule) UnmarshalJSON(b []byte) error {
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if v.Version == nil {
		return fmt.Errorf("%w: no version field", ErrVersion)
	}
	if *v.Version != FormatVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrVersion, *v.Version, FormatVersion)
	}
	var w scheduleJSON
	if err := strict(b, &w); err != nil {
		return err
	}
	*s = Schedule{Seed: w.Seed, Nodes: w.Nodes, Duration: time.Duration(w.Duration), Mix: w.Mix, Faults: w.Faults}
	if len(s.Faults) == 0 {
		s.Faults = nil
	}
	return nil
}

type faultJSON struct {
	At                  duration `json:"at"`
	Duration            duration `json:"duration,omitempty"`
	Kind                Kind     `json:"kind"`
	Target              Target   `json:"target"`
	Shape               Shape    `json:"shape,omitempty"`
	Period              duration `json:"period,omitempty"`
	Probability         float64  `json:"probability,omitempty"`
	DelayMin            duration `json:"delay_min,omitempty"`
	DelayMax            duration `json:"delay_max,omitempty"`
	OffsetBytes         int64    `json:"offset_bytes,omitempty"`
	Stall               duration `json:"stall,omitempty"`
	UnsyncedDataPercent int      `json:"unsynced_data_percent,omitempty"`
}

// MarshalJSON writes f as an object with the fields in snake case, zero
// parameters left out and durations as text, e.g.
// {"at":"12.5s","duration":"4s","kind":"crash","target":"follower"}.
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultJSON{
		At: duration(f.At), Duration: duration(f.Duration), Kind: f.Kind, Target: f.Target,
		Shape: f.Shape, Period: duration(f.Period), Probability: f.Probability,
		DelayMin: duration(f.DelayMin), DelayMax: duration(f.DelayMax), OffsetBytes: f.OffsetBytes,
		Stall: duration(f.Stall), UnsyncedDataPercent: f.UnsyncedDataPercent,
	})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var w faultJSON
	if err := strict(b, &w); err != nil {
		return err
	}
	*f = Fault{
		At: time.Duration(w.At), Duration: time.Duration(w.Duration), Kind: w.Kind, Target: w.Target,
		Shape: w.Shape, Period: time.Duration(w.Period), Probability: w.Probability,
		DelayMin: time.Duration(w.DelayMin), DelayMax: time.Duration(w.DelayMax), OffsetBytes: w.OffsetBytes,
		Stall: time.Duration(w.Stall), UnsyncedDataPercent: w.UnsyncedDataPercent,
	}
	return nil
}

type mixJSON struct {
	RatePerMinute map[Kind]float64 `json:"rate_per_minute,omitempty"`
	Ranges        rangesJSON       `json:"ranges"`
}

type rangesJSON struct {
	DurationMin             duration `json:"duration_min,omitempty"`
	DurationMax             duration `json:"duration_max,omitempty"`
	PeriodMin               duration `json:"period_min,omitempty"`
	PeriodMax               duration `json:"period_max,omitempty"`
	ProbabilityMax          float64  `json:"probability_max,omitempty"`
	DiskErrorProbabilityMax float64  `json:"disk_error_probability_max,omitempty"`
	NetDelayMax             duration `json:"net_delay_max,omitempty"`
	SyncDelayMax            duration `json:"sync_delay_max,omitempty"`
	StallMax                duration `json:"stall_max,omitempty"`
	OffsetBytesMax          int64    `json:"offset_bytes_max,omitempty"`
	UnsyncedDataPercentMax  int      `json:"unsynced_data_percent_max,omitempty"`
}

// MarshalJSON writes m as {"rate_per_minute": {kind: rate}, "ranges": {...}}
// with durations as text.
func (m Mix) MarshalJSON() ([]byte, error) {
	g := m.Ranges
	return json.Marshal(mixJSON{RatePerMinute: m.RatePerMinute, Ranges: rangesJSON{
		DurationMin: duration(g.DurationMin), DurationMax: duration(g.DurationMax),
		PeriodMin: duration(g.PeriodMin), PeriodMax: duration(g.PeriodMax),
		ProbabilityMax: g.ProbabilityMax, DiskErrorProbabilityMax: g.DiskErrorProbabilityMax,
		NetDelayMax: duration(g.NetDelayMax), SyncDelayMax: duration(g.SyncDelayMax), StallMax: duration(g.StallMax),
		OffsetBytesMax: g.OffsetBytesMax, UnsyncedDataPercentMax: g.UnsyncedDataPercentMax,
	}})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (m *Mix) UnmarshalJSON(b []byte) error {
	var w mixJSON
	if err := strict(b, &w); err != nil {
		return err
	}
	g := w.Ranges
	*m = Mix{RatePerMinute: w.RatePerMinute, Ranges: Ranges{
		DurationMin: time.Duration(g.DurationMin), DurationMax: time.Duration(g.DurationMax),
		PeriodMin: time.Duration(g.PeriodMin), PeriodMax: time.Duration(g.PeriodMax),
		ProbabilityMax: g.ProbabilityMax, DiskErrorProbabilityMax: g.DiskErrorProbabilityMax,
		NetDelayMax: time.Duration(g.NetDelayMax), SyncDelayMax: time.Duration(g.SyncDelayMax), StallMax: time.Duration(g.StallMax),
		OffsetBytesMax: g.OffsetBytesMax, UnsyncedDataPercentMax: g.UnsyncedDataPercentMax,
	}}
	if len(m.RatePerMinute) == 0 {
		m.RatePerMinute = nil
	}
	return nil
}
