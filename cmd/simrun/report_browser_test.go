package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/raftsnap/testbed/canaries"
	"github.com/raftsnap/testbed/scenarios"
)

// browser finds a Chromium to drive. CI installs one and sets
// SIMRUN_REQUIRE_BROWSER=1, so there a missing browser fails the test
// instead of skipping it.
func browser(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SIMRUN_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium on PATH and SIMRUN_REQUIRE_BROWSER is set")
	}
	t.Skip("no Chromium on PATH (apt-get install chromium)")
	return ""
}

// failingReport runs a canary's seed and writes its --out artifacts.
func failingReport(t *testing.T, bugName string, seed uint64) (dir string, rep scenarios.Report) {
	bug, ok := canaries.Lookup(bugName)
	if !ok {
		t.Fatalf("canary %s is gone", bugName)
	}
	dir = filepath.Join(t.TempDir(), "out")
	opts := scenarios.Options{Seed: seed, Scenario: bug.Scenario, Engine: bug.Engine, Mutation: bug.Mutation(), OutputDir: dir}
	rep, err := scenarios.Run(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK {
		t.Fatalf("test premise: canary %s fails seed %d", bugName, seed)
	}
	c := config{bug: &bug, opts: opts}
	rep.Repro = repro(c, seed)
	if err := writeArtifacts(c, opts, rep); err != nil {
		t.Fatal(err)
	}
	return dir, rep
}

// openInBrowser loads a file in headless Chromium and records every
// request the page makes that is not the file itself.
func openInBrowser(t *testing.T, path string) (context.Context, *[]string) {
	exe := browser(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1600, 1200))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	var mu sync.Mutex
	var requests []string
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		if r, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			defer mu.Unlock()
			if u := r.Request.URL; !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") && !strings.HasPrefix(u, "about:") {
				requests = append(requests, u)
			}
		}
	}))
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS("svg.timeline"))); err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	return ctx, &requests
}

// The report of a failing seed opens offline in a real browser and shows
// its violation, its timeline and its repro. With SIMRUN_SCREENSHOT=FILE
// the test also saves a PNG of the timeline (README's picture, see
// `make timeline-screenshot`).
func TestSeedReportRendersInABrowser(t *testing.T) {
	dir, rep := failingReport(t, "install-keeps-stale-keys", 3)
	ctx, requests := openInBrowser(t, filepath.Join(dir, "report.html"))

	eval := func(js string) any {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	text := func(sel string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		return v
	}
	count := func(sel string) int { return int(eval(`document.querySelectorAll("` + sel + `").length`).(float64)) }
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	violations, reproText := text("#violations + ul"), text("pre")
	leaderSpans, downSpans, clientSpans := count("svg.timeline rect.span.leader"), count("svg.timeline rect.span.down"), count("svg.timeline rect.span.ok")
	svgWidth := eval(`document.querySelector("svg.timeline").getBoundingClientRect().width`).(float64)
	if !strings.Contains(title, "seed 3") {
		t.Errorf("title %q", title)
	}
	if !strings.Contains(violations, "snapshot-integrity") {
		t.Errorf("violations shown: %q", violations)
	}
	if strings.TrimSpace(reproText) != rep.Repro {
		t.Errorf("repro shown %q, want %q", reproText, rep.Repro)
	}
	if leaderSpans == 0 || downSpans == 0 || clientSpans < rep.OpsByOutcome["ok"] {
		t.Errorf("timeline drew %d leader, %d down and %d ok-operation spans (run had %d ok operations)", leaderSpans, downSpans, clientSpans, rep.OpsByOutcome["ok"])
	}
	if svgWidth < 1000 {
		t.Errorf("timeline rendered %v px wide", svgWidth)
	}
	if len(*requests) > 0 {
		t.Errorf("the report fetched %v; it must open offline", *requests)
	}
	if shot := os.Getenv("SIMRUN_SCREENSHOT"); shot != "" {
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS("svg.timeline")))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", shot, len(png))
	}
}

// A non-linearizable history brings porcupine's visualization into the
// report, and its script draws inside the report page.
func TestSeedReportEmbedsPorcupine(t *testing.T) {
	dir, _ := failingReport(t, "read-without-leadership-check", 1)
	if m, _ := filepath.Glob(filepath.Join(dir, "linearizability-*.html")); len(m) == 0 {
		t.Fatal("test premise: porcupine wrote a visualization")
	}
	ctx, requests := openInBrowser(t, filepath.Join(dir, "report.html"))
	drawn, err := chromedp.Run(ctx, chromedp.Poll[bool](`(() => { const f = document.querySelector("iframe"); return !!(f && f.contentDocument && f.contentDocument.querySelector("#canvas svg")); })()`, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil || !drawn {
		t.Fatalf("porcupine's visualization did not draw in the report: %v", err)
	}
	if len(*requests) > 0 {
		t.Errorf("the report fetched %v; it must open offline", *requests)
	}
}
