package board

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/trainer"
)

// The board in a real browser: Debian's chromium, headless, loads the page
// against real run directories and the test reads the rendered DOM.
//
// KILN_ARTIFACTS names a directory for the screenshots (else the test's
// temporary directory, logged); KILN_UPDATE_SCREENSHOT=1 also refreshes
// board/testdata/screenshot.png; REQUIRE_BROWSER=1 turns a missing chromium
// from a skip into a failure.

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// pageFacts is what the test reads back from the DOM.
type pageFacts struct {
	Focus   string `json:"focus"`
	Runs    int    `json:"runs"`
	Checked int    `json:"checked"`
	Stats   int    `json:"stats"`
	Charts  []struct {
		Metric      string `json:"metric"`
		Series      int    `json:"series"`
		Drawn       int    `json:"drawn"`
		Points      int    `json:"points"`
		Width       int    `json:"width"`
		Height      int    `json:"height"`
		Inked       int    `json:"inked"`
		ReadoutRows int    `json:"readoutRows"`
	} `json:"charts"`
	Hists       []string `json:"hists"`
	HistInked   int      `json:"histInked"`
	Filters     int      `json:"filters"`
	Samples     int      `json:"samples"`
	FirstWrong  string   `json:"firstWrong"`
	Wrong       int      `json:"wrong"`
	Cells       int      `json:"cells"`
	Attention   int      `json:"attention"`
	SGU         int      `json:"sgu"`
	TuneRows    int      `json:"tuneRows"`
	TuneLines   int      `json:"tuneLines"`
	TuneHeaders []string `json:"tuneHeaders"`
}

const factsJS = `(() => {
  const all = (s) => [...document.querySelectorAll(s)];
  const inked = (c) => {
    if (!c || !c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  };
  const charts = all('.chart').map((c) => {
    const canvas = c.querySelector('.uplot canvas');
    return { metric: c.dataset.metric, series: +c.dataset.series, drawn: +c.dataset.drawn, points: +c.dataset.points,
      width: canvas ? canvas.width : 0, height: canvas ? canvas.height : 0, inked: inked(canvas),
      readoutRows: c.querySelectorAll('.readout > span').length };
  });
  const hc = document.querySelector('.hist-card canvas');
  const first = document.querySelector('.sample');
  return {
    focus: document.body.dataset.focus,
    runs: all('.run').length,
    checked: all('.run input:checked').length,
    stats: all('#stats .stat').length,
    charts,
    hists: all('.hist-card').map((c) => c.dataset.param),
    histInked: inked(hc),
    filters: all('.filter-tile').length,
    samples: all('.sample').length,
    firstWrong: first ? first.dataset.correct || '' : '',
    wrong: all('.sample[data-correct="false"]').length,
    cells: all('table.confusion td.cell').length,
    attention: all('.attn-tile').length,
    sgu: all('.sgu-card').length,
    tuneRows: all('table.results tbody tr').length,
    tuneLines: all('#parallel path.trial').length,
    tuneHeaders: all('table.results th').map((th) => th.textContent),
  };
})()`

// browser is a headless chromium page whose exceptions, console errors and
// warnings, and browser log errors (a refused load, a Content-Security-Policy
// violation) are collected: a test fails on any of them.
type browser struct {
	t    *testing.T
	ctx  context.Context
	mu   sync.Mutex
	errs []string
}

