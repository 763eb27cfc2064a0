package trainer

import (
	"fmt"
	"math"
	"strings"
)

// ScheduleConfig describes a learning-rate schedule stepped once per
// iteration. Total is the run's number of optimiser steps (epochs × batches
// per epoch, drop-last aware); every schedule is checked against it.
type ScheduleConfig struct {
	Kind   string  // constant, step, multistep, exp, cosine, onecycle, plateau
	BaseLR float64 // the peak learning rate (onecycle's max_lr)
	Total  int     // steps in the whole run
	Warmup int     // linear warm-up steps, from BaseLR/Warmup up to the schedule

	StepSize   int     // step: decay every StepSize steps
	Milestones []int   // multistep: decay at these steps
	Gamma      float64 // step, multistep, exp: decay factor (default 0.1; exp 0.999)
	MinLR      float64 // cosine: the floor (eta_min)

	PctStart       float64 // onecycle: fraction of steps rising (default 0.3)
	DivFactor      float64 // onecycle: initial LR = BaseLR/DivFactor (default 25)
	FinalDivFactor float64 // onecycle: final LR = initial/FinalDivFactor (default 1e4)

	Factor   float64 // plateau: multiply by this on a plateau (default 0.1)
	Patience int     // plateau: validations without improvement before reducing (default 10)
	Mode     string  // plateau: "min" (loss, default) or "max" (accuracy)
}

// ScheduleKinds lists the schedule names.
var ScheduleKinds = []string{"constant", "step", "multistep", "exp", "cosine", "onecycle", "plateau"}

// Schedule gives the learning rate of each step. Plateau also listens to
// validation results; its state travels in checkpoints.
type Schedule struct {
	c ScheduleConfig
	// plateau state
	PlateauScale float64 `json:"plateau_scale"`
	PlateauBest  float64 `json:"plateau_best"`
	PlateauBad   int     `json:"plateau_bad"`
	PlateauSeen  bool    `json:"plateau_seen"`
}

// NewSchedule validates c against the run's length and fills defaults.
func NewSchedule(c ScheduleConfig) (*Schedule, error) {
	c.Kind = strings.ToLower(c.Kind)
	if c.Kind == "" {
		c.Kind = "constant"
	}
	if !(c.BaseLR > 0) || math.IsInf(c.BaseLR, 0) {
		return nil, fmt.Errorf("learning rate must be positive, got %v", c.BaseLR)
	}
	if c.Total < 1 {
		return nil, fmt.Errorf("schedule: the run has %d steps", c.Total)
	}
	if c.Warmup < 0 || c.Warmup >= c.Total {
		return nil, fmt.Errorf("schedule: warm-up of %d steps does not fit a run of %d steps", c.Warmup, c.Total)
	}
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	switch c.Kind {
	case "constant", "cosine":
		if c.MinLR < 0 || c.MinLR > c.BaseLR {
			return nil, fmt.Errorf("schedule cosine: min LR %v outside [0, %v]", c.MinLR, c.BaseLR)
		}
	case "step":
		def(&c.Gamma, 0.1)
		if c.StepSize < 1 || c.StepSize >= c.Total {
			return nil, fmt.Errorf("schedule step: step size %d must be in [1, %d) for a run of %d steps", c.StepSize, c.Total, c.Total)
		}
	case "multistep":
		def(&c.Gamma, 0.1)
		if len(c.Milestones) == 0 {
			return nil, fmt.Errorf("schedule multistep: no milestones")
		}
		prev := 0
		for _, m := range c.Milestones {
			if m <= prev || m >= c.Total {
				return nil, fmt.Errorf("schedule multistep: milestones %v must increase within (0, %d)", c.Milestones, c.Total)
			}
			prev = m
		}
	case "exp":
		def(&c.Gamma, 0.999)
	case "onecycle":
		def(&c.PctStart, 0.3)
		def(&c.DivFactor, 25)
		def(&c.FinalDivFactor, 1e4)
		if c.PctStart <= 0 || c.PctStart >= 1 {
			return nil, fmt.Errorf("schedule onecycle: pct_start %v outside (0,1)", c.PctStart)
		}
		if c.Warmup != 0 {
			return nil, fmt.Errorf("schedule onecycle has its own warm-up; drop --warmup")
		}
		if c.PctStart*float64(c.Total) == 1 {
			// The warm-up phase would end at step 0 and divide by its own
			// length of 0 (torch's OneCycleLR raises ZeroDivisionError).
			return nil, fmt.Errorf("schedule onecycle: pct_start %v of %d steps leaves a warm-up of no steps", c.PctStart, c.Total)
		}
	case "plateau":
		def(&c.Factor, 0.1)
		if c.Patience == 0 {
			c.Patience = 10
		}
		if c.Mode == "" {
			c.Mode = "min"
		}
		if c.Mode != "min" && c.Mode != "max" {
			return nil, fmt.Errorf("schedule plateau: mode %q (want min or max)", c.Mode)
		}
	default:
		return nil, fmt.Errorf("unknown schedule %q (want %s)", c.Kind, strings.Join(ScheduleKinds, ", "))
	}
	if c.Gamma < 0 || c.Gamma > 1 {
		return nil, fmt.Errorf("schedule %s: gamma %v outside [0,1]", c.Kind, c.Gamma)
	}
	return &Schedule{c: c, PlateauScale: 1}, nil
}

