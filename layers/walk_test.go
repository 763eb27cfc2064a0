package layers

import (
	"slices"
	"testing"
)

// WalkLayers names layers as Walk names their parameters: the leaves'
// parameters, walked under the names WalkLayers gives them, are exactly
// the model's parameters, for every zoo model.
func TestWalkLayersNamesAsWalkDoes(t *testing.T) {
	for _, name := range ModelNames() {
		for _, in := range []Spec{{Channels: 1, Height: 28, Width: 28, Classes: 10}, {Channels: 3, Height: 32, Width: 32, Classes: 10}} {
			m, err := Build(name, in)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Params(m)
			var got []string
			WalkLayers(m, func(prefix string, l Layer) {
				if _, parent := l.(Parent); parent {
					return
				}
				l.Walk(prefix, func(n string, p *Param) {
					if p.Grad != nil {
						got = append(got, n)
					}
				})
			})
			slices.Sort(got)
			want = slices.Clone(want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s %dx%dx%d: leaves give %v, Params %v", name, in.Height, in.Width, in.Channels, got, want)
			}
		}
	}
}

// The layers that show themselves are found by interface, under their
// names.
func TestWalkLayersFindsWhatLayersShow(t *testing.T) {
	found := func(model string) (maps, mixers []string) {
		m, err := Build(model, Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
		if err != nil {
			t.Fatal(err)
		}
		WalkLayers(m, func(name string, l Layer) {
			if a, ok := l.(AttentionMapper); ok {
				maps = append(maps, name+":"+a.MapKind())
			}
			if _, ok := l.(TokenMixer); ok {
				mixers = append(mixers, name)
			}
		})
		return maps, mixers
	}
	if maps, mixers := found("cbam"); !slices.Equal(maps, []string{"cbam1.spatial:cbam_spatial", "cbam2.spatial:cbam_spatial"}) || len(mixers) != 0 {
		t.Errorf("cbam: maps %v, mixers %v", maps, mixers)
	}
	if maps, mixers := found("gmlp"); len(maps) != 0 || len(mixers) == 0 || mixers[0] != "blocks.0.sgu" {
		t.Errorf("gmlp: maps %v, mixers %v", maps, mixers)
	}
}