// newBrowser starts chromium for the test (and skips the test when there is
// none, unless REQUIRE_BROWSER=1); it stops at the test's end or timeout.
func newBrowser(t *testing.T, timeout time.Duration) *browser {
	t.Helper()
	exe := chromiumPath()
	if exe == "" {
		if os.Getenv("REQUIRE_BROWSER") == "1" {
			t.Fatal("REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
		}
		t.Skip("no chromium on PATH: apt-get install chromium (REQUIRE_BROWSER=1 makes this a failure)")
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1440, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(func() {
		cancel()
		cancelBrowser()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, b.listen); err != nil {
		t.Fatalf("starting chromium (%s): %v", exe, err)
	}
	return b
}

func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.errs = append(b.errs, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.errs = append(b.errs, string(ev.Type)+": "+strings.Join(parts, " "))
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			b.errs = append(b.errs, fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

// errors returns what the page logged so far, and forgets it.
func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := b.errs
	b.errs = nil
	return errs
}

func (b *browser) facts() pageFacts {
	b.t.Helper()
	f, err := chromedp.Run(b.ctx, chromedp.Evaluate[pageFacts](factsJS))
	if err != nil {
		b.t.Fatalf("reading the page: %v", err)
	}
	return f
}

// focus clicks a run in the list and waits until the page shows it.
func (b *browser) focus(id string) pageFacts {
	b.t.Helper()
	err := chromedp.Do(b.ctx,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`.run[data-run=%q] .name`, id))),
		wait(fmt.Sprintf(`document.body.dataset.focus === %q && document.body.dataset.ready === 'true'`, id), 10*time.Second))
	if err != nil {
		b.t.Fatalf("focusing %s: %v", id, err)
	}
	return b.facts()
}

// shot takes the whole page as name in KILN_ARTIFACTS (else the test's
// temporary directory): the viewport is stretched to the page's height
// first, so the sticky bar and run list stay where they belong.
func (b *browser) shot(name string) []byte {
	t := b.t
	t.Helper()
	art := os.Getenv("KILN_ARTIFACTS")
	if art == "" {
		art = t.TempDir()
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	height, err := chromedp.Run(b.ctx, chromedp.Evaluate[int64](`document.documentElement.scrollHeight`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(1440, height), wait(`new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(1440, 1000)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(art, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d KB)", p, len(png)/1024)
	return png
}

// serveBoard serves logdir on a loopback port for the test; it returns the
// page's URL.
func serveBoard(t *testing.T, logdir string) string {
	t.Helper()
	s, err := New(logdir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.Poll, s.LoopbackOnly = 100*time.Millisecond, true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return "http://" + ln.Addr().String() + "/"
}

func TestBoardInABrowser(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	start := time.Now()
	logdir := filepath.Join(t.TempDir(), "runs")
	var wg sync.WaitGroup
	for name := range realRuns {
		wg.Add(1)
		go func() { defer wg.Done(); trainRealRun(name) }()
	}
	wg.Wait()
	for _, name := range []string{"cbam-mnist", "gmlp-mnist", "lenet-mnist"} {
		copyRun(t, trainedRun(t, name), filepath.Join(logdir, name))
	}
	writeFixtureTune(t, filepath.Join(logdir, "sweep"), 4)
	t.Logf("real runs trained in %v", time.Since(start).Round(time.Millisecond))
	url := serveBoard(t, logdir)

	loadStart := time.Now()
	if err := chromedp.Do(br.ctx,
		chromedp.Navigate(url),
		wait(`document.body.dataset.ready === 'true' && document.querySelectorAll('.chart .uplot canvas').length >= 3`, 15*time.Second),
	); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	t.Logf("page rendered in %v", time.Since(loadStart).Round(time.Millisecond))
	// The run the page heads with is one of the curves drawn, not the tune's
	// newest trial, which the default selection leaves to the tune's table.
	headline, err := chromedp.Run(br.ctx, chromedp.Evaluate[bool](
		`!document.body.dataset.focus.startsWith('sweep/') && [...document.querySelectorAll('.run')].some((r) => r.dataset.run === document.body.dataset.focus && r.querySelector('input').checked)`))
	if err != nil || !headline {
		focus, _ := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.body.dataset.focus`))
		t.Errorf("the page heads with %q, which is not among the curves drawn (%v)", focus, err)
	}
	f := checkScalars(t, br, logdir)
	checkTune(t, br, f)
	br.focus("lenet-mnist")
	png := br.shot("board-lenet.png")
	if os.Getenv("KILN_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("testdata", "screenshot.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkLive(t, br, logdir, f)
	checkModels(t, br, logdir)
	checkEmptyLogdir(t, br)
	if errs := br.errors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("browser test took %v", time.Since(start).Round(time.Millisecond))
}

// checkScalars: the three real runs overlaid (the tune's trials are left to
// its table), train and validation for loss and accuracy (and lenet-mnist's
// steps), one lr line each.
func checkScalars(t *testing.T, br *browser, logdir string) pageFacts {
	ctx, facts := br.ctx, br.facts
	f := br.focus("lenet-mnist")
	if f.Runs != 7 || f.Checked != 3 {
		t.Errorf("run list: %d runs, %d ticked; want 7 and 3", f.Runs, f.Checked)
	}
	// lenet-mnist logs every 5 steps: its train_step records are a third
	// loss and accuracy series (a run that diverges before an epoch ends
	// has no other).
	want := map[string]int{"loss": 7, "accuracy": 7, "lr": 3, "images_per_sec": 3}
	got := map[string]int{}
	for _, c := range f.Charts {
		got[c.Metric] = c.Series
		if c.Drawn != c.Series || c.Width < 300 || c.Height < 150 || c.Inked < 2000 || c.ReadoutRows < c.Series {
			t.Errorf("chart %s: %+v", c.Metric, c)
		}
	}
	for m, n := range want {
		if got[m] != n {
			t.Errorf("chart %s: %d series, want %d (charts %v)", m, got[m], n, got)
		}
	}
	// With smoothing, each series is drawn twice: raw (faint) and smoothed.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.querySelector('#smoothing'); s.value = '0.6'; s.dispatchEvent(new Event('input')); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range facts().Charts {
		if c.Drawn != 2*c.Series || c.Inked < 2000 {
			t.Errorf("smoothed chart %s: %+v", c.Metric, c)
		}
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.querySelector('#smoothing'); s.value = '0'; s.dispatchEvent(new Event('input')); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	if f.Stats < 5 {
		t.Errorf("%d overview figures", f.Stats)
	}
	checkVisuals(t, filepath.Join(logdir, "lenet-mnist"), f)
	if f.Filters == 0 || f.Samples == 0 || f.Cells != 100 {
		t.Errorf("lenet: %d filters, %d samples, %d confusion cells", f.Filters, f.Samples, f.Cells)
	}

	return f
}

// checkTune: the tune table and its parallel coordinates; a click on a
// header sorts; a row opens its trial's run. The empty error column is left
// out of the table.
func checkTune(t *testing.T, br *browser, f pageFacts) {
	ctx := br.ctx
	if f.TuneRows != 4 || f.TuneLines != 4 || !slices.Equal(f.TuneHeaders, []string{"trial", "status", "val_acc", "epochs", "steps", "seconds", "val_loss", "batch", "lr", "optimizer"}) {
		t.Errorf("tune: %d rows, %d lines, headers %v", f.TuneRows, f.TuneLines, f.TuneHeaders)
	}
	header := chromedp.Click(chromedp.CSS(`table.results th:nth-child(7)`))
	if err := chromedp.Do(ctx, header, header); err != nil {
		t.Fatal(err)
	}
	order, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('table.results tbody tr')].map((r) => r.children[6].textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	if len(order) != 4 || !slices.IsSortedFunc(order, func(a, b string) int { return cmp.Compare(num(b), num(a)) }) {
		t.Errorf("val_loss sorted descending: %v", order)
	}

	// A row of the table opens its trial's run.
	trial, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('table.results tbody tr.linked td').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`table.results tbody tr.linked`)),
		wait(fmt.Sprintf(`document.body.dataset.focus === 'sweep/trials/%s' && document.body.dataset.ready === 'true'`, trial), 10*time.Second)); err != nil {
		t.Errorf("clicking trial %s in the table: %v", trial, err)
	}
}

