package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/imagefile"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// predictFlags are predict's own flags, beside the model flags.
type predictFlags struct {
	images            []string
	dir, device       string
	index, count, top int
	invert, asJSON    bool
}

func predictCmd() *cobra.Command {
	var pf predictFlags
	cmd := &cobra.Command{
		Use:   "predict",
		Short: "Classify image files or a slice of a data set's test split",
		Long: `Runs the model on image files (PNG, JPEG, GIF, BMP, WebP or PGM) or on
test-split samples and prints the top-k classes by name with their
probabilities (the softmax of the logits), with the true label for data-set
samples; a regression model prints its prediction in the target's unit.

--image takes one or more files (--image a.jpg b.png, or --image repeated);
--dir takes every image file under a folder, sorted by path. An --image
file that cannot be read is an error; one under --dir is named on stderr and
left out, and predict exits 1 after printing the others.

An image is converted to the model's input: grayscale for a 1-channel model,
RGB for 3 channels, resized to the input size, scaled to [0,1] and
normalised as the training data was. A model trained on an image folder
(--dataset folder) takes its class names, normalisation, size and crop or pad
from its run (--run DIR), and its images are resized exactly as training
resized them (Pillow's bilinear). For the built-in sets the constants are the
data set's (--dataset, default mnist) and the resize is bilinear, widened
when shrinking. MNIST digits are light on dark: --invert a dark-on-light
drawing. An image may have at most 16384 pixels a side and 33554432 (2^25) in
all, and its file 256 MiB: a larger one is refused from its header, before it
is decoded.

  kiln predict --run runs/x --image digit.png other.png
  kiln predict --run runs/pets --dir photos/ --top 2 --json
  kiln predict --model lenet --weights w.safetensors --dataset mnist --index 0 --count 5

With --json each sample is one JSON line.`,
		Args: cobra.ArbitraryArgs,
	}
	f := cmd.Flags()
	mf := addModelFlags(f)
	mf.addPrecisionFlag(f)
	f.StringArrayVar(&pf.images, "image", nil, "image files to classify (more may follow as arguments)")
	f.StringVar(&pf.dir, "dir", "", "classify every image file under this folder")
	f.IntVar(&pf.index, "index", 0, "first test-split sample to classify (after --classes)")
	f.IntVar(&pf.count, "count", 1, "number of test-split samples from --index")
	f.IntVar(&pf.top, "top", 3, "classes to print per sample")
	f.BoolVar(&pf.invert, "invert", false, "invert the image (dark strokes on a light background)")
	f.StringVar(&pf.device, "device", "auto", "cpu, cuda or auto")
	f.BoolVar(&pf.asJSON, "json", false, "print one JSON line per sample")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := mf.resolve(cmd.Flags())
		if err != nil {
			return err
		}
		fromData := cmd.Flags().Changed("index") || cmd.Flags().Changed("count")
		if err := pf.check(fromData, args); err != nil {
			return err
		}
		if err := selectDevice(pf.device, logger()); err != nil {
			return err
		}
		if err := s.checkPrecision(cmd.Flags()); err != nil {
			return err
		}
		return pf.run(s, mf.run, fromData)
	}
	return cmd
}

// run predicts and prints: the test samples asked for, or the image files
// a chunk at a time.
func (pf *predictFlags) run(s *modelSetup, run string, fromData bool) error {
	folder, err := folderOptions(s, run)
	if err != nil {
		return err
	}
	if fromData {
		in, err := testSamples(s, folder, pf.index, pf.count)
		if err != nil {
			return err
		}
		p, err := newPredictor(s, in.meta, pf.top)
		if err != nil {
			return err
		}
		if err := p.predict(in); err != nil {
			return err
		}
		return printPredictions(in.preds, pf.asJSON)
	}
	paths, err := pf.paths()
	if err != nil {
		return err
	}
	return pf.predictFiles(s, run, folder, paths)
}

// predictChunk is how many image files predict reads, runs and prints at a
// time: its memory is one chunk's whatever the folder holds (it kept every
// image, about 5× its sample's size, and printed nothing until the last).
const predictChunk = 256

