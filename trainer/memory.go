package trainer

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// EstimateMemory is what training on ds in batches of `batch` (at most all
// of ds) holds at its peak, to compare with the process's peak RSS:
// parameters, gradients and optimiser state; the samples of ds; the
// loader's two batches (one filled ahead); and the activations and
// gradients of a probe step on two samples, scaled to the batch (to a
// micro-batch where the steps run in them). The probe changes no parameter and restores the
// buffers it moves (batch-norm statistics, dropout streams), so it changes
// nothing.
func (t *Trainer) EstimateMemory(ds *data.Dataset, batch int) (int64, error) {
	params := int64(0)
	for _, p := range t.params {
		params += int64(p.Value.Len())
	}
	fixed := ModelMemory(params, t.Config) + datasetBytes(ds) + loaderBytes(ds, batch)
	probe := min(2, ds.Len())
	if probe == 0 {
		return fixed, nil
	}
	perSample, err := t.probeMemory(ds, probe)
	if err != nil {
		return 0, fmt.Errorf("memory probe: %w", err)
	}
	// Scratch buffers roughly double the per-sample figure. A batch larger
	// than ds is ds: one step of all of it. In micro-batches a step holds
	// one micro-batch's activations.
	rows := min(batch, ds.Len())
	if n := microSize(t.Config.MicroBatch, t.autoMicro, rows, t.device); n > 0 {
		rows = n
	}
	// Never below the probe's own pass: half of its two samples' figure is
	// a pass's fixed buffers, not a sample's (batch 1 peaked 54% above).
	return fixed + 2*perSample*int64(max(rows, probe)), nil
}

// probeMemory runs a forward and backward pass on the first n samples and
// returns the bytes it allocated per sample. It saves only the buffers: a
// copy of the parameters (which the probe leaves alone) would be a whole
// model's worth of garbage, still on the heap when the optimiser allocates
// its state, and so on the peak.
func (t *Trainer) probeMemory(ds *data.Dataset, n int) (int64, error) {
	saved := map[*layers.Param]*engine.Tensor{}
	t.Model.Walk("", func(_ string, p *layers.Param) {
		if p.Grad == nil {
			saved[p] = p.Value.Clone()
		}
	})
	x := engine.New(engine.Float32, n, ds.Channels, ds.Height, ds.Width)
	copy(x.Float32(), ds.Images[:x.Len()])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := t.Model.Forward(x)
	if err == nil {
		dy := engine.New(engine.Float32, out.Shape()...)
		_, err = t.Model.Backward(dy)
	}
	runtime.ReadMemStats(&after)
	if zerr := layers.ZeroGrad(t.Model); zerr != nil && err == nil {
		err = zerr
	}
	for p, v := range saved {
		if cerr := p.Value.CopyFrom(v); cerr != nil && err == nil {
			err = cerr
		}
		v.Release()
	}
	return int64(after.TotalAlloc-before.TotalAlloc) / int64(n), err
}

// datasetBytes is what ds's samples and labels or targets take.
func datasetBytes(ds *data.Dataset) int64 {
	return 4 * int64(len(ds.Images)+len(ds.Labels)+len(ds.Targets))
}

// loaderBytes is the training loader's buffers: two batches of samples (the
// one in use and the one prefetched).
func loaderBytes(ds *data.Dataset, batch int) int64 {
	return 2 * 4 * int64(min(batch, ds.Len())) * int64(ds.SampleSize())
}

