package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stripeFolder writes a small RGB folder set, 40×30 pictures: "across"
// has a bright horizontal band, "down" a vertical one; train/ only.
func stripeFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i := range 40 {
		for _, class := range []string{"across", "down"} {
			img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
			for y := range 30 {
				for x := range 40 {
					v := byte((x*7 + y*3 + i*11) % 40)
					if (class == "across" && y >= 12 && y < 18) || (class == "down" && x >= 17 && x < 23) {
						v = 220
					}
					o := img.PixOffset(x, y)
					img.Pix[o], img.Pix[o+1], img.Pix[o+2], img.Pix[o+3] = v, v/2, 255-v, 255
				}
			}
			writePNGFile(t, filepath.Join(dir, "train", class, fmt.Sprintf("%02d.png", i)), img)
		}
	}
	return dir
}

func writePNGFile(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kiln predict on a model trained on an image folder prints the folder's
// class names for several --image files and for --dir (a bad file there is
// named and left out, and the exit status says so), and refuses what it
// cannot do without the run.
func TestPredictFolderModel(t *testing.T) {
	dir := stripeFolder(t)
	run := filepath.Join(t.TempDir(), "run")
	r := mustRun(t, dir, "train", "--model", "lenet", "--dataset", "folder", "--data-dir", dir, "--epochs", "3",
		"--batch", "8", "--seed", "1", "--device", "cpu", "--no-visuals", "--image-size", "20x24", "--image-fit", "pad", "--run-dir", run)
	if !strings.Contains(r.stderr, "no test/ folder") {
		t.Errorf("training without test/ does not say so:\n%s", r.stderr)
	}
	// kiln eval of a folder without test/ says so at once (no notes of a
	// decoded folder); with one, it evaluates at the run's --image-size and
	// --image-fit (20x24 padded: the model takes nothing else).
	if r := kiln(t, dir, "eval", "--run", run, "--device", "cpu"); r.code == 0 ||
		!strings.Contains(r.stderr, filepath.Join(dir, "test")+": no such folder") || strings.Contains(r.stderr, "note:") {
		t.Errorf("kiln eval without test/: exit %d, stderr %q", r.code, r.stderr)
	}
	a, b := filepath.Join(dir, "train", "across", "03.png"), filepath.Join(dir, "train", "down", "07.png")
	r = mustRun(t, dir, "predict", "--run", run, "--device", "cpu", "--image", a, b, "--top", "1")
	if want := a + ": across "; !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "\n"+b+": down ") {
		t.Errorf("predict --image a b:\n%s\nwant %q then %q", r.stdout, want, b+": down")
	}
	probe := filepath.Join(t.TempDir(), "probe")
	writePNGFile(t, filepath.Join(probe, "one.png"), image.NewGray(image.Rect(0, 0, 9, 9)))
	writePNGFile(t, filepath.Join(probe, "sub", "two.png"), image.NewGray(image.Rect(0, 0, 50, 10)))
	if err := os.WriteFile(filepath.Join(probe, "bad.jpg"), []byte("no"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = kiln(t, dir, "predict", "--run", run, "--device", "cpu", "--dir", probe, "--json", "--top", "2")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 1 || len(lines) != 2 || !strings.Contains(r.stderr, "bad.jpg") {
		t.Fatalf("predict --dir with a bad file: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, l := range lines {
		var p prediction
		if err := json.Unmarshal([]byte(l), &p); err != nil || len(p.Top) != 2 || (p.Top[0].Name != "across" && p.Top[0].Name != "down") {
			t.Errorf("%q: %v, want two named classes", l, err)
		}
	}
	// --dir through a link to the folder reads it; a link to a folder
	// inside it is named and left out (a loop cannot trap the walk).
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(probe, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(probe, "sub"), filepath.Join(probe, "linked")); err != nil {
		t.Fatal(err)
	}
	r = kiln(t, dir, "predict", "--run", run, "--device", "cpu", "--dir", link, "--json")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != 1 || len(lines) != 2 ||
		!strings.Contains(r.stderr, filepath.Join(link, "linked")+" is a link to a folder: not followed") {
		t.Errorf("predict --dir through a link: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", "lenet", "--dataset", "folder", "--weights", filepath.Join(run, "last.safetensors"), "--image", a}, "give --run DIR"},
		{[]string{"--run", run, "--index", "0"}, "no test split"},
		{[]string{"--run", run, a}, "image files follow --image"},
		{[]string{"--run", run, "--dir", filepath.Join(dir, "nowhere")}, "no such directory"},
	} {
		r := kiln(t, dir, append([]string{"predict", "--device", "cpu"}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("predict %v: exit %d, %q; want %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if err := os.CopyFS(filepath.Join(dir, "test"), os.DirFS(filepath.Join(dir, "train"))); err != nil {
		t.Fatal(err)
	}
	if r := kiln(t, dir, "eval", "--run", run, "--device", "cpu", "--json"); r.code != 0 || !strings.Contains(r.stdout, `"accuracy"`) {
		t.Errorf("kiln eval with test/: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// A run trained with a relative --data-dir resumes from any directory:
// config.yaml holds the data directory as an absolute path.
func TestRelativeDataDirResumesFromElsewhere(t *testing.T) {
	dir := stripeFolder(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, filepath.Dir(dir), "train", "--model", "lenet", "--dataset", "folder", "--data-dir", filepath.Base(dir),
		"--epochs", "2", "--stop-after-epoch", "1", "--batch", "8", "--device", "cpu", "--no-visuals", "--run-dir", run)
	cfg, err := os.ReadFile(filepath.Join(run, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "data_dir: "+dir+"\n") {
		t.Errorf("config.yaml does not hold the absolute data directory %s:\n%s", dir, cfg)
	}
	mustRun(t, t.TempDir(), "train", "--run-dir", run, "--resume", "--device", "cpu")
	if _, err := os.Stat(filepath.Join(run, "summary.json")); err != nil {
		t.Errorf("the resumed run did not finish: %v", err)
	}
}
