package enginetest

import (
	"bytes"
	"errors"
	"slices"

	"pgregory.net/rapid"

	"github.com/raftsnap/testbed/engines"
)

// checkModel drives an engine with random operations and compares it after
// every step with a plain map and an Applied: the engine is correct when it
// is indistinguishable from that model. Each rapid check starts on fresh
// storage, so a failing sequence shrinks to a short, self-contained one.
func checkModel(tb rapid.TB, storage func() Opener) {
	tb.Helper()
	rapid.Check(tb, func(t *rapid.T) {
		f := newFixture(t, storage())
		defer f.release()
		m := &machine{f: f, model: map[string][]byte{}}
		t.Repeat(m.actions())
		f.close()
	})
}

// keyBytes is the alphabet of model keys. Three byte values and lengths 1-4
// give 120 keys, few enough that writes, deletes and installs keep hitting
// the same keys; the extremes 0x00 and 0xff test that order is bytewise and
// unsigned (a key sorts before its extensions, even by 0x00, and 0xff after
// every other byte).
var keyBytes = []byte{0x00, 'a', 0xff}

var (
	keyGen = rapid.Map(rapid.SliceOfN(rapid.SampledFrom(keyBytes), 1, 4), func(b []byte) string { return string(b) })
	// valueGen includes empty values both as nil and as a non-nil empty
	// slice: each must read back as present and empty.
	valueGen = rapid.OneOf(
		rapid.Just([]byte(nil)),
		rapid.Just([]byte{}),
		rapid.SliceOfN(rapid.Byte(), 0, 100),
	)
	configGen = rapid.OneOf(rapid.Just([]byte(nil)), rapid.SliceOfN(rapid.Byte(), 1, 8))
)

// errSource is what a failing install source reports.
var errSource = errors.New("enginetest: planted install source failure")

// maxOpenViews bounds how many views the model holds at once.
const maxOpenViews = 3

// machine is the model-based test's state: the engine, the model of its
// contents and position, and the views held open with what each must show.
type machine struct {
	f       *fixture
	model   map[string][]byte
	applied engines.Applied
	// lastIndex and lastTerm are the highest position handed to the engine
	// so far, failed installs included, so that every new one is higher.
	lastIndex, lastTerm uint64
	views               []heldView
}

// heldView is an open view and the model's contents when it was taken.
type heldView struct {
	v       engines.View
	want    []Pair
	applied engines.Applied
	// read says the view has been iterated, and then every check iterates
	// it again. An unread view waits for the IterateViews action, so that
	// some views are first read only after many changes, as raft's Persist
	// may start long after Snapshot took the view.
	read bool
}

func (m *machine) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"":                     m.check,
		"Write":                m.write,
		"Get":                  m.get,
		"Applied":              m.appliedAction,
		"TakeView":             m.takeView,
		"IterateViews":         m.iterateViews,
		"CloseView":            m.closeView,
		"Install":              m.install,
		"InstallFailingSource": m.installFailingSource,
		"InstallOutOfOrder":    m.installOutOfOrder,
		"Reopen":               m.reopen,
	}
}

// check compares the whole engine with the model after every action: its
// Applied, a full scan of a fresh view, and a Get of every key the model
// holds. Each value Get returns is scrambled afterwards: Get promises a copy,
// so the engine's contents must not change (the next check would see it).
// Then every open view already read is read again.
func (m *machine) check(t *rapid.T) {
	t.Helper()
	want := m.pairs()
	m.f.expectScan("model check", want, m.applied)
	for _, p := range want {
		got, found, err := m.f.eng.Get(p.Key)
		if err != nil || !found || !bytes.Equal(got, p.Value) {
			t.Fatalf("model check: Get(%q) = %q, %v, %v; want %q, true, nil", p.Key, got, found, err, p.Value)
		}
		scramble(got)
	}
	m.readViews(false)
}

