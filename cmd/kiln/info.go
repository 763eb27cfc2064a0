package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/cpu"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

func infoCmd() *cobra.Command {
	var (
		device        string
		verbose, list bool
	)
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Show the build, the devices found and where ops run",
		Long: `Shows the build (CPU or CUDA), the GPU found or why there is none, the
kernels loaded and which device the ops run on.

With --device auto (the default) or cuda, a kiln without CUDA hands over to
kiln-cuda next to it where the NVIDIA driver loads, as train does, so this
shows what training would use. --device cpu shows this binary alone.`,
		Args: noArgs(""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := deviceRequest(device) // $KILN_DEVICE too, as train reads it
			if err != nil {
				return err
			}
			dev, auto, err := engine.ParseDevice(req)
			if err != nil {
				return usageError{fmt.Errorf("--device: %w", err)}
			}
			if list {
				for _, k := range cuda.Declared() {
					outln(k)
				}
				return nil
			}
			handover := ""
			if !cuda.Built() && (auto || dev == engine.CUDA) {
				handover = handOverToCUDA() // returns only when it could not
			}
			printInfo(stdout, dev, auto, handover, verbose)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&device, "device", "auto", "cpu, cuda or auto: auto and cuda look for the GPU as train does")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every kernel and op")
	f.BoolVar(&list, "kernels", false, "print the kernel symbols this build launches, one a line, and nothing else")
	return cmd
}

