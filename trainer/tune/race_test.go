//go:build race

package tune

// The race detector slows MNIST's decompression about twentyfold (15 s), so
// under it the real-trial tests train on a generated CSV data set of the same
// sizes instead; the kiln binary's tests in cmd/kiln cover MNIST.
const raceEnabled = true
