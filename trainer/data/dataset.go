package data

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gorgonia.org/tensor"

	"github.com/kiln-ml/kiln/engine"
)

// Task says what a data set's samples are labelled with.
type Task int

const (
	// Classification samples carry an int32 class index in Labels.
	Classification Task = iota
	// Regression samples carry a float32 target in Targets.
	Regression
)

func (t Task) String() string {
	switch t {
	case Classification:
		return "classification"
	case Regression:
		return "regression"
	}
	return fmt.Sprintf("Task(%d)", int(t))
}

// Dataset is a data set held in memory: N normalised images and their labels
// or targets, with the metadata that describes them.
type Dataset struct {
	Name   string // data set name, e.g. "mnist"
	Source string // where the samples were read from (a directory or file), if anywhere
	Task   Task

	// Classes names each class; label i is Classes[i]. Nil for regression.
	Classes []string

	// Channels, Height and Width give each sample's shape (C, H, W).
	Channels, Height, Width int

	// Mean and Std hold the per-channel normalisation that was applied: a
	// value v in [0, 1] was stored as (v - Mean[c]) / Std[c].
	Mean, Std []float64

	// Regression targets are stored scaled: the physical target (e.g. an angle
	// in degrees) is stored*TargetScale + TargetShift. TargetName says what it
	// is and in which unit.
	TargetName               string
	TargetScale, TargetShift float64

	Images  []float32 // N×C×H×W, sample-major
	Labels  []int32   // N class indices in [0, len(Classes)) (classification)
	Targets []float32 // N scaled targets (regression)
}

// Len is the number of samples.
func (d *Dataset) Len() int {
	if d.Task == Regression {
		return len(d.Targets)
	}
	return len(d.Labels)
}

// SampleSize is the number of values in one image, C×H×W.
func (d *Dataset) SampleSize() int { return d.Channels * d.Height * d.Width }

// NumClasses is the number of classes (0 for regression).
func (d *Dataset) NumClasses() int { return len(d.Classes) }

// Shape is the shape of the whole image array, (N, C, H, W).
func (d *Dataset) Shape() []int { return []int{d.Len(), d.Channels, d.Height, d.Width} }

// Image returns sample i's C×H×W values (shared, not copied).
func (d *Dataset) Image(i int) []float32 {
	s := d.SampleSize()
	return d.Images[i*s : (i+1)*s : (i+1)*s]
}

// TargetValue maps a stored (scaled) regression target or prediction back to
// its physical unit: v*TargetScale + TargetShift.
func (d *Dataset) TargetValue(v float64) float64 { return v*d.targetScale() + d.TargetShift }

func (d *Dataset) targetScale() float64 {
	if d.TargetScale == 0 {
		return 1
	}
	return d.TargetScale
}

// Validate checks that the arrays and the metadata agree.
func (d *Dataset) Validate() error {
	if d.Channels <= 0 || d.Height <= 0 || d.Width <= 0 {
		return fmt.Errorf("data: %s: bad sample shape %d×%d×%d", d.Name, d.Channels, d.Height, d.Width)
	}
	n := d.Len()
	if len(d.Images) != n*d.SampleSize() {
		return fmt.Errorf("data: %s: %d image values for %d samples of %d×%d×%d", d.Name, len(d.Images), n, d.Channels, d.Height, d.Width)
	}
	if len(d.Mean) != d.Channels || len(d.Std) != d.Channels {
		return fmt.Errorf("data: %s: normalisation has %d means and %d stds for %d channels", d.Name, len(d.Mean), len(d.Std), d.Channels)
	}
	switch d.Task {
	case Classification:
		if len(d.Targets) != 0 {
			return fmt.Errorf("data: %s: a classification set has regression targets", d.Name)
		}
		if len(d.Classes) == 0 {
			return fmt.Errorf("data: %s: a classification set needs class names", d.Name)
		}
		for i, l := range d.Labels {
			if l < 0 || int(l) >= len(d.Classes) {
				return fmt.Errorf("data: %s: label %d of sample %d is out of range 0..%d", d.Name, l, i, len(d.Classes)-1)
			}
		}
	case Regression:
		if len(d.Labels) != 0 || len(d.Classes) != 0 {
			return fmt.Errorf("data: %s: a regression set has class labels", d.Name)
		}
	default:
		return fmt.Errorf("data: %s: unknown task %v", d.Name, d.Task)
	}
	return nil
}

// NewClassification makes a data set from images already normalised, shaped
// (N, C, H, W) or (N, F) (taken as (N, F, 1, 1)), float32 or float64 (copied
// to float32), and N labels in [0, len(classes)). Mean and Std are set to 0
// and 1 (identity).
func NewClassification(name string, images *engine.Tensor, labels []int32, classes []string) (*Dataset, error) {
	d, err := fromTensor(name, images)
	if err != nil {
		return nil, err
	}
	d.Labels = slices.Clone(labels)
	d.Classes = slices.Clone(classes)
	return d, d.Validate()
}

