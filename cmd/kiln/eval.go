package main

import (
	"encoding/json"
	"fmt"
	"math"

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
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate weights on a data set's test split",
		Long: `Builds the model for the data set, loads the weights and evaluates them on the
test split: loss and accuracy (top-5 too with more than 5 classes), or for a
regression set RMSE, MAE and R² in the target's unit.

  kiln eval --model lenet --dataset mnist --weights runs/x/best.safetensors --json
  kiln eval --run runs/x          # model, data set, classes, subset and seed of the run

With --json, standard output is one JSON object on one line.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	mf := addModelFlags(f)
	f.Float64Var(&mf.subset, "subset", 0, "evaluate on the seeded fraction of the test split a run with this --subset and --seed used (1: all)")
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
		case batch < 1:
			return usagef("--batch %d: must be at least 1", batch)
		case threads < 0 || threads > trainer.MaxThreads:
			return usagef("--threads %d: must be in [0, %d] (0: all cores)", threads, trainer.MaxThreads)
		}
		if err := selectDevice(device, logger()); err != nil {
			return err
		}
		if threads > 0 {
			engine.SetThreads(threads)
		}
		out, err := evaluate(s, batch)
		if err != nil {
			return err
		}
		return out.print(asJSON)
	}
	return cmd
}

// evaluate builds the model for the test split and evaluates its weights.
func evaluate(s *modelSetup, batch int) (*evalOutput, error) {
	splits, err := data.Load(s.dataset, s.opts)
	if err != nil {
		return nil, err
	}
	test := splits.Test
	model, err := s.build(test)
	if err != nil {
		return nil, err
	}
	c := trainer.DefaultConfig()
	c.Model, c.Dataset, c.Batch, c.Regression = model.Name, s.dataset, batch, model.Spec.Regression
	tr, err := trainer.NewTrainer(c, model)
	if err != nil {
		return nil, err
	}
	r, err := tr.Evaluate(test)
	if err != nil {
		return nil, err
	}
	out := &evalOutput{Model: model.Name, Dataset: s.dataset, Split: "test", Weights: s.weights, Count: r.Count, Loss: finite(r.Loss),
		result: r, regression: model.Spec.Regression, unit: test.TargetName}
	if model.Spec.Regression {
		out.RMSE, out.MAE, out.R2 = finite(r.RMSE), finite(r.MAE), finite(r.R2)
	} else {
		out.Accuracy, out.Confusion = finite(r.Accuracy), r.Confusion
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
		fmt.Println(string(b))
		return nil
	}
	r := out.result
	where := fmt.Sprintf("(%d samples; %s, %s)", r.Count, out.Model, out.Weights)
	if out.regression {
		unit := out.unit
		if unit == "" {
			unit = "target"
		}
		fmt.Printf("%s test: RMSE %#.4g  MAE %#.4g  R² %.4f  loss %#.4g  [%s]  %s\n", out.Dataset, r.RMSE, r.MAE, r.R2, r.Loss, unit, where)
		return nil
	}
	top5 := ""
	if out.Top5 != nil {
		top5 = fmt.Sprintf("  top-5 %.2f%%", 100*r.Top5)
	}
	fmt.Printf("%s test: accuracy %.2f%%%s  loss %.4f  %s\n", out.Dataset, 100*r.Accuracy, top5, r.Loss, where)
	return nil
}
