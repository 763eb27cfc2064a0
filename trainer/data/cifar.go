package data

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kiln-ml/kiln/internal/userfile"
)

// CIFAR-10 binary format: records of one label byte and 3072 pixel bytes, the
// red, green and blue 32×32 planes in turn, rows top to bottom.
const (
	cifarSide   = 32
	cifarPixels = 3 * cifarSide * cifarSide
	cifarRecord = 1 + cifarPixels
)

var (
	cifarClasses = []string{"airplane", "automobile", "bird", "cat", "deer",
		"dog", "frog", "horse", "ship", "truck"}
	cifarMean = []float64{0.4914, 0.4822, 0.4465}
	cifarStd  = []float64{0.2470, 0.2435, 0.2616}
)

var cifarTrainFiles = []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}

const cifarTestFile = "test_batch.bin"

// maxCIFARBytes bounds one batch file (CIFAR-10's are 30 MB), checked
// before it is read.
const maxCIFARBytes = 1 << 30

// findCIFARFiles checks that dir holds all six batch files.
func findCIFARFiles(dir string) (missing string) {
	for _, n := range append(cifarTrainFiles[:len(cifarTrainFiles):len(cifarTrainFiles)], cifarTestFile) {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || !st.Mode().IsRegular() {
			return n
		}
	}
	return ""
}

// decodeCIFAR checks the records of one batch file and returns how many it
// holds. The error does not name the file.
func decodeCIFAR(raw []byte) (int, error) {
	if len(raw) == 0 {
		return 0, fmt.Errorf("empty file: no records")
	}
	if len(raw)%cifarRecord != 0 {
		return 0, fmt.Errorf("size %d is not a multiple of %d (1 label byte + %d pixel bytes per record): truncated or not a CIFAR-10 batch", len(raw), cifarRecord, cifarPixels)
	}
	n := len(raw) / cifarRecord
	for i := 0; i < n; i++ {
		if l := raw[i*cifarRecord]; int(l) >= len(cifarClasses) {
			return 0, fmt.Errorf("label %d of record %d is out of range 0..%d", l, i, len(cifarClasses)-1)
		}
	}
	return n, nil
}

// readCIFAR reads batch files into one Dataset.
func readCIFAR(dir string, files []string, classes []string) (*Dataset, error) {
	raws := make([][]byte, len(files))
	n := 0
	for i, f := range files {
		p := filepath.Join(dir, f)
		raw, err := userfile.ReadFile(p, maxCIFARBytes)
		if err != nil {
			return nil, ioErr(p, err)
		}
		m, err := decodeCIFAR(raw)
		if err != nil {
			return nil, &FileError{Path: p, Problem: err.Error()}
		}
		raws[i] = raw
		n += m
	}
	d := cifarDataset(raws, n, classes)
	d.Source = dir
	return d, nil
}

// cifarDataset normalises checked batch files holding n records in all.
func cifarDataset(raws [][]byte, n int, classes []string) *Dataset {
	d := describeCIFAR(classes)
	d.Images = make([]float32, n*cifarPixels)
	d.Labels = make([]int32, n)
	var luts [3]*[256]float32
	for c := range luts {
		luts[c] = byteTable(cifarMean[c], cifarStd[c])
	}
	var wg sync.WaitGroup
	at := 0
	for _, raw := range raws {
		m := len(raw) / cifarRecord
		wg.Add(1)
		go func(raw []byte, first int) {
			defer wg.Done()
			const plane = cifarSide * cifarSide
			for i := 0; i < m; i++ {
				rec := raw[i*cifarRecord : (i+1)*cifarRecord]
				d.Labels[first+i] = int32(rec[0])
				img := d.Images[(first+i)*cifarPixels : (first+i+1)*cifarPixels]
				for c := 0; c < 3; c++ {
					lut := luts[c]
					for j, b := range rec[1+c*plane : 1+(c+1)*plane] {
						img[c*plane+j] = lut[b]
					}
				}
			}
		}(raw, at)
		at += m
	}
	wg.Wait()
	return d
}

// cifarClassNames reads batches.meta.txt (one class name per line) when it is
// there and well formed; otherwise the standard names.
func cifarClassNames(dir string) []string {
	raw, err := userfile.ReadFile(filepath.Join(dir, "batches.meta.txt"), 64<<10)
	if err != nil {
		return cifarClasses
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			names = append(names, s)
		}
	}
	if len(names) != len(cifarClasses) {
		return cifarClasses
	}
	return names
}

func loadCIFAR(dir string) (train, test *Dataset, err error) {
	if missing := findCIFARFiles(dir); missing != "" {
		return nil, nil, fileErr(dir, "no %s file", missing)
	}
	classes := cifarClassNames(dir)
	if train, err = readCIFAR(dir, cifarTrainFiles, classes); err != nil {
		return nil, nil, err
	}
	if test, err = readCIFAR(dir, []string{cifarTestFile}, classes); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

func describeCIFAR(classes []string) *Dataset {
	return &Dataset{
		Name: "cifar10", Task: Classification,
		Classes:  append([]string(nil), classes...),
		Channels: 3, Height: cifarSide, Width: cifarSide,
		Mean: append([]float64(nil), cifarMean...), Std: append([]float64(nil), cifarStd...),
	}
}
