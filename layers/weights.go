package layers

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
)

// SaveWeights writes the layer's state_dict (parameters and buffers, PyTorch
// names and layouts, float32) to a safetensors file, atomically.
func SaveWeights(l Layer, path string, meta map[string]string) error {
	state := State(l)
	for name, t := range state {
		if t.DType() != engine.Float32 {
			state[name] = t.As(engine.Float32)
		}
	}
	if meta == nil {
		meta = map[string]string{}
	}
	if _, ok := meta["format"]; !ok {
		meta["format"] = "pt" // what PyTorch's safetensors writer records
	}
	return safetensors.WriteFile(path, state, meta)
}

// LoadWeights reads a safetensors state_dict, such as one PyTorch wrote, into
// the layer. Names and shapes must match exactly.
func LoadWeights(l Layer, path string) (map[string]string, error) {
	state, meta, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := LoadState(l, state); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return meta, nil
}
