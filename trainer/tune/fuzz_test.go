package tune

import (
	"strings"
	"testing"
)

// FuzzParseSpace feeds kiln tune's --space parser arbitrary YAML: an error
// is fine, a panic or a runaway allocation is not, and a space it accepts
// must check and enumerate.
func FuzzParseSpace(f *testing.F) {
	for _, seed := range []string{
		"lr: {min: 1e-4, max: 0.3, scale: log}\nbatch: {min: 16, max: 128, scale: pow2}\n",
		"optimizer: [sgd, adamw]\nhidden: [32, 64]\n",
		"weight_decay: {min: 0, max: 0.01, steps: 4}\nmodel: lenet\n",
		"lr: !a\n",
		"lr: [[[[[[[[[[0.1]]]]]]]]]]\n",
		"lr: {min: 1, max: 0}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpace(b)
		if err != nil {
			return
		}
		if s.Check() == nil && s.GridSize() > 0 && s.GridSize() <= 1000 {
			_ = s.Grid()
		}
	})
}

// FuzzParseParam does the same for --param KEY=VALUES.
func FuzzParseParam(f *testing.F) {
	for _, seed := range []string{"lr=1e-4..0.3:log", "batch=16..128:pow2", "optimizer=sgd,adamw", "hidden=32,64",
		"lr={min: 0.1, max: 1}", "lr=[0.1, 0.2]", "x=", "=1", "lr=1..0"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseParam(s)
		if err != nil {
			return
		}
		if !strings.Contains(s, "=") || d.Key == "" {
			t.Fatalf("ParseParam(%q) accepted %+v", s, d)
		}
	})
}

// --param text is bounded as a --space file is: 200 KB of brackets took
// the YAML parser past 2 GB.
func TestParseParamBoundsNesting(t *testing.T) {
	_, err := ParseParam("lr=" + strings.Repeat("[", 200_000))
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("got %v", err)
	}
}
