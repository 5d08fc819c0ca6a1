// Package powerloss models a power loss for real files that a program
// writes through a hook (bbolt's Options.FileHook, a patch of ours, see
// third_party/README.md): a Recorder performs every write and sync, keeping
// the pre-image of each 4 KiB page written since the file's last sync, and
// Apply turns a copy of the files, taken at the crash instant, into what a
// power loss leaves: each unsynced page kept, lost (its pre-image back) or
// torn (its first sectors new, the rest old), as the caller decides.
//
// A sync makes no system call: the simulator never loses the machine it
// runs on, and a real fsync would only cost wall time. What a sync means
// is kept in the record instead: the pages written before it are durable.
package powerloss

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// PageSize is the granularity at which unsynced data survives or not, as
// for the Pebble nodes' memory filesystem (4 KiB, the usual page and
// bbolt's default page size).
const PageSize = 4096

// SectorSize is the unit a torn page is made of: a page whose first
// sectors were written before the power went and the rest not.
const SectorSize = 512

// Recorder performs the writes and syncs of the files of one directory and
// records, per file, the pre-images of the pages written since its last
// sync. It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	files map[string]map[int64]unsynced // path -> page number -> record
	// syncs counts the syncs, for tests and traces.
	syncs int
}

// NewRecorder returns an empty recorder: every file it has not seen
// written is durable as it is.
func NewRecorder() *Recorder { return &Recorder{files: map[string]map[int64]unsynced{}} }

// unsynced is a page written since its file's last sync: what it held
// before, and its rank among the file's pages in the order they were first
// written since that sync.
type unsynced struct {
	pre  []byte
	rank int
}

// WriteAt writes b at off in f, first keeping the pre-image of every page
// it touches that has not been written since the last sync.
func (r *Recorder) WriteAt(f *os.File, b []byte, off int64) (int, error) {
	if len(b) > 0 {
		r.mu.Lock()
		pages := r.files[f.Name()]
		if pages == nil {
			pages = map[int64]unsynced{}
			r.files[f.Name()] = pages
		}
		for p := off / PageSize; p <= (off+int64(len(b))-1)/PageSize; p++ {
			if _, ok := pages[p]; ok {
				continue
			}
			pre := make([]byte, PageSize)
			n, err := f.ReadAt(pre, p*PageSize)
			if err != nil && err != io.EOF {
				r.mu.Unlock()
				return 0, fmt.Errorf("powerloss: reading the pre-image of %s page %d: %w", f.Name(), p, err)
			}
			// Beyond the end of the file the disk held nothing: zeros.
			clear(pre[n:])
			pages[p] = unsynced{pre: pre, rank: len(pages)}
		}
		r.mu.Unlock()
	}
	return f.WriteAt(b, off)
}

// Sync makes what was written to f durable.
func (r *Recorder) Sync(f *os.File) error {
	r.mu.Lock()
	delete(r.files, f.Name())
	r.syncs++
	r.mu.Unlock()
	return nil
}

// Unsynced returns the number of pages written since their file's last
// sync, over every file.
func (r *Recorder) Unsynced() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, pages := range r.files {
		n += len(pages)
	}
	return n
}

// Syncs returns how many syncs the recorder performed.
func (r *Recorder) Syncs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.syncs
}

// Fate is what a power loss does to one unsynced page: keep it whole
// (Sectors == PageSize/SectorSize), lose it (0), or tear it (the first
// Sectors sectors new, the rest as before).
type Fate struct{ Sectors int }

// Kept, Lost: the two fates that tear nothing.
var (
	Kept = Fate{Sectors: PageSize / SectorSize}
	Lost = Fate{}
)

// Stats counts what Apply did.
type Stats struct{ Kept, Lost, Torn int }

func (s Stats) String() string {
	return fmt.Sprintf("pages kept=%d lost=%d torn=%d", s.Kept, s.Lost, s.Torn)
}

// Apply turns dst, a copy of the directory src taken at the crash instant,
// into what a power loss at that instant leaves: for every file under src
// that the recorder saw written, each page written since the file's last
// sync meets the fate decide gives it, called with the file's path
// relative to src and the page's rank (0 for the first page written since
// the last sync, and so on), in path and rank order. Ranks, not page
// numbers: a program may number its pages differently from run to run for
// the same logical write (bbolt's hashmap freelist allocates in Go's
// random map order), and a seed must decide the same way every time. The
// caller must make sure nothing writes through the recorder meanwhile.
func (r *Recorder) Apply(src, dst string, decide func(rel string, rank int) Fate) (Stats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var st Stats
	for _, path := range slices.Sorted(maps.Keys(r.files)) {
		rel, err := filepath.Rel(src, path)
		if err != nil || !filepath.IsLocal(rel) {
			continue // a file of another directory
		}
		f, err := os.OpenFile(filepath.Join(dst, rel), os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("powerloss: %w", err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return st, fmt.Errorf("powerloss: %w", err)
		}
		pages := r.files[path]
		byRank := slices.SortedFunc(maps.Keys(pages), func(a, b int64) int { return pages[a].rank - pages[b].rank })
		for _, p := range byRank {
			fate := decide(rel, pages[p].rank)
			from := min(max(fate.Sectors, 0), PageSize/SectorSize) * SectorSize
			switch {
			case from == PageSize:
				st.Kept++
				continue
			case from == 0:
				st.Lost++
			default:
				st.Torn++
			}
			// The copy keeps its size (a sync after growing the file made
			// it durable; bbolt grows before it writes).
			old := pages[p].pre[from:min(PageSize, max(info.Size()-p*PageSize, int64(from)))]
			if _, err := f.WriteAt(old, p*PageSize+int64(from)); err != nil {
				f.Close()
				return st, fmt.Errorf("powerloss: %w", err)
			}
		}
		if err := f.Close(); err != nil {
			return st, fmt.Errorf("powerloss: %w", err)
		}
	}
	return st, nil
}
