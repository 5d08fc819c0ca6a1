package enginetest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"pgregory.net/rapid"

	"github.com/raftsnap/testbed/engines"
)

// fixture is one open engine under test plus the views a check holds on it.
// It reports through tb with the operation's name, and release closes
// whatever a failed check left open so that storage can be cleaned up.
type fixture struct {
	tb     rapid.TB
	opener Opener
	eng    engines.Engine // nil while closed
	views  []engines.View
}

// newFixture opens fresh storage.
func newFixture(tb rapid.TB, opener Opener) *fixture {
	tb.Helper()
	f := &fixture{tb: tb, opener: opener}
	f.open()
	return f
}

func (f *fixture) open() {
	f.tb.Helper()
	eng, err := f.opener()
	if err != nil {
		f.tb.Fatalf("open: %v", err)
	}
	if eng == nil {
		f.tb.Fatalf("open: Opener returned a nil engine and no error")
	}
	f.eng = eng
}

// close closes every view the fixture tracks, then the engine, as the
// contract requires, and fails the check on any error.
func (f *fixture) close() {
	f.tb.Helper()
	for len(f.views) > 0 {
		f.closeView(f.views[len(f.views)-1])
	}
	if f.eng == nil {
		return
	}
	eng := f.eng
	f.eng = nil
	if err := eng.Close(); err != nil {
		f.tb.Fatalf("engine Close: %v", err)
	}
}

// reopen closes the engine (and its views) and opens the storage again.
func (f *fixture) reopen() {
	f.tb.Helper()
	f.close()
	f.open()
}

// release closes whatever is still open, ignoring errors: it runs when a check
// has already failed (or finished) and must only free resources.
func (f *fixture) release() {
	for _, v := range f.views {
		_ = v.Close()
	}
	f.views = nil
	if f.eng != nil {
		_ = f.eng.Close()
		f.eng = nil
	}
}

// view takes a tracked view.
func (f *fixture) view() engines.View {
	f.tb.Helper()
	v, err := f.eng.View()
	if err != nil {
		f.tb.Fatalf("View: %v", err)
	}
	f.views = append(f.views, v)
	return v
}

// closeView closes a tracked view.
func (f *fixture) closeView(v engines.View) {
	f.tb.Helper()
	i := slices.Index(f.views, v)
	if i < 0 {
		f.tb.Fatalf("suite bug: closing an untracked view")
	}
	f.views = slices.Delete(f.views, i, i+1)
	if err := v.Close(); err != nil {
		f.tb.Fatalf("view Close: %v", err)
	}
}

func (f *fixture) write(b engines.Batch) {
	f.tb.Helper()
	if err := f.eng.Write(b); err != nil {
		f.tb.Fatalf("Write(%d ops, applied %s): %v", len(b.Ops), fmtApplied(b.Applied), err)
	}
}

func (f *fixture) install(pairs []Pair, applied engines.Applied) {
	f.tb.Helper()
	if err := f.eng.Install(SliceIterator(pairs), applied); err != nil {
		f.tb.Fatalf("Install(%d pairs, applied %s): %v", len(pairs), fmtApplied(applied), err)
	}
}

func (f *fixture) applied() engines.Applied {
	f.tb.Helper()
	a, err := f.eng.Applied()
	if err != nil {
		f.tb.Fatalf("Applied: %v", err)
	}
	return a
}

// collect reads a whole view, failing the check on any error.
func (f *fixture) collect(v engines.View, what string) []Pair {
	f.tb.Helper()
	pairs, err := Collect(v)
	if err != nil {
		f.tb.Fatalf("%s: %v", what, err)
	}
	return pairs
}

// expect checks that the engine holds exactly want and reports applied,
// through Applied, a full scan of a fresh view, that view's Applied, and a Get
// of every wanted key.
func (f *fixture) expect(what string, want []Pair, applied engines.Applied) {
	f.tb.Helper()
	f.expectScan(what, want, applied)
	for _, p := range want {
		f.expectGet(what, p.Key, p.Value, true)
	}
}

