package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/onnx"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// sidecarFile is the JSON file written beside exported weights: enough to
// rebuild the model (model and spec, as a run's model.json has them) and to
// feed it (input shape, normalisation, class names).
type sidecarFile struct {
	Format  string      `json:"format"` // "safetensors"
	Weights string      `json:"weights"`
	DType   string      `json:"dtype"` // "float32"
	Model   string      `json:"model"`
	Spec    layers.Spec `json:"spec"`
	// Input is one sample's shape, (C, H, W); a batch is (N, C, H, W).
	Input   []int  `json:"input"`
	Task    string `json:"task"` // classification or regression
	Outputs int    `json:"outputs"`
	Params  int    `json:"params"`
	// Tensors lists the state_dict in the model's order, with PyTorch's
	// names and layouts; buffers (running statistics) are not trainable.
	Tensors []sidecarTensor `json:"tensors"`

	Dataset string `json:"dataset,omitempty"`
	// Normalization: a pixel byte b becomes (b/255 - mean[c]) / std[c]; a
	// CSV model's feature x (an N×F×1×1 input) becomes (x - mean[f]) / std[f].
	Normalization *sidecarNorm   `json:"normalization,omitempty"`
	Classes       []string       `json:"classes,omitempty"`
	Target        *sidecarTarget `json:"target,omitempty"`
}

// sidecarTensor is one entry of the state_dict.
type sidecarTensor struct {
	Name      string `json:"name"`
	Shape     []int  `json:"shape"`
	Trainable bool   `json:"trainable"`
}

// sidecarNorm holds per-channel normalisation constants.
type sidecarNorm struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// sidecarTarget says how a regression output maps to the target's unit:
// value = output*scale + shift.
type sidecarTarget struct {
	Name  string  `json:"name"`
	Scale float64 `json:"scale"`
	Shift float64 `json:"shift"`
}

// sidecarPath is FILE.json for FILE.safetensors (other names get .json
// appended).
func sidecarPath(out string) string {
	return strings.TrimSuffix(out, ".safetensors") + ".json"
}

func exportCmd() *cobra.Command {
	var out, format string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write a model as float32 safetensors with a JSON sidecar, or as an ONNX file",
		Long: `Loads the weights into the model (so a file that does not fit is refused), then
writes it to --out.

--format safetensors (the default): float32 safetensors with PyTorch's
state_dict names, and beside it FILE.json: the model and its spec, the input
shape, every tensor's name and shape, the parameter count, and the data
set's normalisation constants and class names.

--format onnx: an ONNX model (IR version 8, opset 17) of the evaluation-mode
forward pass: float32 input "input" (N, C, H, W) holding the normalised
image, N dynamic; output "logits" (N, outputs) in the order of the class
names; metadata_props mean, std and classes as JSON arrays, from the run's
model.json or else the data set's constants (left out when unknown).

  kiln export --run runs/x --out lenet.safetensors
  kiln export --run runs/x --format onnx --out lenet.onnx
  kiln export --model lenet --dataset mnist --weights w.safetensors --out lenet.safetensors`,
		Args: noArgs("the run directory is --run, a weights file --weights, the output --out"),
	}
	f := cmd.Flags()
	mf := addModelFlags(f)
	f.StringVar(&out, "out", "", "output file: FILE.safetensors (the sidecar goes to FILE.json) or FILE.onnx")
	f.StringVar(&format, "format", "", "safetensors (PyTorch's state_dict and a JSON sidecar) or onnx (default: from --out's extension, else safetensors)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := mf.resolve(cmd.Flags())
		if err != nil {
			return err
		}
		if format, err = exportFormat(format, out); err != nil {
			return err
		}
		if err := checkExportOut(format, out); err != nil {
			return err
		}
		meta, err := s.describe()
		if err != nil && s.spec == nil {
			return err
		}
		if err != nil {
			meta = nil // a run's spec is enough; the constants stay unknown
		}
		model, err := s.build(meta)
		if err != nil {
			return err
		}
		if dir := filepath.Dir(out); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		exportTemps(out)
		interrupted := make(chan os.Signal, 1)
		signal.Notify(interrupted, stopSignals...)
		defer signal.Stop(interrupted)
		go func() {
			if sig, ok := <-interrupted; ok {
				exportTemps(out)
				os.Exit(signalStatus(sig))
			}
		}()
		if format == "onnx" {
			err = exportONNX(model, out, mf.run, s.dataset, meta)
		} else {
			err = exportSafetensors(model, out, mf.run, s.dataset, meta)
		}
		if p := runPrecision(mf.run); err == nil && p != engine.FP32 {
			outf("note: the run trained in %s; the export is float32 (its masters), so its outputs match kiln predict --precision fp32, and differ from the run's %s ones in about the third digit\n", p, p)
		}
		return err
	}
	return cmd
}