// nextApplied draws a position above every one used so far.
func (m *machine) nextApplied(t *rapid.T) engines.Applied {
	m.lastIndex += uint64(rapid.IntRange(1, 3).Draw(t, "index step"))
	m.lastTerm += uint64(rapid.IntRange(0, 1).Draw(t, "term step"))
	return engines.Applied{Index: m.lastIndex, Term: m.lastTerm, Config: configGen.Draw(t, "config")}
}

// drawKey draws a key, half the time one the model holds (when it holds any)
// so that Gets and deletes often hit present keys.
func (m *machine) drawKey(t *rapid.T) string {
	if len(m.model) > 0 && rapid.Bool().Draw(t, "present key") {
		keys := make([]string, 0, len(m.model))
		for k := range m.model {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return rapid.SampledFrom(keys).Draw(t, "key")
	}
	return keyGen.Draw(t, "key")
}

// write applies a random batch. Some ops reuse a key from earlier in the same
// batch, so that the later op must win. After Write returns, every buffer
// handed to it is scrambled: the contract lets engines keep them only until
// then.
func (m *machine) write(t *rapid.T) {
	n := rapid.IntRange(0, 6).Draw(t, "ops")
	var b engines.Batch
	var keys []string
	for range n {
		var key string
		if len(keys) > 0 && rapid.IntRange(0, 3).Draw(t, "reuse key from batch") == 0 {
			key = rapid.SampledFrom(keys).Draw(t, "key")
		} else {
			key = m.drawKey(t)
		}
		keys = append(keys, key)
		if rapid.IntRange(0, 3).Draw(t, "delete") == 0 {
			b.Delete([]byte(key))
		} else {
			b.Put([]byte(key), valueGen.Draw(t, "value"))
		}
	}
	b.Applied = m.nextApplied(t)
	m.f.write(b)
	for _, op := range b.Ops {
		switch op.Kind {
		case engines.OpPut:
			m.model[string(op.Key)] = presentValue(op.Value)
		case engines.OpDelete:
			delete(m.model, string(op.Key))
		}
	}
	m.applied = cloneApplied(b.Applied)
	for _, op := range b.Ops {
		scramble(op.Key)
		scramble(op.Value)
	}
	scramble(b.Applied.Config)
}

// get compares one Get with the model, then scrambles the returned value:
// Get promises a copy, so the engine's contents must not change.
func (m *machine) get(t *rapid.T) {
	key := m.drawKey(t)
	want, wantFound := m.model[key]
	got, found, err := m.f.eng.Get([]byte(key))
	switch {
	case err != nil:
		t.Fatalf("Get(%q): %v", key, err)
	case found != wantFound:
		t.Fatalf("Get(%q) found = %v, want %v (value %q)", key, found, wantFound, got)
	case !bytes.Equal(got, want):
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
	scramble(got)
}

func (m *machine) appliedAction(t *rapid.T) {
	if got := m.f.applied(); !got.Equal(m.applied) {
		t.Fatalf("Applied() = %s, want %s", fmtApplied(got), fmtApplied(m.applied))
	}
}

func (m *machine) takeView(t *rapid.T) {
	if len(m.views) >= maxOpenViews {
		t.Skip("enough views open")
	}
	read := rapid.Bool().Draw(t, "read from now on")
	m.views = append(m.views, heldView{v: m.f.view(), want: m.pairs(), applied: cloneApplied(m.applied), read: read})
}

// iterateViews reads every open view, some for the first time.
func (m *machine) iterateViews(t *rapid.T) {
	if len(m.views) == 0 {
		t.Skip("no open view")
	}
	m.readViews(true)
}

// readViews reads open views whole (all of them, or only those already read):
// each must still show the contents and position of when it was taken,
// whatever happened since.
func (m *machine) readViews(all bool) {
	m.f.tb.Helper()
	for i := range m.views {
		h := &m.views[i]
		if !all && !h.read {
			continue
		}
		what := "reading a view held open"
		if !h.read {
			what = "reading a view held open for the first time"
		}
		m.f.expectView(what, h.v, h.want, h.applied)
		h.read = true
	}
}

func (m *machine) closeView(t *rapid.T) {
	if len(m.views) == 0 {
		t.Skip("no open view")
	}
	i := rapid.IntRange(0, len(m.views)-1).Draw(t, "view")
	m.f.closeView(m.views[i].v)
	m.views = slices.Delete(m.views, i, i+1)
}

// drawSortedPairs draws between min and max pairs with distinct keys, sorted.
func drawSortedPairs(t *rapid.T, min, max int) []Pair {
	keys := rapid.SliceOfNDistinct(keyGen, min, max, rapid.ID[string]).Draw(t, "source keys")
	slices.Sort(keys)
	pairs := make([]Pair, len(keys))
	for i, k := range keys {
		pairs[i] = Pair{Key: []byte(k), Value: valueGen.Draw(t, "source value")}
	}
	return pairs
}

// install replaces the whole contents with a random sorted source.
func (m *machine) install(t *rapid.T) {
	pairs := drawSortedPairs(t, 0, 12)
	applied := m.nextApplied(t)
	m.f.install(pairs, applied)
	m.model = map[string][]byte{}
	for _, p := range pairs {
		m.model[string(p.Key)] = presentValue(p.Value)
	}
	m.applied = cloneApplied(applied)
	scramble(applied.Config)
}

// installFailingSource installs from a source that fails after some pairs:
// the install must fail with the source's error and change nothing.
func (m *machine) installFailingSource(t *rapid.T) {
	pairs := drawSortedPairs(t, 0, 12)
	n := rapid.IntRange(0, len(pairs)).Draw(t, "pairs before failure")
	applied := m.nextApplied(t)
	err := m.f.eng.Install(failingIterator(pairs, n, errSource), applied)
	if !errors.Is(err, errSource) {
		t.Fatalf("Install from a source failing after %d of %d pairs = %v, want the source's error (errors.Is %v)", n, len(pairs), err, errSource)
	}
}

// installOutOfOrder installs from a source with a repeated or descending key:
// the install must fail with ErrKeyOrder and change nothing.
func (m *machine) installOutOfOrder(t *rapid.T) {
	pairs := drawSortedPairs(t, 2, 12)
	i := rapid.IntRange(1, len(pairs)-1).Draw(t, "disorder at")
	if rapid.Bool().Draw(t, "repeat key") {
		pairs[i].Key = bytes.Clone(pairs[i-1].Key)
	} else {
		pairs[i-1], pairs[i] = pairs[i], pairs[i-1]
	}
	applied := m.nextApplied(t)
	err := m.f.eng.Install(SliceIterator(pairs), applied)
	if !errors.Is(err, engines.ErrKeyOrder) {
		t.Fatalf("Install with key %q after %q = %v, want errors.Is %v", pairs[i].Key, pairs[i-1].Key, err, engines.ErrKeyOrder)
	}
}

// reopen closes the views and the engine and opens the storage again:
// contents and position persist.
func (m *machine) reopen(t *rapid.T) {
	m.views = nil
	m.f.reopen()
}

// pairs returns the model's contents sorted by key.
func (m *machine) pairs() []Pair {
	return sortedPairs(m.model)
}

// sortedPairs returns a map's pairs sorted by key.
func sortedPairs(contents map[string][]byte) []Pair {
	keys := make([]string, 0, len(contents))
	for k := range contents {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	pairs := make([]Pair, len(keys))
	for i, k := range keys {
		pairs[i] = Pair{Key: []byte(k), Value: contents[k]}
	}
	return pairs
}

// presentValue copies a value for a model; a nil value is stored as present
// and empty.
func presentValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return bytes.Clone(v)
}

func cloneApplied(a engines.Applied) engines.Applied {
	a.Config = bytes.Clone(a.Config)
	return a
}
