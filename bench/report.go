package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-ml/kiln/trainer"
)

// reserveBase returns dir/label, or dir/label-2, -3, … where an earlier run
// (today's, another section's, another ISA level's) wrote that name: its
// JSON file is created here, so that no report, even a second suite running
// at once, replaces another's.
func reserveBase(dir, label string) (string, error) {
	for n := 1; ; n++ {
		base := filepath.Join(dir, label)
		if n > 1 {
			base += fmt.Sprintf("-%d", n)
		}
		if _, err := os.Stat(base + ".md"); err == nil {
			continue
		}
		f, err := os.OpenFile(base+".json", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("results folder: %w", err)
		}
		return base, f.Close()
	}
}

// write saves the JSON, the markdown report and the plots (each file
// replaced atomically). partial marks a report with sections still to come.
func (s *suite) write(partial bool) error {
	rep := s.rep
	rep.Partial = partial
	rep.Seconds = math.Round(time.Since(s.start).Seconds()*10) / 10
	name := filepath.Base(s.base)
	pngs, plotErrs := writePlots(s.base, rep)
	for _, e := range plotErrs {
		s.log.Warn().Msg(e)
	}
	rep.Files = []string{name + ".json", name + ".md"}
	for _, p := range pngs {
		rep.Files = append(rep.Files, filepath.Base(p))
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report JSON: %w", err)
	}
	if err := trainer.WriteFileAtomic(s.base+".json", append(b, '\n')); err != nil {
		return err
	}
	var md strings.Builder
	writeMarkdown(&md, rep, name, plotErrs)
	if err := trainer.WriteFileAtomic(s.base+".md", []byte(md.String())); err != nil {
		return err
	}
	if !partial {
		s.log.Info().Str("json", s.base+".json").Str("report", s.base+".md").Int("plots", len(pngs)).Msg("written")
	}
	return nil
}

// ---- formatting helpers ------------------------------------------------------

