package board

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// FuzzServeFile fuzzes the board's reader of run files: /api/file with any
// path and any Range header (the page asks for the tail of a growing
// JSON-lines file). Whatever is asked, the server does not panic, answers
// with one of the statuses it means to, never serves a byte from outside
// the log directory (a symbolic link leads out of it), and what it serves
// is the file's own bytes. Seeds are a real run's file paths and the ranges
// the page sends.
func FuzzServeFile(f *testing.F) {
	root := f.TempDir()
	logdir := filepath.Join(root, "runs")
	run := filepath.Join(logdir, "lenet")
	writeFixtureRun(f, run, fixture{Steps: 30, Classes: 3, Params: []string{"w"}})
	secret := "outside-the-log-directory"
	if err := os.WriteFile(filepath.Join(root, "secret.txt"), []byte(secret), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "secret.txt"), filepath.Join(run, "link.jsonl")); err != nil {
		f.Fatal(err)
	}
	s, err := New(logdir, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	s.LoopbackOnly = true
	h := s.Handler()
	for _, p := range []string{"lenet/metrics.jsonl", "lenet/histograms.jsonl", "lenet/visuals.json", "lenet/link.jsonl", "../secret.txt", "lenet/../../secret.txt", "lenet", "/etc/passwd", "lenet/./metrics.jsonl", ""} {
		for _, r := range []string{"", "bytes=0-", "bytes=100-", "bytes=-10", "bytes=5-2", "bytes=0-0,3-9", "bytes=99999999-"} {
			f.Add(p, r)
		}
	}
	f.Fuzz(func(t *testing.T, p, rng string) {
		req := httptest.NewRequest("GET", "/api/file?path="+url.QueryEscape(p), nil)
		req.Host = "127.0.0.1:6006"
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		switch rec.Code {
		case http.StatusOK, http.StatusPartialContent:
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusRequestedRangeNotSatisfiable:
			return
		default:
			t.Fatalf("path %q, range %q: status %d", p, rng, rec.Code)
		}
		if bytes.Contains(body, []byte(secret)) {
			t.Fatalf("path %q, range %q: served a file from outside the log directory", p, rng)
		}
		clean, err := cleanPath(p)
		if err != nil {
			t.Fatalf("path %q served though refused: %v", p, err)
		}
		want, err := os.ReadFile(filepath.Join(logdir, filepath.FromSlash(clean)))
		if err != nil {
			t.Fatalf("path %q served, but it is not a file: %v", p, err)
		}
		if rec.Code == http.StatusOK && !bytes.Equal(body, want) {
			t.Fatalf("path %q: served %d bytes, not the file's %d", p, len(body), len(want))
		}
		if rec.Code == http.StatusPartialContent && !strings.HasPrefix(rec.Header().Get("Content-Type"), "multipart/") && !bytes.Contains(want, body) {
			t.Fatalf("path %q, range %q: served bytes that are not the file's", p, rng)
		}
		if path.IsAbs(clean) || strings.HasPrefix(clean, "../") {
			t.Fatalf("path %q cleaned to %q", p, clean)
		}
	})
}
