package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/onnx"
	"github.com/kiln-ml/kiln/onnx/onnxtest"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// onnxTolerance is the largest difference allowed between ONNX Runtime's
// logits and Kiln's own.
const onnxTolerance = 1e-4

// onnxExportCase is one exported model and what Kiln computes for its inputs.
type onnxExportCase struct {
	name, file string
	model      *layers.Model
	inputs     []onnxtest.Tensor
	want       [][]float32 // Kiln's logits for each input
}

// TestExportONNX exports every zoo model at both input sizes, and gmlp with
// a regression head, with random weights through kiln export --format onnx,
// checks each file's structure and metadata, runs ONNX's checker on them
// (when python3-onnx is installed), then runs them all in ONNX Runtime and
// compares the logits with Kiln's evaluation-mode forward pass on the same
// inputs (within 1e-4).
func TestExportONNX(t *testing.T) {
	dir := t.TempDir()
	var cases []*onnxExportCase
	for _, ds := range []string{"mnist", "cifar10"} {
		for _, name := range layers.ModelNames() {
			cases = append(cases, exportZooONNX(t, dir, name, ds))
		}
	}
	cases = append(cases, exportZooONNX(t, dir, "gmlp", "mnist-rotation"))
	cases = append(cases, exportOtherLayersONNX(t, dir))
	var files []string
	for _, c := range cases {
		files = append(files, c.file)
	}
	onnxtest.Check(t, files...)
	compareInRuntime(t, cases)
}

// exportZooONNX builds a zoo model for the data set's shape with random
// weights, saves them, exports them with kiln export and computes Kiln's
// logits for a few random inputs.
func exportZooONNX(t *testing.T, dir, name, dataset string) *onnxExportCase {
	t.Helper()
	meta, err := data.Describe(dataset)
	if err != nil {
		t.Fatal(err)
	}
	spec := layers.Spec{Channels: meta.Channels, Height: meta.Height, Width: meta.Width,
		Classes: meta.NumClasses(), Regression: meta.Task == data.Regression, Seed: 7}
	model, err := layers.Build(name, spec)
	if err != nil {
		t.Fatal(err)
	}
	randomizeForExport(model, rand.New(rand.NewPCG(uint64(len(name)), uint64(spec.Channels))))
	base := filepath.Join(dir, name+"-"+dataset)
	if err := layers.SaveWeights(model, base+".safetensors", map[string]string{"model": name}); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, dir, "export", "--format", "onnx", "--model", name, "--dataset", dataset,
		"--weights", base+".safetensors", "--out", base+".onnx").stdout
	if !strings.Contains(out, "mean and std from the "+dataset+" data set") {
		t.Errorf("%s on %s: the export does not say where the metadata came from:\n%s", name, dataset, out)
	}
	c := &onnxExportCase{name: name + "-" + dataset, file: base + ".onnx", model: model}
	checkONNXFile(t, c.file, model, meta.Mean, meta.Std, meta.Classes)
	c.kilnLogits(t, rand.New(rand.NewPCG(uint64(spec.Height), 3)))
	return c
}

// randomizeForExport gives the parameters and buffers that a fresh model
// holds at trivial values (batch norm's running statistics and affine
// transform, layer norm's, the SGU's near-zero token mixing) random ones, so
// the comparison sees every one of them.
func randomizeForExport(model *layers.Model, rng *rand.Rand) {
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	model.Walk("", func(name string, p *layers.Param) {
		if p.Internal {
			return
		}
		vals := p.Value.Float32()
		shape := p.Value.Shape()
		for i := range vals {
			switch {
			case strings.HasSuffix(name, "running_var"):
				vals[i] = float32(u(0.5, 2))
			case strings.HasSuffix(name, "sgu.proj.weight"):
				vals[i] = float32(u(-1, 1) / math.Sqrt(float64(shape[0])))
			case len(shape) == 1 && (strings.HasSuffix(name, ".weight") || strings.HasSuffix(name, "proj.bias")):
				vals[i] = float32(u(0.5, 1.5))
			case len(shape) == 1:
				vals[i] = float32(u(-0.5, 0.5))
			}
		}
	})
}