// NewRegression makes a data set from images (as for NewClassification) and N
// targets, stored as given (TargetScale 1).
func NewRegression(name string, images *engine.Tensor, targets []float32) (*Dataset, error) {
	d, err := fromTensor(name, images)
	if err != nil {
		return nil, err
	}
	d.Task = Regression
	d.Targets = slices.Clone(targets)
	d.TargetScale = 1
	if i := slices.IndexFunc(d.Targets, notFinite); i >= 0 {
		return nil, fmt.Errorf("data: %s: target %d is %v: a target must be a finite number", name, i, d.Targets[i])
	}
	return d, d.Validate()
}

func notFinite(v float32) bool { return math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) }

func fromTensor(name string, x *engine.Tensor) (*Dataset, error) {
	if x == nil {
		return nil, fmt.Errorf("data: %s: nil images tensor", name)
	}
	d := &Dataset{Name: name, Height: 1, Width: 1}
	switch x.Rank() {
	case 2:
		d.Channels = x.Dim(1)
	case 4:
		d.Channels, d.Height, d.Width = x.Dim(1), x.Dim(2), x.Dim(3)
	default:
		return nil, fmt.Errorf("data: %s: images must be (N, C, H, W) or (N, F), got shape %v", name, x.Shape())
	}
	if x.DType() == engine.Float32 {
		d.Images = slices.Clone(x.Float32())
	} else {
		d.Images = make([]float32, x.Len())
		for i, v := range x.Float64() {
			d.Images[i] = float32(v)
		}
	}
	if i := slices.IndexFunc(d.Images, notFinite); i >= 0 {
		// Training on it failed later as "loss is NaN: lower --lr".
		return nil, fmt.Errorf("data: %s: input value %d (sample %d) is %v: inputs must be finite numbers", name, i, i/max(1, x.Len()/max(1, x.Dim(0))), d.Images[i])
	}
	d.Mean = make([]float64, d.Channels)
	d.Std = make([]float64, d.Channels)
	for c := range d.Std {
		d.Std[c] = 1
	}
	return d, nil
}

// ImagesTensor returns the images as an (N, C, H, W) float32 tensor sharing
// the data set's memory.
func (d *Dataset) ImagesTensor() (*engine.Tensor, error) {
	return engine.FromFloat32(d.Images, d.Shape()...)
}

// ImagesDense returns the images as an (N, C, H, W) gorgonia.org/tensor Dense
// sharing the data set's memory.
func (d *Dataset) ImagesDense() *tensor.Dense {
	return tensor.New(tensor.WithShape(d.Shape()...), tensor.WithBacking(d.Images))
}

// TargetsTensor returns the regression targets as an (N, 1) float32 tensor
// sharing the data set's memory (the shape of a regression head's output).
func (d *Dataset) TargetsTensor() (*engine.Tensor, error) {
	if d.Task != Regression {
		return nil, fmt.Errorf("data: %s is a %v set and has no targets", d.Name, d.Task)
	}
	return engine.FromFloat32(d.Targets, len(d.Targets), 1)
}

// LabelsDense returns the class labels as an (N) int32 Dense, or the targets
// as an (N, 1) float32 Dense for a regression set; the memory is shared.
func (d *Dataset) LabelsDense() *tensor.Dense {
	if d.Task == Regression {
		return tensor.New(tensor.WithShape(len(d.Targets), 1), tensor.WithBacking(d.Targets))
	}
	return tensor.New(tensor.WithShape(len(d.Labels)), tensor.WithBacking(d.Labels))
}

// NormalizeImage writes raw pixels (C×H×W bytes, 0..255, channel planes in
// order) into dst normalised exactly as this data set's images were.
func (d *Dataset) NormalizeImage(dst []float32, pixels []byte) error {
	s := d.SampleSize()
	if len(pixels) != s || len(dst) != s {
		return fmt.Errorf("data: %s: NormalizeImage got %d pixels into %d values, want %d (%d×%d×%d)", d.Name, len(pixels), len(dst), s, d.Channels, d.Height, d.Width)
	}
	hw := d.Height * d.Width
	for c := 0; c < d.Channels; c++ {
		lut := byteTable(d.Mean[c], d.Std[c])
		for i, b := range pixels[c*hw : (c+1)*hw] {
			dst[c*hw+i] = lut[b]
		}
	}
	return nil
}

