package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
)

func summaryCmd() *cobra.Command {
	var (
		model, input                 string
		hidden, depth, classes, seed int
		asJSON                       bool
	)
	cmd := &cobra.Command{
		Use:   "summary",
		Short: "Print a model's layers: output shapes, parameters and FLOPs",
		Long: `Builds the model for one input shape and prints each layer (nested blocks
indented under their parent) with its output shape for one sample, its
parameters and its forward FLOPs, then the totals, as Keras' summary() and
torchinfo do. A multiply-add counts as 2 FLOPs; element-wise work has a fixed
cost per element (layers.Summary says which). kiln train prints the same table
at its start and keeps the figures in the run's model.json.

  kiln summary --model cnn
  kiln summary --model gmlp --input 32x32x3 --depth 2 --json`,
		Args: noArgs("the model is --model, the input --input"),
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "lenet", "model: "+strings.Join(layers.ModelNames(), ", "))
	f.StringVar(&input, "input", "28x28x1", "one sample's shape, HxWxC")
	f.IntVar(&classes, "classes", 10, "outputs of the classification head")
	f.IntVar(&hidden, "hidden", 0, "width of mlp hidden layers / gmlp channels (0: model default)")
	f.IntVar(&depth, "depth", 0, "number of mlp hidden layers / gmlp blocks (0: model default)")
	f.IntVar(&seed, "seed", 1, "initialisation seed (the figures do not depend on it)")
	f.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	cmd.RunE = func(*cobra.Command, []string) error {
		name := strings.ToLower(model)
		if !slices.Contains(layers.ModelNames(), name) {
			return usagef("--model %q: unknown (have %s)", model, strings.Join(layers.ModelNames(), ", "))
		}
		h, w, c, err := parseSampleShape(input)
		if err != nil {
			return usageError{err}
		}
		if classes < 1 || hidden < 0 || depth < 0 {
			return usagef("--classes must be at least 1, --hidden and --depth not negative")
		}
		if h > trainer.MaxImageSide || w > trainer.MaxImageSide {
			return usagef("--input %s: each side at most %d (as --image-size)", input, trainer.MaxImageSide)
		}
		spec := layers.Spec{Channels: c, Height: h, Width: w, Classes: classes, Hidden: hidden, Depth: depth, Seed: uint64(seed)}
		if err := layers.CheckKnobs(name, spec); err != nil { // as eval and export refuse them (modelflags.go)
			return usagef("--%v", err)
		}
		cfg := trainer.Config{Model: name, Optimizer: "sgd", Hidden: hidden, Depth: depth}
		s, err := modelSummary(cfg, spec)
		if err != nil {
			return usageError{err}
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(s)
		}
		return writeSummary(stdout, s)
	}
	return cmd
}

// parseSampleShape reads --input HxWxC.
func parseSampleShape(s string) (h, w, c int, err error) {
	parts := strings.Split(strings.ToLower(s), "x")
	dims := make([]int, len(parts))
	for i, p := range parts {
		if dims[i], err = strconv.Atoi(p); err != nil || dims[i] < 1 {
			err = fmt.Errorf("bad dimension %q", p)
			break
		}
	}
	if len(parts) != 3 || err != nil {
		return 0, 0, 0, fmt.Errorf("--input %q: want HxWxC of positive sizes, e.g. 28x28x1", s)
	}
	return dims[0], dims[1], dims[2], nil
}

// modelSummary builds a model of the zoo on the CPU, apart from any model a
// trainer holds (a forward pass of one sample resizes a layer's buffers),
// and summarises it. The small models of the zoo build in milliseconds; one
// too large for the machine is refused from its configuration.
func modelSummary(c trainer.Config, spec layers.Spec) (*layers.Summary, error) {
	m, err := trainer.BuildModel(c, spec) // a model too large for memory is refused, not built
	if err != nil {
		return nil, err
	}
	defer layers.Release(m)
	return layers.Summarize(m)
}

// writeSummary prints the table: one row a layer, children indented two
// spaces under their parent, then the totals.
func writeSummary(out io.Writer, s *layers.Summary) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Layer (type)\tOutput shape\tParams\tFLOPs")
	for _, r := range s.Layers {
		shape := "?"
		if r.Output != nil {
			shape = strings.ReplaceAll(fmt.Sprint(r.Output), " ", ", ")
		}
		fmt.Fprintf(tw, "%s%s (%s)\t%s\t%s\t%s\n", strings.Repeat("  ", r.Depth), r.Name, r.Type, shape,
			thousands(r.Params), thousands(r.FLOPs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "Input: %dx%dx%d (HxWxC)\n"+
		"Params: %s (trainable %s, non-trainable %s)\n"+
		"Forward FLOPs a sample: %s (%s; a multiply-add counts 2)\n"+
		"Activations a sample: %s (forward outputs, float32)\n",
		s.Input[1], s.Input[2], s.Input[0], thousands(s.Params), thousands(s.Trainable), thousands(s.NonTrainable),
		thousands(s.FLOPs), siCount(float64(s.FLOPs)), byteSize(s.ActivationBytes))
	return err
}

// thousands writes n with commas: 1,234,567.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

// siCount is v in K, M or G (powers of 1000).
func siCount(v float64) string {
	for _, u := range []string{"", "K", "M", "G"} {
		if v < 1000 || u == "G" {
			return strings.TrimSpace(fmt.Sprintf("%.3g %s", v, u))
		}
		v /= 1000
	}
	return ""
}

// byteSize is n in B, KiB or MiB.
func byteSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