func fmtRate(v float64) string {
	switch {
	case !(v > 0):
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtIPS(v float64) string {
	if !(v > 0) {
		return "—"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func fmtMS(sec float64) string {
	ms := sec * 1e3
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2f", ms)
	}
	return fmt.Sprintf("%.3f", ms)
}

func fmtPct(f float64) string {
	if !(f > 0) {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func fmtMiB(b int64) string {
	if b <= 0 {
		return "—"
	}
	if m := float64(b) / (1 << 20); m < 10 {
		return fmt.Sprintf("%.1f", m)
	}
	return fmt.Sprintf("%.0f", float64(b)/(1<<20))
}

func fmtRatio(r *Ratio) string {
	if r == nil {
		return "—"
	}
	return fmt.Sprintf("**%.2f×** (%.2f–%.2f)", r.Median, r.Low, r.High)
}

func fmtSpread(s *Sample) string {
	if s == nil || len(s.Runs) < 2 {
		return ""
	}
	return fmt.Sprintf(" ±%.0f%%", 50*s.Spread())
}

// cell is a number, or why there is none.
func cell(v string, why string) string {
	if v != "—" && v != "" {
		return v
	}
	if why != "" {
		return "n/a¹"
	}
	return "—"
}

// mdEscape keeps a reason on one table-safe line.
func mdEscape(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", "\\|")
}

// ---- markdown -------------------------------------------------------------------

func writeMarkdown(w io.Writer, r *Report, name string, plotErrs []string) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	// Without PyTorch at all the header says so once; its cells stay empty.
	tcell := func(v, why string) string {
		if !r.Settings.Torch {
			return "—"
		}
		return cell(v, why)
	}
	var foot []string
	why := func(side, msg string) {
		if msg != "" {
			foot = append(foot, side+": "+mdEscape(msg))
		}
	}
	writeHeader(p, r)
	writePeaks(p, r.Peak, r.Settings.Device == "cuda")
	writeOpsTable(p, r, name, tcell, why)
	writeTrainTable(p, r, tcell, why)
	writeKernelProfiles(p, r.Train)
	if r.Scaling != nil {
		writeScaling(p, r, name, tcell, why)
	}
	writeTTA(p, r, name, tcell, why)
	writeNotes(p, r.Notes, foot, plotErrs)
	p("\nRaw figures: [%s.json](%s.json).\n", name, name)
}

// writeHeader is the report's title, its warnings and the table of what
// ran where.
func writeHeader(p func(string, ...any), r *Report) {
	day := r.Date
	if len(day) >= 10 {
		day = day[:10]
	}
	torchName := "PyTorch " + r.Versions.Torch
	title := "Kiln benchmark suite"
	if r.Settings.Torch {
		title = "Kiln against " + torchName
	}
	p("# %s — %s, %s\n\n", title, r.Machine.Name, day)
	if r.Partial {
		p("> **Partial report**: the run stopped or is still running; sections below may be missing.\n\n")
	}
	if r.Settings.Quick {
		p("> **Quick mode** (a smoke test: tiny shapes, short timings, one round). These numbers mean nothing.\n\n")
	}
	p("Made by `kiln bench suite` (`make bench`) in %s.\n\n", time.Duration(r.Seconds*float64(time.Second)).Round(time.Second))
	p("| | |\n|---|---|\n")
	p("| machine | %s, %d cores (%s), %.1f GiB |\n", mdEscape(r.Machine.CPU), r.Machine.Cores, strings.Join(r.Machine.Flags, " "), float64(r.Machine.MemoryBytes)/(1<<30))
	if r.Machine.GPU != "" {
		p("| GPU | %s |\n", mdEscape(r.Machine.GPU))
	}
	p("| system | %s |\n", mdEscape(r.Machine.OS))
	dirty := ""
	if r.Versions.KilnDirty {
		dirty = " (with uncommitted changes)"
	}
	isa := ""
	if r.Settings.KilnISA != "" {
		isa = ", ISA level " + r.Settings.KilnISA
	}
	p("| Kiln | %s%s, %s, %d threads, device %s%s |\n", r.Versions.Kiln, dirty, r.Versions.Go, r.Settings.KilnThreads, r.Settings.Device, isa)
	if r.Settings.Torch {
		extra := []string{"Python " + r.Versions.Python}
		if r.Versions.CUDA != "" {
			extra = append(extra, "CUDA "+r.Versions.CUDA)
		}
		if r.Versions.TorchBLAS != "" {
			extra = append(extra, "BLAS "+mdEscape(r.Versions.TorchBLAS), mdEscape(r.Versions.TorchCPU))
		}
		if r.Versions.OpenBLAS != "" {
			extra = append(extra, mdEscape(r.Versions.OpenBLAS))
		}
		p("| PyTorch | %s (%s) |\n", r.Versions.Torch, strings.Join(extra, ", "))
		p("| method | medians of %d alternating rounds (Kiln, then PyTorch, per workload); spread is the runs' range; warm-up excluded; PyTorch at its best thread setting per workload, probed among %s |\n",
			r.Settings.Rounds, strings.Join(r.Settings.TorchProbe, ", "))
	} else {
		p("| PyTorch | not compared: %s |\n", mdEscape(r.Settings.TorchMissing))
		p("| method | medians of %d rounds; warm-up excluded |\n", r.Settings.Rounds)
	}
	p("\nRatios are Kiln's speed over PyTorch's (above 1: Kiln is faster), the median with the range the runs allow.\n")
	if r.Settings.Device == "cuda" {
		p("\nOn the GPU both sides compute in plain fp32: Kiln's default (TF32 only with `KILN_TF32=1`), and PyTorch with TF32 off in cuBLAS and cuDNN, cuDNN in benchmark mode. ")
		p("The host threads only launch kernels there, so PyTorch runs one thread setting (1 / 1) and the thread scan is left to the CPU report.\n")
	}

}

// writePeaks is the section of the machine's peaks measured in the run.
func writePeaks(p func(string, ...any), pk Peak, onGPU bool) {
	p("\n## Machine peaks, measured in this run\n\n")
	if pk.FMAGFLOPS > 0 {
		p("- Arithmetic ceiling: **%.0f GFLOP/s** fp32 on %d threads (%s).\n", pk.FMAGFLOPS, pk.Threads, pk.FMAKind)
	} else if pk.FMAError != "" {
		p("- Arithmetic ceiling: not measured: %s.\n", pk.FMAError)
	}
	if pk.SGEMMGFLOPS > 0 {
		p("- SGEMM peak: **%.0f GFLOP/s** (%s)", pk.SGEMMGFLOPS, pk.SGEMMFrom)
		if pk.FMAGFLOPS > 0 && !onGPU {
			p(", %.0f%% of the ceiling", 100*pk.SGEMMGFLOPS/pk.FMAGFLOPS)
		}
		if !onGPU {
			p(". Compute-bound ops below are given as a fraction of it")
		}
		p(".\n")
	}
	p("- Memory bandwidth (CPU): **%.1f GB/s**, a parallel copy of %d MiB counted as read + write.", pk.CopyGBPS, pk.CopyBytes>>20)
	if !onGPU {
		p(" Memory-bound ops are given as a fraction of it.")
	}
	p("\n")
	switch {
	case pk.GPUGFLOPS > 0:
		p("- GPU (%s), through PyTorch: fp32 GEMM **%.0f GFLOP/s** (TF32 off), copy **%.0f GB/s** (read + write).", mdEscape(pk.GPU), pk.GPUGFLOPS, pk.GPUGBPS)
		if onGPU {
			p(" The ops below are given as a fraction of these: compute-bound ones of the larger of this GEMM rate and the SGEMM peak above.")
		}
		p("\n")
	case pk.GPUError != "":
		p("- GPU peaks: not measured: %s.\n", mdEscape(pk.GPUError))
	}

}

// writeOpsTable is the op-level table, Kiln beside PyTorch.
func writeOpsTable(p func(string, ...any), r *Report, name string, tcell func(v, why string) string, why func(side, msg string)) {
	if len(r.Ops) == 0 {
		return
	}
	p("\n## Op level\n\n")
	p("Kiln's ops are called directly (`engine.*Forward/*Backward`, on the run's device; on the GPU each timing waits for the queued kernels); PyTorch's are `torch.nn.functional` calls (forward under `no_grad`, backward through `torch.autograd.grad` on a kept graph). ")
	p("GEMM is x·Wᵀ (`engine.LinearForward`, `F.linear`). Ratio > 1: Kiln faster. ")
	p("Rates are effective: a convolution counts the FLOPs of direct convolution (2·N·Cout·OH·OW·Cin·K², as cuDNN's benchmarks do), so a Winograd path, which does fewer, can pass 100%% of the SGEMM peak; an op whose tensors stay in cache can pass the copy bandwidth, measured on %d MiB.\n\n", r.Peak.CopyBytes>>20)
	p("| op | pass | shape | Kiln ms | Kiln rate | of peak | PyTorch ms | PyTorch rate | PyTorch setting | Kiln/PyTorch |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range r.Ops {
		km, tm := "—", "—"
		if o.Kiln != nil {
			km = fmtMS(o.Kiln.Median) + fmtSpread(o.Kiln)
		}
		if o.Torch != nil {
			tm = fmtMS(o.Torch.Median) + fmtSpread(o.Torch)
		}
		p("| %s | %s | %s | %s | %s %s | %s | %s | %s | %s | %s |\n", mdEscape(o.Name), o.Pass, mdEscape(o.Shape),
			cell(km, o.KilnError), fmtRate(o.KilnRate), o.Unit, fmtPct(o.KilnPeak),
			tcell(tm, o.TorchError), fmtRate(o.TorchRate), o.TorchSetting, fmtRatio(o.Ratio))
		if o.KilnError != "" {
			why("Kiln "+o.Name+" "+o.Pass, o.KilnError)
		}
		if o.TorchError != "" && r.Settings.Torch {
			why("PyTorch "+o.Name+" "+o.Pass, o.TorchError)
		}
	}
	if hasFile(r, name+"-ratios.png") {
		p("\n![Kiln/PyTorch ratios](%s-ratios.png)\n", name)
	}
	if hasFile(r, name+"-peak.png") {
		p("\n![Kiln's ops against the machine's peaks](%s-peak.png)\n", name)
	}
}

// writeScaling is the scaling section: batch size, threads and ranks.
func writeScaling(p func(string, ...any), r *Report, name string, tcell func(v, why string) string, why func(side, msg string)) {
	sc := r.Scaling
	p("\n## Scaling\n\n")
	p("One run per point (the table above has the repeated figures). PyTorch at its best setting for each point.\n\n")
	p("Batch size, %s on %s, all cores:\n\n", sc.BatchModel, sc.BatchInput)
	p("| batch | Kiln img/s | Kiln RSS MiB | PyTorch img/s | PyTorch setting | Kiln/PyTorch |\n|---|---|---|---|---|---|\n")
	for _, pt := range sc.Batch {
		p("| %d | %s | %s | %s | %s | %s |\n", pt.Batch, cell(fmtIPS(pt.Kiln), pt.KilnError), fmtMiB(pt.KilnRSSPeakBytes),
			tcell(fmtIPS(pt.Torch), pt.TorchError), pt.TorchSetting, plainRatio(pt.Kiln, pt.Torch))
		why(fmt.Sprintf("Kiln batch %d", pt.Batch), pt.KilnError)
		if r.Settings.Torch {
			why(fmt.Sprintf("PyTorch batch %d", pt.Batch), pt.TorchError)
		}
	}
	if hasFile(r, name+"-scaling-batch.png") {
		p("\n![images/s against batch size](%s-scaling-batch.png)\n", name)
	}
	if sc.ThreadsSkipped != "" {
		p("\nThreads: not measured (%s).\n", sc.ThreadsSkipped)
	} else {
		p("\nThreads (Kiln `--threads t`; PyTorch's best with at most t threads of either kind):\n\n")
		p("| model | input | batch | threads | Kiln img/s | Kiln speed-up | PyTorch img/s | PyTorch setting | Kiln/PyTorch |\n|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, ts := range sc.Threads {
		base := 0.0
		if len(ts.Points) > 0 {
			base = ts.Points[0].Kiln
		}
		for _, pt := range ts.Points {
			speed := "—"
			if base > 0 && pt.Kiln > 0 {
				speed = fmt.Sprintf("%.2f×", pt.Kiln/base)
			}
			p("| %s | %s | %d | %d | %s | %s | %s | %s | %s |\n", ts.Model, ts.Input, ts.Batch, pt.Threads,
				cell(fmtIPS(pt.Kiln), pt.KilnError), speed, tcell(fmtIPS(pt.Torch), pt.TorchError), pt.TorchSetting,
				plainRatio(pt.Kiln, pt.Torch))
			why(fmt.Sprintf("Kiln %s %d threads", ts.Model, pt.Threads), pt.KilnError)
		}
	}
	if hasFile(r, name+"-scaling-threads.png") {
		p("\n![images/s against threads](%s-scaling-threads.png)\n", name)
	}
	writeRanksMarkdown(p, sc, why)
}

// writeTTA is the time-to-accuracy table and its recipes.
func writeTTA(p func(string, ...any), r *Report, name string, tcell func(v, why string) string, why func(side, msg string)) {
	if len(r.TTA) == 0 {
		return
	}
	p("\n## Time to accuracy\n\n")
	p("Wall time of training alone (data loading and the per-epoch test checks excluded) until the test accuracy first reaches the target. ")
	p("Kiln runs the trainer's default recipe for the model and data set (`trainer.DefaultConfigFor`, the `kiln train` defaults) at each task's batch, peak learning rate and epochs (below) through `bench.TimeToAccuracy`; ")
	p("PyTorch runs the same recipe written in torch (same model, optimiser, schedule, batch and epochs; its own initialisation and data order). One run each; ")
	p("a run stops at a cap on training time (%.0f s in this run), with a last test check there.\n\n", r.Settings.TTACapSeconds)
	p("| task | model | target | Kiln | PyTorch | PyTorch setting | Kiln speed-up |\n|---|---|---|---|---|---|---|\n")
	for _, t := range r.TTA {
		k, tt := ttaCell(t.Kiln), ttaCell(t.Torch)
		speed := "—"
		if k, pt := t.Kiln, t.Torch; k != nil && pt != nil {
			switch {
			case k.Reached && pt.Reached:
				speed = fmt.Sprintf("**%.2f×**", pt.Seconds/k.Seconds)
			case k.Reached && pt.Capped: // PyTorch would have needed longer still
				speed = fmt.Sprintf("> %.2f×", pt.Seconds/k.Seconds)
			case pt.Reached && k.Capped:
				speed = fmt.Sprintf("< %.2f×", pt.Seconds/k.Seconds)
			}
		}
		p("| %s | %s | %.1f%% | %s | %s | %s | %s |\n", t.ID, t.Model, 100*t.Target,
			cell(k, t.KilnError), tcell(tt, t.TorchError), t.TorchSetting, speed)
		why("Kiln "+t.ID, t.KilnError)
		if r.Settings.Torch {
			why("PyTorch "+t.ID, t.TorchError)
		}
	}
	p("\nRecipes:\n\n")
	for _, t := range r.TTA {
		if t.Recipe != "" {
			p("- %s (%s on %s", t.ID, t.Model, t.Dataset)
			if len(t.Classes) > 0 {
				p(", classes %v", t.Classes)
			}
			if t.Subset > 0 {
				p(", subset %g", t.Subset)
			}
			p("): %s.\n", t.Recipe)
		}
	}
	for _, t := range r.TTA {
		if hasFile(r, name+"-loss-"+t.ID+".png") {
			p("\n![training loss against wall time, %s](%s-loss-%s.png)\n", t.ID, name, t.ID)
		}
	}
}

// writeNotes lists the run's notes, the reasons figures are missing (foot)
// and the plots that failed.
func writeNotes(p func(string, ...any), notes, foot, plotErrs []string) {
	if len(foot) == 0 && len(notes) == 0 && len(plotErrs) == 0 {
		return
	}
	p("\n## Why some figures are missing, and notes\n\n")
	for _, n := range notes {
		p("- %s\n", mdEscape(n))
	}
	for i, f := range foot {
		if i == 0 {
			p("\n¹ n/a — the benchmark could not run:\n\n")
		}
		p("- %s\n", f)
	}
	for _, e := range plotErrs {
		p("- plot: %s\n", mdEscape(e))
	}
}

func plainRatio(k, t float64) string {
	if k > 0 && t > 0 {
		return fmt.Sprintf("%.2f×", k/t)
	}
	return "—"
}

func ttaCell(t *TTARun) string {
	if t == nil {
		return "—"
	}
	acc := fmt.Sprintf("%.2f%%", 100*t.BestAccuracy)
	if len(t.PerEpoch) > 0 {
		acc = fmt.Sprintf("%.2f%%", 100*t.PerEpoch[len(t.PerEpoch)-1].TestAccuracy)
	}
	if t.Reached {
		return fmt.Sprintf("%.1f s, %d epoch%s (%s)", t.Seconds, t.Epochs, plural(t.Epochs), acc)
	}
	if t.Capped {
		return fmt.Sprintf("not reached within the %.0f s cap (%d epoch%s begun, best %.2f%%)", t.Seconds, t.Epochs, plural(t.Epochs), 100*t.BestAccuracy)
	}
	return fmt.Sprintf("not reached in %d epoch%s, %.1f s (best %.2f%%)", t.Epochs, plural(t.Epochs), t.Seconds, 100*t.BestAccuracy)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func hasFile(r *Report, name string) bool {
	for _, f := range r.Files {
		if f == name {
			return true
		}
	}
	return false
}

// ---- terminal -------------------------------------------------------------------

// writeTerminal prints the run's tables, plain text.
func writeTerminal(w io.Writer, r *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("\nKiln benchmark suite: %s, %d cores, Kiln %s", r.Machine.CPU, r.Machine.Cores, r.Versions.Kiln)
	if r.Settings.Torch {
		p(", PyTorch %s\n", r.Versions.Torch)
	} else {
		p("\nPyTorch not compared: %s\n", r.Settings.TorchMissing)
	}
	p("peak: FMA %s GFLOP/s, SGEMM %s GFLOP/s, copy %s GB/s\n", fmtRate(r.Peak.FMAGFLOPS), fmtRate(r.Peak.SGEMMGFLOPS), fmtRate(r.Peak.CopyGBPS))
	writeOpsTerminal(p, r.Ops)
	writeTrainTerminal(p, r.Train)
	if sc := r.Scaling; sc != nil && len(sc.Batch) > 0 {
		p("\nbatch (%s %s)\tKiln img/s\tPyTorch img/s\t\n", sc.BatchModel, sc.BatchInput)
		for _, pt := range sc.Batch {
			p("%d\t%s\t%s\t\n", pt.Batch, fmtIPS(pt.Kiln), fmtIPS(pt.Torch))
		}
		for _, ts := range sc.Threads {
			for _, pt := range ts.Points {
				p("%s threads %d\t%s\t%s\t\n", ts.Model, pt.Threads, fmtIPS(pt.Kiln), fmtIPS(pt.Torch))
			}
		}
		writeRanksTerminal(p, sc)
	}
	if len(r.TTA) > 0 {
		p("\ntime to accuracy\ttarget\tKiln\tPyTorch\t\n")
		for _, t := range r.TTA {
			k, tt := ttaCell(t.Kiln), ttaCell(t.Torch)
			if t.Kiln == nil && t.KilnError != "" {
				k = "n/a: " + termShort(t.KilnError)
			}
			if t.Torch == nil && t.TorchError != "" && r.Settings.Torch {
				tt = "n/a: " + termShort(t.TorchError)
			}
			p("%s\t%.1f%%\t%s\t%s\t\n", t.ID, 100*t.Target, k, tt)
		}
	}
}

// termRatio is a ratio's median for the terminal, "-" where none was taken.
func termRatio(x *Ratio) string {
	if x == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fx", x.Median)
}

// termShort cuts an error to fit a table cell.
func termShort(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// termCells are a terminal row's Kiln and PyTorch cells: each median as
// format writes it, "n/a: why" for a Kiln side that failed, "-" for none.
func termCells(kiln, torch *Sample, kilnErr string, format func(float64) string) (k, t string) {
	k, t = "-", "-"
	if kiln != nil {
		k = format(kiln.Median)
	} else if kilnErr != "" {
		k = "n/a: " + termShort(kilnErr)
	}
	if torch != nil {
		t = format(torch.Median)
	}
	return k, t
}

// writeOpsTerminal prints the op table.
func writeOpsTerminal(p func(string, ...any), ops []OpResult) {
	if len(ops) == 0 {
		return
	}
	p("\nop\tpass\tKiln ms\trate\tof peak\tPyTorch ms\tKiln/PyTorch\t\n")
	for _, o := range ops {
		km, tm := termCells(o.Kiln, o.Torch, o.KilnError, fmtMS)
		p("%s\t%s\t%s\t%s %s\t%s\t%s\t%s\t\n", o.Name, o.Pass, km, fmtRate(o.KilnRate), o.Unit, fmtPct(o.KilnPeak), tm, termRatio(o.Ratio))
	}
}

// writeTrainTerminal prints the training table.
func writeTrainTerminal(p func(string, ...any), train []TrainResult) {
	if len(train) == 0 {
		return
	}
	p("\nmodel\tinput\tbatch\tprecision\tparams\tKiln img/s\tPyTorch img/s\tKiln/PyTorch\tKiln RSS MiB\t\n")
	for _, t := range train {
		k, tt := termCells(t.Kiln, t.Torch, t.KilnError, fmtIPS)
		params := "-"
		if t.ParamsKiln > 0 {
			params = fmt.Sprint(t.ParamsKiln)
		}
		p("%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.Model, t.Input, t.Batch, precisionCell(t.Precision), params, k, tt,
			termRatio(t.Ratio), fmtMiB(t.KilnRSSPeakBytes))
	}
}

// precisionCell is a training row's precision; reports from before the
// column were all fp32.
func precisionCell(p string) string {
	if p == "" {
		return "fp32"
	}
	return p
}

// kernelProfileTop is how many kernels of each step the report lists.
const kernelProfileTop = 6

// writeKernelProfiles writes the GPU runs' kernel profiles (kiln bench
// --profile in the last round): per case, what a step launches and waits
// for, and the kernels that take most of it.
func writeKernelProfiles(p func(string, ...any), train []TrainResult) {
	head := false
	for _, t := range train {
		kp := t.KilnProfile
		if kp == nil {
			continue
		}
		if !head {
			p("\n## Kiln's kernels in a training step (GPU)\n\n")
			p("`kiln bench --profile`: %d steps after the timed ones, each launch between two CUDA events; ", kp.Steps)
			p("host gaps are the host's time between a launch's return and the next launch. The events cost a little, ")
			p("so these steps are a bit slower than the timed ones. The %d kernels with the most device time:\n", kernelProfileTop)
			head = true
		}
		p("\n%s %s batch %d %s: %.3f ms a step, kernels %.3f ms (%.0f%%), host gaps %.3f ms; "+
			"%.0f launches, %.0f copies back, %.0f uploads, %.0f memsets a step\n\n",
			t.Model, t.Input, t.Batch, precisionCell(t.Precision), kp.StepMillis, kp.KernelMillis,
			100*kp.KernelMillis/kp.StepMillis, kp.HostGapMillis, kp.LaunchesPerStep, kp.CopiesPerStep,
			kp.UploadsPerStep, kp.MemsetsPerStep)
		p("| kernel | launches a step | ms a step | mean µs | of the step |\n|---|---|---|---|---|\n")
		for _, k := range kp.Kernels[:min(len(kp.Kernels), kernelProfileTop)] {
			p("| `%s` | %.1f | %.3f | %.1f | %.1f%% |\n", k.Name, k.LaunchesPerStep, k.Millis, k.MeanMicros, 100*k.Share)
		}
	}
}

// writeTrainTable is the report's training table: a row per model, input
// and precision, Kiln beside PyTorch, with the GPU's columns on a GPU run.
func writeTrainTable(p func(string, ...any), r *Report, tcell func(v, why string) string, why func(side, msg string)) {
	if len(r.Train) == 0 {
		return
	}
	p("\n## Training throughput and memory\n\n")
	p("Full training steps (forward, cross-entropy, backward, SGD with momentum 0.9) on a fixed synthetic batch; images/s. ")
	p("Each run is a fresh process (`kiln bench --json`; one PyTorch process), so the peak resident memory (VmHWM) is that model's alone; ")
	p("PyTorch's includes the torch library itself. Go heap is the Go runtime's heap in use at the end. ")
	p("Precision: what the products compute in, Kiln's `--precision` against PyTorch's autocast for bf16 (fp32 eager otherwise).")
	if slices.ContainsFunc(r.Train, func(t TrainResult) bool { return t.KilnMicroBatch > 0 }) {
		p(" A Kiln figure marked (mb N) ran each step's forward and backward N samples at a time, Kiln's default for that model and batch " +
			"(`--micro-batch`; one update per batch), PyTorch the whole batch.")
	}
	onGPU := r.Settings.Device == "cuda"
	gpuHead, gpuRule := "", ""
	if onGPU {
		p(" GPU MiB is device memory at its peak as each allocator counts it (Kiln's caching allocator, PyTorch's `max_memory_allocated`; cached free blocks not counted).")
		p(" Kiln graph: whether Kiln's timed steps ran as one CUDA graph launch each (`--no-cuda-graph` turns it off).")
		p(" PyTorch graph: PyTorch's same step captured whole with `torch.cuda.graph` and replayed, PyTorch at its best; Kiln/PyTorch graph is Kiln against that.")
		gpuHead, gpuRule = " Kiln GPU MiB | PyTorch GPU MiB | Kiln graph | PyTorch graph img/s | Kiln/PyTorch graph |", "---|---|---|---|---|"
	}
	p("\n\n| model | input | batch | precision | params Kiln / PyTorch | Kiln img/s | PyTorch img/s | PyTorch setting | Kiln/PyTorch | Kiln RSS MiB | Go heap MiB | PyTorch RSS MiB |%s\n", gpuHead)
	p("|---|---|---|---|---|---|---|---|---|---|---|---|%s\n", gpuRule)
	for _, t := range r.Train {
		k, tt := ipsCell(t.Kiln), ipsCell(t.Torch)
		if t.KilnMicroBatch > 0 && t.Kiln != nil {
			k += fmt.Sprintf(" (mb %d)", t.KilnMicroBatch)
		}
		params := fmt.Sprintf("%d / %d", t.ParamsKiln, t.ParamsTorch)
		if t.ParamsTorch == 0 {
			params = fmt.Sprintf("%d / —", t.ParamsKiln)
		}
		if t.Error != "" {
			params += " ⚠"
			why(t.Model+" "+t.Input, t.Error)
		}
		gpuCells := ""
		if onGPU {
			gpuCells = fmt.Sprintf(" %s | %s | %s | %s | %s |", fmtMiB(t.KilnGPUPeakBytes), fmtMiB(t.TorchGPUPeakBytes),
				map[bool]string{true: "yes", false: "no"}[t.KilnCUDAGraph], tcell(ipsCell(t.TorchGraph), t.TorchGraphError), fmtRatio(t.RatioGraph))
		}
		p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |%s\n", t.Model, t.Input, t.Batch, precisionCell(t.Precision), params,
			cell(k, t.KilnError), tcell(tt, t.TorchError), t.TorchSetting, fmtRatio(t.Ratio),
			fmtMiB(t.KilnRSSPeakBytes), fmtMiB(t.KilnGoHeapBytes), fmtMiB(t.TorchRSSPeakBytes), gpuCells)
		why("Kiln "+t.Model+" "+t.Input, t.KilnError)
		if r.Settings.Torch {
			why("PyTorch "+t.Model+" "+t.Input, t.TorchError)
			if onGPU {
				why("PyTorch graph "+t.Model+" "+t.Input, t.TorchGraphError)
			}
		}
	}
}

// ipsCell is a sample's median images/s and spread, or "—" for none.
func ipsCell(s *Sample) string {
	if s == nil {
		return "—"
	}
	return fmtIPS(s.Median) + fmtSpread(s)
}
