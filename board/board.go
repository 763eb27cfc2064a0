// Package board serves `kiln board`: a local web page that shows the runs
// under a log directory while they train — scalar curves, weight and gradient
// histograms, first-layer filters, attention maps, sample predictions, the
// confusion matrix and tune results.
//
// The server is deliberately thin. It knows where runs are (any directory
// holding metrics.jsonl, found recursively; a directory holding results.csv
// or trials/ is a tune) and serves their files as they are on disk; the page
// (plain JavaScript, embedded with go:embed, uPlot vendored from npm, no
// CDN) parses metrics.jsonl, histograms.jsonl, visuals.json and results.csv
// itself. Keeping the formats in one place — the run directory contract in
// trainer/rundir.go — means the board never drifts from what the trainer
// writes, and a run directory copied from another machine shows the same.
// The page reads those files as kiln plot does (trainer/plots/records.go):
// a bad record (null, a stray line, a wrong type, a number out of range) is
// skipped, counted and said under the run's title, never thrown.
//
// Live updates are Server-Sent Events: the server rescans the log directory
// about once a second and sends the listing (every board file's size and
// modification time) whenever it changes; the page fetches only the files
// that changed, appended JSON-lines files by an HTTP range request.
//
// Every file is opened through an os.Root on the log directory, so a request
// cannot leave it: ".." is refused before it is looked at, and a symbolic
// link that points outside is refused by the kernel-level resolution os.Root
// does. When the server listens on a loopback address it also refuses
// requests whose Host header is not a loopback name, so a web page elsewhere
// cannot read the runs through DNS rebinding.
package board

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

//go:embed assets
var assets embed.FS

// Files the page reads from a run directory; the listing reports their size
// and modification time so the page knows when to fetch them again.
var runFiles = []string{
	"metrics.jsonl", "histograms.jsonl", "visuals.json", "summary.json", "config.yaml", "model.json",
}

// Files the page reads from a tune directory.
var tuneFiles = []string{"results.csv", "best.yaml"}

// maxDepth bounds the directory walk: a log directory is a few levels of
// runs, tunes and trials, never a whole file system.
const maxDepth = 8

// FileInfo is what the listing says about one file.
type FileInfo struct {
	Size     int64 `json:"size"`
	Modified int64 `json:"modified"` // Unix milliseconds
}

// Run is one run directory.
type Run struct {
	ID       string              `json:"id"` // slash path relative to the log directory; "." is the log directory itself
	Name     string              `json:"name"`
	Tune     string              `json:"tune,omitempty"` // ID of the tune the run is a trial of
	Modified int64               `json:"modified"`       // newest board file, Unix milliseconds
	Files    map[string]FileInfo `json:"files"`
}

// Tune is a tune directory: its results table and its trials.
type Tune struct {
	ID     string              `json:"id"`
	Name   string              `json:"name"`
	Files  map[string]FileInfo `json:"files"`
	Trials []string            `json:"trials"` // run IDs
}

// Listing is the answer of /api/runs and each live-update event.
type Listing struct {
	Logdir string `json:"logdir"`
	Runs   []Run  `json:"runs"`
	Tunes  []Tune `json:"tunes"`
}

// Server serves the board for one log directory.
type Server struct {
	// Poll is how often the log directory is rescanned for live updates.
	Poll time.Duration
	// LoopbackOnly refuses requests whose Host header is not localhost or a
	// loopback address (Serve sets it when it listens on one).
	LoopbackOnly bool

	dir    string // absolute
	rootMu sync.Mutex
	root   *os.Root // the directory dir named when last looked at (currentRoot)
	log    zerolog.Logger
	done   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	cached   []byte
	cachedAt time.Time

	scanMu   sync.Mutex
	seen     map[string]dirSeen // the last scan's folders without run files (scanDir)
	seenRoot *os.Root           // the log directory they were seen in
}