// predictFiles predicts the image files at paths, the first of them named
// by --image (they must be read), a chunk at a time.
func (pf *predictFlags) predictFiles(s *modelSetup, run string, folder data.FolderOptions, paths []string) error {
	meta, err := imageMeta(s, run)
	if err != nil {
		return err
	}
	if meta.Height == 1 && meta.Width == 1 {
		return usagef("--image: %s samples are feature rows, not images; use --index", s.dataset)
	}
	var p *predictor // built once the first files are read: a bad one is named first
	read, unread := 0, 0
	var light []string
	// The first chunk holds every --image file: each must be read, and a
	// bad one refused before anything is printed.
	for start, end := 0, 0; start < len(paths); start = end {
		end = min(max(start+predictChunk, len(pf.images)), len(paths))
		chunk := paths[start:end]
		in, err := imageFiles(s, meta, folder, chunk, len(pf.images)-start, pf.invert)
		if err != nil {
			return err
		}
		read, unread, light = read+len(in.preds), unread+in.unread, append(light, in.light...)
		if len(in.preds) == 0 {
			continue
		}
		if p == nil {
			if p, err = newPredictor(s, meta, pf.top); err != nil {
				return err
			}
		}
		if err := p.predict(in); err != nil {
			return err
		}
		if err := printPredictions(in.preds, pf.asJSON); err != nil {
			return err
		}
	}
	if len(light) > 0 {
		fmt.Fprintf(os.Stderr, "note: %s is mostly light (%d of %d images are); %s images are light on a dark background: try --invert\n",
			light[0], len(light), read, s.dataset)
	}
	switch {
	case read == 0:
		return fmt.Errorf("none of the %d image files could be read", len(paths))
	case unread > 0:
		return fmt.Errorf("%d of %d image files could not be read (named above)", unread, len(paths))
	}
	return nil
}

// check refuses contradictory or out-of-range flags, and missing images,
// before anything is loaded. Arguments are more --image files.
func (pf *predictFlags) check(fromData bool, args []string) error {
	if len(args) > 0 && len(pf.images) == 0 {
		return usagef("unexpected arguments %q: image files follow --image", args)
	}
	pf.images = append(pf.images, args...)
	files := len(pf.images) > 0 || pf.dir != ""
	switch {
	case files == fromData:
		return usagef("give either --image FILE... or --dir DIR, or --index I (with --count N)")
	case pf.top < 1:
		return usagef("--top %d: must be at least 1", pf.top)
	case pf.count < 1:
		return usagef("--count %d: must be at least 1", pf.count)
	case fromData && pf.index < 0:
		return usagef("--index %d: must not be negative", pf.index)
	}
	for _, p := range pf.images {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return usagef("--image %s: no such file", p)
		}
	}
	if pf.dir != "" {
		if st, err := os.Stat(pf.dir); err != nil || !st.IsDir() {
			return usagef("--dir %s: no such directory", pf.dir)
		}
	}
	return nil
}

// predictInput is what the model runs on: the samples, the metadata of
// their data set, and a prediction per sample to fill in.
type predictInput struct {
	meta   *data.Dataset
	x      *engine.Tensor // (N, C, H, W)
	labels []int          // the true classes of a classification set's samples; nil for images
	preds  []prediction
	unread int      // image files left out, named on stderr
	light  []string // grayscale images that are mostly light, for the --invert note
}

// paths are the image files the flags name: --image's, then --dir's.
func (pf *predictFlags) paths() ([]string, error) {
	paths := pf.images
	if pf.dir != "" {
		found, err := imagesUnder(pf.dir)
		if err != nil {
			return nil, err
		}
		paths = append(paths, found...)
	}
	if len(paths) == 0 {
		return nil, usagef("--dir %s: no image files (PNG, JPEG, GIF, BMP, WebP, PGM) in it", pf.dir)
	}
	return paths, nil
}