func printInfo(w io.Writer, dev engine.Device, auto bool, handover string, verbose bool) {
	declared := cuda.Declared()
	ops := gpuOps(declared)
	build := "cpu (no cuda tag)"
	switch {
	case cuda.Emulated():
		build = "cuda emulator (tags cudaemu: the kernels run on the CPU)"
	case cuda.Built():
		build = "cuda (tags cuda)"
	}
	fmt.Fprintf(w, "build:    %s, %s %s/%s\n", build, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if exe, err := os.Executable(); err == nil {
		fmt.Fprintf(w, "binary:   %s", exe)
		if from := os.Getenv(envHandoff); from != "" {
			fmt.Fprintf(w, " (handed over from %s)", from)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "cpu:      %d threads for ops, %s\n", engine.Threads(), simdLevel())
	fmt.Fprintf(w, "bf16:     %s\n", bf16Support())
	fmt.Fprintf(w, "precision: %s (--precision)\n", precisionsLine())

	if !cuda.Built() {
		p := probeGPU()
		drv := "libcuda.so.1 loads"
		if p.driverErr != nil {
			drv = p.driverErr.Error()
		}
		fmt.Fprintf(w, "driver:   %s\n", drv)
		if p.binary != "" {
			fmt.Fprintf(w, "cuda:     not in this build; %s is the CUDA build\n", p.binary)
		} else {
			fmt.Fprintf(w, "cuda:     not in this build; %v\n", p.binaryErr)
		}
		if handover != "" {
			fmt.Fprintf(w, "device:   cpu (--device %s: %s)\n", deviceWord(dev, auto), handover)
		} else {
			fmt.Fprintf(w, "device:   cpu (--device cpu)\n")
		}
		fmt.Fprintf(w, "kernels:  %d declared, none loaded (this build runs every op on the CPU)\n", len(declared))
		fmt.Fprintf(w, "ops run:  cpu\n")
		if verbose {
			fmt.Fprintf(w, "          the CUDA build runs on the GPU: %s\n", strings.Join(ops, ", "))
		}
	} else {
		inf, err := cuda.Init()
		if err != nil {
			fmt.Fprintf(w, "device:   none: %v\n", err)
			fmt.Fprintf(w, "kernels:  %d declared, not loaded\n", len(declared))
			fmt.Fprintf(w, "ops run:  cpu (no GPU: --device auto trains on the CPU, --device cuda fails)\n")
		} else {
			inf = cuda.Device()
			fmt.Fprintf(w, "device:   %s\n", inf.Name)
			if inf.Backend == "cuda" {
				fmt.Fprintf(w, "          %.1f GiB (%.1f GiB free), compute capability %s, %d SMs, driver %s\n",
					float64(inf.MemoryTotal)/(1<<30), float64(inf.MemoryFree)/(1<<30), inf.Capability, inf.SMs, inf.Driver)
			} else {
				fmt.Fprintf(w, "          backend %s\n", inf.Backend)
			}
			if inf.Fatbin != "" {
				fmt.Fprintf(w, "module:   %s\n", inf.Fatbin)
			}
			fmt.Fprintf(w, "kernels:  %d loaded (every kernel the engine declares was found in the module)\n", inf.Kernels)
			fmt.Fprintf(w, "ops run:  cuda for %d op families with GPU kernels (--device cuda|auto); the rest on the CPU\n", len(ops))
		}
		fmt.Fprintf(w, "          on the GPU: %s\n", strings.Join(ops, ", "))
	}
	if verbose {
		fmt.Fprintf(w, "kernel symbols:\n")
		for _, k := range declared {
			fmt.Fprintf(w, "  %s\n", k)
		}
	}
	fmt.Fprintf(w, "models:   %s\n", strings.Join(layers.ModelNames(), ", "))
}

func deviceWord(dev engine.Device, auto bool) string {
	if auto {
		return "auto"
	}
	return dev.String()
}

// gpuOps names the ops behind kernel symbols: the symbol without its dtype,
// direction, transpose and tile variants (relu_forward_f32 and
// relu_backward_f32 are relu; gemm_nt_128x128_tf32 is gemm).
func gpuOps(kernels []string) []string {
	seen := map[string]bool{}
	for _, k := range kernels {
		var keep []string
		for _, tok := range strings.Split(k, "_") {
			switch {
			case tok == "f32" || tok == "tf32" || tok == "forward" || tok == "backward" || tok == "fwd" || tok == "bwd":
			case tok == "nn" || tok == "nt" || tok == "tn" || tok == "tt":
			case isTile(tok):
			default:
				keep = append(keep, tok)
			}
		}
		if len(keep) > 0 {
			seen[strings.Join(keep, "_")] = true
		}
	}
	ops := make([]string, 0, len(seen))
	for op := range seen {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// isTile reports whether tok is a tile size such as 128x128.
func isTile(tok string) bool {
	a, b, ok := strings.Cut(tok, "x")
	digits := func(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
	return ok && digits(a) && digits(b)
}

// bf16Support says how this CPU computes bf16 products (--precision bf16):
// on AMX tiles, with AVX512_BF16, or not at all.
func bf16Support() string {
	switch {
	case engine.CPUHasAMX():
		return "products on AMX tiles"
	case engine.CPUHasBF16() && engine.CPUAMXOff():
		return "products with AVX512_BF16 (AMX, if the CPU has it, off by KILN_CPU_AMX)"
	case engine.CPUHasBF16():
		return "products with AVX512_BF16"
	}
	if runtime.GOARCH != "amd64" {
		return "none: " + runtime.GOARCH + " runs the portable kernels, which have no bf16 products"
	}
	if engine.CPUISA() != "avx512" {
		return "none at ISA level " + engine.CPUISA() + " (AVX512_BF16 and AMX need avx512)"
	}
	return "none: this CPU has neither AVX512_BF16 nor AMX"
}

// precisionsLine lists what each device's products compute in: the CPU's
// here, the GPU's as the CUDA build has them.
func precisionsLine() string {
	var devs []string
	for _, d := range []engine.Device{engine.CPU, engine.CUDA} {
		var names []string
		for _, p := range engine.Precisions(d) {
			names = append(names, p.String())
		}
		line := d.String() + " " + strings.Join(names, ", ")
		if d == engine.CUDA && !cuda.Built() {
			line += " in the CUDA build"
		}
		devs = append(devs, line)
	}
	return strings.Join(devs, "; ")
}

// simdLevel is the ISA level the engine's C fast paths run at (engine.CPUISA:
// the CPU's highest, or KILN_CPU_ISA's), the levels the CPU runs, and its
// vector instruction sets.
func simdLevel() string {
	if runtime.GOARCH != "amd64" {
		return runtime.GOARCH + " (portable kernels)"
	}
	var have []string
	for _, f := range []struct {
		name string
		ok   bool
	}{{"SSE4.2", cpu.X86.HasSSE42}, {"AVX", cpu.X86.HasAVX}, {"AVX2", cpu.X86.HasAVX2}, {"FMA", cpu.X86.HasFMA}, {"AVX-512F", cpu.X86.HasAVX512F}} {
		if f.ok {
			have = append(have, f.name)
		}
	}
	forced := ""
	if os.Getenv("KILN_CPU_ISA") != "" {
		forced = ", set by KILN_CPU_ISA"
	}
	return fmt.Sprintf("kernels at ISA level %s%s (of %s; cpu has %s)", engine.CPUISA(), forced,
		strings.Join(engine.CPUISAs(), ", "), strings.Join(have, " "))
}