func (t *Trainer) checkMemory(ds *data.Dataset) error {
	if t.device != engine.CPU {
		// On the GPU the allocator reports a request that does not fit,
		// with the figures, at the step that makes it.
		return nil
	}
	// A rank holds its shard of the global batch.
	w := t.world().Size()
	batch := (t.Config.Batch + w - 1) / w
	need, err := t.EstimateMemory(ds, batch)
	if err != nil {
		return err
	}
	avail, source := availableMemory()
	if avail > 0 {
		// The ranks on this machine share what it has left. When Fit
		// checks, the model's values and gradients, the samples and the
		// loader are already allocated: MemAvailable no longer counts
		// them, the estimate does.
		if local := t.localRanks(); local > 1 {
			avail /= int64(local)
			source = fmt.Sprintf("%s, shared by the %d ranks on this machine", source, local)
		}
		avail += 8*int64(layers.CountParams(t.Model)) + datasetBytes(ds) + loaderBytes(ds, batch)
	}
	if t.Config.MemoryLimitMB > 0 {
		avail, source = int64(t.Config.MemoryLimitMB)<<20, "--memory-limit-mb, each rank's"
	}
	t.Log.Info().Str("estimate", mib(need)).Str("available", mib(avail)).Str("from", source).Msg("memory")
	if avail > 0 && need > avail {
		advice := "use a smaller --batch" + microHint(t.Model, t.device)
		if batch <= 2 {
			advice = "use a smaller model (an image folder's --image-size, a model's --hidden or --depth)"
		}
		return fmt.Errorf("batch %d needs about %s a process but only %s is available (%s); %s",
			t.Config.Batch, mib(need), mib(avail), source, advice)
	}
	return nil
}