// folderOptions are the folder set's settings of the run that trained the
// model (its config.yaml) and its normalisation (its model.json), so that
// its images are read as training read them; zero for the other sets.
func folderOptions(s *modelSetup, run string) (data.FolderOptions, error) {
	var f data.FolderOptions
	if s.dataset != "folder" || run == "" {
		return f, nil
	}
	c, err := trainer.LoadConfigFile(filepath.Join(run, trainer.ConfigFile), trainer.DefaultConfig())
	if err != nil {
		return f, fmt.Errorf("--run %s: %w", run, err)
	}
	f.Size, f.Fit = c.ImageSize, c.ImageFit
	f.Note = func(m string) { fmt.Fprintln(os.Stderr, "note: "+m) }
	// The run's normalisation: the training split's statistics, which a
	// load with other --val-fraction or --subset would not reproduce.
	m, err := trainer.ReadModelInfo(run)
	if err != nil {
		return f, fmt.Errorf("--run %s: %w", run, err)
	}
	f.Mean, f.Std = m.Mean, m.Std
	return f, nil
}

// predictExts are the file endings --dir picks up.
var predictExts = []string{".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".pgm"}

// imagesUnder lists the image files under dir, sorted (WalkDir's order);
// dir may be a link to a folder, but links to folders inside it are not
// followed, so a loop cannot trap it: a note names each one left out.
func imagesUnder(dir string) ([]string, error) {
	var out []string
	root := dir
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		root = filepath.Clean(dir) + string(filepath.Separator) // WalkDir follows a root link only so
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				fmt.Fprintf(os.Stderr, "note: --dir: %s is a link to a folder: not followed\n", p)
				return nil
			}
		}
		if strings.HasPrefix(d.Name(), ".") && p != root {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && slices.Contains(predictExts, strings.ToLower(filepath.Ext(p))) {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// testSamples is samples index..index+count-1 of the test split.
func testSamples(s *modelSetup, folder data.FolderOptions, index, count int) (*predictInput, error) {
	splits, err := data.Load(s.dataset, data.Options{Dir: s.opts.Dir, Classes: s.opts.Classes, Seed: s.opts.Seed, Folder: folder, CSV: s.opts.CSV})
	if err != nil {
		return nil, err
	}
	if splits.Test == nil {
		return nil, usagef("--index: %s has no test split (no test/ folder)", s.opts.Dir)
	}
	if err := s.asRun(splits.Test); err != nil {
		return nil, err
	}
	in := &predictInput{meta: splits.Test}
	if index+count > in.meta.Len() {
		return nil, usagef("--index %d --count %d: the %s test split has %d samples", index, count, s.dataset, in.meta.Len())
	}
	idx := make([]int, count)
	for i := range idx {
		idx[i] = index + i
		in.preds = append(in.preds, prediction{Source: fmt.Sprintf("test[%d]", index+i), Index: &idx[i]})
	}
	sel, err := in.meta.Select(idx)
	if err != nil {
		return nil, err
	}
	if in.x, err = sel.ImagesTensor(); err != nil {
		return nil, err
	}
	for i := range idx {
		if in.meta.Task == data.Regression {
			v := in.meta.TargetValue(float64(sel.Targets[i]))
			in.preds[i].Target = &v
		} else {
			in.labels = append(in.labels, int(sel.Labels[i]))
		}
	}
	return in, nil
}

// imageMeta is the metadata image files are converted with: the run's
// model.json (class names, normalisation) for a folder-trained model, the
// data set's description otherwise.
func imageMeta(s *modelSetup, run string) (*data.Dataset, error) {
	if s.dataset != "folder" {
		return s.describe()
	}
	if run == "" || s.spec == nil {
		return nil, usagef("a model trained on an image folder takes its classes, normalisation and image size from its run: give --run DIR")
	}
	info, err := trainer.ReadModelInfo(run)
	if err != nil {
		return nil, fmt.Errorf("--run %s: %w", run, err)
	}
	sp := s.spec
	if len(info.Mean) != sp.Channels || len(info.Std) != sp.Channels || len(info.Classes) != sp.Classes {
		return nil, fmt.Errorf("--run %s: %s has %d means, %d stds and %d class names for a model of %d channels and %d classes",
			run, trainer.ModelFile, len(info.Mean), len(info.Std), len(info.Classes), sp.Channels, sp.Classes)
	}
	return &data.Dataset{Name: "folder", Task: data.Classification, Classes: info.Classes,
		Channels: sp.Channels, Height: sp.Height, Width: sp.Width, Mean: info.Mean, Std: info.Std}, nil
}

// imageFiles are image files as the model's input: converted, resized and
// normalised as the data set's samples (meta) are. The first named files
// must be read; a later one (found under --dir) that cannot be is named on
// stderr and left out.
func imageFiles(s *modelSetup, meta *data.Dataset, folder data.FolderOptions, paths []string, named int, invert bool) (*predictInput, error) {
	in := &predictInput{meta: meta}
	size := meta.SampleSize()
	xs := make([]float32, 0, len(paths)*size)
	for i, p := range paths {
		x, isLight, err := imageSample(p, meta, s.dataset == "folder", folder.Fit == "pad", invert)
		if err != nil && i < named {
			return nil, err
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v (left out)\n", err)
			in.unread++
			continue
		}
		xs = append(xs, x...)
		in.preds = append(in.preds, prediction{Source: p})
		if isLight && !invert {
			in.light = append(in.light, p)
		}
	}
	if len(in.preds) > 0 {
		in.x = engine.New(engine.Float32, len(in.preds), meta.Channels, meta.Height, meta.Width)
		copy(in.x.Float32(), xs[:len(in.preds)*size])
	}
	return in, nil
}

// imageSample reads one image file as a normalised sample of meta: as the
// folder set reads its files (Pillow's resize, crop or pad) for a
// folder-trained model, else as imagefile converts it. light reports a
// grayscale picture that is mostly light, for the built-in sets' note.
func imageSample(path string, meta *data.Dataset, folder, pad, invert bool) (x []float32, light bool, err error) {
	img, err := imagefile.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	if !folder {
		t, light, err := imagefile.Input(img, meta, invert)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return t.Float32(), light, nil
	}
	pixels, err := data.ImagePixels(img, meta.Channels, meta.Height, meta.Width, pad)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", path, err)
	}
	if invert {
		for i, b := range pixels {
			pixels[i] = 255 - b
		}
	}
	x = make([]float32, meta.SampleSize())
	return x, false, meta.NormalizeImage(x, pixels)
}

// newPredictor builds the model for samples of meta, to print the top
// classes of each.
func newPredictor(s *modelSetup, meta *data.Dataset, top int) (*predictor, error) {
	model, err := s.build(meta)
	if err != nil {
		return nil, err
	}
	c := trainer.DefaultConfig()
	c.Model, c.Dataset, c.Regression, c.Precision = model.Name, s.dataset, model.Spec.Regression, s.precision
	tr, err := trainer.NewTrainer(c, model)
	if err != nil {
		return nil, err
	}
	return &predictor{model: model, tr: tr, top: top}, nil
}

// predictor is the model, built once, that predicts chunk after chunk.
type predictor struct {
	model *layers.Model
	tr    *trainer.Trainer
	top   int
}

// predict runs the model over in and fills in the predictions: the top
// classes, or a regression's value in its unit.
func (p *predictor) predict(in *predictInput) error {
	out, err := p.tr.Outputs(in.x)
	if err != nil {
		return err
	}
	top, model := p.top, p.model
	if model.Spec.Regression {
		for i := range in.preds {
			v := in.meta.TargetValue(out.At(i * out.Dim(1)))
			in.preds[i].Prediction, in.preds[i].Unit = &v, in.meta.TargetName
		}
		return nil
	}
	probs, err := trainer.Softmax(out)
	if err != nil {
		return err
	}
	k := probs.Dim(1)
	for i := range in.preds {
		p := &in.preds[i]
		p.Top = topK(probs.Float64()[i*k:(i+1)*k], top, in.meta.Classes)
		if in.labels != nil {
			l, ok := in.labels[i], in.labels[i] == p.Top[0].Class
			p.Label, p.LabelName, p.Correct = &l, className(in.meta.Classes, l), &ok
		}
	}
	return nil
}
