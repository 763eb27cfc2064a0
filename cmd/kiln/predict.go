package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/imagefile"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// prediction is one line of predict's output.
type prediction struct {
	Source string      `json:"source"`          // the image file, or test[i]
	Index  *int        `json:"index,omitempty"` // the test-split index
	Top    []classProb `json:"top,omitempty"`
	// Classification samples of a data set carry their true label.
	Label     *int   `json:"label,omitempty"`
	LabelName string `json:"label_name,omitempty"`
	Correct   *bool  `json:"correct,omitempty"`
	// Regression: the prediction and the true target, in the target's unit.
	Prediction *float64 `json:"prediction,omitempty"`
	Target     *float64 `json:"target,omitempty"`
	Unit       string   `json:"unit,omitempty"`
}

type classProb struct {
	Class int     `json:"class"`
	Name  string  `json:"name"`
	Prob  float64 `json:"prob"`
}

func predictCmd() *cobra.Command {
	var (
		imagePath, device string
		index, count, top int
		invert, asJSON    bool
	)
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
	f.StringVar(&imagePath, "image", "", "image file to classify (PNG, PGM or JPEG)")
	f.IntVar(&index, "index", 0, "first test-split sample to classify (after --classes)")
	f.IntVar(&count, "count", 1, "number of test-split samples from --index")
	f.IntVar(&top, "top", 3, "classes to print per sample")
	f.BoolVar(&invert, "invert", false, "invert the image (dark strokes on a light background)")
	f.StringVar(&device, "device", "auto", "cpu, cuda or auto")
	f.BoolVar(&asJSON, "json", false, "print one JSON line per sample")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := mf.resolve(cmd.Flags())
		if err != nil {
			return err
		}
		bad := func(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }
		fromData := cmd.Flags().Changed("index") || cmd.Flags().Changed("count")
		switch {
		case (imagePath == "") == !fromData:
			return bad("give either --image FILE or --index I (with --count N)")
		case top < 1:
			return bad("--top %d: must be at least 1", top)
		case count < 1:
			return bad("--count %d: must be at least 1", count)
		case fromData && index < 0:
			return bad("--index %d: must not be negative", index)
		}
		if imagePath != "" {
			if _, err := os.Stat(imagePath); errors.Is(err, fs.ErrNotExist) {
				return bad("--image %s: no such file", imagePath)
			}
		}
		if err := selectDevice(device, logger()); err != nil {
			return err
		}
		var (
			meta   *data.Dataset
			x      *engine.Tensor
			labels []int
			preds  []prediction
		)
		if fromData {
			splits, err := data.Load(s.dataset, data.Options{Dir: s.opts.Dir, Classes: s.opts.Classes, Seed: s.opts.Seed})
			if err != nil {
				return err
			}
			meta = splits.Test
			if index+count > meta.Len() {
				return bad("--index %d --count %d: the %s test split has %d samples", index, count, s.dataset, meta.Len())
			}
			idx := make([]int, count)
			for i := range idx {
				idx[i] = index + i
				preds = append(preds, prediction{Source: fmt.Sprintf("test[%d]", index+i), Index: &idx[i]})
			}
			sel, err := meta.Select(idx)
			if err != nil {
				return err
			}
			if x, err = sel.ImagesTensor(); err != nil {
				return err
			}
			for i := range idx {
				if meta.Task == data.Regression {
					v := meta.TargetValue(float64(sel.Targets[i]))
					preds[i].Target = &v
				} else {
					labels = append(labels, int(sel.Labels[i]))
				}
			}
		} else {
			if meta, err = s.describe(); err != nil {
				return err
			}
			if meta.Height == 1 && meta.Width == 1 {
				return bad("--image: %s samples are feature rows, not images; use --index", s.dataset)
			}
			img, err := imagefile.ReadFile(imagePath)
			if err != nil {
				return err
			}
			pixels, err := imagefile.Pixels(img, meta.Channels, meta.Height, meta.Width, invert)
			if err != nil {
				return fmt.Errorf("%s: %w", imagePath, err)
			}
			if !invert && imagefile.LightBackground(pixels) && meta.Channels == 1 {
				fmt.Fprintf(os.Stderr, "note: %s is mostly light; %s images are light on a dark background: try --invert\n", imagePath, s.dataset)
			}
			x = engine.New(engine.Float32, 1, meta.Channels, meta.Height, meta.Width)
			if err := meta.NormalizeImage(x.Float32(), pixels); err != nil {
				return err
			}
			preds = []prediction{{Source: imagePath}}
		}
		model, err := s.build(meta)
		if err != nil {
			return err
		}
		out, err := forwardAll(model, x)
		if err != nil {
			return err
		}
		k, values := out.Len()/len(preds), out.Values()
		for i := range preds {
			p := &preds[i]
			row := values[i*k : (i+1)*k]
			if model.Spec.Regression {
				v := meta.TargetValue(row[0])
				p.Prediction, p.Unit = &v, meta.TargetName
				continue
			}
			p.Top = topK(softmax(row), top, meta.Classes)
			if labels != nil {
				l, ok := labels[i], labels[i] == p.Top[0].Class
				p.Label, p.LabelName, p.Correct = &l, className(meta.Classes, l), &ok
			}
		}
		for _, p := range preds {
			if asJSON {
				b, err := json.Marshal(p)
				if err != nil {
					return err
				}
				fmt.Println(string(b))
				continue
			}
			fmt.Println(p.String())
		}
		return nil
	}
	return cmd
}

