package main

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer"
)

// Choosing the device at start-up.
//
// The CUDA build links libcuda.so.1, which only the NVIDIA driver provides; a
// binary that links it does not start at all where the library is missing.
// So `make build GPU=1` ships two binaries side by side: kiln (CPU only, starts
// anywhere) and kiln-cuda (the CUDA build). When kiln is asked for
// --device cuda or auto, it checks that libcuda.so.1 loads and that kiln-cuda
// sits next to it, and then replaces itself with kiln-cuda (same arguments,
// same environment). kiln-cuda opens the GPU; where the driver sees none it
// falls back to the CPU (auto) or says why it cannot (cuda).

// envDevice overrides --device auto (and an empty --device): cpu, cuda or auto.
const envDevice = "KILN_DEVICE"

// envHandoff is set by kiln on the kiln-cuda it starts, so that no binary
// hands over twice.
const envHandoff = "KILN_HANDOFF"

// cudaBinaryName is the CUDA build's file name next to kiln.
const cudaBinaryName = "kiln-cuda"

// resolveDevice turns a --device value (cpu, cuda, auto; "" is auto) into the
// device this process runs on, opening the GPU for cuda. $KILN_DEVICE
// replaces auto. It logs one line for auto (which device and why) and for
// cuda (which GPU).
//
// In the plain build, a request for the GPU where the driver loads and
// kiln-cuda is next to this binary does not return: the process becomes
// kiln-cuda with the same arguments. Call it first, before anything is
// written or started.
func resolveDevice(flag string, log zerolog.Logger) (engine.Device, error) {
	s, err := deviceRequest(flag)
	if err != nil {
		return engine.CPU, err
	}
	// The setting that asked, named as the user gave it, and the way out.
	asked, instead := "--device "+s, "use --device cpu or auto"
	if !strings.EqualFold(strings.TrimSpace(flag), s) {
		asked, instead = "$"+envDevice+"="+s, "unset "+envDevice+", or use --device cpu" // it stands in for auto
	}
	dev, auto, err := engine.ParseDevice(s)
	if err != nil {
		return engine.CPU, usageError{fmt.Errorf("--device: %w", err)}
	}
	if dev == engine.CPU && !auto {
		return engine.CPU, nil
	}
	if !cuda.Built() {
		reason := handOverToCUDA() // returns only when it could not
		if auto {
			log.Info().Msg("device auto: " + reason + ": running on the CPU")
			return engine.CPU, nil
		}
		return engine.CPU, fmt.Errorf("%s: %s (%s)", asked, reason, instead)
	}
	inf, err := engine.OpenDevice(engine.CUDA)
	if err != nil {
		if auto && errors.Is(err, cuda.ErrNoDevice) {
			log.Info().Msg("device auto: " + err.Error() + ": running on the CPU")
			return engine.CPU, nil
		}
		return engine.CPU, fmt.Errorf("%s: %w", asked, err)
	}
	if auto && inf.Backend != "cuda" {
		// The emulator (cudaemu build) runs kernels on the CPU, slowly: it is
		// for tests, and only an explicit --device cuda uses it.
		log.Info().Msg("device auto: this build's CUDA backend is the " + inf.Backend + ": running on the CPU (--device cuda to use it)")
		return engine.CPU, nil
	}
	log.Info().Msg("device cuda: " + describeDevice(inf))
	return engine.CUDA, nil
}

// deviceRequest is the --device value, or $KILN_DEVICE in place of auto.
func deviceRequest(flag string) (string, error) {
	s := strings.TrimSpace(flag)
	if env := strings.TrimSpace(os.Getenv(envDevice)); env != "" && (s == "" || strings.EqualFold(s, "auto")) {
		if _, _, err := engine.ParseDevice(env); err != nil {
			return "", usageError{fmt.Errorf("$%s: %w", envDevice, err)}
		}
		s = env
	}
	return s, nil
}

