package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// finite maps NaN and ±Inf to JSON null.
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// evalOutput is eval's JSON line.
type evalOutput struct {
	Model     string   `json:"model"`
	Dataset   string   `json:"dataset"`
	Split     string   `json:"split"`
	Weights   string   `json:"weights"`
	Count     int      `json:"count"`
	Loss      *float64 `json:"loss"`
	Accuracy  *float64 `json:"accuracy,omitempty"`
	Top5      *float64 `json:"top5,omitempty"`
	RMSE      *float64 `json:"rmse,omitempty"`
	MAE       *float64 `json:"mae,omitempty"`
	R2        *float64 `json:"r2,omitempty"`
	Confusion [][]int  `json:"confusion,omitempty"`
	// Per-class precision, recall and F1 from the confusion matrix, and
	// their unweighted means over the classes (classification only).
	PerClass       []classFigures `json:"per_class,omitempty"`
	MacroPrecision *float64       `json:"macro_precision,omitempty"`
	MacroRecall    *float64       `json:"macro_recall,omitempty"`
	MacroF1        *float64       `json:"macro_f1,omitempty"`

	// The readable line prints the figures as they are, NaN included.
	result     trainer.EvalResult
	regression bool
	unit       string // the regression target's
}

func evalCmd() *cobra.Command {
	var (
		batch, threads int
		device         string
		asJSON         bool
		split          string
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate weights on a data set's test (or validation, or training) split",
		Long: `Builds the model for the data set, loads the weights and evaluates them on the
test split (--split val: the validation split a run held out, by its seed and
--val-fraction; --split train: the rest): loss and accuracy (top-5 too with more than 5 classes) and the
macro-averaged precision, recall and F1, or for a regression set RMSE, MAE and
R² in the target's unit. The JSON adds the confusion matrix and each class's
precision, recall, F1 and support (per_class).

  kiln eval --model lenet --dataset mnist --weights runs/x/best.safetensors --json
  kiln eval --run runs/x          # model, data set, classes, subset, seed and precision of the run
  kiln eval --run runs/x --split val

With --json, standard output is one JSON object on one line.`,
		Args: noArgs("the run directory is --run, a weights file --weights"),
	}
	f := cmd.Flags()
	mf := addModelFlags(f)
	f.Float64Var(&mf.subset, "subset", 0, "evaluate on the seeded fraction of the test split a run with this --subset and --seed used (1: all)")
	mf.addPrecisionFlag(f)
	f.StringVar(&split, "split", "test", "the split to evaluate: test, val or train")
	f.Float64Var(&mf.valFraction, "val-fraction", trainer.DefaultConfig().ValFraction, "the fraction of the training samples the run held out for validation (as in training; --run: the run's)")
	f.IntVar(&batch, "batch", 256, "evaluation batch size (Trainer.Evaluate takes at least 256)")
	f.StringVar(&device, "device", "auto", "cpu, cuda or auto")
	f.IntVar(&threads, "threads", 0, "CPU threads (0: all cores)")
	f.BoolVar(&asJSON, "json", false, "print one JSON line")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := mf.resolve(cmd.Flags())
		if err != nil {
			return err
		}
		switch {
		case !slices.Contains(evalSplits, split):
			return usagef("--split %q: want test, val or train", split)
		case batch < 1:
			return usagef("--batch %d: must be at least 1", batch)
		case threads < 0 || threads > trainer.MaxThreads:
			return usagef("--threads %d: must be in [0, %d] (0: all cores)", threads, trainer.MaxThreads)
		}
		if err := selectDevice(device, logger()); err != nil {
			return err
		}
		if err := s.checkPrecision(cmd.Flags()); err != nil {
			return err
		}
		if threads > 0 {
			engine.SetThreads(threads)
		}
		if s.opts.Folder, err = folderOptions(s, mf.run); err != nil {
			return err
		}
		out, err := evaluate(s, split, batch)
		if err != nil {
			return err
		}
		return out.print(asJSON)
	}
	return cmd
}

// evalSplits are what --split takes.
var evalSplits = []string{"test", "val", "train"}