// New opens logdir, which must be an existing directory.
func New(logdir string, log zerolog.Logger) (*Server, error) {
	abs, err := filepath.Abs(logdir)
	if err != nil {
		return nil, fmt.Errorf("board: log directory %q: %w", logdir, err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("board: log directory %s does not exist", logdir)
	case err != nil:
		return nil, fmt.Errorf("board: log directory: %w", err)
	case !st.IsDir():
		return nil, fmt.Errorf("board: log directory %s is not a directory", logdir)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("board: log directory: %w", err)
	}
	return &Server{Poll: time.Second, dir: abs, root: root, log: log, done: make(chan struct{})}, nil
}

// Close ends the live-update streams and releases the log directory.
func (s *Server) Close() error {
	s.once.Do(func() { close(s.done) })
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	return s.root.Close()
}

// currentRoot is the log directory that its path names now: when the
// directory was moved away, or deleted, and another made in its place (runs/
// cleared and trained again), the board follows the path, as TensorBoard
// does, rather than the directory it opened. A path that names nothing is an
// error that says so.
func (s *Server) currentRoot() (*os.Root, error) {
	s.rootMu.Lock()
	defer s.rootMu.Unlock()
	now, err := os.Stat(s.dir)
	if err != nil || !now.IsDir() {
		return nil, fmt.Errorf("the log directory %s is gone (moved or deleted): the board shows it again once it is back", s.dir)
	}
	if was, err := s.root.Stat("."); err == nil && os.SameFile(was, now) {
		return s.root, nil
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, fmt.Errorf("the log directory: %w", err)
	}
	s.root.Close()
	s.root = root
	s.log.Info().Str("logdir", s.dir).Msg("board: the log directory was replaced; reading the new one")
	return root, nil
}

// Scan walks the log directory and lists its runs and tunes.
func (s *Server) Scan() (*Listing, error) {
	l := &Listing{Logdir: s.dir, Runs: []Run{}, Tunes: []Tune{}}
	tunes := map[string]*Tune{}
	tuneOf := func(id string) *Tune {
		if t, ok := tunes[id]; ok {
			return t
		}
		t := &Tune{ID: id, Name: displayName(id, s.dir), Files: map[string]FileInfo{}, Trials: []string{}}
		tunes[id] = t
		return t
	}
	visit := func(p string, have map[string]FileInfo) {
		if _, ok := have["metrics.jsonl"]; ok {
			r := Run{ID: p, Name: displayName(p, s.dir), Files: map[string]FileInfo{}}
			for _, f := range runFiles {
				if fi, ok := have[f]; ok {
					r.Files[f] = fi
					r.Modified = max(r.Modified, fi.Modified)
				}
			}
			if dir, _ := path.Split(p); dir == "trials/" || strings.HasSuffix(dir, "/trials/") {
				r.Tune = path.Clean(strings.TrimSuffix(dir, "trials/"))
				t := tuneOf(r.Tune)
				t.Trials = append(t.Trials, r.ID)
			}
			l.Runs = append(l.Runs, r)
		}
		if _, ok := have["results.csv"]; ok {
			t := tuneOf(p)
			for _, f := range tuneFiles {
				if fi, ok := have[f]; ok {
					t.Files[f] = fi
				}
			}
		}
	}
	root, err := s.currentRoot()
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	if s.seenRoot != root {
		s.seen, s.seenRoot = nil, root
	}
	seen := map[string]dirSeen{}
	if err := s.scanDir(root.FS(), ".", seen, visit); err != nil {
		return nil, fmt.Errorf("board: scanning %s: %w", s.dir, err)
	}
	s.seen = seen
	sort.Slice(l.Runs, func(i, j int) bool { return l.Runs[i].ID < l.Runs[j].ID })
	for _, t := range tunes {
		l.Tunes = append(l.Tunes, *t)
	}
	sort.Slice(l.Tunes, func(i, j int) bool { return l.Tunes[i].ID < l.Tunes[j].ID })
	return l, nil
}

// dirSeen is what a scan found in a folder that holds none of the files
// the page reads: its subfolders, reused while its modification time stays.
// A folder of images beside the runs was read again, every entry, each
// second a page was open (45% of a core for 100,000 files).
type dirSeen struct {
	mod     time.Time
	subdirs []string
}

// scanDir hands visit the files the page reads in folder p and each folder
// under it (not hidden ones, at most maxDepth deep). A folder that cannot
// be read is skipped, but for the log directory itself.
func (s *Server) scanDir(fsys fs.FS, p string, seen map[string]dirSeen, visit func(string, map[string]FileInfo)) error {
	fi, err := fs.Stat(fsys, p)
	if err != nil {
		return rootErr(p, err)
	}
	// A folder changed in the last seconds is read again: one made just
	// after a read may not have moved a coarse clock's modification time.
	if was, ok := s.seen[p]; ok && was.mod.Equal(fi.ModTime()) && time.Since(was.mod) > 2*time.Second {
		seen[p] = was
		return s.scanSubdirs(fsys, was.subdirs, seen, visit)
	}
	entries, err := fs.ReadDir(fsys, p)
	if err != nil {
		return rootErr(p, err)
	}
	have := map[string]FileInfo{}
	var subdirs []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case e.IsDir() && !strings.HasPrefix(name, ".") && strings.Count(p, "/") < maxDepth-1:
			subdirs = append(subdirs, path.Join(p, name))
		case e.Type().IsRegular() && (slices.Contains(runFiles, name) || slices.Contains(tuneFiles, name)):
			if info, err := e.Info(); err == nil {
				have[name] = FileInfo{Size: info.Size(), Modified: info.ModTime().UnixMilli()}
			}
		}
	}
	if len(have) == 0 {
		seen[p] = dirSeen{mod: fi.ModTime(), subdirs: subdirs} // a run's files change without its folder's time changing
	} else {
		visit(p, have)
	}
	return s.scanSubdirs(fsys, subdirs, seen, visit)
}