// kilnLogits draws inputs of batch sizes 3 and 1 (the batch is dynamic) and
// keeps what Kiln's evaluation-mode forward pass gives for them.
func (c *onnxExportCase) kilnLogits(t *testing.T, rng *rand.Rand) {
	t.Helper()
	c.model.SetTraining(false)
	s := c.model.Spec
	for _, n := range []int{3, 1} {
		x := make([]float32, n*s.Channels*s.Height*s.Width)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		xt, err := engine.FromFloat32(x, n, s.Channels, s.Height, s.Width)
		if err != nil {
			t.Fatal(err)
		}
		y, err := c.model.Forward(xt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		c.inputs = append(c.inputs, onnxtest.Tensor{Dims: xt.Shape(), Data: x})
		c.want = append(c.want, slices.Clone(y.Float32()))
	}
}

// checkONNXFile decodes an exported file and checks what a user relies on:
// versions, the input and output, the metadata and the weights' names.
func checkONNXFile(t *testing.T, file string, model *layers.Model, mean, std []float64, classes []string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetIrVersion() != 8 || len(m.OpsetImport) != 1 || m.OpsetImport[0].GetVersion() != 17 || m.OpsetImport[0].GetDomain() != "" {
		t.Errorf("%s: IR version %d, opsets %v; want 8 and opset 17", file, m.GetIrVersion(), m.OpsetImport)
	}
	s := model.Spec
	g := m.GetGraph()
	wantIn := fmt.Sprintf("input [N %d %d %d]", s.Channels, s.Height, s.Width)
	wantOut := fmt.Sprintf("logits [N %d]", s.Outputs())
	if len(g.Input) != 1 || len(g.Output) != 1 || valueInfo(g.Input[0]) != wantIn || valueInfo(g.Output[0]) != wantOut {
		t.Errorf("%s: inputs %v, outputs %v; want %s and %s", file, g.Input, g.Output, wantIn, wantOut)
	}
	props := map[string]string{}
	for _, p := range m.MetadataProps {
		props[p.GetKey()] = p.GetValue()
	}
	wantProps := map[string]string{"model": model.Name, "mean": jsonOf(t, mean), "std": jsonOf(t, std)}
	if !s.Regression {
		wantProps["classes"] = jsonOf(t, classes)
	} else {
		// A regression head outputs the standardised target: the file
		// says how to get back to its units.
		var tg layers.ONNXTarget
		if err := json.Unmarshal([]byte(props["target"]), &tg); err != nil || tg.Scale == 0 {
			t.Errorf("%s: metadata target %q (%v), want the target's scale and shift", file, props["target"], err)
		}
		delete(props, "target")
	}
	if fmt.Sprint(props) != fmt.Sprint(wantProps) {
		t.Errorf("%s: metadata_props %v, want %v", file, props, wantProps)
	}
	var inits []string
	for _, w := range g.Initializer {
		if !strings.HasPrefix(w.GetName(), "const/") {
			inits = append(inits, w.GetName())
		}
	}
	slices.Sort(inits)
	state := slices.Sorted(mapKeys(layers.State(model)))
	if !slices.Equal(inits, state) {
		t.Errorf("%s: weights %v, want the state_dict's %v", file, inits, state)
	}
}

// valueInfo is a graph input or output as "name [dims]", N for the batch.
func valueInfo(v *onnx.ValueInfoProto) string {
	var dims []string
	tt := v.GetType().GetTensorType()
	for _, d := range tt.GetShape().GetDim() {
		if p := d.GetDimParam(); p != "" {
			dims = append(dims, p)
		} else {
			dims = append(dims, fmt.Sprint(d.GetDimValue()))
		}
	}
	if tt.GetElemType() != int32(onnx.TensorProto_FLOAT) {
		return v.GetName() + " not float32"
	}
	return fmt.Sprintf("%s [%s]", v.GetName(), strings.Join(dims, " "))
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// compareInRuntime runs every case in ONNX Runtime in one Node process and
// compares the logits with Kiln's.
func compareInRuntime(t *testing.T, cases []*onnxExportCase) {
	t.Helper()
	rt := onnxtest.FindRuntime(t)
	var runs []onnxtest.Case
	for _, c := range cases {
		runs = append(runs, onnxtest.Case{Name: c.name, Model: c.file, Input: layers.ONNXInput,
			Output: layers.ONNXOutput, Inputs: c.inputs})
	}
	version, results := rt.Run(t, runs)
	t.Logf("ONNX Runtime %s", version)
	for _, c := range cases {
		r, ok := results[c.name]
		switch {
		case !ok:
			t.Errorf("%s: no result from ONNX Runtime", c.name)
			continue
		case r.Error != "":
			t.Errorf("%s: ONNX Runtime: %s", c.name, r.Error)
			continue
		case len(r.Outputs) != len(c.want):
			t.Errorf("%s: %d outputs from ONNX Runtime for %d inputs", c.name, len(r.Outputs), len(c.want))
			continue
		}
		worst, largest := 0.0, 0.0
		for i, got := range r.Outputs {
			want := c.want[i]
			if wantDims := []int{c.inputs[i].Dims[0], c.model.Spec.Outputs()}; !slices.Equal(got.Dims, wantDims) {
				t.Errorf("%s input %d: ONNX Runtime's logits are %v, want %v", c.name, i, got.Dims, wantDims)
				continue
			}
			for k := range want {
				worst = max(worst, math.Abs(float64(got.Data[k])-float64(want[k])))
				largest = max(largest, math.Abs(float64(want[k])))
			}
		}
		if worst > onnxTolerance || math.IsNaN(worst) {
			t.Errorf("%s: ONNX Runtime's logits differ from Kiln's by up to %.3g (allowed %g)", c.name, worst, onnxTolerance)
		} else {
			t.Logf("%s: max abs difference %.3g (logits up to %.3g)", c.name, worst, largest)
		}
	}
}

// exportOtherLayersONNX exports, through the Go API, a model of the layers
// and options the zoo does not use: strided, dilated and grouped
// convolutions, average pooling, tanh, sigmoid, a residual, a bias-free
// linear layer and batch norm over (N, C).
func exportOtherLayersONNX(t *testing.T, dir string) *onnxExportCase {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	seq := (&layers.Sequential{}).
		Append("conv", layers.NewConv2D(rng, 3, 4, 3, layers.ConvOptions{Stride: 2, Padding: 2, Dilation: 2})).
		Append("bn", layers.NewBatchNorm2D(4)).
		Append("tanh", layers.NewTanh()).
		Append("pool", layers.NewAvgPool2D(3, 2, 1)).
		Append("res", layers.NewResidual(layers.NewConv2D(rng, 4, 4, 3, layers.ConvOptions{Padding: 1, Groups: 2}))).
		Append("sigmoid", layers.NewSigmoid()).
		Append("flatten", &layers.Flatten{}).
		Append("fc1", layers.NewLinear(rng, 64, 10, false)).
		Append("gelu", layers.NewGELU()).
		Append("bn1d", layers.NewBatchNorm2D(10)).
		Append("fc2", layers.NewLinear(rng, 10, 5, true))
	model := &layers.Model{Sequential: seq, Name: "custom", Spec: layers.Spec{Channels: 3, Height: 16, Width: 16, Classes: 5}}
	randomizeForExport(model, rng)
	m, err := layers.ExportONNX(model, layers.ONNXInfo{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := onnx.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c := &onnxExportCase{name: "custom", file: filepath.Join(dir, "custom.onnx"), model: model}
	if err := os.WriteFile(c.file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c.kilnLogits(t, rng)
	return c
}

// TestExportONNXRun exports from run directories: the metadata comes from
// the run's model.json (here class names and normalisation no data set
// has), or from the data set where an older model.json lacks them; and
// the format's flag mistakes are usage errors.
func TestExportONNXRun(t *testing.T) {
	dir := t.TempDir()
	spec := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 3}
	names := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
	full := trainer.ModelInfo{Model: "lenet", Spec: spec, Classes: names, Mean: []float64{0.5}, Std: []float64{0.25}}
	runs := map[string]trainer.ModelInfo{"full": full, "old": {Model: "lenet", Spec: spec}}
	for name, info := range runs {
		run := filepath.Join(dir, name)
		model, err := layers.Build("lenet", spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(run, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, trainer.ModelFile), trainer.ModelJSON(info), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, trainer.ConfigFile), []byte("model: lenet\ndataset: mnist\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := layers.SaveWeights(model, filepath.Join(run, trainer.BestWeights), map[string]string{"model": "lenet"}); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+".onnx")
		stdout := mustRun(t, dir, "export", "--run", run, "--format", "onnx", "--out", out).stdout
		want, from := full, "the run's model.json"
		if name == "old" {
			mnist, err := data.Describe("mnist")
			if err != nil {
				t.Fatal(err)
			}
			want.Classes, want.Mean, want.Std, from = mnist.Classes, mnist.Mean, mnist.Std, "the mnist data set"
		}
		if !strings.Contains(stdout, "mean and std from "+from) || !strings.Contains(stdout, "classes from "+from) {
			t.Errorf("run %s: the export does not say the metadata came from %s:\n%s", name, from, stdout)
		}
		// The safetensors sidecar carries the same metadata.
		st := filepath.Join(dir, name+".safetensors")
		if stdout := mustRun(t, dir, "export", "--run", run, "--out", st).stdout; !strings.Contains(stdout, "classes from "+from) {
			t.Errorf("run %s: the safetensors export does not say the metadata came from %s:\n%s", name, from, stdout)
		}
		var sc sidecarFile
		if b, err := os.ReadFile(sidecarPath(st)); err != nil || json.Unmarshal(b, &sc) != nil || sc.Normalization == nil ||
			!slices.Equal(sc.Classes, want.Classes) || !slices.Equal(sc.Normalization.Mean, want.Mean) || !slices.Equal(sc.Normalization.Std, want.Std) {
			t.Errorf("run %s: sidecar %+v (%v), want classes %q, mean %v, std %v", name, sc, err, want.Classes, want.Mean, want.Std)
		}
		checkONNXFile(t, out, model, want.Mean, want.Std, want.Classes)
	}
	comparePredict(t, dir, filepath.Join(dir, "old"), filepath.Join(dir, "old.onnx"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "tflite", "--out", "x.tflite"}, "--format"},
		{[]string{"--format", "onnx"}, "--out FILE.onnx"},
	} {
		r := kiln(t, dir, append([]string{"export", "--run", filepath.Join(dir, "full")}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("kiln export %v: exit %d, want 2 naming %s:\n%s", c.args, r.code, c.want, r.stderr)
		}
	}
}

// comparePredict runs kiln predict on an image file and the exported model
// in ONNX Runtime on the same image, normalised as the file's metadata
// says, and compares predict's probabilities with the softmax of the
// logits.
func comparePredict(t *testing.T, dir, run, file string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(9, 9))
	pixels := make([]byte, 28*28)
	for i := range pixels {
		pixels[i] = byte(rng.IntN(256))
	}
	img := filepath.Join(dir, "digit.pgm")
	if err := os.WriteFile(img, append([]byte("P5 28 28 255\n"), pixels...), 0o644); err != nil {
		t.Fatal(err)
	}
	var pred struct {
		Top []struct {
			Class int     `json:"class"`
			Prob  float64 `json:"prob"`
		} `json:"top"`
	}
	out := mustRun(t, dir, "predict", "--run", run, "--image", img, "--top", "10", "--json").stdout
	if err := json.Unmarshal([]byte(out), &pred); err != nil || len(pred.Top) != 10 {
		t.Fatalf("kiln predict --json: %v (%d classes):\n%s", err, len(pred.Top), out)
	}
	mean, std := onnxNormalisation(t, file)
	x := make([]float32, len(pixels))
	for i, p := range pixels {
		x[i] = float32((float64(p)/255 - mean) / std)
	}
	_, res := onnxtest.FindRuntime(t).Run(t, []onnxtest.Case{{Name: "predict", Model: file, Input: layers.ONNXInput,
		Output: layers.ONNXOutput, Inputs: []onnxtest.Tensor{{Dims: []int{1, 1, 28, 28}, Data: x}}}})
	r := res["predict"]
	if r.Error != "" || len(r.Outputs) != 1 || len(r.Outputs[0].Data) != 10 {
		t.Fatalf("ONNX Runtime: %+v", r)
	}
	probs := softmax(r.Outputs[0].Data)
	for _, p := range pred.Top {
		if d := math.Abs(p.Prob - probs[p.Class]); !(d <= onnxTolerance) {
			t.Errorf("class %d: kiln predict %.6f, ONNX Runtime %.6f", p.Class, p.Prob, probs[p.Class])
		}
	}
}

// onnxNormalisation reads a one-channel model's mean and std from its
// metadata_props.
func onnxNormalisation(t *testing.T, file string) (mean, std float64) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var means, stds []float64
	for _, p := range m.MetadataProps {
		switch p.GetKey() {
		case "mean":
			err = json.Unmarshal([]byte(p.GetValue()), &means)
		case "std":
			err = json.Unmarshal([]byte(p.GetValue()), &stds)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(means) != 1 || len(stds) != 1 {
		t.Fatalf("%s: mean %v, std %v", file, means, stds)
	}
	return means[0], stds[0]
}

func softmax(logits []float32) []float64 {
	top := math.Inf(-1)
	for _, v := range logits {
		top = max(top, float64(v))
	}
	out, sum := make([]float64, len(logits)), 0.0
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - top)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
