package bench

import "fmt"

// point is the measurement at n ranks, or an empty one.
func (rs RankScaling) point(n int) RankPoint {
	for _, p := range rs.Points {
		if p.Ranks == n {
			return p
		}
	}
	return RankPoint{Ranks: n}
}

// writeRanksMarkdown is the scaling section's table of data-parallel ranks;
// why collects the footnotes of the runs that failed.
func writeRanksMarkdown(p func(format string, a ...any), sc *Scaling, why func(side, msg string)) {
	if sc.RanksSkipped != "" {
		p("\nRanks: not measured (%s).\n", mdEscape(sc.RanksSkipped))
		return
	}
	if len(sc.Ranks) == 0 {
		return
	}
	p("\nRanks (data parallel, `mpirun -np R kiln bench --threads 1`: the same global batch shared by R ranks of one thread each on this machine, ")
	p("the gradients all-reduced over MPI every step, one run per point; comm share is the all-reduce's share of a 2-rank step, the mean over the ranks, ")
	p("waiting for the slower rank included):\n\n")
	p("| model | input | global batch | 1 rank img/s | 2 ranks img/s | speed-up | comm share | all-reduce a step |\n|---|---|---|---|---|---|---|---|\n")
	for _, rs := range sc.Ranks {
		one, two := rs.point(1), rs.point(2)
		p("| %s | %s | %d | %s | %s | %s | %s | %s |\n", rs.Model, rs.Input, rs.Batch,
			cell(fmtIPS(one.Kiln), one.KilnError), cell(fmtIPS(two.Kiln), two.KilnError), plainRatio(two.Kiln, one.Kiln),
			fmtPct(two.CommShare), fmtBytes(two.AllreduceBytesPerStep))
		for _, pt := range rs.Points {
			why(fmt.Sprintf("Kiln %s %d ranks", rs.Model, pt.Ranks), pt.KilnError)
		}
	}
}

// writeRanksTerminal is the same table for the terminal (tab-separated for
// a tabwriter).
func writeRanksTerminal(p func(format string, a ...any), sc *Scaling) {
	for _, rs := range sc.Ranks {
		one, two := rs.point(1), rs.point(2)
		p("%s 1 rank / 2 ranks\t%s\t%s\tcomm %s\t\n", rs.Model, fmtIPS(one.Kiln), fmtIPS(two.Kiln), fmtPct(two.CommShare))
	}
}

// fmtBytes is a size in KiB or MiB.
func fmtBytes(b int64) string {
	switch {
	case b <= 0:
		return "—"
	case b < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