// runPrecision is the precision a run directory's model computed in at its
// end (summary.json's, else config.yaml's); fp32 when unknown or no run.
func runPrecision(dir string) engine.Precision {
	if dir == "" {
		return engine.FP32
	}
	name := ""
	if c, err := trainer.LoadConfigFile(filepath.Join(dir, trainer.ConfigFile), trainer.DefaultConfig()); err == nil {
		name = c.Precision
	}
	if sum, err := trainer.ReadSummary(dir); err == nil && sum.Precision != "" {
		name = sum.Precision
	}
	p, _ := engine.ParsePrecision(name) // fp32 when unreadable
	return p
}

// exportFormat is --format, or when it is not given the format --out's
// extension names (safetensors otherwise). A format the extension
// contradicts is refused: ONNX Runtime cannot open a safetensors file
// named .onnx, nor kiln an ONNX file named .safetensors.
func exportFormat(format, out string) (string, error) {
	ext := strings.ToLower(filepath.Ext(out))
	byExt := map[string]string{".onnx": "onnx", ".safetensors": "safetensors"}[ext]
	format = strings.ToLower(format)
	switch {
	case format == "":
		return cmp.Or(byExt, "safetensors"), nil
	case format != "onnx" && format != "safetensors":
		return format, nil // checkExportOut names it
	case byExt != "" && byExt != format:
		return "", usagef("--format %s with --out %s: the file would be named as the other format (drop --format, or name it %s)",
			format, out, strings.TrimSuffix(out, filepath.Ext(out))+map[string]string{"onnx": ".onnx", "safetensors": ".safetensors"}[format])
	}
	return format, nil
}

// checkExportOut checks --format and --out before anything is loaded.
func checkExportOut(format, out string) error {
	switch {
	case format != "safetensors" && format != "onnx":
		return usagef("--format %q: want safetensors or onnx", format)
	case out == "" && format == "onnx":
		return usagef("--out FILE.onnx is required")
	case out == "":
		return usagef("--out FILE.safetensors is required")
	case format == "safetensors" && sidecarPath(out) == out:
		return usagef("--out %s: the weights and the .json sidecar would share the name", out)
	}
	paths := []string{out}
	if format == "safetensors" {
		paths = append(paths, sidecarPath(out))
	}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return usagef("--out %s: %s is a directory", out, p)
		}
		target := p
		if real, err := filepath.EvalSymlinks(p); err == nil {
			target = real // the file a link names is the one written
		}
		if dir, name := filepath.Split(target); trainer.OwnFile(cmp.Or(dir, "."), name) {
			if target != p {
				return usagef("--out %s: %s is a link to %s, a run directory's own %s; export elsewhere", out, p, target, name)
			}
			return usagef("--out %s: %s is the run directory's own %s; export beside it, e.g. --out %s",
				out, p, name, filepath.Join(dir, "export", filepath.Base(out)))
		}
	}
	return nil
}

// exportTemps removes what an export to out killed before its renames left
// (durable's temporary files of out and its sidecar, beside the files a
// symbolic link names when they are links): on the next export to the same
// name, and on Ctrl-C.
func exportTemps(out string) {
	for _, path := range []string{out, sidecarPath(out)} {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		base := filepath.Base(path)
		_ = durable.RemoveTemps(cmp.Or(filepath.Dir(path), "."), func(name string) bool { return name == base }) // at worst, left as a kill left them
	}
}

// hasTarget reports whether a run's model.json holds a regression target's
// scale and shift (runs of older Kiln have none).
func hasTarget(runDir string) bool {
	mi, err := trainer.ReadModelInfo(runDir)
	return err == nil && mi.Target != nil
}

// exportSafetensors writes the weights and their JSON sidecar, and says
// where the sidecar's metadata came from.
func exportSafetensors(model *layers.Model, out, runDir, dataset string, meta *data.Dataset) error {
	specJSON, err := json.Marshal(model.Spec)
	if err != nil {
		return err
	}
	// The old sidecar goes first: a kill between the two writes then
	// leaves weights without a sidecar, never beside another model's. A
	// write that fails (a full disk) leaves the old weights, so their
	// sidecar is put back.
	oldSidecar, _ := os.ReadFile(sidecarPath(out)) // nil: none to put back
	if err := durable.Remove(sidecarPath(out)); err != nil {
		return err
	}
	if err := layers.SaveWeights(model, out, map[string]string{"model": model.Name, "spec": string(specJSON)}); err != nil {
		if oldSidecar != nil {
			if err2 := trainer.WriteFileAtomic(sidecarPath(out), oldSidecar); err2 != nil {
				return fmt.Errorf("%w (and %s, removed first, could not be put back: %v)", err, sidecarPath(out), err2)
			}
		}
		return err
	}
	info, notes := exportInfo(model, runDir, dataset, meta)
	sc := sidecar(model, filepath.Base(out), dataset, meta, info)
	b, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	if err := trainer.WriteFileAtomic(sidecarPath(out), append(b, '\n')); err != nil {
		return err
	}
	outf("%s: %s, %d parameters in %d tensors (float32); architecture in %s\n",
		out, model.Name, sc.Params, len(sc.Tensors), sidecarPath(out))
	outf("metadata: %s\n", strings.Join(notes, "; "))
	return nil
}

