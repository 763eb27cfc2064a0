package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The GPU path of an op has one shape (DESIGN.md, "How to add an op"): the
// entry file engine/X.go checks shapes and says `if dev == CUDA { return
// xCUDA(…) }`; the launcher in engine/X_cuda.go launches kern.<symbol> and
// wraps its work in runCUDA, the KILN_CUDA_CHECK rerun. An entry file that
// wraps runCUDA itself or launches a kernel splits a family's GPU side over
// two files again, so it fails here.
func TestEntryFilesLeaveTheGPUToTheirLaunchers(t *testing.T) {
	r := root(t)
	paths, err := filepath.Glob(filepath.Join(r, "engine", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	// gpu.go defines runCUDA and the shared launch shape; kernels_gen.go
	// declares the kernels.
	shared := map[string]bool{"gpu.go": true, filepath.Base(goOut): true}
	fset := token.NewFileSet()
	entries := 0
	for _, p := range paths {
		base := filepath.Base(p)
		if strings.HasSuffix(base, "_cuda.go") || strings.HasSuffix(base, "_test.go") || shared[base] {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		entries++
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "runCUDA" || id.Name == "launchElt") {
					t.Errorf("%s: engine/%s calls %s: the GPU side goes in its launcher in engine/*_cuda.go",
						fset.Position(n.Pos()), base, id.Name)
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && (x.Name == "kern" || (x.Name == "cuda" && n.Sel.Name == "Launch")) {
					t.Errorf("%s: engine/%s uses %s.%s: kernels are launched from engine/*_cuda.go",
						fset.Position(n.Pos()), base, x.Name, n.Sel.Name)
				}
			}
			return true
		})
	}
	if entries == 0 {
		t.Fatal("no entry file found in engine/")
	}
}
