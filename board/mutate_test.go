package board

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The page's readers fuzzed in the browser: the run's files are rewritten
// round after round with records mutated at random (a value replaced by
// null, a string, a huge number, an empty array; a key dropped; a line cut,
// a byte changed, NaN written in), as the page watches. Whatever it reads,
// it throws nothing and still shows the good records. The readers are
// JavaScript, out of reach of go test -fuzz; the seed makes a failure
// repeatable, and the failing round's files are kept (in a kiln-board-
// mutation-round* directory of the system's temporary directory).

// oddValues replace a value in a mutated record.
var oddValues = []any{nil, "x", "", -1, 0, 1.5, 1e308, -1e308, 1e20, true, false,
	[]any{}, map[string]any{}, []any{nil}, []any{"a", 2}, map[string]any{"a": nil}, 3}

// mutateJSON returns v with one change somewhere in it.
func mutateJSON(rng *rand.Rand, v any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 || rng.IntN(5) == 0 {
			return oddValues[rng.IntN(len(oddValues))]
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		k := keys[rng.IntN(len(keys))]
		c := make(map[string]any, len(x))
		for kk, vv := range x {
			c[kk] = vv
		}
		if rng.IntN(5) == 0 {
			delete(c, k)
		} else {
			c[k] = mutateJSON(rng, x[k])
		}
		return c
	case []any:
		if len(x) == 0 || rng.IntN(5) == 0 {
			return oddValues[rng.IntN(len(oddValues))]
		}
		c := slices.Clone(x)
		i := rng.IntN(len(c))
		switch rng.IntN(6) {
		case 0:
			return c[:i]
		case 1:
			return append(c, oddValues[rng.IntN(len(oddValues))])
		}
		c[i] = mutateJSON(rng, c[i])
		return c
	}
	return oddValues[rng.IntN(len(oddValues))]
}

// mutateText changes a JSON text: a value inside it, or the text itself.
func mutateText(rng *rand.Rand, text string) string {
	switch rng.IntN(10) {
	case 0:
		return text[:rng.IntN(len(text)+1)]
	case 1:
		i := rng.IntN(len(text) + 1)
		return text[:i] + string(rune(' '+rng.IntN(95))) + text[min(i+1, len(text)):]
	case 2:
		for _, lit := range []string{"NaN", "Infinity", "1e999", "-1e999"} {
			if i := strings.IndexAny(text, "0123456789"); i >= 0 && rng.IntN(2) == 0 {
				return text[:i] + lit + text[i+1:]
			}
		}
		return "NaN"
	case 3:
		return []string{"null", "[]", "0", `"s"`, "{}", "true", `{"step":1e999,"split":"val"}`}[rng.IntN(7)]
	}
	var v any
	if json.Unmarshal([]byte(text), &v) != nil {
		return text
	}
	for range 1 + rng.IntN(3) {
		v = mutateJSON(rng, v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return text
	}
	return string(b)
}

// mutateLines mutates about half the lines of a JSON-lines text.
func mutateLines(rng *rand.Rand, text string) string {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i := range lines {
		if rng.IntN(2) == 0 {
			lines[i] = strings.ReplaceAll(mutateText(rng, lines[i]), "\n", " ")
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// mutateCSV changes a few cells, rows and quotes of a results.csv.
func mutateCSV(rng *rand.Rand, text string) string {
	rows := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for range 1 + rng.IntN(3) {
		i := rng.IntN(len(rows))
		cells := strings.Split(rows[i], ",")
		j := rng.IntN(len(cells))
		switch rng.IntN(5) {
		case 0:
			cells = cells[:j]
		case 1:
			cells = append(cells, "extra")
		default:
			cells[j] = []string{"", `"`, `"a,b"`, "NaN", "-1e999", "x\ny", "1e308", "null"}[rng.IntN(8)]
		}
		rows[i] = strings.Join(cells, ",")
	}
	return strings.Join(rows, "\n") + "\n"
}

func TestBoardReadersSurviveMutatedRecords(t *testing.T) {
	br := newBrowser(t, 120*time.Second)
	rounds := 60 // KILN_MUTATION_ROUNDS=N for a longer run
	if n, err := strconv.Atoi(os.Getenv("KILN_MUTATION_ROUNDS")); err == nil {
		rounds = n
	} else if testing.Short() {
		rounds = 5
	}
	base := filepath.Join(t.TempDir(), "base")
	writeFixtureRun(t, base, fixture{Steps: 60, Classes: 4, Params: []string{"conv1.weight", "fc.bias"}, Filters: [4]int{4, 1, 3, 3},
		Samples: 6, Attention: 3, SGU: 16, Summary: true})
	orig := map[string]string{}
	for _, name := range []string{"metrics.jsonl", "histograms.jsonl", "visuals.json", "summary.json"} {
		b, err := os.ReadFile(filepath.Join(base, name))
		if err != nil {
			t.Fatal(err)
		}
		orig[name] = string(b)
	}
	logdir := filepath.Join(t.TempDir(), "runs")
	run := filepath.Join(logdir, "m")
	writeFixtureRun(t, run, fixture{Steps: 20, Classes: 4})
	writeFixtureTune(t, filepath.Join(logdir, "sweep"), 3)
	results := filepath.Join(logdir, "sweep", "results.csv")
	csv, err := os.ReadFile(results)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(br.ctx, chromedp.Navigate(serveBoard(t, logdir)), wait(`document.body.dataset.ready === 'true' && document.querySelector('.run[data-run="m"]')`, 15*time.Second)); err != nil {
		t.Fatalf("loading the page: %v %v", err, br.errors())
	}
	br.focus("m")
	seed := uint64(12) // KILN_MUTATION_SEED=N for other mutations
	if n, err := strconv.ParseUint(os.Getenv("KILN_MUTATION_SEED"), 10, 64); err == nil {
		seed = n
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for round := range rounds {
		files := map[string]string{
			"metrics.jsonl":    mutateLines(rng, orig["metrics.jsonl"]) + metricsLine(500_000+round, 9, "val", 0.5, 0.9, 0.01),
			"histograms.jsonl": mutateLines(rng, orig["histograms.jsonl"]),
			"visuals.json":     mutateText(rng, mutateText(rng, orig["visuals.json"])),
			"summary.json":     mutateText(rng, orig["summary.json"]),
		}
		for name, text := range files {
			writeFile(t, filepath.Join(run, name), []byte(text))
		}
		writeFile(t, results, []byte(mutateCSV(rng, string(csv))))
		// The last metrics record is a good one with a step of its own:
		// once the overview shows it, the page has read this round.
		marker := fmt.Sprintf(`document.body.dataset.ready === 'true' && (document.querySelector('#stats') || {}).textContent?.includes('500,%03d')`, round)
		err := chromedp.Do(br.ctx, wait(marker, 10*time.Second))
		if err != nil { // what the page holds, to tell a hang from a wrong read
			held, _ := chromedp.Run(br.ctx, chromedp.Evaluate[string](`JSON.stringify([...state.files.entries()].filter(([k]) => k.startsWith('m/')).map(([k, v]) => [k, v.size, v.offset, v.line, v.records && v.records.length, v.bad]))`))
			t.Logf("the page holds %s", held)
		}
		if errs := br.errors(); err != nil || len(errs) > 0 {
			keep, _ := os.MkdirTemp("", fmt.Sprintf("kiln-board-mutation-round%d-", round))
			for name, text := range files {
				writeFile(t, filepath.Join(keep, name), []byte(text))
			}
			t.Fatalf("round %d (files kept in %s): %v\n%s", round, keep, err, strings.Join(errs, "\n"))
		}
	}
}
