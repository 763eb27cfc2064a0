package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer/data"
)

// No Docker engine runs where the tests do, so the Dockerfile is checked
// against what does run: its make steps must be Makefile targets that CI
// (.ci/run) runs the same way, its binaries the ones `make build GPU=1`
// writes, its Go the version go.mod names, and its MNIST where
// trainer/data looks.

// dockerInstr is one Dockerfile instruction with continuation lines joined.
type dockerInstr struct{ op, args string }

func readDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// makeTargets lists the targets the Makefile defines.
func makeTargets(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rule := regexp.MustCompile(`^([A-Za-z0-9_./$()-]+(?:[ \t]+[A-Za-z0-9_./$()-]+)*)[ \t]*:([^=]|$)`)
	var targets []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "#") {
			continue
		}
		if m := rule.FindStringSubmatch(line); m != nil {
			targets = append(targets, strings.Fields(m[1])...)
		}
	}
	return targets
}

// makeCalls finds the make invocations in shell text (make in command
// position: at a line's start or after ;, &&, ||, |, ( or environment
// assignments), normalised to "make word word".
func makeCalls(sh string) []string {
	re := regexp.MustCompile(`(?m)(?:^|[;&|(])[ \t]*(?:[A-Za-z_][A-Za-z0-9_]*=[^ \t]*[ \t]+)*make((?:[ \t]+[A-Za-z0-9_=./-]+)+)`)
	var calls []string
	for _, m := range re.FindAllStringSubmatch(sh, -1) {
		calls = append(calls, "make "+strings.Join(strings.Fields(m[1]), " "))
	}
	return calls
}

func TestDockerfileRunsTheMakefileStepsCIRuns(t *testing.T) {
	root := filepath.Join("..", "..")
	instrs := readDockerfile(t, filepath.Join(root, "Dockerfile"))
	targets := makeTargets(t, filepath.Join(root, "Makefile"))
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	ciCalls := makeCalls(string(ci))

	var froms, dockerCalls []string
	env := map[string]string{}
	var copies []string
	var entrypoint string
	for _, in := range instrs {
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			dockerCalls = append(dockerCalls, makeCalls(in.args)...)
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		case "COPY":
			copies = append(copies, in.args)
		case "ENTRYPOINT":
			entrypoint = in.args
		}
	}
	for _, want := range []string{"make kernels", "make build GPU=1"} {
		if !slices.Contains(dockerCalls, want) {
			t.Errorf("the Dockerfile does not run %q (its make steps: %q)", want, dockerCalls)
		}
	}
	for _, call := range dockerCalls {
		for _, w := range strings.Fields(call)[1:] {
			if strings.Contains(w, "=") || strings.HasPrefix(w, "-") {
				continue
			}
			if !slices.Contains(targets, w) {
				t.Errorf("the Dockerfile runs %q but the Makefile has no target %q", call, w)
			}
		}
		if !slices.Contains(ciCalls, call) {
			t.Errorf("the Dockerfile runs %q, which .ci/run does not (CI's make steps: %q)", call, ciCalls)
		}
	}

	// Two stages on NVIDIA's images; the toolkit is the one CI builds with.
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "nvidia/cuda:") || !strings.HasPrefix(froms[1], "nvidia/cuda:") {
		t.Errorf("want a build and a runtime stage on nvidia/cuda images, got FROM %q", froms)
	}
	df, _ := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if !strings.Contains(string(df), "ARG CUDA_VERSION=11.8.") {
		t.Errorf("the Dockerfile's CUDA_VERSION should be 11.8.x, the nvcc CI uses (Debian's nvidia-cuda-toolkit)")
	}
	// The Go that go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go ([0-9.]+)$`).FindSubmatch(gomod)
	if goVer == nil || !strings.Contains(string(df), "ARG GO_VERSION="+string(goVer[1])+"\n") {
		t.Errorf("the Dockerfile's GO_VERSION should be go.mod's go %s", goVer[1])
	}
	// The binaries make build GPU=1 writes, and kiln as the entry point.
	var binCopy string
	for _, c := range copies {
		if strings.Contains(c, "--from=build") && strings.Contains(c, "/kiln ") {
			binCopy = c
		}
	}
	if !strings.Contains(binCopy, "/src/kiln ") || !strings.Contains(binCopy, "/src/"+cudaBinaryName+" ") {
		t.Errorf("the runtime stage should copy kiln and %s side by side, got COPY %q", cudaBinaryName, binCopy)
	}
	if entrypoint != `["kiln"]` {
		t.Errorf(`ENTRYPOINT %s, want ["kiln"] (the CPU build, which hands over to %s)`, entrypoint, cudaBinaryName)
	}
	// MNIST where trainer/data finds it: $KILN_DATA_DIR/mnist, from the GoMNIST module.
	dir := env[data.EnvDataDir]
	if dir == "" {
		t.Fatalf("the runtime stage does not set %s", data.EnvDataDir)
	}
	if !strings.Contains(string(df), data.GoMNISTModule) {
		t.Errorf("the Dockerfile does not take MNIST from %s", data.GoMNISTModule)
	}
	var dataCopy bool
	for _, c := range copies {
		f := strings.Fields(c)
		if len(f) >= 3 && f[0] == "--from=build" && f[len(f)-1] == dir && strings.Contains(string(df), "mkdir -p "+f[1]+"/mnist") {
			dataCopy = true
		}
	}
	if !dataCopy {
		t.Errorf("the runtime stage should copy a directory holding mnist/ to %s=%s", data.EnvDataDir, dir)
	}
}

func TestMakeCalls(t *testing.T) {
	got := makeCalls("go mod download && make kernels\nLD_LIBRARY_PATH=/x make build GPU=1; cmake foo; (make test)\napt-get install -y git make gcc")
	want := []string{"make kernels", "make build GPU=1", "make test"}
	if !slices.Equal(got, want) {
		t.Errorf("makeCalls = %q, want %q", got, want)
	}
}