// String is the readable form of a prediction.
func (p prediction) String() string {
	var b strings.Builder
	b.WriteString(p.Source + ":")
	if p.Prediction != nil {
		fmt.Fprintf(&b, " %#.4g", *p.Prediction)
		if p.Target != nil {
			fmt.Fprintf(&b, "  (true %#.4g)", *p.Target)
		}
		if p.Unit != "" {
			fmt.Fprintf(&b, "  [%s]", p.Unit)
		}
		return b.String()
	}
	for i, c := range p.Top {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %.2f%%", c.Name, 100*c.Prob)
	}
	if p.Label != nil {
		mark := "✓"
		if !*p.Correct {
			mark = "✗"
		}
		fmt.Fprintf(&b, "  (true %s %s)", p.LabelName, mark)
	}
	return b.String()
}

// forwardAll runs the model in evaluation mode over x in batches and returns
// all outputs, (N, outputs).
func forwardAll(model *layers.Model, x *engine.Tensor) (*engine.Tensor, error) {
	const batch = 256
	model.SetTraining(false)
	n, per := x.Dim(0), x.Len()/x.Dim(0)
	var all []float32
	for lo := 0; lo < n; lo += batch {
		hi := min(n, lo+batch)
		xb, err := engine.FromFloat32(x.Float32()[lo*per:hi*per], hi-lo, x.Dim(1), x.Dim(2), x.Dim(3))
		if err != nil {
			return nil, err
		}
		if dev := trainer.DefaultDevice(); dev != engine.CPU {
			if err := layers.ToDevice(model, dev); err != nil {
				return nil, err
			}
			if xb, err = xb.To(dev); err != nil {
				return nil, err
			}
		}
		out, err := model.Forward(xb)
		if err != nil {
			return nil, err
		}
		k := out.Len() / (hi - lo)
		for i, v := range out.Values() {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("the model's output for sample %d is %v: its weights (or the input) hold NaN or infinite values", lo+i/k, v)
			}
			all = append(all, float32(v))
		}
	}
	return engine.FromFloat32(all, n, len(all)/n)
}

// softmax turns logits into probabilities (max subtracted, in float64).
func softmax(logits []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, v)
	}
	p := make([]float64, len(logits))
	sum := 0.0
	for i, v := range logits {
		p[i] = math.Exp(v - m)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// topK returns the k most probable classes, most probable first (ties by
// class index).
func topK(p []float64, k int, names []string) []classProb {
	idx := make([]int, len(p))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p[idx[a]] > p[idx[b]] })
	out := make([]classProb, 0, k)
	for _, c := range idx[:min(k, len(idx))] {
		out = append(out, classProb{Class: c, Name: className(names, c), Prob: p[c]})
	}
	return out
}

func className(names []string, c int) string {
	if c >= 0 && c < len(names) {
		return names[c]
	}
	return strconv.Itoa(c)
}