// byteTable maps a byte to its normalised value (b/255 - mean) / std.
func byteTable(mean, std float64) *[256]float32 {
	var t [256]float32
	for b := range t {
		t[b] = float32((float64(b)/255 - mean) / std)
	}
	return &t
}

// meta returns a copy of d with everything but the samples.
func (d *Dataset) meta() *Dataset {
	m := *d
	m.Classes = slices.Clone(d.Classes)
	m.Mean = slices.Clone(d.Mean)
	m.Std = slices.Clone(d.Std)
	m.Images, m.Labels, m.Targets = nil, nil, nil
	return &m
}

// Select returns a new data set holding copies of the samples at the given
// indices, in that order.
func (d *Dataset) Select(indices []int) (*Dataset, error) {
	n, s := d.Len(), d.SampleSize()
	out := d.meta()
	out.Images = make([]float32, len(indices)*s)
	if d.Task == Regression {
		out.Targets = make([]float32, len(indices))
	} else {
		out.Labels = make([]int32, len(indices))
	}
	for j, i := range indices {
		if i < 0 || i >= n {
			return nil, fmt.Errorf("data: %s: index %d out of range (%d samples)", d.Name, i, n)
		}
		copy(out.Images[j*s:(j+1)*s], d.Images[i*s:(i+1)*s])
		if d.Task == Regression {
			out.Targets[j] = d.Targets[i]
		} else {
			out.Labels[j] = d.Labels[i]
		}
	}
	return out, nil
}

// KeepClasses keeps the samples of the listed classes and relabels them
// 0..k-1 in the order listed: KeepClasses([]int{3, 5}) makes 3 class 0 and 5
// class 1. A class the data set does not have, a repeated class, or a
// regression set is an error.
func (d *Dataset) KeepClasses(classes []int) (*Dataset, error) {
	if d.Task != Classification {
		return nil, fmt.Errorf("data: %s is a regression set: it has no classes to keep", d.Name)
	}
	if len(classes) == 0 {
		return nil, fmt.Errorf("data: %s: no classes to keep", d.Name)
	}
	relabel := make([]int32, len(d.Classes))
	for i := range relabel {
		relabel[i] = -1
	}
	for j, c := range classes {
		if c < 0 || c >= len(d.Classes) {
			return nil, fmt.Errorf("data: %s has no class %d (its classes are 0..%d)", d.Name, c, len(d.Classes)-1)
		}
		if relabel[c] >= 0 {
			return nil, fmt.Errorf("data: %s: class %d is listed twice", d.Name, c)
		}
		relabel[c] = int32(j)
	}
	var idx []int
	for i, l := range d.Labels {
		if relabel[l] >= 0 {
			idx = append(idx, i)
		}
	}
	out, err := d.Select(idx)
	if err != nil {
		return nil, err
	}
	for i, l := range out.Labels {
		out.Labels[i] = relabel[l]
	}
	out.Classes = make([]string, len(classes))
	for j, c := range classes {
		out.Classes[j] = d.Classes[c]
	}
	return out, nil
}

// Sample keeps a seeded random fraction (0 < frac ≤ 1) of the samples, at
// least one, in their original order.
func (d *Dataset) Sample(frac float64, seed uint64) (*Dataset, error) {
	return d.sample(frac, seed, 0)
}

// sample is Sample with a split number, so that the training and test
// subsets of one seed are drawn independently.
func (d *Dataset) sample(frac float64, seed, split uint64) (*Dataset, error) {
	if !(frac > 0 && frac <= 1) {
		return nil, fmt.Errorf("data: %s: subset fraction %v is not in (0, 1]", d.Name, frac)
	}
	keep, _ := d.partition(frac, seed, domainSubset, split)
	return d.Select(keep)
}

// Split moves a seeded random fraction (0 < frac < 1) of the samples into a
// second data set: rest keeps the others. Both keep the original order. Each
// side gets at least one sample.
func (d *Dataset) Split(frac float64, seed uint64) (rest, held *Dataset, err error) {
	if !(frac > 0 && frac < 1) {
		return nil, nil, fmt.Errorf("data: %s: split fraction %v is not in (0, 1)", d.Name, frac)
	}
	if d.Len() < 2 {
		return nil, nil, fmt.Errorf("data: %s: %d samples cannot be split", d.Name, d.Len())
	}
	h, r := d.splitIndices(frac, seed)
	if held, err = d.Select(h); err != nil {
		return nil, nil, err
	}
	if rest, err = d.Select(r); err != nil {
		return nil, nil, err
	}
	return rest, held, nil
}

// splitIndices are Split's held and kept samples.
func (d *Dataset) splitIndices(frac float64, seed uint64) (held, rest []int) {
	held, rest = d.partition(frac, seed, domainVal, 0)
	if len(rest) == 0 {
		held, rest = held[:len(held)-1], held[len(held)-1:]
	}
	return held, rest
}