// rootErr is err for the log directory itself; a folder under it that
// vanished or cannot be read is skipped.
func rootErr(p string, err error) error {
	if p == "." {
		return err
	}
	return nil
}

func (s *Server) scanSubdirs(fsys fs.FS, subdirs []string, seen map[string]dirSeen, visit func(string, map[string]FileInfo)) error {
	for _, d := range subdirs {
		if err := s.scanDir(fsys, d, seen, visit); err != nil {
			return err
		}
	}
	return nil
}

// displayName is a run's name on the page: its path, or the log directory's
// own name for the log directory itself.
func displayName(id, dir string) string {
	if id == "." {
		return filepath.Base(dir)
	}
	return id
}

// Handler returns the board's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.HandleFunc("GET /api/runs", s.handleRuns)
	mux.HandleFunc("GET /api/file", s.handleFile)
	mux.HandleFunc("GET /api/events", s.handleEvents)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.LoopbackOnly && !loopbackHost(r.Host) {
			http.Error(w, "board: refused: Host "+r.Host+" is not a loopback name", http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// The page loads nothing from elsewhere: this is the no-CDN promise,
		// enforced by the browser.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		mux.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listing returns the current listing as JSON, rescanning at most twice per
// poll interval however many pages are open.
func (s *Server) listing() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil && time.Since(s.cachedAt) < s.Poll/2 {
		return s.cached, nil
	}
	l, err := s.Scan()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	s.cached, s.cachedAt = b, time.Now()
	return b, nil
}

func (s *Server) handleRuns(w http.ResponseWriter, r *http.Request) {
	b, err := s.listing()
	if err != nil {
		s.log.Error().Err(err).Msg("board: listing")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// errOutside is the answer to any path that would leave the log directory.
var errOutside = errors.New("path is outside the log directory")

// cleanPath checks a slash path relative to the log directory: not empty, not
// absolute, no "..", no backslash, no NUL.
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("missing ?path=")
	case strings.ContainsAny(p, "\\\x00"), strings.HasPrefix(p, "/"), filepath.IsAbs(p), filepath.VolumeName(p) != "":
		return "", errOutside
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", errOutside
		}
	}
	return path.Clean(p), nil
}