// checkLive: the run validates once more and the loss chart takes the new
// point without a reload; a new run appears while the page is open.
func checkLive(t *testing.T, br *browser, logdir string, f pageFacts) {
	ctx := br.ctx
	before := 0
	for _, c := range f.Charts {
		if c.Metric == "loss" {
			before = c.Points
		}
	}
	metrics := filepath.Join(logdir, "lenet-mnist", trainer.MetricsFile)
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(trainer.MetricsRecord{Step: 70, Epoch: 2.33, Split: "val", Loss: 0.2, Accuracy: ptr(0.93), LR: 0.001, Wall: 9})
	if err := trainer.WriteFileAtomic(metrics, append(b, append(line, '\n')...)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, wait(fmt.Sprintf(`document.querySelector('.chart[data-metric="loss"]').dataset.points === '%d'`, before+1), 10*time.Second)); err != nil {
		t.Errorf("the loss chart did not take the new point (had %d): %v", before, err)
	}

	// A new run appears while the page is open (a regression run: RMSE, and
	// samples ranked by error rather than right or wrong); it joins the
	// overlaid runs on its own.
	copyRun(t, trainedRun(t, "lenet-mnist-rotation"), filepath.Join(logdir, "lenet-mnist-rotation"))
	rmseSeries := 0
	b, err = os.ReadFile(filepath.Join(logdir, "lenet-mnist-rotation", trainer.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, split := range []string{`"split":"train"`, `"split":"val"`} {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, split) && strings.Contains(line, `"rmse"`) {
				rmseSeries++
				break
			}
		}
	}
	if rmseSeries == 0 {
		t.Fatalf("the regression run's metrics hold no rmse: %s", b)
	}
	if err := chromedp.Do(ctx, wait(fmt.Sprintf(`document.querySelector('.run[data-run="lenet-mnist-rotation"] input:checked') && document.querySelector('.chart[data-metric="rmse"]')?.dataset.series === '%d'`, rmseSeries), 10*time.Second)); err != nil {
		t.Errorf("the new run did not show up: %v", err)
	}
	f = br.focus("lenet-mnist-rotation")
	checkVisuals(t, filepath.Join(logdir, "lenet-mnist-rotation"), f)
	if f.Samples == 0 || f.Wrong != 0 || f.FirstWrong != "" || f.Cells != 0 {
		t.Errorf("regression run: %d samples, %d marked wrong, %d confusion cells", f.Samples, f.Wrong, f.Cells)
	}
	br.shot("board-rotation.png")

}

