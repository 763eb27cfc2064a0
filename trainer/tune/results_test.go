package tune

import (
	"slices"
	"strings"
	"testing"
)

// TestRankedBreaksAccuracyTiesByLoss: trials that all reach val_acc 1 rank
// by val_loss; a loss metric, and trials without the loss, keep their order.
func TestRankedBreaksAccuracyTiesByLoss(t *testing.T) {
	trial := func(id int, acc, loss float64) *Trial {
		return &Trial{ID: id, Status: Done, Metric: &acc, Metrics: map[string]float64{"val_acc": acc, "val_loss": loss}}
	}
	noLoss := 1.0
	st := &State{Settings: Settings{Metric: "val_acc"}, Trials: []*Trial{
		trial(1, 1, 0.24), trial(2, 0.9, 0.01), trial(3, 1, 1e-7), {ID: 4, Status: Done, Metric: &noLoss}, trial(5, 1, 0.1),
	}}
	ids := func() []int {
		var out []int
		for _, tr := range st.Ranked() {
			out = append(out, tr.ID)
		}
		return out
	}
	if got, want := ids(), []int{3, 5, 1, 4, 2}; !slices.Equal(got, want) {
		t.Errorf("val_acc ranking %v, want %v (ties by val_loss; no loss: after them)", got, want)
	}
	if best := st.Best(); best == nil || best.ID != 3 {
		t.Errorf("best %+v, want trial 3", best)
	}
	var table strings.Builder
	st.Space = &Space{}
	if err := st.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(table.String(), "\n")
	if !strings.Contains(lines[0], "val_acc  val_loss") || !strings.Contains(lines[1], "1        1e-07") || !strings.Contains(lines[4], "1        -") {
		t.Errorf("the table does not show the loss that breaks the ties:\n%s", table.String())
	}
	for _, tc := range []struct{ metric, want string }{{"val_acc", "val_loss"}, {"test_acc", "test_loss"}, {"test_top5", "test_loss"}, {"val_loss", ""}, {"val_rmse", ""}} {
		if got := tieLoss(tc.metric); got != tc.want {
			t.Errorf("tieLoss(%s) = %q, want %q", tc.metric, got, tc.want)
		}
	}
}
