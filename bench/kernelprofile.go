package bench

import (
	"time"

	"github.com/kiln-ml/kiln/cuda"
)

// KernelProfile is kiln bench --profile's account of a training step on
// the GPU (issue 17): cuda.Profile over a few steps run after the timed
// ones, given per step. The events around each launch cost the step a
// little, so StepMillis is a bit above the timed step_ms.
type KernelProfile struct {
	Steps           int           `json:"steps"`
	StepMillis      float64       `json:"step_ms"`     // wall time per profiled step
	KernelMillis    float64       `json:"kernel_ms"`   // device time of all kernels per step
	HostGapMillis   float64       `json:"host_gap_ms"` // host time between a launch's return and the next launch
	LaunchesPerStep float64       `json:"launches_per_step"`
	CopiesPerStep   float64       `json:"copies_per_step"` // device-to-host copies: each waits for the device
	UploadsPerStep  float64       `json:"uploads_per_step"`
	MemsetsPerStep  float64       `json:"memsets_per_step"`
	Kernels         []KernelShare `json:"kernels"` // by device time, the largest first
}

// KernelShare is one kernel's row of a KernelProfile.
type KernelShare struct {
	Name            string  `json:"name"`
	LaunchesPerStep float64 `json:"launches_per_step"`
	Millis          float64 `json:"ms_per_step"`
	MeanMicros      float64 `json:"mean_us"`
	Share           float64 `json:"share"` // of the profiled step's wall time
}

// profiledSteps is how many steps kiln bench --profile records.
const profiledSteps = 10

// profileSteps runs steps more training steps under the kernel profiler.
func profileSteps(r *stepRun, lr float64, steps int) (*KernelProfile, error) {
	if err := cuda.StartProfile(); err != nil {
		return nil, err
	}
	if _, err := r.steps(steps, lr); err != nil {
		_, _ = cuda.StopProfile()
		return nil, err
	}
	p, err := cuda.StopProfile()
	if err != nil {
		return nil, err
	}
	return kernelProfile(p, steps), nil
}

// kernelProfile gives p per step of steps.
func kernelProfile(p cuda.Profile, steps int) *KernelProfile {
	per := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(steps) }
	kp := &KernelProfile{
		Steps: steps, StepMillis: per(p.Wall), KernelMillis: per(p.Device), HostGapMillis: per(p.HostGaps),
		LaunchesPerStep: float64(p.Launches) / float64(steps), CopiesPerStep: float64(p.Copies) / float64(steps),
		UploadsPerStep: float64(p.Uploads) / float64(steps), MemsetsPerStep: float64(p.Memsets) / float64(steps),
	}
	for _, k := range p.Kernels {
		kp.Kernels = append(kp.Kernels, KernelShare{
			Name: k.Name, LaunchesPerStep: float64(k.Launches) / float64(steps), Millis: per(k.Device),
			MeanMicros: k.Device.Seconds() * 1e6 / float64(k.Launches), Share: k.Device.Seconds() / p.Wall.Seconds(),
		})
	}
	return kp
}
