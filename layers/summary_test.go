package layers

import (
	"slices"
	"strings"
	"testing"
)

func summarize(t *testing.T, name string, s Spec) *Summary {
	t.Helper()
	m, err := Build(name, s)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Summarize(m)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Trainable != int64(CountParams(m)) {
		t.Errorf("%s: trainable %d, CountParams %d", name, sum.Trainable, CountParams(m))
	}
	return sum
}

func row(t *testing.T, s *Summary, name string) LayerSummary {
	t.Helper()
	for _, r := range s.Layers {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no row %q", name)
	return LayerSummary{}
}

// The FLOPs of LeNet-5 on 28×28×1, counted by hand: 2 per multiply-add, 1
// per bias add, 1 per ReLU element, 1 per element of each pooling window.
func TestSummaryLeNetHandCount(t *testing.T) {
	s := summarize(t, "lenet", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
	conv1 := 2*(6*28*28)*(1*5*5) + 6*28*28
	conv2 := 2*(16*10*10)*(6*5*5) + 16*10*10
	pools := (6*14*14)*4 + (16*5*5)*4
	fcs := (2*400*120 + 120) + (2*120*84 + 84) + (2*84*10 + 10)
	relus := 6*28*28 + 16*10*10 + 120 + 84
	want := int64(conv1 + conv2 + pools + fcs + relus)
	if s.FLOPs != want || want != 852370 {
		t.Errorf("lenet FLOPs %d, hand count %d", s.FLOPs, want)
	}
	if s.Params != 61706 || s.NonTrainable != 0 {
		t.Errorf("lenet params %d (non-trainable %d), want 61706", s.Params, s.NonTrainable)
	}
	if r := row(t, s, "conv2"); r.FLOPs != int64(conv2) || !slices.Equal(r.Output, []int{1, 16, 10, 10}) || r.Params != 2416 {
		t.Errorf("conv2 row %+v", r)
	}
	if r := row(t, s, "fc3"); !slices.Equal(r.Output, []int{1, 10}) || r.Depth != 1 {
		t.Errorf("fc3 row %+v", r)
	}
	if s.Layers[0].Name != "lenet" || !slices.Equal(s.Layers[0].Output, []int{1, 10}) {
		t.Errorf("first row %+v", s.Layers[0])
	}
}

// The cnn on 28×28×1 by hand: bias-free 3×3 convolutions, batch norm
// (evaluation: 2 per element), ReLU, pools, fc1 and fc2; dropout is off.
func TestSummaryCNNHandCount(t *testing.T) {
	s := summarize(t, "cnn", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
	big, small := 32*28*28, 64*14*14 // conv outputs of the two stages
	convs := 2*big*(1*9) + 2*big*(32*9) + 2*small*(32*9) + 2*small*(64*9)
	bnRelu := 2 * (3*big + 3*small)
	pools := 32*14*14*4 + 64*7*7*4
	fcs := (2*3136*128 + 128) + 128 + (2*128*10 + 10)
	want := int64(convs + bnRelu + pools + fcs)
	if s.FLOPs != want {
		t.Errorf("cnn FLOPs %d, hand count %d", s.FLOPs, want)
	}
	// Four batch norms' running means and variances.
	if s.NonTrainable != 2*(32+32+64+64) {
		t.Errorf("cnn non-trainable %d", s.NonTrainable)
	}
	if r := row(t, s, "dropout"); r.FLOPs != 0 || !slices.Equal(r.Output, []int{1, 128}) {
		t.Errorf("dropout row %+v", r)
	}
}

// Every zoo model: parents' figures are their children's plus their own, so
// the depth-1 rows never exceed the total, names are unique, and each row
// has an output shape with the batch of 1 (CBAM's shared MLP runs on the
// average and the max descriptor: 2 rows).
func TestSummaryZoo(t *testing.T) {
	for _, name := range ModelNames() {
		s := summarize(t, name, Spec{Channels: 3, Height: 32, Width: 32, Classes: 10})
		var top int64
		seen := map[string]bool{}
		for _, r := range s.Layers {
			if seen[r.Name] {
				t.Errorf("%s: row %q twice", name, r.Name)
			}
			seen[r.Name] = true
			rows := 1
			if strings.Contains(r.Name, "channel.fc") {
				rows = 2
			}
			if len(r.Output) == 0 || r.Output[0] != rows {
				t.Errorf("%s: row %+v has no output shape", name, r)
			}
			if r.Depth == 1 {
				top += r.FLOPs
			}
		}
		if top != s.FLOPs || s.FLOPs <= 0 || s.ActivationBytes <= 0 {
			t.Errorf("%s: rows sum to %d FLOPs, total %d, activations %d B", name, top, s.FLOPs, s.ActivationBytes)
		}
	}
	g := summarize(t, "gmlp", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
	if r := row(t, g, "blocks.0.sgu"); r.Type != "SpatialGatingUnit" || r.Depth != 3 || !slices.Equal(r.Output, []int{1, 49, 128}) {
		t.Errorf("sgu row %+v", r)
	}
}
