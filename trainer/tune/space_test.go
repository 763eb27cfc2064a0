package tune

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
)

func mustSpace(t *testing.T, y string) *Space {
	t.Helper()
	s, err := ParseSpace([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseSpaceForms(t *testing.T) {
	s := mustSpace(t, `
lr: {min: 1e-4, max: 0.3, scale: log}
batch: {min: 16, max: 128, scale: pow2}
hidden: [32, 64]
optimizer: {values: [sgd, adamw]}
weight-decay: {min: 0, max: 0.01, steps: 5}
nesterov: [true, false]
epochs: 2
`)
	want := []string{"lr", "batch", "hidden", "optimizer", "weight_decay", "nesterov", "epochs"}
	if !reflect.DeepEqual(s.Keys(), want) {
		t.Fatalf("keys %v, want %v (file order)", s.Keys(), want)
	}
	d := s.Dims
	if d[0].Scale != Log || d[0].Min != 1e-4 || d[0].Max != 0.3 {
		t.Errorf("lr: %+v", d[0])
	}
	if d[1].Scale != Pow2 || d[4].Scale != Linear || d[4].Steps != 5 {
		t.Errorf("batch %+v, weight_decay %+v", d[1], d[4])
	}
	if !reflect.DeepEqual(d[2].Values, []any{int64(32), int64(64)}) || !reflect.DeepEqual(d[6].Values, []any{int64(2)}) {
		t.Errorf("hidden %#v, epochs %#v: want int64 values", d[2].Values, d[6].Values)
	}
	if s.Varies("epochs") || !s.Varies("lr") || !s.Varies("hidden") {
		t.Error("Varies")
	}
}

func TestParseSpaceErrorsNameTheSetting(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"lrate: [0.1]", "lrate: not a training setting"},
		{"run_dir: [a, b]", "run_dir: cannot be searched"},
		{"lr: {min: 0, max: 1, scale: log}", "lr: a log range needs min > 0"},
		{"lr: {min: 1, max: 0.1}", "lr: range [1, 0.1]"},
		{"optimizer: {min: 1, max: 2}", "optimizer: a range needs a numeric setting"},
		{"batch: [16, 24.5]", "batch: 24.5 is not an integer"},
		{"batch: {min: 17, max: 31, scale: pow2}", "batch: no power of two"},
		{"lr: {min: 0.1, max: 1, scale: cube}", `lr: scale "cube"`},
		{"lr: {values: [0.1], min: 1}", "lr: give either values or a range"},
		{"optimizer: [3]", "optimizer"},
		{"lr: []", "lr: an empty list"},
		{"lr: {min: 0.1, max: 1, step: 3}", `lr: unknown field "step"`},
		{"", "empty"},
	} {
		_, err := ParseSpace([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to say %q", c.yaml, err, c.want)
		}
	}
}

func TestParseParamShorthands(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Dimension
	}{
		{"lr=1e-4..0.3:log", Dimension{Key: "lr", Min: 1e-4, Max: 0.3, Scale: Log}},
		{"batch=16..128:pow2", Dimension{Key: "batch", Min: 16, Max: 128, Scale: Pow2}},
		{"weight-decay=0..0.01:linear:4", Dimension{Key: "weight_decay", Max: 0.01, Scale: Linear, Steps: 4}},
		{"optimizer=sgd,adamw", Dimension{Key: "optimizer", Values: []any{"sgd", "adamw"}}},
		{"hidden=[16, 32]", Dimension{Key: "hidden", Values: []any{int64(16), int64(32)}}},
		{"lr={min: 0.01, max: 0.1, scale: log}", Dimension{Key: "lr", Min: 0.01, Max: 0.1, Scale: Log}},
	} {
		d, err := ParseParam(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		d.kind = 0
		if !reflect.DeepEqual(d, c.want) {
			t.Errorf("%s: %+v, want %+v", c.in, d, c.want)
		}
	}
	for _, bad := range []string{"lr", "lr=", "lr=a..b", "lr=1..2:log:x", "nope=1,2"} {
		if _, err := ParseParam(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestGridEnumeratesEveryCombination(t *testing.T) {
	s := mustSpace(t, `
optimizer: [sgd, adamw]
batch: {min: 16, max: 64, scale: pow2}
lr: {min: 1e-3, max: 0.1, scale: log}
depth: {min: 1, max: 3}
`)
	g := s.Grid()
	if len(g) != 2*3*3*3 || s.GridSize() != len(g) {
		t.Fatalf("%d points (size %d), want 54", len(g), s.GridSize())
	}
	seen := map[string]bool{}
	for _, p := range g {
		key := String(p["optimizer"]) + String(p["batch"]) + String(p["lr"]) + String(p["depth"])
		if seen[key] {
			t.Fatalf("point %v twice", p)
		}
		seen[key] = true
	}
	// The last dimension varies fastest; ranges give their scale's points.
	if g[0]["depth"] != int64(1) || g[1]["depth"] != int64(2) || g[2]["depth"] != int64(3) || g[3]["lr"] != 0.01 {
		t.Errorf("order: %v %v %v %v", g[0], g[1], g[2], g[3])
	}
	var lrs, batches []any
	for _, p := range g[:27] {
		if !contains(lrs, p["lr"]) {
			lrs = append(lrs, p["lr"])
		}
		if !contains(batches, p["batch"]) {
			batches = append(batches, p["batch"])
		}
	}
	if !reflect.DeepEqual(lrs, []any{0.001, 0.01, 0.1}) || !reflect.DeepEqual(batches, []any{int64(16), int64(32), int64(64)}) {
		t.Errorf("lr points %v, batch points %v", lrs, batches)
	}
	if g[0]["optimizer"] != "sgd" || g[53]["optimizer"] != "adamw" {
		t.Error("first dimension should vary slowest")
	}
}

func contains(xs []any, v any) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

func TestRandomSamplingIsSeededAndFollowsTheScales(t *testing.T) {
	s := mustSpace(t, `
lr: {min: 1e-4, max: 1, scale: log}
batch: {min: 16, max: 128, scale: pow2}
depth: {min: 1, max: 3}
`)
	s2 := mustSpace(t, "momentum: {min: 0.5, max: 0.9}\noptimizer: [sgd, adam, adamw]")
	const n = 4000
	decades := make([]int, 4)
	batches := map[int64]int{}
	depths := map[int64]int{}
	opts := map[any]int{}
	sum := 0.0
	for i := 0; i < n; i++ {
		p := s.Sample(7, i)
		if !reflect.DeepEqual(p, s.Sample(7, i)) {
			t.Fatal("the same seed and index drew different values")
		}
		lr := p["lr"].(float64)
		if lr < 1e-4 || lr > 1 {
			t.Fatalf("lr %v out of range", lr)
		}
		decades[min(3, int(math.Floor(-math.Log10(lr))))]++
		batches[p["batch"].(int64)]++
		depths[p["depth"].(int64)]++
		q := s2.Sample(7, i)
		m := q["momentum"].(float64)
		if m < 0.5 || m > 0.9 {
			t.Fatalf("momentum %v out of range", m)
		}
		sum += m
		opts[q["optimizer"]]++
	}
	for i, c := range decades {
		if f := float64(c) / n; math.Abs(f-0.25) > 0.03 {
			t.Errorf("log-uniform lr: decade 1e-%d holds %.3f of the draws, want 0.25", i+1, f)
		}
	}
	for _, b := range []int64{16, 32, 64, 128} {
		if f := float64(batches[b]) / n; math.Abs(f-0.25) > 0.03 {
			t.Errorf("pow2 batch %d: %.3f of the draws, want 0.25", b, f)
		}
	}
	if len(batches) != 4 || len(depths) != 3 || len(opts) != 3 {
		t.Errorf("batches %v depths %v optimizers %v", batches, depths, opts)
	}
	for d, c := range depths {
		if f := float64(c) / n; math.Abs(f-1.0/3) > 0.03 {
			t.Errorf("depth %d: %.3f of the draws, want 1/3", d, f)
		}
	}
	if mean := sum / n; math.Abs(mean-0.7) > 0.01 {
		t.Errorf("uniform momentum: mean %.3f, want 0.7", mean)
	}
	differ := 0
	for i := 0; i < 20; i++ {
		if !reflect.DeepEqual(s.Sample(7, i), s.Sample(8, i)) {
			differ++
		}
	}
	if differ < 18 {
		t.Errorf("seeds 7 and 8 drew the same values %d times in 20", 20-differ)
	}
}

func TestApplySetsConfigValues(t *testing.T) {
	base := trainer.DefaultConfig()
	c, err := Params{"lr": 0.01, "batch": int64(32), "optimizer": "adamw", "nesterov": false, "milestones": []any{int64(10), int64(20)}}.Apply(base)
	if err != nil {
		t.Fatal(err)
	}
	if c.LR != 0.01 || c.Batch != 32 || c.Optimizer != "adamw" || c.Nesterov || !reflect.DeepEqual(c.Milestones, []int{10, 20}) {
		t.Errorf("applied: %+v", c)
	}
	if c.Model != base.Model || c.Epochs != base.Epochs || base.LR != trainer.DefaultConfig().LR {
		t.Error("Apply changed settings it was not given, or its base")
	}
	if _, err := (Params{"optimizer": 3.0}).Apply(base); err == nil || !strings.Contains(err.Error(), "optimizer") {
		t.Errorf("a number for optimizer: %v", err)
	}
	if c, err := (Params{"precision": "bf16"}).Apply(base); err != nil || c.Precision != "bf16" {
		t.Errorf("precision bf16: %q, %v", c.Precision, err)
	}
}

func TestSizeAndDropoutSettingsOnlyForModelsThatHaveThem(t *testing.T) {
	base := trainer.DefaultConfig() // lenet: no width, depth or dropout setting
	for _, y := range []string{"hidden: [16, 32]", "depth: [1, 2]", "dropout: [0.1, 0.5]"} {
		_, err := Start(t.TempDir(), base, mustSpace(t, y), Settings{Strategy: "grid", Metric: "val_acc"})
		if err == nil || !strings.Contains(err.Error(), "model lenet has no") {
			t.Errorf("lenet with %s: %v", y, err)
		}
	}
	if _, err := Start(t.TempDir(), base, mustSpace(t, "model: [mlp]\ndepth: [2, 3]"), Settings{Strategy: "grid", Metric: "val_acc"}); err == nil ||
		!strings.Contains(err.Error(), "mlp takes depth only with hidden") {
		t.Errorf("mlp depth without hidden: %v", err)
	}
	// Mixed models: each trial is checked on its own.
	tu, err := Start(t.TempDir(), base, mustSpace(t, "model: [lenet, cnn]\ndropout: [0.5]"), Settings{Strategy: "grid", Metric: "val_acc"})
	if err != nil {
		t.Fatal(err)
	}
	if s := tu.State.Trials; s[0].Status != Invalid || s[1].Status != Pending || s[1].Config.Dropout != 0.5 {
		t.Errorf("lenet+dropout %s, cnn+dropout %s (%v)", s[0].Status, s[1].Status, s[1].Config.Dropout)
	}
	// The cnn is built with the trial's dropout.
	m, err := layers.Build("cnn", layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Dropout: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range m.Layers() {
		if d, ok := l.(*layers.Dropout); ok {
			found = d.P == 0.5
		}
	}
	if !found {
		t.Error("cnn built without the dropout its Spec gives")
	}
}

// A random search draws no setting twice: the same values and seed would
// train the same run again. A space of fewer settings than trials gives each
// once; a large one keeps Sample's draws where they do not repeat.
func TestDrawsRepeatNoSetting(t *testing.T) {
	small := mustSpace(t, "lr: [0.01, 0.05, 0.1]\nbatch: {min: 32, max: 64, scale: pow2}")
	got := mustDraw(t, small, 1, 8, 6, 6)
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p.key()] {
			t.Fatalf("drawn twice: %v", p)
		}
		seen[p.key()] = true
	}
	if !reflect.DeepEqual(small.Draws(1, 8), got) {
		t.Error("the same seed drew different settings")
	}

	large := mustSpace(t, "lr: {min: 1e-4, max: 1, scale: log}\noptimizer: [sgd, adam]")
	for i, p := range mustDraw(t, large, 3, 40, 0, 40) {
		if q := large.Sample(3, i); !reflect.DeepEqual(p, q) {
			t.Errorf("trial %d: %v, Sample drew %v (no repeat to avoid)", i, p, q)
		}
	}

	ints := mustSpace(t, "depth: {min: 1, max: 3}\noptimizer: [sgd, adam, adam]")
	if n := ints.Distinct(); n != 6 {
		t.Errorf("Distinct: %d, want 6 (3 depths × 2 optimizers)", n)
	}
	// Whole numbers on a log scale, and a range of one value, are counted
	// too: 8 draws of hidden 16..20:log trained some settings twice.
	mustDraw(t, mustSpace(t, "hidden: {min: 16, max: 20, scale: log}"), 1, 8, 5, 5)
	mustDraw(t, mustSpace(t, "lr: {min: 0.01, max: 0.01, scale: log}"), 1, 3, 1, 1)
}

// mustDraw checks s's count of settings (0: uncounted), then draws n
// trials and checks how many came back.
func mustDraw(t *testing.T, s *Space, seed uint64, n, distinct, want int) []Params {
	t.Helper()
	if d := s.Distinct(); d != distinct {
		t.Fatalf("Distinct: %d, want %d", d, distinct)
	}
	got := s.Draws(seed, n)
	if len(got) != want {
		t.Fatalf("%d draws of %d asked, want %d", len(got), n, want)
	}
	return got
}

// A dimension's spec (what a refused resume prints) reads back, through
// ParseParam, as the same dimension.
func TestDimensionSpecReadsBack(t *testing.T) {
	for _, p := range []string{"lr=1e-4..0.3:log", "batch=16..128:pow2", "weight_decay=0..0.01:linear:4",
		"optimizer=sgd,adamw", "hidden=32,64,128", "nesterov=true,false", "lr=0.01"} {
		d, err := ParseParam(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseParam(d.Key + "=" + d.spec())
		if err != nil {
			t.Fatalf("%s: spec %q: %v", p, d.spec(), err)
		}
		if !reflect.DeepEqual(back, d) {
			t.Errorf("%s: spec %q reads back as %+v, not %+v", p, d.spec(), back, d)
		}
	}
}

// A fixed size setting over a space of models goes to the trials whose
// model reads it and is left out of the others' (it refused the tune, the
// base being checked against the default model before the space).
func TestFixedSizeSettingOverASpaceOfModels(t *testing.T) {
	base := trainer.DefaultConfig()
	base.Hidden = 32
	tu, err := Start(t.TempDir(), base, mustSpace(t, "model: [lenet, mlp]"), Settings{Strategy: "grid", Metric: "val_acc"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range tu.State.Trials {
		want := map[string]int{"lenet": 0, "mlp": 32}[tr.Config.Model]
		if tr.Status != Pending || tr.Config.Hidden != want {
			t.Errorf("trial %s (%s): %s, hidden %d, want pending and %d", tr.Name(), tr.Config.Model, tr.Status, tr.Config.Hidden, want)
		}
	}
}

// A trial whose optimiser the space chose takes that optimiser's own
// settings where nothing sets them, as kiln train --optimizer does: the
// AdamW trial of optimizer: [sgd, adamw] ran at SGD's lr 0.05 with
// momentum 0.9 and Nesterov. A base lr the user gave stays.
func TestSpaceOptimizerTakesItsOwnDefaults(t *testing.T) {
	for _, givenLR := range []bool{false, true} {
		base := trainer.DefaultConfig()
		if givenLR {
			base.LR = 0.02
		}
		tu, err := Start(t.TempDir(), base, mustSpace(t, "optimizer: [sgd, adamw]"), Settings{Strategy: "grid", Metric: "val_acc"})
		if err != nil {
			t.Fatal(err)
		}
		sgd, adamw := tu.State.Trials[0].Config, tu.State.Trials[1].Config
		wantLR := map[bool]float64{false: 1e-3, true: 0.02}[givenLR]
		if adamw.Optimizer != "adamw" || adamw.LR != wantLR || adamw.Momentum != 0 || adamw.Nesterov || adamw.WeightDecay != 0.01 {
			t.Errorf("lr given %v: the adamw trial: lr %v momentum %v nesterov %v weight decay %v", givenLR, adamw.LR, adamw.Momentum, adamw.Nesterov, adamw.WeightDecay)
		}
		if sgd.Optimizer != "sgd" || sgd.Momentum != 0.9 || !sgd.Nesterov {
			t.Errorf("the sgd trial changed: %+v", sgd)
		}
	}
}

// A space file of two YAML documents is refused: the second's dimensions
// were left unread.
func TestSpaceOfTwoDocumentsIsRefused(t *testing.T) {
	if _, err := ParseSpace([]byte("lr: [0.1, 0.2]\n---\nhidden: [16, 32]\n")); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("two documents: %v", err)
	}
}

// A trial at momentum 0 from the space is plain SGD, as kiln train
// --momentum 0 is: not invalid for the recipe's Nesterov.
func TestTrialAtMomentumZeroIsPlainSGD(t *testing.T) {
	space := mustSpace(t, "momentum: [0, 0.9]\n")
	base := trainer.DefaultConfig()
	base.ValFraction = 0.1
	c, err := trialConfig(base, Params{"momentum": 0.0}, space, Settings{Strategy: "grid", Metric: "val_acc"})
	if err != nil || c.Nesterov || c.Momentum != 0 {
		t.Fatalf("momentum 0 trial: %v, nesterov %v", err, c.Nesterov)
	}
}

// A trial's model from the space trains on that model's recipe where the
// user gave no setting (gMLP's AdamW, not LeNet's SGD), and a setting the
// user gave stays even when it equals the base recipe's (--lr 0.05 with an
// AdamW trial).
func TestTrialTakesItsModelsRecipeAndTheGivenSettings(t *testing.T) {
	base := trainer.DefaultConfig()
	base.ValFraction = 0.1
	set := Settings{Strategy: "grid", Metric: "val_acc", Given: []string{}}
	c, err := trialConfig(base, Params{"model": "gmlp"}, mustSpace(t, "model: [lenet, gmlp]\n"), set)
	if err != nil || c.Optimizer != "adamw" || c.LR != 3e-3 || c.WeightDecay != 0.05 {
		t.Fatalf("gmlp trial: %v, %s lr %v wd %v; want gMLP's recipe", err, c.Optimizer, c.LR, c.WeightDecay)
	}
	// --optimizer sgd given, the model from the space: SGD's own settings, as
	// kiln train --model gmlp --optimizer sgd (it trained at AdamW's lr).
	sgdBase := base
	sgdBase.Optimizer = "sgd"
	c, err = trialConfig(sgdBase, Params{"model": "gmlp"}, mustSpace(t, "model: [lenet, gmlp]\n"), Settings{Strategy: "grid", Metric: "val_acc", Given: []string{"optimizer"}})
	if err != nil || c.Optimizer != "sgd" || c.LR != 0.05 || c.Momentum != 0.9 || c.WeightDecay != 5e-4 {
		t.Fatalf("gmlp trial under --optimizer sgd: %v, %s lr %v momentum %v wd %v", err, c.Optimizer, c.LR, c.Momentum, c.WeightDecay)
	}
	set.Given = []string{"lr", "weight_decay"}
	c, err = trialConfig(base, Params{"optimizer": "adamw"}, mustSpace(t, "optimizer: [sgd, adamw]\n"), set)
	if err != nil || c.LR != base.LR || c.WeightDecay != base.WeightDecay {
		t.Fatalf("adamw trial with --lr %v --weight-decay %v given: %v, lr %v wd %v", base.LR, base.WeightDecay, err, c.LR, c.WeightDecay)
	}
}

// A space file with a byte-order mark reads as one without.
func TestSpaceWithAByteOrderMark(t *testing.T) {
	s, err := ParseSpace([]byte("\ufeff# c\n---\nlr: [0.1, 0.2]\n"))
	if err != nil || len(s.Dims) != 1 || s.Dims[0].Key != "lr" {
		t.Fatalf("%v %+v", err, s)
	}
}

// A seed past 2^53 reaches the trials exact (a float64 rounded it, and past
// 2^63 made the trial invalid).
func TestTrialKeepsALargeSeed(t *testing.T) {
	for _, seed := range []uint64{9007199254740993, 18446744073709551615} {
		base := trainer.DefaultConfig()
		base.Seed, base.ValFraction = seed, 0.1
		c, err := trialConfig(base, Params{"lr": 0.01}, mustSpace(t, "lr: [0.01, 0.02]\n"), Settings{Strategy: "grid", Metric: "val_acc"})
		if err != nil || c.Seed != seed {
			t.Errorf("seed %d: %v, trial seed %d", seed, err, c.Seed)
		}
	}
}