// checkModels: CBAM's attention maps, gMLP's spatial gating weights, and the
// dark theme.
func checkModels(t *testing.T, br *browser, logdir string) {
	// CBAM: spatial attention maps over their input images.
	f := br.focus("cbam-mnist")
	checkVisuals(t, filepath.Join(logdir, "cbam-mnist"), f)
	if f.Attention == 0 {
		t.Error("cbam: no attention maps shown")
	}
	br.shot("board-cbam.png")
	// gMLP: the spatial gating unit's weights, and the dark theme.
	f = br.focus("gmlp-mnist")
	checkVisuals(t, filepath.Join(logdir, "gmlp-mnist"), f)
	if f.SGU == 0 {
		t.Error("gmlp: no SGU weights shown")
	}
	if err := chromedp.Do(br.ctx, chromedp.Click(chromedp.CSS(`#theme`)), wait(`document.documentElement.dataset.theme === 'dark' && document.querySelectorAll('.chart .uplot').length >= 3`, 5*time.Second)); err != nil {
		t.Errorf("dark theme: %v", err)
	}
	br.shot("board-gmlp-dark.png")

}

// checkEmptyLogdir: the page says there are no runs instead of failing.
func checkEmptyLogdir(t *testing.T, br *browser) {
	empty, err := New(t.TempDir(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	emptySrv := httptest.NewServer(empty.Handler())
	defer func() {
		empty.Close()
		emptySrv.Close()
	}()
	if err := chromedp.Do(br.ctx, chromedp.Navigate(emptySrv.URL+"/"),
		wait(`document.body.dataset.ready === 'true' && document.querySelector('#runs .empty').textContent.includes('No runs yet')`, 10*time.Second)); err != nil {
		t.Errorf("empty log directory: %v", err)
	}

}

func ptr(v float64) *float64 { return &v }

// wait polls a JavaScript predicate until it holds.
func wait(predicate string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(timeout))(ctx, t)
		return chromedp.Void{}, err
	}
}

