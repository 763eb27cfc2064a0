// Package deploy holds the cluster files of issue 18 (a Slurm batch script
// and a Kubeflow Trainer TrainJob); its test checks them against what they
// run: the Dockerfile's image and the real `kiln train` command line.
package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	trainer "github.com/kubeflow/trainer/v2/pkg/apis/trainer/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

const (
	trainJobPath = "kubernetes/trainjob.yaml"
	sbatchPath   = "slurm/kiln-train.sbatch"
	dockerfile   = "../Dockerfile"
	gpuResource  = corev1.ResourceName("nvidia.com/gpu")
	// The Trainer release's MPI runtime, which kiln-mpi copies.
	releaseMPIRuntime = "manifests/base/runtimes/mpi_distributed.yaml"
)

// kilnFlags is what `kiln train --help` of the real CLI lists: each long flag
// and whether it takes a value.
var kilnFlags = sync.OnceValues(func() (map[string]bool, error) {
	dir, err := os.MkdirTemp("", "kiln-deploy-test")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kiln")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/kiln: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "train", "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("kiln train --help: %v\n%s", err, out)
	}
	return parseHelpFlags(string(out)), nil
})

// parseHelpFlags reads cobra's flag table: "  -h, --help" or "--batch int":
// a type word after the name means the flag takes a value.
func parseHelpFlags(help string) map[string]bool {
	re := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)(?: ([a-z0-9]+))?\s`)
	flags := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(help, -1) {
		flags[m[1]] = m[2] != ""
	}
	return flags
}

func trainFlags(t *testing.T) map[string]bool {
	t.Helper()
	flags, err := kilnFlags()
	if err != nil {
		t.Fatal(err)
	}
	_, resume := flags["resume"]
	if !flags["run-dir"] || !resume || len(flags) < 10 {
		t.Fatalf("kiln train --help parsed into %v: the flag table's format changed?", flags)
	}
	return flags
}

// checkTrainArgs checks the words after `kiln train`: flags that kiln train
// has, a value after each flag that takes one, nothing else.
func checkTrainArgs(args []string, flags map[string]bool) []error {
	var errs []error
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") {
			errs = append(errs, fmt.Errorf("kiln train takes no argument %q", a))
			continue
		}
		takesValue, ok := flags[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("kiln train has no flag --%s", name))
		case takesValue && !hasValue:
			if i+1 == len(args) {
				errs = append(errs, fmt.Errorf("--%s needs a value", name))
			}
			i++
		}
	}
	return errs
}

// image is what the Dockerfile's runtime stage holds, as deploy/ relies on it.
type image struct {
	names    []string // `docker build -t NAME` in the Dockerfile's comments
	binaries []string // what the final stage copies to /usr/local/bin
	final    string   // the final stage's text
	makeMPI  bool     // the build stage builds with MPI=1
}

func readImage(t *testing.T) image {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var img image
	for _, m := range regexp.MustCompile(`docker build -t ([^ :]+)(?::\S+)? `).FindAllStringSubmatch(string(b), -1) {
		img.names = append(img.names, m[1])
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	froms := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(text, -1)
	if len(froms) == 0 {
		t.Fatal("the Dockerfile has no FROM")
	}
	img.final = text[froms[len(froms)-1][0]:]
	img.makeMPI = regexp.MustCompile(`(?m)^RUN .*\bMPI=1\b.*\bmake build\b|^RUN .*\bmake build\b.*\bMPI=1\b`).MatchString(text)
	sc := bufio.NewScanner(strings.NewReader(img.final))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[0] == "COPY" && strings.HasPrefix(f[1], "--from=") && f[len(f)-1] == "/usr/local/bin/" {
			for _, src := range f[2 : len(f)-1] {
				img.binaries = append(img.binaries, filepath.Base(src))
			}
		}
	}
	return img
}

// installs says whether the final stage apt-installs pkg.
func (img image) installs(pkg string) bool {
	return regexp.MustCompile(`apt-get install[^\n]*\s` + regexp.QuoteMeta(pkg) + `(\s|$)`).MatchString(img.final)
}

func TestDockerfileServesDeploy(t *testing.T) {
	img := readImage(t)
	if len(img.names) == 0 {
		t.Error("the Dockerfile's comments name no image (docker build -t NAME)")
	}
	for _, bin := range []string{"kiln", "kiln-cuda"} {
		if !slices.Contains(img.binaries, bin) {
			t.Errorf("the final stage does not copy %s to /usr/local/bin (it copies %q)", bin, img.binaries)
		}
	}
	if !img.makeMPI {
		t.Error("the build stage does not build with MPI=1: the binaries could not run as ranks")
	}
	for _, pkg := range []string{"openmpi-bin", "openssh-server", "openssh-client"} {
		if !img.installs(pkg) {
			t.Errorf("the final stage does not install %s", pkg)
		}
	}
}

// manifests decodes trainjob.yaml strictly: a field the published types do
// not have is an error, as it would be lost on the way to the cluster.
func manifests(text string) (job *trainer.TrainJob, rt *trainer.TrainingRuntime, err error) {
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(text, -1) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, nil, fmt.Errorf("document %d: %v", i, err)
		}
		var into any
		switch meta.Kind {
		case "TrainJob":
			job = new(trainer.TrainJob)
			into = job
		case "TrainingRuntime":
			rt = new(trainer.TrainingRuntime)
			into = rt
		default:
			return nil, nil, fmt.Errorf("document %d: kind %q, want TrainJob or TrainingRuntime", i, meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			return nil, nil, fmt.Errorf("document %d (%s): %v", i, meta.Kind, err)
		}
	}
	if job == nil {
		return nil, nil, fmt.Errorf("no TrainJob")
	}
	return job, rt, nil
}

func stripComments(doc string) []byte {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAll([]byte(doc), nil)
}

// releaseRuntime is the Trainer module's own MPI runtime, from the module
// that go.mod pins.
func releaseRuntime(t *testing.T) *trainer.ClusterTrainingRuntime {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kubeflow/trainer/v2").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/kubeflow/trainer/v2: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), releaseMPIRuntime))
	if err != nil {
		t.Fatal(err)
	}
	var rt trainer.ClusterTrainingRuntime
	if err := yaml.UnmarshalStrict(b, &rt); err != nil {
		t.Fatalf("%s: %v", releaseMPIRuntime, err)
	}
	return &rt
}

// kubeCheck holds what a TrainJob is checked against.
type kubeCheck struct {
	img     image
	flags   map[string]bool
	release *trainer.ClusterTrainingRuntime
}

// check returns every way text (trainjob.yaml) fails to run Kiln from the
// project's image, one rank per GPU, with a shared run directory.
func (c kubeCheck) check(text string) []error {
	job, rt, err := manifests(text)
	if err != nil {
		return []error{err}
	}
	tr := job.Spec.Trainer
	if tr == nil || tr.Image == nil {
		return []error{fmt.Errorf("the TrainJob names no trainer image")}
	}
	errs := c.checkImage(*tr.Image)
	errs = append(errs, c.checkRuntime(job, rt)...)
	if tr.NumNodes == nil || *tr.NumNodes < 1 {
		errs = append(errs, fmt.Errorf("trainer.numNodes is %v, want a count of pods", tr.NumNodes))
	}
	if tr.NumProcPerNode != nil && tr.NumProcPerNode.IntValue() != 1 {
		errs = append(errs, fmt.Errorf("trainer.numProcPerNode %v: one rank per pod, one GPU each", tr.NumProcPerNode))
	}
	if err := oneGPU(tr.ResourcesPerNode); err != nil {
		errs = append(errs, fmt.Errorf("trainer.resourcesPerNode: %v", err))
	}
	runDir, cmdErrs := c.checkCommand(append(slices.Clone(tr.Command), tr.Args...))
	errs = append(errs, cmdErrs...)
	if rt != nil && runDir != "" {
		errs = append(errs, sharedRunDir(rt, runDir)...)
	}
	return errs
}

func (c kubeCheck) checkImage(ref string) []error {
	name := ref
	if i := strings.IndexAny(ref, "@"); i >= 0 {
		name = ref[:i]
	} else if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name = ref[:i]
	}
	if !slices.Contains(c.img.names, name) {
		return []error{fmt.Errorf("image %q is not the one the Dockerfile documents (docker build -t %q)", ref, c.img.names)}
	}
	return nil
}

// oneGPU: a limit of exactly one GPU (Kubernetes takes extended resources
// from limits; a request, if given, must match).
func oneGPU(r *corev1.ResourceRequirements) error {
	if r == nil {
		return fmt.Errorf("no resources")
	}
	one := resource.MustParse("1")
	if q, ok := r.Limits[gpuResource]; !ok || q.Cmp(one) != 0 {
		return fmt.Errorf("limits %s = %s, want 1", gpuResource, q.String())
	}
	if q, ok := r.Requests[gpuResource]; ok && q.Cmp(one) != 0 {
		return fmt.Errorf("requests %s = %v, want 1", gpuResource, q.String())
	}
	return nil
}

// checkRuntime: the TrainJob runs on a runtime of this file that is the
// release's MPI runtime with Kiln's image and one GPU on every worker; the
// release's own runtime would leave the workers on its demo image.
func (c kubeCheck) checkRuntime(job *trainer.TrainJob, rt *trainer.TrainingRuntime) []error {
	ref := job.Spec.RuntimeRef
	if rt == nil || ref.Name != rt.Name || ref.Kind == nil || *ref.Kind != "TrainingRuntime" {
		return []error{fmt.Errorf("runtimeRef %s/%v should name this file's TrainingRuntime (a release runtime keeps its own image on the workers)", ref.Name, ref.Kind)}
	}
	var errs []error
	if !equalJSON(rt.Spec.MLPolicy, c.release.Spec.MLPolicy) {
		errs = append(errs, fmt.Errorf("runtime %s's mlPolicy differs from the release's %s", rt.Name, c.release.Name))
	}
	releaseNode := nodeContainer(c.release, "node")
	for _, rj := range rt.Spec.Template.Spec.ReplicatedJobs {
		for _, ctr := range rj.Template.Spec.Template.Spec.Containers {
			if ctr.Image != *job.Spec.Trainer.Image {
				errs = append(errs, fmt.Errorf("runtime job %s container %s runs %q, not the trainer's image", rj.Name, ctr.Name, ctr.Image))
			}
		}
		if rj.Name != "node" {
			continue
		}
		node := nodeContainer(&trainer.ClusterTrainingRuntime{Spec: rt.Spec}, "node")
		if node == nil || releaseNode == nil {
			errs = append(errs, fmt.Errorf("runtime job node has no container node"))
			continue
		}
		if !slices.Equal(node.Command, releaseNode.Command) || !slices.Equal(node.Args, releaseNode.Args) {
			errs = append(errs, fmt.Errorf("the workers run %q %q, the release's runtime %q %q", node.Command, node.Args, releaseNode.Command, releaseNode.Args))
		}
		for _, path := range append(node.Command[:1:1], node.Args...) {
			if strings.HasPrefix(path, "/home/") && !strings.Contains(c.img.final, path) {
				errs = append(errs, fmt.Errorf("the workers need %s, which the Dockerfile's final stage does not write", path))
			}
		}
		if err := oneGPU(&node.Resources); err != nil {
			errs = append(errs, fmt.Errorf("runtime worker: %v", err))
		}
	}
	return errs
}

func nodeContainer(rt *trainer.ClusterTrainingRuntime, job string) *corev1.Container {
	for _, rj := range rt.Spec.Template.Spec.ReplicatedJobs {
		if rj.Name != job {
			continue
		}
		for i, ctr := range rj.Template.Spec.Template.Spec.Containers {
			if ctr.Name == "node" {
				return &rj.Template.Spec.Template.Spec.Containers[i]
			}
		}
	}
	return nil
}

func equalJSON(a, b any) bool {
	ja, errA := yaml.Marshal(a)
	jb, errB := yaml.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// checkCommand: [mpirun ...] BINARY train FLAGS, BINARY one the image
// installs, FLAGS kiln train's; it returns --run-dir's value.
func (c kubeCheck) checkCommand(cmd []string) (runDir string, errs []error) {
	i := slices.IndexFunc(cmd, func(w string) bool { return slices.Contains(c.img.binaries, w) })
	if i < 0 {
		return "", []error{fmt.Errorf("command %q runs none of the image's binaries %q", cmd, c.img.binaries)}
	}
	if i > 0 && (cmd[0] != "mpirun" || !c.img.installs("openmpi-bin")) {
		errs = append(errs, fmt.Errorf("command %q: before %s only mpirun (from the image's openmpi-bin)", cmd, cmd[i]))
	}
	if i+1 == len(cmd) || cmd[i+1] != "train" {
		return "", append(errs, fmt.Errorf("command %q: want %s train", cmd, cmd[i]))
	}
	args := cmd[i+2:]
	errs = append(errs, checkTrainArgs(args, c.flags)...)
	return flagValue(args, "run-dir"), errs
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// sharedRunDir: every pod mounts the volume that holds the run directory.
func sharedRunDir(rt *trainer.TrainingRuntime, runDir string) []error {
	var errs []error
	for _, rj := range rt.Spec.Template.Spec.ReplicatedJobs {
		pod := rj.Template.Spec.Template.Spec
		for _, ctr := range pod.Containers {
			mounted := slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
				return strings.HasPrefix(runDir+"/", strings.TrimSuffix(m.MountPath, "/")+"/") &&
					slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name && v.PersistentVolumeClaim != nil })
			})
			if !mounted {
				errs = append(errs, fmt.Errorf("runtime job %s container %s does not mount a claim holding --run-dir %s", rj.Name, ctr.Name, runDir))
			}
		}
	}
	return errs
}

func newKubeCheck(t *testing.T) kubeCheck {
	return kubeCheck{img: readImage(t), flags: trainFlags(t), release: releaseRuntime(t)}
}

func TestTrainJob(t *testing.T) {
	b, err := os.ReadFile(trainJobPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range newKubeCheck(t).check(string(b)) {
		t.Errorf("%s: %v", trainJobPath, err)
	}
}

// Each check fails on the manifest broken the way it guards against.
func TestTrainJobCheckCatches(t *testing.T) {
	b, err := os.ReadFile(trainJobPath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(b)
	c := newKubeCheck(t)
	if errs := c.check(good); len(errs) != 0 {
		t.Fatalf("the manifest itself fails (TestTrainJob): %v", errs)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "numNodes: 2", "numNodes: 2\n    numGPUs: 1", `unknown field "numGPUs"`},
		{"misspelt field", "resourcesPerNode:", "resourcePerNode:", `unknown field "resourcePerNode"`},
		{"other image", "image: ghcr.io/kiln-ml/kiln:latest\n    numNodes", "image: ghcr.io/kiln-ml/other:latest\n    numNodes", "not the one the Dockerfile documents"},
		{"worker image", "image: ghcr.io/kiln-ml/kiln:latest\n                      securityContext:\n                        runAsUser: 1000\n                      command", "image: mpioperator/mpi-pi:openmpi\n                      securityContext:\n                        runAsUser: 1000\n                      command", "not the trainer's image"},
		{"unknown flag", "- --epochs", "- --epoch", "no flag --epoch"},
		{"flag without value", "      - \"1\"\n", "", "--seed needs a value"},
		{"other binary", "- kiln-cuda\n", "- kiln-gpu\n", "none of the image's binaries"},
		{"other subcommand", "- train\n", "- tune\n", "want kiln-cuda train"},
		{"two GPUs", "limits:\n        nvidia.com/gpu: 1", "limits:\n        nvidia.com/gpu: 2", "resourcesPerNode: limits nvidia.com/gpu = 2"},
		{"worker without GPU", "                        limits:\n                          nvidia.com/gpu: 1", "                        limits:\n                          cpu: 1", "runtime worker: limits"},
		{"release runtime", "name: kiln-mpi\n    kind: TrainingRuntime", "name: mpi-distributed\n    kind: ClusterTrainingRuntime", "should name this file's TrainingRuntime"},
		{"run dir off the volume", "/runs/lenet-mnist", "/tmp/lenet-mnist", "does not mount a claim"},
		{"not the release's MPI policy", "mpiImplementation: OpenMPI", "mpiImplementation: MPICH", "mlPolicy differs"},
	} {
		broken := strings.Replace(good, tc.old, tc.new, 1)
		if broken == good {
			t.Errorf("%s: the manifest no longer holds %q", tc.name, tc.old)
			continue
		}
		errs := c.check(broken)
		if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, errs, tc.want)
		}
	}
}

// sbatchTrainArgs finds `kiln train` or `kiln-cuda train` in a batch script
// (continuation lines joined) and returns the words after it.
func sbatchTrainArgs(script string, binaries []string) ([]string, error) {
	joined := strings.ReplaceAll(script, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if slices.Contains(binaries, f[i]) && f[i+1] == "train" {
				var args []string
				for _, w := range f[i+2:] {
					// A quoted expansion is one word whatever it holds: the
					// flags it may add are checked where they are set.
					if strings.HasPrefix(w, `"${`) && strings.HasSuffix(w, `[@]}"`) {
						continue
					}
					args = append(args, strings.Trim(w, `"`))
				}
				return args, nil
			}
		}
	}
	return nil, fmt.Errorf("no %q train command", binaries)
}