// evaluate builds the model for the split and evaluates its weights.
func evaluate(s *modelSetup, split string, batch int) (*evalOutput, error) {
	// Said before the folder is decoded, and without its notes for a training run.
	if split == "test" && s.dataset == "folder" && !data.FolderHasTest(s.opts.Dir) {
		return nil, fmt.Errorf("%s: no such folder: an image folder without test/ has no test split (kiln eval --split val evaluates the validation split)", filepath.Join(s.opts.Dir, "test"))
	}
	splits, err := data.Load(s.dataset, s.opts)
	if err != nil {
		return nil, err
	}
	test := map[string]*data.Dataset{"test": splits.Test, "val": splits.Val, "train": splits.Train}[split]
	switch {
	case test == nil && split == "val":
		return nil, usagef("--split val: %s has no validation split at --val-fraction %v", s.dataset, s.opts.ValFraction)
	case test == nil:
		return nil, fmt.Errorf("%s has no test split (an image folder without test/): kiln eval --split val evaluates the validation split", s.dataset)
	}
	if err := s.asRun(test); err != nil {
		return nil, err
	}
	model, err := s.build(test)
	if err != nil {
		return nil, err
	}
	c := trainer.DefaultConfig()
	c.Model, c.Dataset, c.Batch, c.Regression, c.Precision = model.Name, s.dataset, batch, model.Spec.Regression, s.precision
	tr, err := trainer.NewTrainer(c, model)
	if err != nil {
		return nil, err
	}
	r, err := tr.Evaluate(test)
	if err != nil {
		return nil, err
	}
	out := &evalOutput{Model: model.Name, Dataset: s.dataset, Split: split, Weights: s.weights, Count: r.Count, Loss: finite(r.Loss),
		result: r, regression: model.Spec.Regression, unit: test.TargetName}
	if model.Spec.Regression {
		out.RMSE, out.MAE, out.R2 = finite(r.RMSE), finite(r.MAE), finite(r.R2)
	} else {
		out.Accuracy, out.Confusion = finite(r.Accuracy), r.Confusion
		out.setClassFigures(r.Confusion, test.Classes)
		if test.NumClasses() > 5 {
			out.Top5 = finite(r.Top5)
		}
	}
	return out, nil
}

// print writes the result as one JSON line or one readable line.
func (out *evalOutput) print(asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		outln(string(b))
		return nil
	}
	r := out.result
	where := fmt.Sprintf("(%d samples; %s, %s)", r.Count, out.Model, out.Weights)
	if out.regression {
		unit := out.unit
		if unit == "" {
			unit = "target"
		}
		outf("%s %s: RMSE %#.4g  MAE %#.4g  R² %.4f  loss %#.4g  [%s]  %s\n", out.Dataset, out.Split, r.RMSE, r.MAE, r.R2, r.Loss, unit, where)
		return nil
	}
	top5 := ""
	if out.Top5 != nil {
		top5 = fmt.Sprintf("  top-5 %.2f%%", 100*r.Top5)
	}
	macro := ""
	if out.MacroF1 != nil {
		macro = fmt.Sprintf("  macro P/R/F1 %.2f/%.2f/%.2f%%", 100**out.MacroPrecision, 100**out.MacroRecall, 100**out.MacroF1)
	}
	outf("%s %s: accuracy %.2f%%%s%s  loss %.4f  %s\n", out.Dataset, out.Split, 100*r.Accuracy, top5, macro, r.Loss, where)
	return nil
}

// classFigures are one class's figures in eval's JSON: of the samples
// predicted as the class, the fraction that are (precision); of the
// class's samples, the fraction predicted as it (recall); their harmonic
// mean (F1); and the class's sample count (support).
type classFigures struct {
	Class     string  `json:"class"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"`
}

// setClassFigures fills PerClass and the macro averages from a confusion
// matrix (rows: true class, columns: predicted). A ratio of 0/0 (a class
// never predicted, or absent from the split) counts 0, as scikit-learn's
// classification_report has it with zero_division=0, and enters the macro
// averages as 0.
func (out *evalOutput) setClassFigures(conf [][]int, names []string) {
	k := len(conf)
	if k == 0 {
		return
	}
	predicted := make([]int, k)
	for _, row := range conf {
		for j, n := range row {
			predicted[j] += n
		}
	}
	var p, r, f1 float64
	out.PerClass = make([]classFigures, k)
	for i, row := range conf {
		support := 0
		for _, n := range row {
			support += n
		}
		tp := row[i]
		c := classFigures{Class: strconv.Itoa(i), Precision: ratio(tp, predicted[i]), Recall: ratio(tp, support),
			F1: ratio(2*tp, predicted[i]+support), Support: support}
		if i < len(names) {
			c.Class = names[i]
		}
		out.PerClass[i] = c
		p, r, f1 = p+c.Precision, r+c.Recall, f1+c.F1
	}
	out.MacroPrecision, out.MacroRecall, out.MacroF1 = ptrTo(p/float64(k)), ptrTo(r/float64(k)), ptrTo(f1/float64(k))
}

// ratio is a/b, 0 for 0/0.
func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ptrTo(v float64) *float64 { return &v }
