package trainer

import (
	"strings"
	"testing"
)

// A thousand classes' confusion matrix is written in one pass: built by
// string concatenation it took minutes past the test pass, and the run
// could not be stopped meanwhile.
func TestFormatConfusionOfAThousandClasses(t *testing.T) {
	const k = 1000
	m := make([][]int, k)
	for i := range m {
		m[i] = make([]int, k)
		m[i][i] = i
	}
	s := formatConfusion(m, []string{"a long class name"})
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != k || len(lines[0]) != 12+6*k || !strings.HasPrefix(lines[0], "a long class") ||
		!strings.HasSuffix(lines[k-1], "   999") {
		t.Fatalf("%d lines, the first %d long: %.40q", len(lines), len(lines[0]), lines[0])
	}
}
