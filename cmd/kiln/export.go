package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/layers"
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
	// Normalization: a pixel byte b becomes (b/255 - mean[c]) / std[c].
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
	var out string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write weights as float32 safetensors with a JSON sidecar describing the architecture",
		Long: `Loads the weights into the model (so a file that does not fit is refused), then
writes them to --out as float32 safetensors with PyTorch's state_dict names,
and beside it FILE.json: the model and its spec, the input shape, every
tensor's name and shape, the parameter count, and the data set's
normalisation constants and class names.

  kiln export --run runs/x --out lenet.safetensors
  kiln export --model lenet --dataset mnist --weights w.safetensors --out lenet.safetensors`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	mf := addModelFlags(f)
	f.StringVar(&out, "out", "", "output .safetensors file (the sidecar goes to the same name with .json)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := mf.resolve(cmd.Flags())
		if err != nil {
			return err
		}
		switch {
		case out == "":
			return usageError{fmt.Errorf("--out FILE.safetensors is required")}
		case sidecarPath(out) == out:
			return usageError{fmt.Errorf("--out %s: the weights and the .json sidecar would share the name", out)}
		}
		if st, err := os.Stat(out); err == nil && st.IsDir() {
			return usageError{fmt.Errorf("--out %s is a directory", out)}
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
		specJSON, err := json.Marshal(model.Spec)
		if err != nil {
			return err
		}
		if err := layers.SaveWeights(model, out, map[string]string{"model": model.Name, "spec": string(specJSON)}); err != nil {
			return err
		}
		sc := sidecar(model, filepath.Base(out), s.dataset, meta)
		b, err := json.MarshalIndent(sc, "", "  ")
		if err != nil {
			return err
		}
		if err := trainer.WriteFileAtomic(sidecarPath(out), append(b, '\n')); err != nil {
			return err
		}
		fmt.Printf("%s: %s, %d parameters in %d tensors (float32); architecture in %s\n",
			out, model.Name, sc.Params, len(sc.Tensors), sidecarPath(out))
		return nil
	}
	return cmd
}

func sidecar(model *layers.Model, weights, dataset string, meta *data.Dataset) sidecarFile {
	sp := model.Spec
	sc := sidecarFile{Format: "safetensors", Weights: weights, DType: "float32", Model: model.Name, Spec: sp,
		Input: []int{sp.Channels, sp.Height, sp.Width}, Task: headName(sp), Outputs: sp.Outputs(),
		Params: layers.CountParams(model)}
	model.Walk("", func(name string, p *layers.Param) {
		if !p.Internal {
			sc.Tensors = append(sc.Tensors, sidecarTensor{Name: name, Shape: p.Value.Shape(), Trainable: p.Grad != nil})
		}
	})
	if meta == nil {
		return sc
	}
	sc.Dataset = dataset
	sc.Normalization = &sidecarNorm{Mean: meta.Mean, Std: meta.Std}
	sc.Classes = meta.Classes
	if meta.Task == data.Regression {
		scale := meta.TargetScale
		if scale == 0 {
			scale = 1
		}
		sc.Target = &sidecarTarget{Name: meta.TargetName, Scale: scale, Shift: meta.TargetShift}
	}
	return sc
}
