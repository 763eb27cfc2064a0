package main

import (
	"encoding/json"

	"github.com/kiln-ml/kiln/layers"
)

// modelJSON describes an architecture so that weights can be rebuilt into
// the right model: the sidecar of exported weights and a run's model.json.
func modelJSON(model string, s layers.Spec) []byte {
	b, _ := json.MarshalIndent(struct {
		Model string      `json:"model"`
		Spec  layers.Spec `json:"spec"`
	}{model, s}, "", "  ")
	return append(b, '\n')
}