// localRanks is the number of ranks on this machine (1 in a world that
// cannot say: each then checks against the machine's memory alone).
func (t *Trainer) localRanks() int {
	if l, ok := t.world().(interface{ LocalSize() int }); ok {
		return max(l.LocalSize(), 1)
	}
	return 1
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// optimizerStates is how many tensors the size of the parameters the
// optimiser keeps: SGD's momentum buffer (none without momentum), Adam's two
// moments.
func optimizerStates(c Config) int64 {
	switch {
	case c.Optimizer == "adam" || c.Optimizer == "adamw":
		return 2
	case c.Momentum == 0:
		return 0
	}
	return 1
}

// ModelMemory is what n parameters take while they train under c: float32
// values and gradients and the optimiser's state, saturating at MaxInt64.
func ModelMemory(n int64, c Config) int64 {
	per := 4 * (2 + optimizerStates(c))
	if n > math.MaxInt64/per {
		return math.MaxInt64
	}
	return n * per
}

// BuildModel builds the zoo model c.Model for spec after checking, from the
// configuration alone, that its parameters, gradients and optimiser state
// fit in memory: a width no machine could hold is refused with a message,
// not met by a crash in the middle of allocating it. Every command that
// builds a model to train it goes through here.
func BuildModel(c Config, spec layers.Spec) (*layers.Model, error) {
	n, err := layers.CountParamsFor(c.Model, spec)
	if err != nil {
		return nil, err
	}
	need := ModelMemory(n, c)
	if defaultDevice != engine.CPU {
		// The model is built on the host and then moved: values and
		// gradients pass through host memory; the device's allocator
		// reports its own shortfall.
		need = min(need, ModelMemory(n, Config{Optimizer: "sgd"}))
	}
	// Each block of a deep model also costs its structs and tensor headers
	// (about 2.5 KiB a block of a width-1 mlp, measured): --depth 1e8 of
	// width 1 has few parameters but would not fit.
	need = satAdd(need, int64(max(c.Depth, 0))*layerOverhead)
	avail, source := availableMemory()
	if c.MemoryLimitMB > 0 {
		avail, source = int64(c.MemoryLimitMB)<<20, "--memory-limit-mb"
	}
	if avail > 0 && need > avail {
		return nil, fmt.Errorf("model %s%s: %s parameters need about %s for weights, gradients, %s state and layers, but only %s is available (%s)",
			c.Model, sizeKnobs(c), count(n), size(need), c.Optimizer, size(avail), source)
	}
	// Loading the data (parsing a csv above all) leaves garbage in pieces
	// that the model's large tensors cannot reuse: returned to the system
	// now, it does not stay resident beside them and raise the peak.
	debug.FreeOSMemory()
	return layers.Build(c.Model, spec)
}

// layerOverhead is the memory a block of a deep model costs beside its
// parameters (BuildModel).
const layerOverhead = 4 << 10

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// sizeKnobs names the settings that made a model large, for the message.
func sizeKnobs(c Config) string {
	var knobs []string
	if c.Hidden > 0 {
		knobs = append(knobs, fmt.Sprintf("--hidden %d", c.Hidden))
	}
	if c.Depth > 0 {
		knobs = append(knobs, fmt.Sprintf("--depth %d", c.Depth))
	}
	if len(knobs) == 0 {
		return ""
	}
	return " (" + strings.Join(knobs, ", ") + ")"
}

// count writes a parameter count for a person to read.
func count(n int64) string {
	switch {
	case n >= 1e12:
		return strconv.FormatFloat(float64(n), 'e', 2, 64)
	case n >= 1e9:
		return fmt.Sprintf("%.2f billion", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f million", float64(n)/1e6)
	}
	return strconv.FormatInt(n, 10)
}

// size writes a byte count in MiB, GiB or TiB.
func size(b int64) string {
	switch {
	case b >= 1<<40:
		return fmt.Sprintf("%.3g TiB", float64(b)/(1<<40))
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return mib(b)
}

// availableMemory is what this process may still take: MemAvailable, or
// less under a cgroup's memory limit (a container's, a Slurm job's), where
// MemAvailable is the whole machine's and a run it passed was killed by
// the kernel once past the limit. 0 when unknown.
func availableMemory() (int64, string) {
	avail, source := memAvailable()
	limit, err := memlimit.FromCgroup()
	if err != nil || limit == 0 || limit >= math.MaxInt64 {
		return avail, source
	}
	// What the cgroup's processes hold, this one's included: other
	// processes there (a notebook's kernel, a job's other steps) were
	// left out, and the kernel killed one of them when the run grew.
	held, whose := cgroupUsage(), "its processes hold"
	if rss := residentBytes(); rss > held {
		held, whose = rss, "this process holds"
	}
	if left := max(int64(limit)-held, 0); avail == 0 || left < avail {
		return left, fmt.Sprintf("the cgroup's memory limit of %s, less the %s %s", size(int64(limit)), size(held), whose)
	}
	return avail, source
}

// cgroupUsage is what this process's memory cgroup holds, less the file
// cache it can drop (inactive file pages, as docker stats counts): cgroup
// v1's memory.usage_in_bytes or v2's memory.current where they are usually
// mounted; 0 when unknown.
func cgroupUsage() int64 {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		switch {
		case len(f) == 3 && slices.Contains(strings.Split(f[1], ","), "memory"):
			return usageIn(filepath.Join("/sys/fs/cgroup/memory", f[2]), "memory.usage_in_bytes", "total_inactive_file")
		case len(f) == 3 && f[0] == "0" && f[1] == "":
			if u := usageIn(filepath.Join("/sys/fs/cgroup", f[2]), "memory.current", "inactive_file"); u > 0 {
				return u
			}
		}
	}
	return 0
}

// usageIn reads a cgroup folder's usage file less its droppable cache.
func usageIn(dir, usageFile, cacheKey string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, usageFile))
	if err != nil {
		return 0
	}
	usage, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	stat, _ := os.ReadFile(filepath.Join(dir, "memory.stat"))
	for _, line := range strings.Split(string(stat), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == cacheKey {
			cache, _ := strconv.ParseInt(v, 10, 64)
			return max(usage-cache, 0)
		}
	}
	return usage
}

// residentBytes is this process's resident memory (VmRSS), 0 when unknown.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// memAvailable reads MemAvailable from /proc/meminfo (0 when unknown).
func memAvailable() (int64, string) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb << 10, "MemAvailable"
			}
		}
	}
	return 0, "unknown"
}

// microHint suggests micro-batches, which keep one micro-batch's activations
// instead of the batch's, where the model and device take them.
func microHint(model layers.Layer, dev engine.Device) string {
	if dev != engine.CPU || CheckMicroBatch(model, 1) != nil {
		return ""
	}
	return " or a --micro-batch smaller than the batch"
}
