package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := findRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The generated files on disk are what the generator writes now: a kernel
// added, renamed or removed in kernels/*.cu without `go generate ./engine`
// fails here (and in CI), not at the first launch.
func TestGeneratedFilesAreFresh(t *testing.T) {
	r := root(t)
	files, err := generate(r)
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(r, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale or missing: run go generate ./engine", rel)
		}
	}
	gone, err := orphans(r, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range gone {
		t.Errorf("%s registers the kernels of a kernel file that is gone: run go generate ./engine", rel)
	}
}

// Every kernels/X.cu has its engine/X_cuda.go and every engine/X_cuda.go
// its kernels/X.cu.
func TestFamiliesArePaired(t *testing.T) {
	r := root(t)
	fams, err := scan(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPairs(r, fams); err != nil {
		t.Error(err)
	}
}

func TestKernelNames(t *testing.T) {
	src := `#include "common.cuh"
// KILN_KERNEL commented_out_f32(int n) {}
/* KILN_KERNEL also_commented_f32(int n) {} */
#define KILN_TWICE_KERNEL(name, T)                 \
	KILN_KERNEL __launch_bounds__(256, 2) name(T x) { \
	}
static __device__ float helper(float x) { return x; }
KILN_KERNEL plain_f32(float* out, long long n) {
	KILN_FOR(i, n) out[i] = helper(out[i]);
}
KILN_KERNEL __launch_bounds__(256, 1)
    bounded_f32(float* out) {}
KILN_KERNEL
split_f32(float* out) {}
KILN_TWICE_KERNEL(macro_64x64_f32, float)
KILN_TWICE_KERNEL( macro_128x128_f32 , float)
`
	want := []string{"plain_f32", "bounded_f32", "split_f32", "macro_64x64_f32", "macro_128x128_f32"}
	if got := kernelNames(src); !reflect.DeepEqual(got, want) {
		t.Errorf("kernelNames = %v, want %v", got, want)
	}
}

// The scan finds the kernels the macros of gemm.cu and conv.cu define, so
// the fat binary and the declarations cannot drift apart there.
func TestScanReadsMacroKernels(t *testing.T) {
	fams, err := scan(root(t))
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]bool{}
	for _, f := range fams {
		for _, k := range f.kernels {
			all[k] = true
		}
	}
	for _, k := range []string{"gemm_tt_128x128_tf32", "conv2d_weight_grad_64x64_f32", "conv2d_bias_grad_f32"} {
		if !all[k] {
			t.Errorf("scan did not find %s", k)
		}
	}
	for k := range all {
		if strings.ContainsAny(k, " (") {
			t.Errorf("odd kernel name %q", k)
		}
	}
}
