package tune

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/kiln-ml/kiln/trainer"
)

// Ranked returns the trials best first: those that ran to their end by the
// metric, then those successive halving stopped (by the metric they had
// when stopped), then the rest by number.
func (s *State) Ranked() []*Trial {
	tier := func(t *Trial) int {
		switch {
		case t.Metric != nil && t.Status == Done:
			return 0
		case t.Metric != nil && t.Status == Stopped:
			return 1
		}
		return 2
	}
	maximize := Maximize(s.Settings.Metric)
	out := slices.Clone(s.Trials)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ta, tb := tier(a), tier(b); ta != tb || ta == 2 {
			return ta < tb
		}
		if *a.Metric != *b.Metric {
			return better(*a.Metric, *b.Metric, maximize)
		}
		return lowerTieLoss(a, b, s.Settings.Metric)
	})
	return out
}

// lowerTieLoss breaks a tie on an accuracy by the same split's loss, lower
// first: trials that all reach val_acc 1 on a small validation split differ
// in how sure they are. A trial without the loss comes after those with it.
func lowerTieLoss(a, b *Trial, metric string) bool {
	loss := tieLoss(metric)
	if loss == "" {
		return false
	}
	at := func(t *Trial) float64 {
		if v, ok := t.Metrics[loss]; ok && !math.IsNaN(v) {
			return v
		}
		return math.Inf(1)
	}
	return at(a) < at(b)
}

// tieLoss is the loss that breaks ties on metric ("" for a metric that is
// itself a loss or an error).
func tieLoss(metric string) string {
	split, _, ok := strings.Cut(metric, "_")
	if !ok || !Maximize(metric) {
		return ""
	}
	return split + "_loss"
}

// Best is the best trial that ran to its end (or, when none did, the best
// stopped one); nil when no trial has the metric.
func (s *State) Best() *Trial {
	r := s.Ranked()
	if len(r) == 0 || r[0].Metric == nil {
		return nil
	}
	return r[0]
}

// metricKeys are the figures any trial reported, the tune's metric first.
func (s *State) metricKeys() []string {
	set := map[string]bool{}
	for _, t := range s.Trials {
		for k := range t.Metrics {
			set[k] = true
		}
	}
	delete(set, s.Settings.Metric)
	keys := []string{s.Settings.Metric}
	rest := make([]string, 0, len(set))
	for k := range set {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	return append(keys, rest...)
}

// ResultsCSV renders results.csv: trial,status,<metric>,epochs,steps,
// seconds,<the other metrics>,error, then each searched setting; one row
// per trial, best first.
func (s *State) ResultsCSV() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	metrics := s.metricKeys()
	header := []string{"trial", "status", metrics[0], "epochs", "steps", "seconds"}
	header = append(header, metrics[1:]...)
	header = append(header, "error")
	header = append(header, s.Space.Keys()...)
	_ = w.Write(header)
	for _, t := range s.Ranked() {
		row := []string{t.Name(), string(t.Status), num(t.Metric), strconv.Itoa(t.Epochs), strconv.Itoa(t.Steps),
			strconv.FormatFloat(math.Round(t.Seconds*100)/100, 'f', -1, 64)}
		for _, k := range metrics[1:] {
			if v, ok := t.Metrics[k]; ok {
				row = append(row, num(&v))
			} else {
				row = append(row, "")
			}
		}
		row = append(row, t.Error)
		for _, k := range s.Space.Keys() {
			row = append(row, String(t.Params[k]))
		}
		_ = w.Write(row)
	}
	w.Flush()
	return buf.Bytes()
}

func num(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'g', 6, 64)
}

// BestYAML renders best.yaml: the best trial's whole configuration, which
// kiln train --config accepts (a new run directory, all cores).
func (s *State) BestYAML() ([]byte, error) {
	best := s.Best()
	if best == nil {
		return nil, fmt.Errorf("no trial has %s yet", s.Settings.Metric)
	}
	c := best.Config
	c.RunDir, c.Threads, c.StopAfterEpoch = "", 0, 0
	y, err := c.YAML()
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("# kiln tune: the best of %d trials by %s = %s (trial %s, %s)\n# kiln train --config best.yaml\n",
		len(s.Trials), s.Settings.Metric, num(best.Metric), best.Name(), best.Dir)
	return append([]byte(head), y...), nil
}

// writeResults writes results.csv and, once a trial has the metric,
// best.yaml. Called with the lock held.
func (tu *Tuner) writeResults() error {
	if err := trainer.WriteFileAtomic(filepath.Join(tu.Dir, ResultsFile), tu.State.ResultsCSV()); err != nil {
		return err
	}
	if tu.State.Best() == nil {
		return nil
	}
	y, err := tu.State.BestYAML()
	if err != nil {
		return err
	}
	return trainer.WriteFileAtomic(filepath.Join(tu.Dir, BestFile), y)
}

// metricCell is t's figure for metric, or "-".
func metricCell(t *Trial, metric string) string {
	v, ok := t.Metrics[metric]
	if !ok {
		return "-"
	}
	return num(&v)
}

// WriteTable prints the results as a table, best first.
func (s *State) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	loss := tieLoss(s.Settings.Metric) // shown: it orders the ties
	fmt.Fprintf(tw, "rank\ttrial\tstatus\t%s", s.Settings.Metric)
	if loss != "" {
		fmt.Fprintf(tw, "\t%s", loss)
	}
	fmt.Fprint(tw, "\tepochs\tseconds")
	for _, k := range s.Space.Keys() {
		fmt.Fprintf(tw, "\t%s", k)
	}
	fmt.Fprintln(tw)
	for i, t := range s.Ranked() {
		rank := strconv.Itoa(i + 1)
		if t.Metric == nil {
			rank = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", rank, t.Name(), t.Status, num(t.Metric))
		if loss != "" {
			fmt.Fprintf(tw, "\t%s", metricCell(t, loss))
		}
		fmt.Fprintf(tw, "\t%d\t%.1f", t.Epochs, t.Seconds)
		for _, k := range s.Space.Keys() {
			fmt.Fprintf(tw, "\t%s", String(t.Params[k]))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