// splitOwned is Split of a set no one else holds (Load's own), the same
// samples in the same order: the rest is moved up within d's arrays rather
// than copied, so the split's peak is the set and the held part, not the
// set twice (all of MNIST: 170 MB less). d is not to be used after.
func (d *Dataset) splitOwned(frac float64, seed uint64) (rest, held *Dataset, err error) {
	if !(frac > 0 && frac < 1) || d.Len() < 2 {
		return d.Split(frac, seed) // its errors
	}
	h, r := d.splitIndices(frac, seed)
	if held, err = d.Select(h); err != nil {
		return nil, nil, err
	}
	s := d.SampleSize()
	for j, i := range r { // r ascends, so j ≤ i: each sample moves up or stays
		copy(d.Images[j*s:(j+1)*s], d.Images[i*s:(i+1)*s])
		if d.Task == Regression {
			d.Targets[j] = d.Targets[i]
		} else {
			d.Labels[j] = d.Labels[i]
		}
	}
	rest = d.meta()
	rest.Images = d.Images[: len(r)*s : len(r)*s]
	if d.Task == Regression {
		rest.Targets = d.Targets[:len(r):len(r)]
	} else {
		rest.Labels = d.Labels[:len(r):len(r)]
	}
	return rest, held, nil
}

// partition draws round(frac·N) (at least 1) sample indices with a seeded
// permutation and returns them and the others, each sorted.
func (d *Dataset) partition(frac float64, seed, domain, split uint64) (picked, others []int) {
	n := d.Len()
	k := min(n, max(1, int(math.Round(frac*float64(n)))))
	perm := make([]int, n)
	s := newStream(seed, domain, uint64(n), split)
	s.permute(perm)
	picked, others = perm[:k], perm[k:]
	slices.Sort(picked)
	slices.Sort(others)
	return picked, others
}

// AsClasses renumbers d's labels by name to classes, a trained model's list
// (its model.json's): a folder or CSV evaluated after training may hold
// fewer classes, or list them in another order, and label i must mean the
// model's class i, not the data's. A sample of a class that classes lacks
// is an error naming it; d is then as it was.
func (d *Dataset) AsClasses(classes []string) error {
	if d.Task != Classification || len(classes) == 0 || slices.Equal(d.Classes, classes) {
		return nil
	}
	index := make(map[string]int32, len(classes))
	for i, c := range classes {
		index[c] = int32(i)
	}
	to := make([]int32, len(d.Classes))
	for i, c := range d.Classes {
		j, ok := index[c]
		if !ok {
			j = -1 // an error if a sample has it
		}
		to[i] = j
	}
	labels := make([]int32, len(d.Labels))
	for i, l := range d.Labels {
		if labels[i] = to[l]; labels[i] < 0 {
			return fmt.Errorf("class %q of %s is not one the model was trained on (%s)", d.Classes[l], d.Source, strings.Join(classes, ", "))
		}
	}
	d.Labels = labels
	d.Classes = slices.Clone(classes)
	return nil
}

// AsNormalised re-standardises d's samples with a trained model's per-channel
// mean and std (its model.json's) in place of those of d's own training rows:
// a CSV evaluated after its rows changed went in on other scales than the
// model learnt. The same statistics leave d as it is, bit for bit.
func (d *Dataset) AsNormalised(mean, std []float64) error {
	if len(mean) == 0 || slices.Equal(d.Mean, mean) && slices.Equal(d.Std, std) {
		return nil
	}
	if len(mean) != d.Channels || len(std) != d.Channels || len(d.Mean) != d.Channels || len(d.Std) != d.Channels {
		return fmt.Errorf("%s: %d channels, normalised over %d; the model's statistics have %d", d.Source, d.Channels, len(d.Mean), len(mean))
	}
	plane := d.Height * d.Width
	for i := range d.Images {
		c := i / plane % d.Channels
		v := float64(d.Images[i])*d.Std[c] + d.Mean[c]
		d.Images[i] = float32((v - mean[c]) / std[c])
	}
	d.Mean, d.Std = slices.Clone(mean), slices.Clone(std)
	return nil
}

// AsTargetScale stores d's regression targets on a trained model's scale
// (its model.json's) instead of d's own training rows': the model's outputs
// are on that one. The same scale leaves d as it is, bit for bit.
func (d *Dataset) AsTargetScale(shift, scale float64) {
	if d.Task != Regression || scale == 0 || shift == d.TargetShift && scale == d.targetScale() {
		return
	}
	for i, t := range d.Targets {
		d.Targets[i] = float32((d.TargetValue(float64(t)) - shift) / scale)
	}
	d.TargetShift, d.TargetScale = shift, scale
}
