package safetensors_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
)

func f32(t *testing.T, data []float32, shape ...int) *engine.Tensor {
	t.Helper()
	x, err := engine.FromFloat32(data, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func f64(t *testing.T, data []float64, shape ...int) *engine.Tensor {
	t.Helper()
	x, err := engine.FromFloat64(data, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// file builds safetensors bytes from a raw header and data section.
func file(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func sameTensor(t *testing.T, name string, got, want *engine.Tensor) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: missing", name)
	}
	if got.DType() != want.DType() || !got.SameShape(want.Shape()...) {
		t.Fatalf("%s: got %v, want %v", name, got, want)
	}
	for i := 0; i < want.Len(); i++ {
		g, w := got.At(i), want.At(i)
		if math.Float64bits(g) != math.Float64bits(w) && !(g != g && w != w) {
			t.Fatalf("%s[%d] = %v, want %v", name, i, g, w)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	tensors := map[string]*engine.Tensor{
		"b.weight": f32(t, []float32{1, -2.5, float32(math.Inf(1)), 3e-41, -0}, 5),
		"a.bias":   f64(t, []float64{math.Pi, -1e300, 5e-324, 0, 1, 2}, 2, 3),
		"scalar":   f64(t, []float64{42}),
		"empty":    engine.New(engine.Float32, 0, 4),
		"nan":      f32(t, []float32{float32(math.NaN())}, 1, 1, 1),
	}
	meta := map[string]string{"op": "conv2d", "stride": "2", "ünïcode \"quoted\"": "ok\n"}
	b, err := safetensors.Encode(tensors, meta)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(b); (8+n)%8 != 0 {
		t.Fatalf("data starts at byte %d, not 8-byte aligned", 8+n)
	}
	got, gotMeta, err := safetensors.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(tensors) {
		t.Fatalf("read %d tensors, want %d", len(got), len(tensors))
	}
	for name, want := range tensors {
		sameTensor(t, name, got[name], want)
	}
	if len(gotMeta) != len(meta) {
		t.Fatalf("metadata %v, want %v", gotMeta, meta)
	}
	for k, v := range meta {
		if gotMeta[k] != v {
			t.Fatalf("metadata[%q] = %q, want %q", k, gotMeta[k], v)
		}
	}
	// Same input, same bytes.
	b2, err := safetensors.Encode(tensors, meta)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatal("two encodings of the same tensors differ")
	}
}

// The exact bytes of a small file: metadata first, tensors sorted by name,
// header padded with spaces to 8 bytes.
func TestWriteExactBytes(t *testing.T) {
	tensors := map[string]*engine.Tensor{
		"w": f32(t, []float32{1, 2}, 2),
		"b": f64(t, []float64{-1}, 1),
	}
	got, err := safetensors.Encode(tensors, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"k":"v"},` +
		`"b":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},` +
		`"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	var data []byte
	data = binary.LittleEndian.AppendUint64(data, math.Float64bits(-1))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(1))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(2))
	if want := file(header, data); !bytes.Equal(got, want) {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	// No metadata: no __metadata__ key at all.
	got, err = safetensors.Encode(map[string]*engine.Tensor{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := file("{}      ", nil); !bytes.Equal(got, want) {
		t.Fatalf("empty file: got %q, want %q", got, want)
	}
}

func TestReadHalfTypes(t *testing.T) {
	var data []byte
	for _, h := range []uint16{0x3c00, 0xc000, 0x0001, 0x7c00, 0x7bff, 0x8000, 0x0400, 0x3555} {
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	for _, h := range []uint16{0x3f80, 0xc0a0, 0xff80} {
		data = binary.LittleEndian.AppendUint16(data, h)
	}
	data = append(data, 0, 0) // pad to the declared layout below
	header := `{"h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},` +
		`"bf":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},` +
		`"u8":{"dtype":"U8","shape":[0],"data_offsets":[22,22]},` +
		`"pad":{"dtype":"I16","shape":[1],"data_offsets":[22,24]}}`
	_, _, err := safetensors.Decode(file(header, data))
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("I16 tensor: got %v, want an unsupported-dtype error", err)
	}
	header = `{"h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},` +
		`"bf":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}`
	got, meta, err := safetensors.Decode(file(header, data))
	if err != nil {
		t.Fatal(err)
	}
	if meta != nil {
		t.Fatalf("metadata %v from a file without any", meta)
	}
	sameTensor(t, "h", got["h"], f32(t, []float32{1, -2, 0x1p-24, float32(math.Inf(1)), 65504,
		float32(math.Copysign(0, -1)), 0x1p-14, 0.333251953125}, 2, 4))
	sameTensor(t, "bf", got["bf"], f32(t, []float32{1, -5, float32(math.Inf(-1)), 0}, 4))
	if h := got["h"].Float32()[5]; !math.Signbit(float64(h)) {
		t.Fatal("F16 -0 lost its sign")
	}
}

// PyTorch's batch norm writes its step counter as an I64 scalar; Read leaves
// it out, so a PyTorch state_dict with batch norm loads. Another I64 is
// still refused.
func TestReadLeavesOutNumBatchesTracked(t *testing.T) {
	data := binary.LittleEndian.AppendUint64(nil, 7)
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(1.5))
	data = append(data, 0, 0, 0, 0)
	header := `{"1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]},` +
		`"1.weight":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`
	got, _, err := safetensors.Decode(file(header, data[:12]))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["1.num_batches_tracked"]; ok || len(got) != 1 {
		t.Fatalf("got %v, want 1.weight alone", got)
	}
	sameTensor(t, "1.weight", got["1.weight"], f32(t, []float32{1.5}, 1))
	header = `{"1.steps":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}`
	if _, _, err := safetensors.Decode(file(header, data[:8])); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("another I64 tensor: %v, want an unsupported-dtype error", err)
	}
}

func TestCorruptInput(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	data8 := make([]byte, 8)
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated: 0 bytes"},
		{"short length", []byte{1, 0, 0}, "truncated: 3 bytes"},
		{"length past end", file(ok, data8)[:20], "exceeds the 12 bytes after it"},
		{"huge length", binary.LittleEndian.AppendUint64(nil, 1<<62), "exceeds the 100000000-byte limit"},
		{"not an object", file(`["a"]`, nil), "does not start with '{'"},
		{"bad json", file(`{"a":{"dtype":"F32",}`, nil), "bad header"},
		{"unclosed json", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`, data8), "bad header JSON"},
		{"trailing json", file(ok+`{}`, data8), "trailing data"},
		{"bad utf8", file("{\"\xff\":1}", nil), "UTF-8"},
		{"duplicate", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), `"a": appears twice`},
		{"no dtype", file(`{"a":{"shape":[2],"data_offsets":[0,8]}}`, data8), "no dtype"},
		{"no shape", file(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, data8), "no shape"},
		{"no offsets", file(`{"a":{"dtype":"F32","shape":[2]}}`, data8), "no data_offsets"},
		{"three offsets", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}`, data8), "has 3 values"},
		{"unknown dtype", file(`{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, data8), `unknown dtype "F33"`},
		{"negative dim", file(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, data8), "not a non-negative integer"},
		{"fractional dim", file(`{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}`, data8), "not a non-negative integer"},
		{"huge dim", file(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}`, data8), "out of range"},
		{"overflowing shape", file(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, data8), "needs 7.38e+19 bytes"},
		{"shape mismatch", file(`{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}`, data8), "shape [2] of F64 needs 16 bytes but data_offsets [0, 8] hold 8"},
		{"end before begin", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, data8), "end before begin"},
		{"past end", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, data8[:6]), "run past the 6-byte data section"},
		{"gap", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), "leave bytes 0..4 unused"},
		{"overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data8), `overlap tensor "a"`},
		{"trailing bytes", file(ok, make([]byte, 12)), "tensors cover 8 bytes of data but the file holds 12"},
		{"bad metadata", file(`{"__metadata__":{"k":1}}`, nil), "__metadata__ must map strings to strings"},
		{"unsupported dtype", file(`{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, data8), `tensor "a": dtype I64 is not supported`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := safetensors.Decode(c.in)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, safetensors.ErrFormat) {
				t.Fatalf("%v does not wrap ErrFormat", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, want it to mention %q", err, c.want)
			}
		})
	}
	// Every prefix of a valid file is refused, never a panic.
	b, err := safetensors.Encode(map[string]*engine.Tensor{"x": f64(t, []float64{1, 2, 3}, 3)}, map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		if _, _, err := safetensors.Decode(b[:n]); err == nil {
			t.Fatalf("prefix of %d of %d bytes accepted", n, len(b))
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	for name, ts := range map[string]map[string]*engine.Tensor{
		"nil tensor":    {"a": nil},
		"reserved name": {"__metadata__": engine.New(engine.Float32, 1)},
		"bad utf8 name": {"\xff": engine.New(engine.Float32, 1)},
	} {
		if err := safetensors.Write(&bytes.Buffer{}, ts, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	ts := map[string]*engine.Tensor{"x": f32(t, []float32{1, 2, 3}, 3)}
	if err := safetensors.WriteFile(path, ts, map[string]string{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	// Overwrite, then check the second version is what is there.
	ts["x"] = f32(t, []float32{4, 5}, 2)
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	got, meta, err := safetensors.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, "x", got["x"], ts["x"])
	if meta != nil {
		t.Fatalf("stale metadata %v", meta)
	}
	// A failed write leaves the old file alone and no temporary behind.
	if err := safetensors.WriteFile(path, map[string]*engine.Tensor{"bad": nil}, nil); err == nil {
		t.Fatal("nil tensor accepted")
	}
	if _, _, err := safetensors.ReadFile(path); err != nil {
		t.Fatalf("old file damaged by a failed write: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the file", len(entries))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "missing", "w.safetensors"), ts, nil); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	// Errors about a corrupt file name it.
	bad := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(bad, []byte("short"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = safetensors.ReadFile(bad)
	var fe *safetensors.FormatError
	if !errors.As(err, &fe) || fe.File != bad || !strings.Contains(err.Error(), bad) {
		t.Fatalf("got %v, want a FormatError naming %s", err, bad)
	}
	t.Log(err)
	if _, _, err := safetensors.ReadFile(filepath.Join(dir, "nope")); err == nil || errors.Is(err, safetensors.ErrFormat) {
		t.Fatalf("missing file: got %v, want an I/O error", err)
	}
}

// FuzzRead feeds arbitrary bytes to Decode: it must return an error or
// tensors that survive a write and a second read unchanged. Read, which
// streams, must agree with it.
func FuzzRead(f *testing.F) {
	f.Add(file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(file(`{"__metadata__":{"k":"v"},"a":{"dtype":"F16","shape":[1,1],"data_offsets":[0,2]},"b":{"dtype":"F64","shape":[],"data_offsets":[2,10]}}`, make([]byte, 10)))
	f.Add(file(`{"a":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]}}`, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, meta, err := safetensors.Decode(data)
		sts, _, serr := safetensors.Read(bytes.NewReader(data))
		if (err == nil) != (serr == nil) || serr != nil && !errors.Is(serr, safetensors.ErrFormat) {
			t.Fatalf("Decode: %v; Read: %v", err, serr)
		}
		if err != nil {
			if !errors.Is(err, safetensors.ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		for name, x := range ts {
			sameTensor(t, name, sts[name], x)
		}
		b, err := safetensors.Encode(ts, meta)
		if err != nil {
			t.Fatalf("decoded tensors do not encode: %v", err)
		}
		ts2, meta2, err := safetensors.Decode(b)
		if err != nil {
			t.Fatalf("re-read of our own output failed: %v", err)
		}
		if len(ts2) != len(ts) || len(meta2) != len(meta) {
			t.Fatalf("round trip changed counts: %d/%d tensors, %d/%d metadata", len(ts2), len(ts), len(meta2), len(meta))
		}
		for name, x := range ts {
			sameTensor(t, name, ts2[name], x)
		}
		for k, v := range meta {
			if meta2[k] != v {
				t.Fatalf("metadata %q changed", k)
			}
		}
	})
}

// The golden files written by scripts/make_golden.py (Python, by hand) decode
// and re-encode to the same bytes: both writers follow one layout.
func TestGoldenFilesRoundTrip(t *testing.T) {
	paths, err := filepath.Glob("../../testdata/golden/*.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no golden files found")
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ts, meta, err := safetensors.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		again, err := safetensors.Encode(ts, meta)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, again) {
			t.Errorf("%s: re-encoding changes the bytes", p)
		}
	}
}

// The float32 LeNet-5 weights "PyTorch wrote" load, and widened to float64 they
// are exactly the weights of the float64 golden run.
func TestLeNetTorchWeights(t *testing.T) {
	w32, meta, err := safetensors.ReadFile("../../testdata/golden/lenet_torch_weights.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" {
		t.Fatalf("metadata %v, want format pt", meta)
	}
	g, _, err := safetensors.ReadFile("../../testdata/golden/lenet.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{
		"conv1.weight": {6, 1, 5, 5}, "conv1.bias": {6}, "conv2.weight": {16, 6, 5, 5}, "conv2.bias": {16},
		"fc1.weight": {120, 400}, "fc1.bias": {120}, "fc2.weight": {84, 120}, "fc2.bias": {84},
		"fc3.weight": {10, 84}, "fc3.bias": {10},
	}
	if len(w32) != len(want) {
		t.Fatalf("%d tensors, want %d", len(w32), len(want))
	}
	for name, shape := range want {
		w := w32[name]
		if w == nil || w.DType() != engine.Float32 || !w.SameShape(shape...) {
			t.Fatalf("%s: got %v, want float32 %v", name, w, shape)
		}
		sameTensor(t, name, w.As(engine.Float64), g[name])
	}
}