// expectScan is expect without the Gets, cheap enough to run after every
// step of the model.
func (f *fixture) expectScan(what string, want []Pair, applied engines.Applied) {
	f.tb.Helper()
	if got := f.applied(); !got.Equal(applied) {
		f.tb.Fatalf("%s: engine Applied() = %s, want %s", what, fmtApplied(got), fmtApplied(applied))
	}
	v := f.view()
	got := f.collect(v, what+": full scan of a fresh view")
	va := v.Applied()
	f.closeView(v)
	if d := diffPairs(got, want); d != "" {
		f.tb.Fatalf("%s: full scan of a fresh view differs from the expected contents:\n%s", what, d)
	}
	if !va.Equal(applied) {
		f.tb.Fatalf("%s: fresh view's Applied() = %s, want %s", what, fmtApplied(va), fmtApplied(applied))
	}
}

// expectGet checks one Get.
func (f *fixture) expectGet(what string, key, want []byte, wantFound bool) {
	f.tb.Helper()
	got, found, err := f.eng.Get(key)
	switch {
	case err != nil:
		f.tb.Fatalf("%s: Get(%q): %v", what, key, err)
	case found != wantFound:
		f.tb.Fatalf("%s: Get(%q) found = %v, want %v (value %q)", what, key, found, wantFound, got)
	case !bytes.Equal(got, want):
		f.tb.Fatalf("%s: Get(%q) = %q, want %q", what, key, got, want)
	}
}

// expectView checks that a view yields exactly want and reports applied.
func (f *fixture) expectView(what string, v engines.View, want []Pair, applied engines.Applied) {
	f.tb.Helper()
	got := f.collect(v, what)
	if d := diffPairs(got, want); d != "" {
		f.tb.Fatalf("%s: view differs from the contents when it was taken:\n%s", what, d)
	}
	if va := v.Applied(); !va.Equal(applied) {
		f.tb.Fatalf("%s: view Applied() = %s, want %s (the position when it was taken)", what, fmtApplied(va), fmtApplied(applied))
	}
}

// diffPairs describes how got differs from want (both sorted by key), or
// returns "" when they are equal. It lists at most a few differences.
func diffPairs(got, want []Pair) string {
	const maxLines = 8
	var b strings.Builder
	lines := 0
	add := func(format string, args ...any) {
		if lines < maxLines {
			fmt.Fprintf(&b, "  "+format+"\n", args...)
		}
		lines++
	}
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		c := 0
		switch {
		case i == len(got):
			c = 1
		case j == len(want):
			c = -1
		default:
			c = bytes.Compare(got[i].Key, want[j].Key)
		}
		switch {
		case c < 0:
			add("extra key %q = %s", got[i].Key, fmtValue(got[i].Value))
			i++
		case c > 0:
			add("missing key %q = %s", want[j].Key, fmtValue(want[j].Value))
			j++
		default:
			if !bytes.Equal(got[i].Value, want[j].Value) {
				add("key %q = %s, want %s", got[i].Key, fmtValue(got[i].Value), fmtValue(want[j].Value))
			}
			i++
			j++
		}
	}
	if lines == 0 {
		return ""
	}
	if lines > maxLines {
		fmt.Fprintf(&b, "  ... %d more differences\n", lines-maxLines)
	}
	fmt.Fprintf(&b, "  (got %d pairs, want %d)", len(got), len(want))
	return b.String()
}

func fmtValue(v []byte) string {
	if len(v) > 24 {
		return fmt.Sprintf("%q... (%d bytes)", v[:24], len(v))
	}
	return fmt.Sprintf("%q", v)
}

func fmtApplied(a engines.Applied) string {
	return fmt.Sprintf("{Index:%d Term:%d Config:%q}", a.Index, a.Term, a.Config)
}

// stallTimeout bounds every wait on another goroutine. The contract says views
// never stop writes and installs; an engine that blocks them (for example
// bbolt remapping its file while a read transaction is open) would otherwise
// hang the suite instead of failing it.
const stallTimeout = 30 * time.Second