func checkSbatch(script string, img image, flags map[string]bool) []error {
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return []error{fmt.Errorf("bash -n: %v\n%s", err, out)}
	}
	args, err := sbatchTrainArgs(script, img.binaries)
	if err != nil {
		return []error{err}
	}
	errs := checkTrainArgs(args, flags)
	// Flags the script adds through variables (RESUME=(--resume)).
	for _, m := range regexp.MustCompile(`(?m)^\s*[A-Z_]+=\((--[a-z0-9-]+)\)`).FindAllStringSubmatch(script, -1) {
		errs = append(errs, checkTrainArgs([]string{m[1]}, flags)...)
	}
	if !regexp.MustCompile(`(?m)^\s*RESUME=\(--resume\)`).MatchString(script) || !strings.Contains(script, `"${RESUME[@]}"`) {
		errs = append(errs, fmt.Errorf("the script does not resume a requeued run with --resume"))
	}
	if flagValue(args, "run-dir") == "" {
		errs = append(errs, fmt.Errorf("the script gives no --run-dir"))
	}
	if !regexp.MustCompile(`(?m)^\s*srun\b`).MatchString(script) {
		errs = append(errs, fmt.Errorf("the script does not launch its ranks with srun"))
	}
	return errs
}

func TestSlurmScript(t *testing.T) {
	b, err := os.ReadFile(sbatchPath)
	if err != nil {
		t.Fatal(err)
	}
	img, flags := readImage(t), trainFlags(t)
	for _, err := range checkSbatch(string(b), img, flags) {
		t.Errorf("%s: %v", sbatchPath, err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"syntax", "then\n", "\n", "bash -n"},
		{"unknown flag", "--epochs 10", "--epoch 10", "no flag --epoch"},
		{"unknown resume flag", "RESUME=(--resume)", "RESUME=(--restart)", "no flag --restart"},
		{"no run dir", "--run-dir \"$RUN_DIR\" \\\n", "", "no --run-dir"},
		{"no srun", "srun --mpi", "mpirun --mpi", "srun"},
	} {
		broken := strings.Replace(string(b), tc.old, tc.new, 1)
		if broken == string(b) {
			t.Errorf("%s: the script no longer holds %q", tc.name, tc.old)
			continue
		}
		errs := checkSbatch(broken, img, flags)
		if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, errs, tc.want)
		}
	}
}