// sidecar describes the model, with info's normalisation and classes
// (exportInfo) and, for a regression head, meta's target.
func sidecar(model *layers.Model, weights, dataset string, meta *data.Dataset, info layers.ONNXInfo) sidecarFile {
	sp := model.Spec
	sc := sidecarFile{Format: "safetensors", Weights: weights, DType: "float32", Model: model.Name, Spec: sp,
		Input: []int{sp.Channels, sp.Height, sp.Width}, Task: headName(sp), Outputs: sp.Outputs(),
		Params: layers.CountParams(model)}
	model.Walk("", func(name string, p *layers.Param) {
		if !p.Internal {
			sc.Tensors = append(sc.Tensors, sidecarTensor{Name: name, Shape: p.Value.Shape(), Trainable: p.Grad != nil})
		}
	})
	if meta != nil || info.Mean != nil || info.Classes != nil {
		sc.Dataset = dataset
	}
	if info.Mean != nil {
		sc.Normalization = &sidecarNorm{Mean: info.Mean, Std: info.Std}
	}
	sc.Classes = info.Classes
	if meta != nil && meta.Task == data.Regression {
		scale := meta.TargetScale
		if scale == 0 {
			scale = 1
		}
		sc.Target = &sidecarTarget{Name: meta.TargetName, Scale: scale, Shift: meta.TargetShift}
	}
	return sc
}

// exportONNX writes the model's evaluation-mode forward pass as an ONNX
// file and says where its metadata came from.
func exportONNX(model *layers.Model, out, runDir, dataset string, meta *data.Dataset) error {
	info, notes := exportInfo(model, runDir, dataset, meta)
	m, err := layers.ExportONNX(model, info)
	if err != nil {
		return err
	}
	b, err := onnx.Marshal(m)
	if err != nil {
		return err
	}
	if err := trainer.WriteFileAtomic(out, b); err != nil {
		return err
	}
	sp := model.Spec
	outf("%s: %s as ONNX (IR version %d, opset %d), input %q (N,%d,%d,%d) normalised, output %q (N,%d); %d parameters\n",
		out, model.Name, onnx.IRVersion, onnx.Opset, layers.ONNXInput, sp.Channels, sp.Height, sp.Width,
		layers.ONNXOutput, sp.Outputs(), layers.CountParams(model))
	outf("metadata: %s\n", strings.Join(notes, "; "))
	return nil
}

// kilnVersion is this build's module version, else its commit (with
// "+dirty" for uncommitted changes), else "devel".
func kilnVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value[:min(len(s.Value), 12)]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	return cmp.Or(rev, "devel") + dirty
}

// exportInfo gathers the metadata an export carries (the ONNX file's
// metadata_props, the safetensors sidecar): the class names and
// normalisation of the run's model.json, else those of the data set (known
// for the built-in sets), else none. notes says which, for the user.
func exportInfo(model *layers.Model, runDir, dataset string, meta *data.Dataset) (layers.ONNXInfo, []string) {
	info := layers.ONNXInfo{ProducerVersion: kilnVersion()}
	normFrom, classesFrom := "", ""
	if runDir != "" {
		if mi, err := trainer.ReadModelInfo(runDir); err == nil {
			if mi.Mean != nil && mi.Std != nil {
				info.Mean, info.Std, normFrom = mi.Mean, mi.Std, "the run's model.json"
			}
			if mi.Classes != nil {
				info.Classes, classesFrom = mi.Classes, "the run's model.json"
			}
		}
	}
	if meta != nil && info.Mean == nil && meta.Mean != nil && meta.Std != nil {
		info.Mean, info.Std, normFrom = meta.Mean, meta.Std, "the "+dataset+" data set"
	}
	if meta != nil && info.Classes == nil && meta.Classes != nil {
		info.Classes, classesFrom = meta.Classes, "the "+dataset+" data set"
	}
	var notes []string
	if normFrom != "" {
		notes = append(notes, "mean and std from "+normFrom)
	} else {
		notes = append(notes, "mean and std left out (unknown: normalise inputs as in training)")
	}
	switch {
	case model.Spec.Regression && meta != nil && meta.Task == data.Regression:
		info.Classes = nil
		info.Target = &layers.ONNXTarget{Name: meta.TargetName, Scale: cmp.Or(meta.TargetScale, 1), Shift: meta.TargetShift}
		notes = append(notes, "no classes (a regression head); the target's scale and shift from "+
			map[bool]string{true: "the run's model.json", false: "the " + dataset + " data set"}[runDir != "" && hasTarget(runDir)])
	case model.Spec.Regression:
		info.Classes = nil
		notes = append(notes, "no classes (a regression head); the target's scale and shift left out (unknown: the data set did not load)")
	case classesFrom != "":
		notes = append(notes, "classes from "+classesFrom)
	default:
		notes = append(notes, "classes left out (unknown)")
	}
	return info, notes
}