// checkVisuals compares what the page shows with the run's own files.
func checkVisuals(t *testing.T, dir string, f pageFacts) {
	t.Helper()
	name := filepath.Base(dir)
	if b, err := os.ReadFile(filepath.Join(dir, trainer.HistogramsFile)); err == nil {
		want := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var h trainer.HistogramRecord
			if json.Unmarshal([]byte(line), &h) != nil {
				continue
			}
			for _, p := range h.Params {
				if p.Kind == "weight" {
					want[p.Name] = true
				}
			}
		}
		if len(f.Hists) != len(want) || f.HistInked < 1000 {
			t.Errorf("%s: histogram cards %v (%d px inked), want one per parameter of %v", name, f.Hists, f.HistInked, want)
		}
	} else {
		t.Errorf("%s: the trainer wrote no histograms.jsonl: %v", name, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, trainer.VisualsFile))
	if err != nil {
		t.Errorf("%s: the trainer wrote no visuals.json: %v", name, err)
		return
	}
	var v trainer.Visuals
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	wrong := 0
	for _, s := range v.Samples {
		if s.Label != nil && float64(*s.Label) != s.Pred {
			wrong++
		}
	}
	filters := 0
	if v.Filters != nil {
		filters = v.Filters.Shape[0]
	}
	switch {
	case f.Filters != filters:
		t.Errorf("%s: %d filter tiles, want %d", name, f.Filters, filters)
	case f.Samples != len(v.Samples) || f.Wrong != wrong:
		t.Errorf("%s: %d samples (%d wrong), want %d (%d wrong)", name, f.Samples, f.Wrong, len(v.Samples), wrong)
	case wrong > 0 && f.FirstWrong != "false":
		t.Errorf("%s: the first sample shown is not a mistake", name)
	case f.Cells != len(v.Classes)*len(v.Classes):
		t.Errorf("%s: %d confusion cells, want %d", name, f.Cells, len(v.Classes)*len(v.Classes))
	case f.Attention != len(v.Attention):
		t.Errorf("%s: %d attention tiles, want %d", name, f.Attention, len(v.Attention))
	case f.SGU != len(v.SGU):
		t.Errorf("%s: %d SGU cards, want %d", name, f.SGU, len(v.SGU))
	}
}

