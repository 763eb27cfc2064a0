package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/internal/userfile/userfiletest"
)

// hugePNG is a 1×1 PNG whose header claims 100000×100000 pixels (40 GB as
// RGBA), its CRC fixed so that a decoder believes it.
func hugePNG(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	ihdr := b[12 : 12+4+13] // after the signature and the chunk length
	binary.BigEndian.PutUint32(ihdr[4:], 100000)
	binary.BigEndian.PutUint32(ihdr[8:], 100000)
	binary.BigEndian.PutUint32(b[12+4+13:], crc32.ChecksumIEEE(ihdr))
	return b
}

// kilnWithin runs kiln like kiln does, but kills it after d: a command that
// hangs on a FIFO or reads /dev/zero forever fails the test.
func kilnWithin(t *testing.T, d time.Duration, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, kilnBin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("kiln %s: still running after %v", strings.Join(args, " "), d)
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("kiln %v: %v", args, err)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("kiln %s crashed:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// Image and weights files are checked before they are read: a small PNG
// claiming 100000×100000 pixels, a FIFO, /dev/zero or a directory is an
// error naming the file, at once, never a hang or an exhausted memory.
func TestPredictRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "digit.png"), image.NewGray(image.Rect(0, 0, 28, 28)))
	if err := os.WriteFile(filepath.Join(dir, "huge.png"), hugePNG(t), 0o644); err != nil {
		t.Fatal(err)
	}
	// The image is read before the weights: these need only exist.
	if err := os.WriteFile(filepath.Join(dir, "w.safetensors"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	type bad struct{ flag, path, want string }
	cases := []bad{{"--image", "huge.png", "at most 16384 pixels a side"}}
	for _, s := range userfiletest.Specials(t) {
		cases = append(cases, bad{"--image", s.Path, s.Kind}, bad{"--weights", s.Path, s.Kind})
	}
	for _, c := range cases {
		args := []string{"predict", "--model", "lenet", "--dataset", "mnist", "--device", "cpu",
			"--image", "digit.png", "--weights", "w.safetensors", c.flag, c.path}
		r := kilnWithin(t, 30*time.Second, dir, args...)
		msg := strings.Join(errorLines(r.stderr), "\n")
		if r.code == 0 || !strings.Contains(msg, c.path) || !strings.Contains(msg, c.want) {
			t.Errorf("%s %s: exit %d, %q; want an error naming the file and saying %q", c.flag, c.path, r.code, r.stderr, c.want)
		}
	}
}

// CIFAR-10 files that name their own classes (batches.meta.txt) name
// predict --image's classes too: it printed the stock names ("bird") where
// --index, eval and the exports said the run's.
func TestPredictImageTakesTheRunsClassNames(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "cifar")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	names := []string{"a0", "b1", "c2", "d3", "e4", "f5", "g6", "h7", "i8", "j9"}
	batch := func(seed byte) []byte {
		var b []byte
		for r := range 40 {
			b = append(b, byte(r%10))
			for p := range 3072 {
				b = append(b, byte(p*7+r*13)+seed)
			}
		}
		return b
	}
	files := map[string][]byte{"test_batch.bin": batch(5), "batches.meta.txt": []byte(strings.Join(names, "\n") + "\n")}
	for i := 1; i <= 5; i++ {
		files[fmt.Sprintf("data_batch_%d.bin", i)] = batch(byte(i))
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(data, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(dir, "run")
	mustRun(t, dir, "train", "--dataset", "cifar10", "--data-dir", data, "--epochs", "1", "--batch", "20", "--no-visuals", "--run-dir", run)
	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	pic := filepath.Join(dir, "pic.png")
	if err := os.WriteFile(pic, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, dir, "predict", "--run", run, "--image", pic, "--top", "10").stdout
	for _, n := range names {
		if !strings.Contains(out, n+" ") {
			t.Errorf("predict --image does not name class %s:\n%s", n, out)
		}
	}
	// Without the run, from its weights and the files: the files' names
	// (export wrote airplane … truck, predict --image said them too).
	weights := []string{"--model", "lenet", "--dataset", "cifar10", "--data-dir", data, "--weights", filepath.Join(run, "last.safetensors")}
	mustRun(t, dir, append([]string{"export", "--out", filepath.Join(dir, "w.safetensors")}, weights...)...)
	side, err := os.ReadFile(filepath.Join(dir, "w.json"))
	if err != nil || !strings.Contains(string(side), `"a0"`) || strings.Contains(string(side), "airplane") {
		t.Errorf("export from the weights and files: classes not the files' (%v):\n%s", err, side)
	}
	if out := mustRun(t, dir, append([]string{"predict", "--image", pic, "--top", "10"}, weights...)...).stdout; !strings.Contains(out, "j9 ") {
		t.Errorf("predict --image from the weights and files: not the files' class names:\n%s", out)
	}
}

// --dir over more files than one chunk: every readable file is predicted,
// once, in path order; a bad file in the middle is named and counted.
func TestPredictDirInChunks(t *testing.T) {
	run := tinyRun(t)
	dir := filepath.Join(t.TempDir(), "many")
	n := predictChunk + 40
	for i := range n {
		img := image.NewGray(image.Rect(0, 0, 28, 28))
		for p := range img.Pix {
			img.Pix[p] = uint8((p*7 + i*13) % 256)
		}
		writePNGFile(t, filepath.Join(dir, fmt.Sprintf("%04d.png", i)), img)
	}
	os.WriteFile(filepath.Join(dir, "0290bad.png"), []byte("not a png"), 0o644)
	r := kiln(t, dir, "predict", "--run", run, "--dir", dir, "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 1 || len(lines) != n || !strings.Contains(r.stderr, fmt.Sprintf("1 of %d image files could not be read", n+1)) {
		t.Fatalf("--dir of %d files and a bad one: exit %d, %d lines, stderr %q", n, r.code, len(lines), r.stderr)
	}
	for i, l := range lines {
		if !strings.Contains(l, fmt.Sprintf(`"source":%q`, filepath.Join(dir, fmt.Sprintf("%04d.png", i)))) {
			t.Fatalf("line %d: %s", i, l)
		}
	}
	// As --image files, every one must be read: the bad one, past the
	// first chunk's worth, is refused before anything is printed.
	files, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	slices.Sort(files)
	r = kiln(t, dir, append([]string{"predict", "--run", run, "--json", "--image"}, files...)...)
	if r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, "0290bad.png") {
		t.Fatalf("--image of %d files, one bad: exit %d, %d bytes printed, %q", len(files), r.code, len(r.stdout), r.stderr)
	}
}