// handleFile serves one file of the log directory, with range requests (the
// page fetches only the new tail of a growing JSON-lines file).
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	p, err := cleanPath(r.URL.Query().Get("path"))
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errOutside) {
			code = http.StatusForbidden
		}
		http.Error(w, "board: "+err.Error(), code)
		return
	}
	root, err := s.currentRoot()
	if err != nil {
		http.Error(w, "board: "+err.Error(), http.StatusNotFound)
		return
	}
	f, err := root.Open(filepath.FromSlash(p))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(w, "board: "+p+": no such file", http.StatusNotFound)
			return
		}
		// os.Root refuses symbolic links that lead out of the directory.
		s.log.Warn().Str("path", p).Err(err).Msg("board: refused")
		http.Error(w, "board: "+p+": "+errOutside.Error(), http.StatusForbidden)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.Error(w, "board: "+p+": not a file", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	switch path.Ext(p) {
	case ".jsonl":
		h.Set("Content-Type", "application/x-ndjson")
	case ".json":
		h.Set("Content-Type", "application/json")
	case ".csv":
		h.Set("Content-Type", "text/csv; charset=utf-8")
	case ".yaml", ".yml", ".log", ".txt":
		h.Set("Content-Type", "text/plain; charset=utf-8")
	default:
		if t := mime.TypeByExtension(path.Ext(p)); t != "" {
			h.Set("Content-Type", t)
		} else {
			h.Set("Content-Type", "application/octet-stream")
		}
	}
	if tailPastEnd(r.Header.Get("Range"), st.Size()) {
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, path.Base(p), st.ModTime(), f)
}

// tailPastEnd reports a request for the tail of a file ("bytes=N-") that
// starts past its end: the page asked for what follows its last read, and the
// file was rewritten shorter since the listing it went by (a resumed run
// trims histograms.jsonl). The whole file (200, as RFC 9110 lets a server
// answer any range) is what the page reads then; a 416 would come to the same
// in one more request, and the browser logs it as a failed load.
func tailPastEnd(rangeHeader string, size int64) bool {
	from, ok := strings.CutPrefix(rangeHeader, "bytes=")
	if !ok {
		return false
	}
	from, ok = strings.CutSuffix(from, "-")
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(from, 10, 64)
	return err == nil && n >= size
}

// handleEvents streams the listing as Server-Sent Events: one at once, then
// one whenever a board file changes.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(s.Poll)
	defer tick.Stop()
	var last []byte
	var problem string
	lastWrite := time.Now()
	for {
		b, err := s.listing()
		switch {
		case err != nil && err.Error() != problem:
			// The page says so (the log directory moved away, say) instead
			// of showing the last listing as live; logged once, not a poll.
			problem, last = err.Error(), nil
			s.log.Error().Err(err).Msg("board: listing")
			msg, _ := json.Marshal(problem)
			if _, err := fmt.Fprintf(w, "event: problem\ndata: %s\n\n", msg); err != nil {
				return
			}
			lastWrite = time.Now()
		case err == nil && string(b) != string(last):
			problem = ""
			if _, err := fmt.Fprintf(w, "event: runs\ndata: %s\n\n", b); err != nil {
				return
			}
			last, lastWrite = b, time.Now()
		case time.Since(lastWrite) > 15*time.Second:
			// A comment keeps proxies and the browser from timing out.
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			lastWrite = time.Now()
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-tick.C:
		}
	}
}

// Options configure Serve.
type Options struct {
	Logdir string
	Addr   string // host:port; port 0 picks a free one
	Log    zerolog.Logger
	// Ready, when set, is called with the page's URL once the server listens.
	Ready func(url string)
}

// Serve runs the board until ctx is done.
func Serve(ctx context.Context, o Options) error {
	s, err := New(o.Logdir, o.Log)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("board: --addr %s: %w", o.Addr, err)
	}
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	ip := net.ParseIP(host)
	s.LoopbackOnly = ip != nil && ip.IsLoopback()
	if !s.LoopbackOnly {
		o.Log.Warn().Str("addr", ln.Addr().String()).Msg("board: listening beyond this machine: anyone who can reach it can read the runs")
	}
	url := "http://" + ln.Addr().String() + "/"
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if o.Ready != nil {
		o.Ready(url)
	} else {
		o.Log.Info().Str("url", url).Str("logdir", s.dir).Msg("board: serving")
	}
	select {
	case err := <-errc:
		return fmt.Errorf("board: %w", err)
	case <-ctx.Done():
	}
	s.once.Do(func() { close(s.done) })
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		srv.Close()
	}
	return nil
}