// A run whose files hold bad records, as a crash, a copy or a hand edit
// leaves them: the page shows the other records, says under the run's title
// what it skipped, and throws nothing.
func TestBoardSkipsBadRecordsInABrowser(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	logdir := filepath.Join(t.TempDir(), "runs")
	run := filepath.Join(logdir, "broken")
	copyRun(t, trainedRun(t, "lenet-mnist"), run)
	points, torn := breakMetrics(t, filepath.Join(run, trainer.MetricsFile))
	hists := breakHistograms(t, filepath.Join(run, trainer.HistogramsFile))
	samples := breakVisuals(t, filepath.Join(run, trainer.VisualsFile))
	summary := filepath.Join(run, trainer.SummaryFile)
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, summary, b[:len(b)/2])
	writeFixtureTune(t, filepath.Join(logdir, "sweep"), 3)
	csv := filepath.Join(logdir, "sweep", "results.csv")
	b, err = os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, csv, append(b, "9,done,0.5\n"...))

	if err := chromedp.Do(br.ctx, chromedp.Navigate(serveBoard(t, logdir)),
		wait(`document.body.dataset.ready === 'true' && document.querySelector('.chart[data-metric="loss"]')`, 15*time.Second)); err != nil {
		t.Fatalf("loading the page: %v (page errors: %v)", err, br.errors())
	}
	f := br.focus("broken")
	for _, c := range f.Charts {
		if c.Metric == "loss" && c.Points != points {
			t.Errorf("loss chart: %d points, want the %d good records", c.Points, points)
		}
	}
	if len(f.Hists) == 0 || f.Samples != samples || f.Attention != 0 || f.TuneRows != 3 {
		t.Errorf("page: %d histogram cards, %d samples (want %d), %d attention maps, %d tune rows", len(f.Hists), f.Samples, samples, f.Attention, f.TuneRows)
	}
	caption, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.querySelector('.hist-card .cap').textContent`))
	if err != nil || !strings.Contains(caption, fmt.Sprintf("(%d)", hists)) {
		t.Errorf("histogram caption %q (%v), want the %d good records", caption, err, hists)
	}
	br.shot("board-bad-records.png")
	notes := badNotes(t, br)
	for _, want := range []string{
		fmt.Sprintf("metrics.jsonl: skipped 3 bad records (lines 2, 4, 5); the last line (%d) cut short", torn),
		"histograms.jsonl: skipped 2 bad records (lines 2, 3)",
		fmt.Sprintf("visuals.json: skipped 2 bad records (samples[%d], attention[0])", samples),
		"summary.json: skipped, not JSON",
		"results.csv: skipped 1 bad row (line 5)",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("the page does not say %q; it says:\n%s", want, notes)
		}
	}

	// The run goes on: the torn line is finished and a null line follows.
	// The new record is drawn, the next bad line counted where it is.
	m := filepath.Join(run, trainer.MetricsFile)
	b, err = os.ReadFile(m)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, m, append(b, `ss":0.5,"lr":0.01,"wall_seconds":99}`+"\nnull\n"...))
	if err := chromedp.Do(br.ctx, wait(fmt.Sprintf(`document.querySelector('.chart[data-metric="loss"]').dataset.points === '%d'`, points+1), 10*time.Second)); err != nil {
		t.Errorf("the finished line was not drawn: %v", err)
	}
	if notes := badNotes(t, br); !strings.Contains(notes, fmt.Sprintf("metrics.jsonl: skipped 4 bad records (lines 2, 4, 5, %d)", torn+1)) {
		t.Errorf("after the run went on, the page says:\n%s", notes)
	}
	if errs := br.errors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// badNotes is what the page says it skipped: under the run's title and