// describeDevice is one line about an opened device.
func describeDevice(inf cuda.Info) string {
	if inf.Backend != "cuda" {
		return fmt.Sprintf("%s (%s, device %d, %d kernels)", inf.Name, inf.Backend, inf.Ordinal, inf.Kernels)
	}
	return fmt.Sprintf("GPU %d: %s, %.1f GiB, compute %s, %d SMs, driver %s, %d kernels",
		inf.Ordinal, inf.Name, float64(inf.MemoryTotal)/(1<<30), inf.Capability, inf.SMs, inf.Driver, inf.Kernels)
}

// gpuProbe is what the plain build can find out about the GPU build without
// loading it.
type gpuProbe struct {
	driverErr error  // nil when libcuda.so.1 loads
	binary    string // kiln-cuda next to this executable, "" when none
	binaryErr error  // why there is none
}

func probeGPU() gpuProbe {
	var p gpuProbe
	p.driverErr = loadLibcuda()
	exe, err := os.Executable()
	if err != nil {
		p.binaryErr = fmt.Errorf("cannot find this executable: %w", err)
		return p
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	cand := filepath.Join(filepath.Dir(exe), cudaBinaryName)
	st, err := os.Stat(cand)
	switch {
	case err != nil:
		p.binaryErr = fmt.Errorf("no %s next to this kiln (build it with `make build GPU=1`)", cand)
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
		p.binaryErr = fmt.Errorf("%s is not an executable file", cand)
	case cand == exe:
		p.binaryErr = fmt.Errorf("%s is this binary, a build without CUDA", cand)
	default:
		p.binary = cand
		p.binaryErr = sameBuild(cand)
		if p.binaryErr != nil {
			p.binary = ""
		}
	}
	return p
}

// sameBuild reports an error when the kiln-cuda at path was built from
// other sources than this kiln, as their Git stamps tell (`make build`
// stamps both): a kiln-cuda left over from an earlier `make build GPU=1`
// would otherwise run every --device auto command, old code and all.
// Builds without a stamp (-buildvcs=false, or no Git) are not compared.
func sameBuild(path string) error {
	other, err := buildinfo.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: cannot read its build information: %w", path, err)
	}
	self, _ := debug.ReadBuildInfo()
	return buildsMatch(self, other, path)
}

// buildsMatch is sameBuild on the two builds' information.
func buildsMatch(self, other *debug.BuildInfo, path string) error {
	a, b := vcsStamp(self), vcsStamp(other)
	if a == "" || b == "" || a == b {
		return nil
	}
	return fmt.Errorf("%s was built from %s, this kiln from %s: rebuild both with `make build GPU=1`", path, b, a)
}

// vcsStamp is a build's Git revision, marked when its tree had uncommitted
// changes; "" when the build has no stamp.
func vcsStamp(bi *debug.BuildInfo) string {
	if bi == nil {
		return ""
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return ""
	}
	rev = "revision " + rev[:min(12, len(rev))]
	if modified == "true" {
		rev += " with uncommitted changes"
	}
	return rev
}

// handOverToCUDA replaces this process with kiln-cuda when the driver loads
// and kiln-cuda is there. It returns only when it cannot, saying why.
func handOverToCUDA() string {
	if from := os.Getenv(envHandoff); from != "" {
		return fmt.Sprintf("%s handed over to this binary, which has no CUDA backend", from)
	}
	p := probeGPU()
	if p.driverErr != nil {
		return p.driverErr.Error()
	}
	if p.binaryErr != nil {
		return "this kiln has no CUDA backend and " + p.binaryErr.Error()
	}
	self, _ := os.Executable()
	argv := append([]string{p.binary}, os.Args[1:]...)
	env := append(os.Environ(), envHandoff+"="+self)
	err := syscall.Exec(p.binary, argv, env)
	return fmt.Sprintf("starting %s: %v", p.binary, err)
}

// selectDevice resolves --device once, at start-up, and says what it chose.
func selectDevice(s string, log zerolog.Logger) error {
	dev, err := resolveDevice(s, log)
	if err != nil {
		return err
	}
	trainer.SetDefaultDevice(dev)
	return nil
}
