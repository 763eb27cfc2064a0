package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/imagefile"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// predictFlags are predict's own flags, beside the model flags.
type predictFlags struct {
	imagePath, device string
	index, count, top int
	invert, asJSON    bool
}

func predictCmd() *cobra.Command {
	var pf predictFlags
	cmd := &cobra.Command{
		Use:   "predict",
		Short: "Classify an image file or a slice of a data set's test split",
		Long: `Runs the model on an image file (PNG, PGM or JPEG) or on test-split samples
and prints the top-k classes with their probabilities (the softmax of the
logits), with the true label for data-set samples; a regression model prints
its prediction in the target's unit.

An image is converted to the model's input: grayscale for a 1-channel model,
RGB for 3 channels, resized to the input size with a bilinear filter (widened
when shrinking, so that strokes are averaged, not skipped), scaled to [0,1]
and normalised with the data set's constants (--dataset, default mnist).
MNIST digits are light on dark: --invert a dark-on-light drawing. An image
may have at most 16384 pixels a side and 33554432 (2^25) in all, and its file
256 MiB: a larger one is refused from its header, before it is decoded.

  kiln predict --run runs/x --image digit.png
  kiln predict --model lenet --weights w.safetensors --dataset mnist --index 0 --count 5

With --json each sample is one JSON line.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	mf := addModelFlags(f)
	f.StringVar(&pf.imagePath, "image", "", "image file to classify (PNG, PGM or JPEG)")
	f.IntVar(&pf.index, "index", 0, "first test-split sample to classify (after --classes)")
	f.IntVar(&pf.count, "count", 1, "number of test-split samples from --index")
	f.IntVar(&pf.top, "top", 3, "classes to print per sample")
	f.BoolVar(&pf.invert, "invert", false, "invert the image (dark strokes on a light background)")
	f.StringVar(&pf.device, "device", "auto", "cpu, cuda or auto")
	f.BoolVar(&pf.asJSON, "json", false, "print one JSON line per sample")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := mf.resolve(cmd.Flags())
		if err != nil {
			return err
		}
		fromData := cmd.Flags().Changed("index") || cmd.Flags().Changed("count")
		if err := pf.check(fromData); err != nil {
			return err
		}
		if err := selectDevice(pf.device, logger()); err != nil {
			return err
		}
		in, err := pf.input(s, fromData)
		if err != nil {
			return err
		}
		if err := in.predict(s, pf.top); err != nil {
			return err
		}
		return printPredictions(in.preds, pf.asJSON)
	}
	return cmd
}

// check refuses contradictory or out-of-range flags, and a missing image,
// before anything is loaded.
func (pf *predictFlags) check(fromData bool) error {
	switch {
	case (pf.imagePath == "") == !fromData:
		return usagef("give either --image FILE or --index I (with --count N)")
	case pf.top < 1:
		return usagef("--top %d: must be at least 1", pf.top)
	case pf.count < 1:
		return usagef("--count %d: must be at least 1", pf.count)
	case fromData && pf.index < 0:
		return usagef("--index %d: must not be negative", pf.index)
	}
	if pf.imagePath != "" {
		if _, err := os.Stat(pf.imagePath); errors.Is(err, fs.ErrNotExist) {
			return usagef("--image %s: no such file", pf.imagePath)
		}
	}
	return nil
}

// predictInput is what the model runs on: the samples, the metadata of
// their data set, and a prediction per sample to fill in.
type predictInput struct {
	meta   *data.Dataset
	x      *engine.Tensor // (N, C, H, W)
	labels []int          // the true classes of a classification set's samples; nil for an image
	preds  []prediction
}

// input is the image or the test samples the flags name.
func (pf *predictFlags) input(s *modelSetup, fromData bool) (*predictInput, error) {
	if fromData {
		return testSamples(s, pf.index, pf.count)
	}
	return imageInput(s, pf.imagePath, pf.invert)
}

// testSamples is samples index..index+count-1 of the test split.
func testSamples(s *modelSetup, index, count int) (*predictInput, error) {
	splits, err := data.Load(s.dataset, data.Options{Dir: s.opts.Dir, Classes: s.opts.Classes, Seed: s.opts.Seed})
	if err != nil {
		return nil, err
	}
	in := &predictInput{meta: splits.Test}
	if index+count > in.meta.Len() {
		return nil, usagef("--index %d --count %d: the %s test split has %d samples", index, count, s.dataset, in.meta.Len())
	}
	idx := make([]int, count)
	for i := range idx {
		idx[i] = index + i
		in.preds = append(in.preds, prediction{Source: fmt.Sprintf("test[%d]", index+i), Index: &idx[i]})
	}
	sel, err := in.meta.Select(idx)
	if err != nil {
		return nil, err
	}
	if in.x, err = sel.ImagesTensor(); err != nil {
		return nil, err
	}
	for i := range idx {
		if in.meta.Task == data.Regression {
			v := in.meta.TargetValue(float64(sel.Targets[i]))
			in.preds[i].Target = &v
		} else {
			in.labels = append(in.labels, int(sel.Labels[i]))
		}
	}
	return in, nil
}

// imageInput is an image file as the model's input: converted, resized and
// normalised as the data set's samples are.
func imageInput(s *modelSetup, path string, invert bool) (*predictInput, error) {
	meta, err := s.describe()
	if err != nil {
		return nil, err
	}
	if meta.Height == 1 && meta.Width == 1 {
		return nil, usagef("--image: %s samples are feature rows, not images; use --index", s.dataset)
	}
	img, err := imagefile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	x, light, err := imagefile.Input(img, meta, invert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if light && !invert {
		fmt.Fprintf(os.Stderr, "note: %s is mostly light; %s images are light on a dark background: try --invert\n", path, s.dataset)
	}
	return &predictInput{meta: meta, x: x, preds: []prediction{{Source: path}}}, nil
}

// predict builds the model, runs it over the input and fills in the
// predictions: the top classes, or a regression's value in its unit.
func (in *predictInput) predict(s *modelSetup, top int) error {
	model, err := s.build(in.meta)
	if err != nil {
		return err
	}
	c := trainer.DefaultConfig()
	c.Model, c.Dataset, c.Regression = model.Name, s.dataset, model.Spec.Regression
	tr, err := trainer.NewTrainer(c, model)
	if err != nil {
		return err
	}
	out, err := tr.Outputs(in.x)
	if err != nil {
		return err
	}
	if model.Spec.Regression {
		for i := range in.preds {
			v := in.meta.TargetValue(out.At(i * out.Dim(1)))
			in.preds[i].Prediction, in.preds[i].Unit = &v, in.meta.TargetName
		}
		return nil
	}
	probs, err := trainer.Softmax(out)
	if err != nil {
		return err
	}
	k := probs.Dim(1)
	for i := range in.preds {
		p := &in.preds[i]
		p.Top = topK(probs.Float64()[i*k:(i+1)*k], top, in.meta.Classes)
		if in.labels != nil {
			l, ok := in.labels[i], in.labels[i] == p.Top[0].Class
			p.Label, p.LabelName, p.Correct = &l, className(in.meta.Classes, l), &ok
		}
	}
	return nil
}