// under the tune's table.
func badNotes(t *testing.T, br *browser) string {
	t.Helper()
	s, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('.bad-records')].map((e) => e.textContent).join('\n')`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// breakMetrics puts a null line (2), a garbage line (4), a line of wrong
// types (5) and a torn last line among a real run's records. It returns the
// points the loss chart has from the good records, and the torn line's number.
func breakMetrics(t *testing.T, path string) (points, torn int) {
	t.Helper()
	lines := readLines(t, path)
	seen := map[string]bool{}
	for _, l := range lines {
		var m trainer.MetricsRecord
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if key := fmt.Sprint(m.Split, m.Step); m.Split != "test" && !seen[key] {
			seen[key] = true
			points++
		}
	}
	out := []string{lines[0], "null", lines[1], `{"step": garbage`, `{"step":"12","split":"val","loss":1}`}
	out = append(out, lines[2:]...)
	writeFile(t, path, []byte(strings.Join(out, "\n")+"\n"+`{"step":999,"split":"val","lo`))
	return points, len(out) + 1
}

// breakHistograms puts a null line (2) and a garbage line (3) among a real
// run's histograms; it returns how many good ones there are.
func breakHistograms(t *testing.T, path string) int {
	t.Helper()
	lines := readLines(t, path)
	out := append([]string{lines[0], "null", "][garbage"}, lines[1:]...)
	writeFile(t, path, []byte(strings.Join(out, "\n")+"\n"))
	return len(lines)
}

// breakVisuals adds a sample with too few pixels and an attention map with
// no shape to a real run's visuals.json; it returns the good samples.
func breakVisuals(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	samples := v["samples"].([]any)
	v["samples"] = append(samples, map[string]any{"index": 1, "label": 1, "pred": 1, "shape": []int{1, 28, 28}, "pixels": []float64{0.5}})
	v["attention"] = []any{map[string]any{"layer": "x", "sample": 0, "shape": []int{3}, "data": []float64{1}}}
	writeJSON(t, path, v)
	return len(samples)
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// A JSON-lines file rewritten rather than appended to (a resumed run drops
// the records past its checkpoint, then goes on) and longer than before is
// read again whole: the page shows the new records, not the old ones with a
// piece of the new file glued on.
func TestBoardRereadsARewrittenFile(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	logdir := filepath.Join(t.TempDir(), "runs")
	run := filepath.Join(logdir, "r")
	writeFixtureRun(t, run, fixture{Steps: 60, Classes: 3})
	if err := chromedp.Do(br.ctx, chromedp.Navigate(serveBoard(t, logdir)),
		wait(`document.body.dataset.ready === 'true' && document.querySelector('.chart[data-metric="loss"]')`, 15*time.Second)); err != nil {
		t.Fatalf("loading the page: %v %v", err, br.errors())
	}
	// Resumed at step 20: the lines up to it kept, then validations every 5
	// steps, more of them than were dropped.
	var m strings.Builder
	points := 0
	for _, line := range readLines(t, filepath.Join(run, trainer.MetricsFile)) {
		var r trainer.MetricsRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.Step <= 20 {
			m.WriteString(line + "\n")
			points++
		}
	}
	for s := 25; s <= 120; s += 5 {
		m.WriteString(metricsLine(s, float64(s)/20, "val", 1/float64(s), 0.9, 0.01))
		points++
	}
	if err := trainer.WriteFileAtomic(filepath.Join(run, trainer.MetricsFile), []byte(m.String())); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(br.ctx, wait(fmt.Sprintf(`document.querySelector('.chart[data-metric="loss"]').dataset.points === '%d'`, points), 10*time.Second)); err != nil {
		got, _ := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.querySelector('.chart[data-metric="loss"]').dataset.points`))
		t.Errorf("after the rewrite the loss chart has %s points, want %d: %v", got, points, err)
	}
	if notes := badNotes(t, br); notes != "" {
		t.Errorf("the page says %q of a good file", notes)
	}
	if errs := br.errors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// A linear y axis labels its ticks with the decimals their spacing needs:
// accuracies 0.0002 apart read 0.9812, 0.9814, …, not 0.981 twice.
func TestBoardTickLabelsInABrowser(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	logdir := filepath.Join(t.TempDir(), "runs")
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf(`{"step":%d,"epoch":%d,"split":"val","loss":%g,"accuracy":%g,"lr":0.01}`,
			100*(i+1), i+1, 0.0601+0.00005*float64((i*7)%5), 0.9812+0.00015*float64((i*3)%5)))
	}
	if err := os.MkdirAll(filepath.Join(logdir, "t1"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(logdir, "t1", trainer.MetricsFile), []byte(strings.Join(lines, "\n")+"\n"))
	if err := chromedp.Do(br.ctx, chromedp.Navigate(serveBoard(t, logdir)),
		wait(`document.body.dataset.ready === 'true' && document.querySelector('.chart[data-metric="accuracy"]')?.dataset.yticks`, 15*time.Second)); err != nil {
		t.Fatalf("loading the page: %v (page errors: %v)", err, br.errors())
	}
	ticks, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.querySelector('.chart[data-metric="accuracy"]').dataset.yticks`))
	labels := strings.Split(ticks, "|")
	if err != nil || len(labels) < 2 || len(slices.Compact(slices.Clone(labels))) != len(labels) {
		t.Fatalf("accuracy axis labels %q (%v): want distinct labels", ticks, err)
	}
	for _, l := range labels {
		if !strings.HasPrefix(l, "0.981") || len(l) != len("0.9812") {
			t.Errorf("accuracy axis labels %q: want four decimals", ticks)
			break
		}
	}
}

// A tune's failed trial's error text is no axis of the parallel
// coordinates: it was one, its message drawn over the next axis.
func TestBoardTuneErrorIsNoAxisInABrowser(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	logdir := filepath.Join(t.TempDir(), "runs")
	writeFixtureTune(t, filepath.Join(logdir, "sweep"), 3)
	csv := filepath.Join(logdir, "sweep", "results.csv")
	b, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, csv, append(b, "003,failed,,0,0,0.1,,\"epoch 1, step 3: loss is NaN\",64,80,sgd\n"...))
	if err := chromedp.Do(br.ctx, chromedp.Navigate(serveBoard(t, logdir)),
		wait(`document.body.dataset.ready === 'true' && document.querySelectorAll('#parallel .axis-name').length > 0`, 15*time.Second)); err != nil {
		t.Fatalf("loading the page: %v (page errors: %v)", err, br.errors())
	}
	names, err := chromedp.Run(br.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#parallel .axis-name')].map((e) => e.textContent)`))
	if err != nil || slices.Contains(names, "error") || !slices.Contains(names, "lr") {
		t.Errorf("parallel coordinates' axes %v (%v): want lr and no error axis", names, err)
	}
}

// Lines are parsed in chunks cut at newlines (a file of 512 MiB, past the
// longest string a browser makes, showed as no data), giving what one pass
// gives, lines longer than a chunk included; and the confusion matrix is
// drawn again only when visuals.json changed (a thousand classes took 40 s
// at every live update).
func TestBoardParsesInChunksAndKeepsItsConfusionTable(t *testing.T) {
	br := newBrowser(t, 60*time.Second)
	logdir := filepath.Join(t.TempDir(), "runs")
	writeFixtureRun(t, filepath.Join(logdir, "r"), fixture{Steps: 60, Classes: 3})
	if err := chromedp.Do(br.ctx, chromedp.Navigate(serveBoard(t, logdir)),
		wait(`document.body.dataset.ready === 'true' && document.querySelector('table.confusion')`, 15*time.Second)); err != nil {
		t.Fatalf("loading the page: %v %v", err, br.errors())
	}
	parse := `(chunk) => { PARSE_CHUNK = chunk; const recs = [], bad = newBad();
		const n = parseLines(new TextEncoder().encode('{"a":1}\n{"bb":22}\n\nnot json\n{"c":"` + strings.Repeat("x", 40) + `"}\n'), recs, 1, bad, isObj);
		PARSE_CHUNK = 1 << 24; return JSON.stringify([n, recs, bad]); }`
	whole, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`(`+parse+`)(1 << 24)`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[5,[{"a":1},{"bb":22},{"c":"` + strings.Repeat("x", 40) + `"}],{"count":1,"where":[4]}]`; whole != want {
		t.Fatalf("one pass: %s, want %s", whole, want)
	}
	for _, chunk := range []int{1, 7, 10, 16} {
		got, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(%s)(%d)`, parse, chunk)))
		if err != nil || got != whole {
			t.Errorf("chunks of %d bytes: %s (%v), one pass %s", chunk, got, err, whole)
		}
	}
	same, err := chromedp.Run(br.ctx, chromedp.Evaluate[bool](`(() => { const t = document.querySelector('table.confusion'); render();
		return t === document.querySelector('table.confusion'); })()`))
	if err != nil || !same {
		t.Errorf("the confusion table was drawn again with visuals.json unchanged (%v)", err)
	}
	if errs := br.errors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}