// Config returns the validated configuration.
func (s *Schedule) Config() ScheduleConfig { return s.c }

// LR is the learning rate for step (0-based).
func (s *Schedule) LR(step int) float64 {
	c := s.c
	step = min(max(step, 0), c.Total-1)
	var lr float64
	switch c.Kind {
	case "constant":
		lr = c.BaseLR
	case "step":
		lr = c.BaseLR * math.Pow(c.Gamma, float64(step/c.StepSize))
	case "multistep":
		n := 0
		for _, m := range c.Milestones {
			if step >= m {
				n++
			}
		}
		lr = c.BaseLR * math.Pow(c.Gamma, float64(n))
	case "exp":
		lr = c.BaseLR * math.Pow(c.Gamma, float64(step))
	case "cosine":
		// Cosine over the steps after warm-up, as CosineAnnealingLR with
		// T_max those steps (and Keras's CosineDecay): MinLR would be the
		// step after the last, which an lr of MinLR 0 would have wasted.
		span := float64(max(c.Total-c.Warmup, 1))
		t := float64(max(step-c.Warmup, 0)) / span
		lr = c.MinLR + (c.BaseLR-c.MinLR)*(1+math.Cos(math.Pi*t))/2
	case "onecycle":
		// torch.optim.lr_scheduler.OneCycleLR with cosine annealing.
		initial := c.BaseLR / c.DivFactor
		final := initial / c.FinalDivFactor
		up := c.PctStart*float64(c.Total) - 1
		down := float64(c.Total) - 1
		cosAnneal := func(from, to, pct float64) float64 { return to + (from-to)*(1+math.Cos(math.Pi*pct))/2 }
		if float64(step) <= up {
			lr = cosAnneal(initial, c.BaseLR, float64(step)/up)
		} else {
			lr = cosAnneal(c.BaseLR, final, (float64(step)-up)/(down-up))
		}
	case "plateau":
		lr = c.BaseLR * s.PlateauScale
	}
	if step < c.Warmup {
		lr *= float64(step+1) / float64(c.Warmup)
	}
	return lr
}

// plateauEps is ReduceLROnPlateau's eps: a cut smaller than it is skipped,
// so the rate stops falling near 1e-8 instead of going on to underflow.
const plateauEps = 1e-8

// Observe feeds a validation result to the plateau schedule (others ignore
// it), as torch's ReduceLROnPlateau with threshold 1e-4 (relative).
func (s *Schedule) Observe(metric float64) {
	if s.c.Kind != "plateau" || math.IsNaN(metric) {
		return
	}
	better := !s.PlateauSeen
	if s.PlateauSeen {
		if s.c.Mode == "min" {
			better = metric < s.PlateauBest*(1-1e-4)
		} else {
			better = metric > s.PlateauBest*(1+1e-4)
		}
	}
	if better {
		s.PlateauBest, s.PlateauBad, s.PlateauSeen = metric, 0, true
		return
	}
	s.PlateauBad++
	if s.PlateauBad > s.c.Patience {
		if cut := s.PlateauScale * s.c.Factor; s.c.BaseLR*(s.PlateauScale-cut) > plateauEps {
			s.PlateauScale = cut
		}
		s.PlateauBad = 0
	}
}
