package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// sgemmBenchShape is one benchmarked product; the same list drives the
// OpenBLAS comparison (go test -tags openblas -bench Sgemm).
type sgemmBenchShape struct {
	name           string
	transA, transB bool
	m, n, k        int
}

func (s sgemmBenchShape) String() string {
	t := []byte("NN")
	if s.transA {
		t[0] = 'T'
	}
	if s.transB {
		t[1] = 'T'
	}
	return fmt.Sprintf("%s/%s_%dx%dx%d", s.name, t, s.m, s.n, s.k)
}

var sgemmBenchShapes = func() []sgemmBenchShape {
	var s []sgemmBenchShape
	for _, n := range []int{64, 256, 512, 1024, 2048} {
		s = append(s, sgemmBenchShape{name: "square", m: n, n: n, k: n})
	}
	// x·Wᵀ, as a linear layer and the benchmark suite's GEMM rows run it.
	for _, n := range []int{256, 1024, 2048} {
		s = append(s, sgemmBenchShape{name: "square", transB: true, m: n, n: n, k: n})
	}
	// LeNet-5 training step, batch 64 (im2col convolutions per image and
	// batched, linear layers).
	return append(s,
		sgemmBenchShape{name: "conv1_fwd", m: 6, n: 784, k: 25},
		sgemmBenchShape{name: "conv1_fwd_batch", m: 6, n: 784 * 64, k: 25},
		sgemmBenchShape{name: "conv1_dw", transB: true, m: 6, n: 25, k: 784},
		sgemmBenchShape{name: "conv1_dw_batch", transB: true, m: 6, n: 25, k: 784 * 64},
		sgemmBenchShape{name: "conv2_fwd", m: 16, n: 100, k: 150},
		sgemmBenchShape{name: "conv2_fwd_batch", m: 16, n: 100 * 64, k: 150},
		sgemmBenchShape{name: "conv2_dw", transB: true, m: 16, n: 150, k: 100},
		sgemmBenchShape{name: "conv2_dcol", transA: true, m: 150, n: 100, k: 16},
		sgemmBenchShape{name: "fc1_fwd", transB: true, m: 64, n: 120, k: 400},
		sgemmBenchShape{name: "fc1_dx", m: 64, n: 400, k: 120},
		sgemmBenchShape{name: "fc1_dw", transA: true, m: 120, n: 400, k: 64},
		sgemmBenchShape{name: "fc2_fwd", transB: true, m: 64, n: 84, k: 120},
		sgemmBenchShape{name: "fc2_dx", m: 64, n: 120, k: 84},
		sgemmBenchShape{name: "fc2_dw", transA: true, m: 84, n: 120, k: 64},
		// The zoo's mlp on 32×32×3 at batch 128 (3072→256→128→10).
		sgemmBenchShape{name: "mlp_fc1_fwd", transB: true, m: 128, n: 256, k: 3072},
		sgemmBenchShape{name: "mlp_fc1_dw", transA: true, m: 256, n: 3072, k: 128},
		sgemmBenchShape{name: "mlp_fc2_fwd", transB: true, m: 128, n: 128, k: 256},
		sgemmBenchShape{name: "mlp_fc2_dx", m: 128, n: 256, k: 128},
		sgemmBenchShape{name: "mlp_fc2_dw", transA: true, m: 128, n: 256, k: 128},
		// The zoo's gmlp on 32×32×3 at batch 128: 64 tokens of 128, proj_in
		// 128→256 and proj_out 128→128 over all 8192 tokens.
		sgemmBenchShape{name: "gmlp_in_fwd", transB: true, m: 8192, n: 256, k: 128},
		sgemmBenchShape{name: "gmlp_in_dx", m: 8192, n: 128, k: 256},
		sgemmBenchShape{name: "gmlp_in_dw", transA: true, m: 256, n: 128, k: 8192},
		sgemmBenchShape{name: "gmlp_out_fwd", transB: true, m: 8192, n: 128, k: 128},
		sgemmBenchShape{name: "gmlp_out_dx", m: 8192, n: 128, k: 128},
		sgemmBenchShape{name: "gmlp_out_dw", transA: true, m: 128, n: 128, k: 8192},
		// Its spatial gating unit, per sample: 64 tokens mixed by a 64×64
		// matrix over 128 channels.
		sgemmBenchShape{name: "sgu_fwd", m: 64, n: 128, k: 64},
		sgemmBenchShape{name: "sgu_dv", transA: true, m: 64, n: 128, k: 64},
		sgemmBenchShape{name: "sgu_dw", transB: true, m: 64, n: 64, k: 128},
	)
}()

// benchSgemmWith times f on each shape and reports GFLOP/s. The thread count
// follows GOMAXPROCS, so -cpu 1,2 compares one and two threads.
func benchSgemmWith(b *testing.B, f func(s sgemmBenchShape, a, bm, c []float32, lda, ldb int)) {
	old := Threads()
	defer SetThreads(old)
	for _, s := range sgemmBenchShapes {
		b.Run(s.String(), func(b *testing.B) {
			BenchThreads()
			rng := rand.New(rand.NewPCG(1, 2))
			rnd := func(n int) []float32 {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(rng.Float64()*2 - 1)
				}
				return x
			}
			a, bm, c := rnd(s.m*s.k), rnd(s.k*s.n), rnd(s.m*s.n)
			lda, ldb := s.k, s.n
			if s.transA {
				lda = s.m
			}
			if s.transB {
				ldb = s.k
			}
			f(s, a, bm, c, lda, ldb)
			b.ResetTimer()
			for b.Loop() {
				f(s, a, bm, c, lda, ldb)
			}
			b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkSgemm(b *testing.B) {
	benchSgemmWith(b, func(s sgemmBenchShape, a, bm, c []float32, lda, ldb int) {
		sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
	})
}

// The bf16 product on the same shapes (AVX512_BF16 CPUs only): compare with
// BenchmarkSgemm in the same run.
func BenchmarkSgemmBF16(b *testing.B) {
	if !CPUHasBF16() {
		b.Skip("skipped: this CPU has no AVX512_BF16")
	}
	benchSgemmWith(b, func(s sgemmBenchShape, a, bm, c []float32, lda, ldb int) {
		sgemmBF16(false, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
	})
}
