package board

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// newTestServer serves logdir on a real loopback listener.
func newTestServer(t *testing.T, logdir string) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(logdir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s.Poll = 50 * time.Millisecond
	s.LoopbackOnly = true
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return s, ts
}

func get(t *testing.T, rawURL string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

func fileURL(ts *httptest.Server, p string) string {
	return ts.URL + "/api/file?path=" + url.QueryEscape(p)
}

func TestNewRefusesAMissingLogdir(t *testing.T) {
	dir := t.TempDir()
	if _, err := New(filepath.Join(dir, "nope"), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing directory: %v", err)
	}
	writeFile(t, filepath.Join(dir, "f"), []byte("x"))
	if _, err := New(filepath.Join(dir, "f"), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a file: %v", err)
	}
}

func TestListingFindsRunsTunesAndTrials(t *testing.T) {
	dir := t.TempDir()
	writeFixtureRun(t, filepath.Join(dir, "a"), fixture{Steps: 40, Classes: 3, Params: []string{"w"}, Summary: true})
	writeFixtureRun(t, filepath.Join(dir, "group", "b"), fixture{Steps: 20, Classes: 3})
	writeFixtureTune(t, filepath.Join(dir, "sweep"), 3)
	// A tune still running: trials but no results.csv yet.
	writeFixtureRun(t, filepath.Join(dir, "sweep2", "trials", "0"), fixture{Steps: 10, Classes: 2})
	// Not a tune: a folder whose name merely ends in "trials".
	writeFixtureRun(t, filepath.Join(dir, "old-trials", "r"), fixture{Steps: 10, Classes: 2})
	// Not runs: a hidden directory and a directory without metrics.jsonl.
	writeFixtureRun(t, filepath.Join(dir, ".trash", "c"), fixture{Steps: 10, Classes: 2})
	writeFile(t, filepath.Join(dir, "notes", "readme.txt"), []byte("hi"))

	_, ts := newTestServer(t, dir)
	code, body, hdr := get(t, ts.URL+"/api/runs")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/runs: %d %s", code, hdr.Get("Content-Type"))
	}
	var l Listing
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range l.Runs {
		ids = append(ids, r.ID+"@"+r.Tune)
	}
	want := []string{"a@", "group/b@", "old-trials/r@", "sweep/trials/000@sweep", "sweep/trials/001@sweep", "sweep/trials/002@sweep", "sweep2/trials/0@sweep2"}
	if !slices.Equal(ids, want) {
		t.Fatalf("runs %v, want %v", ids, want)
	}
	a := l.Runs[0]
	for _, f := range []string{"metrics.jsonl", "histograms.jsonl", "visuals.json", "summary.json", "config.yaml"} {
		fi, ok := a.Files[f]
		st, err := os.Stat(filepath.Join(dir, "a", f))
		if !ok || err != nil || fi.Size != st.Size() || fi.Modified != st.ModTime().UnixMilli() {
			t.Errorf("run a, %s: listed %+v (%v), on disk %v", f, fi, ok, err)
		}
	}
	if len(l.Tunes) != 2 || l.Tunes[0].ID != "sweep" || len(l.Tunes[0].Trials) != 3 || l.Tunes[0].Files["results.csv"].Size == 0 {
		t.Fatalf("tunes %+v", l.Tunes)
	}
	if l.Tunes[1].ID != "sweep2" || len(l.Tunes[1].Files) != 0 || !slices.Equal(l.Tunes[1].Trials, []string{"sweep2/trials/0"}) {
		t.Fatalf("running tune %+v", l.Tunes[1])
	}
}

// A folder without runs is listed again only when it changes: a run made
// in it later, or a run's files growing in a folder left alone, still show
// at the next scan (folders changed in the last seconds are always read).
func TestScanSeesChangesUnderFoldersItRemembers(t *testing.T) {
	dir := t.TempDir()
	writeFixtureRun(t, filepath.Join(dir, "old", "a"), fixture{Steps: 10, Classes: 2})
	writeFile(t, filepath.Join(dir, "data", "0.png"), []byte("x"))
	long := time.Now().Add(-time.Hour)
	for _, d := range []string{dir, filepath.Join(dir, "old"), filepath.Join(dir, "data")} {
		os.Chtimes(d, long, long)
	}
	s, err := New(dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if l, err := s.Scan(); err != nil || len(l.Runs) != 1 {
		t.Fatalf("first scan: %v, %+v", err, l)
	}
	writeFixtureRun(t, filepath.Join(dir, "data", "b"), fixture{Steps: 10, Classes: 2})
	metrics := filepath.Join(dir, "old", "a", "metrics.jsonl")
	f, _ := os.OpenFile(metrics, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"step":11,"split":"train","loss":1}` + "\n")
	f.Close()
	st, _ := os.Stat(metrics)
	l, err := s.Scan()
	if err != nil || len(l.Runs) != 2 || l.Runs[1].ID != "old/a" || l.Runs[1].Files["metrics.jsonl"].Size != st.Size() {
		t.Fatalf("second scan: %v, %+v", err, l)
	}
}

// A log directory moved away, or deleted, and made again in its place (runs/
// cleared and trained again) is followed by its path: the listing and the
// files are the new directory's; while nothing is there the listing says the
// directory is gone.
func TestBoardFollowsAReplacedLogdir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "runs")
	writeFixtureRun(t, filepath.Join(dir, "old"), fixture{Steps: 10, Classes: 2})
	s, ts := newTestServer(t, dir)
	runs := func() (int, string) {
		time.Sleep(s.Poll) // past the listing's cache
		code, body, _ := get(t, ts.URL+"/api/runs")
		return code, body
	}
	if _, body := runs(); !strings.Contains(body, `"id":"old"`) {
		t.Fatalf("listing %s", body)
	}
	if err := os.Rename(dir, filepath.Join(base, "runs-before")); err != nil {
		t.Fatal(err)
	}
	writeFixtureRun(t, filepath.Join(dir, "fresh"), fixture{Steps: 10, Classes: 2})
	if _, body := runs(); !strings.Contains(body, `"id":"fresh"`) || strings.Contains(body, `"id":"old"`) {
		t.Errorf("after the directory was moved and made again: %s", body)
	}
	if code, _, _ := get(t, fileURL(ts, "fresh/metrics.jsonl")); code != 200 {
		t.Errorf("fresh/metrics.jsonl: %d", code)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if code, body := runs(); code == 200 || !strings.Contains(body, "is gone") {
		t.Errorf("with the directory deleted: %d %s", code, body)
	}
	writeFixtureRun(t, filepath.Join(dir, "third"), fixture{Steps: 10, Classes: 2})
	if _, body := runs(); !strings.Contains(body, `"id":"third"`) {
		t.Errorf("after the directory was deleted and made again: %s", body)
	}
}

func TestTheLogdirItselfCanBeARun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lenet-1")
	writeFixtureRun(t, dir, fixture{Steps: 20, Classes: 2})
	_, ts := newTestServer(t, dir)
	_, body, _ := get(t, ts.URL+"/api/runs")
	var l Listing
	json.Unmarshal([]byte(body), &l)
	if len(l.Runs) != 1 || l.Runs[0].ID != "." || l.Runs[0].Name != "lenet-1" {
		t.Fatalf("runs %+v", l.Runs)
	}
	if code, got, _ := get(t, fileURL(ts, "metrics.jsonl")); code != 200 || !strings.Contains(got, `"split":"val"`) {
		t.Fatalf("metrics.jsonl: %d %q", code, got)
	}
}

func TestFilesAreServedWithRanges(t *testing.T) {
	dir := t.TempDir()
	writeFixtureRun(t, filepath.Join(dir, "a"), fixture{Steps: 40, Classes: 3})
	_, ts := newTestServer(t, dir)
	disk, _ := os.ReadFile(filepath.Join(dir, "a", "metrics.jsonl"))
	code, body, hdr := get(t, fileURL(ts, "a/metrics.jsonl"))
	if code != 200 || body != string(disk) || hdr.Get("Content-Type") != "application/x-ndjson" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET metrics.jsonl: %d %q %v", code, body, hdr)
	}
	// The page fetches the tail of a grown file from where it stopped.
	code, body, _ = get(t, fileURL(ts, "a/metrics.jsonl"), "Range", "bytes=10-")
	if code != http.StatusPartialContent || body != string(disk[10:]) {
		t.Fatalf("range: %d %q", code, body)
	}
	// A tail asked for past the end of a file rewritten shorter since the
	// page's listing comes whole, not as 416 (which the browser logs).
	for _, rng := range []string{fmt.Sprintf("bytes=%d-", len(disk)), "bytes=999999-"} {
		if code, body, _ = get(t, fileURL(ts, "a/metrics.jsonl"), "Range", rng); code != 200 || body != string(disk) {
			t.Fatalf("range %s: %d %q", rng, code, body)
		}
	}
	if code, _, _ = get(t, fileURL(ts, "a/metrics.jsonl"), "Range", "bytes=999999-1000000"); code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("a closed range past the end: %d, want 416", code)
	}
	for p, ctype := range map[string]string{"a/visuals.json": "application/json", "a/config.yaml": "text/plain; charset=utf-8"} {
		if code, _, hdr := get(t, fileURL(ts, p)); code != 200 || hdr.Get("Content-Type") != ctype {
			t.Errorf("%s: %d %s", p, code, hdr.Get("Content-Type"))
		}
	}
	for _, p := range []string{"a/nope.json", "a", "."} {
		if code, _, _ := get(t, fileURL(ts, p)); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	if code, _, _ := get(t, ts.URL+"/api/file"); code != http.StatusBadRequest {
		t.Errorf("no path: %d", code)
	}
}

// The server must not hand out anything outside the log directory, whatever
// the request looks like. Every case is a real HTTP request.
func TestRefusesPathsOutsideTheLogdir(t *testing.T) {
	base := t.TempDir()
	const secret = "TOP-SECRET-CONTENT"
	writeFile(t, filepath.Join(base, "secret.txt"), []byte(secret))
	writeFile(t, filepath.Join(base, "outside", "metrics.jsonl"), []byte(secret))
	dir := filepath.Join(base, "logs")
	writeFixtureRun(t, filepath.Join(dir, "a"), fixture{Steps: 20, Classes: 2})
	// Symbolic links out of the log directory, one to a file, one to a directory.
	if err := os.Symlink(filepath.Join(base, "secret.txt"), filepath.Join(dir, "a", "leak.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "outside"), filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	// A link that stays inside is fine.
	if err := os.Symlink("metrics.jsonl", filepath.Join(dir, "a", "alias.jsonl")); err != nil {
		t.Fatal(err)
	}
	_, ts := newTestServer(t, dir)

	refused := []string{
		"../secret.txt",
		"a/../../secret.txt",
		"a/../../../../../../etc/passwd",
		"..",
		"/etc/passwd",
		filepath.Join(base, "secret.txt"),
		`..\secret.txt`,
		`a\..\..\secret.txt`,
		"a/leak.txt",
		"out/metrics.jsonl",
		"./out/metrics.jsonl",
		"a/./../out/metrics.jsonl",
		"a/\x00/metrics.jsonl",
	}
	for _, p := range refused {
		code, body, _ := get(t, fileURL(ts, p))
		if code != http.StatusForbidden || strings.Contains(body, secret) {
			t.Errorf("path %q: %d %q, want 403", p, code, body)
		}
	}
	// The same, with the traversal in the URL itself rather than the query,
	// sent as raw request lines so that no client cleans them first.
	for _, target := range []string{
		"/api/file?path=..%2Fsecret.txt",
		"/api/file?path=%2E%2E/secret.txt",
		"/assets/../../secret.txt",
		"/assets/..%2F..%2Fsecret.txt",
		"/../secret.txt",
		"/api/file/../../secret.txt",
	} {
		status, body := rawGet(t, ts.Listener.Addr().String(), target)
		if strings.Contains(body, secret) || status == 200 && !strings.Contains(body, "<!doctype html>") {
			t.Errorf("raw %s: %d %q", target, status, body)
		}
	}
	if code, body, _ := get(t, fileURL(ts, "a/alias.jsonl")); code != 200 || !strings.Contains(body, `"split"`) {
		t.Errorf("link inside the log directory: %d %q", code, body)
	}
	// The listing does not follow the link out either.
	_, body, _ := get(t, ts.URL+"/api/runs")
	if strings.Contains(body, `"out"`) || strings.Contains(body, "outside") {
		t.Errorf("listing follows a link out: %s", body)
	}
}

// rawGet sends one request line as written and returns the status and body.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestRefusesForeignHostHeaders(t *testing.T) {
	dir := t.TempDir()
	writeFixtureRun(t, filepath.Join(dir, "a"), fixture{Steps: 20, Classes: 2})
	_, ts := newTestServer(t, dir)
	for _, host := range []string{"evil.example.com", "evil.example.com:6006", "10.0.0.1"} {
		req, _ := http.NewRequest("GET", fileURL(ts, "a/metrics.jsonl"), nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("Host %s: %d, want 403", host, res.StatusCode)
		}
	}
	for _, host := range []string{"localhost:6006", "127.0.0.1", "[::1]:8080", "LOCALHOST"} {
		req, _ := http.NewRequest("GET", fileURL(ts, "a/metrics.jsonl"), nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("Host %s: %d, want 200", host, res.StatusCode)
		}
	}
}

func TestPageAndAssetsAreEmbeddedAndLocal(t *testing.T) {
	_, ts := newTestServer(t, t.TempDir())
	code, page, hdr := get(t, ts.URL+"/")
	if code != 200 || !strings.Contains(page, "<title>Kiln board</title>") {
		t.Fatalf("GET /: %d", code)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	// Every script and stylesheet the page names is served from the binary.
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 4 {
		t.Fatalf("page references %v", refs)
	}
	for _, m := range refs {
		ref := m[1]
		if strings.HasPrefix(ref, "data:") {
			continue
		}
		if strings.Contains(ref, "//") {
			t.Errorf("page loads %s from elsewhere", ref)
			continue
		}
		code, body, _ := get(t, ts.URL+"/"+ref)
		if code != 200 || len(body) < 100 {
			t.Errorf("%s: %d, %d bytes", ref, code, len(body))
		}
	}
	if code, _, _ := get(t, ts.URL+"/nope"); code != 404 {
		t.Errorf("GET /nope: %d", code)
	}
	req, _ := http.NewRequest("POST", ts.URL+"/api/runs", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/runs: %d", res.StatusCode)
	}
}

// readEvent reads one Server-Sent Event's data.
// readRawEvent reads the next event's name and data.
func readRawEvent(t *testing.T, r *bufio.Reader) (name, data string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && data != "":
			return name, data
		}
	}
}

func readEvent(t *testing.T, r *bufio.Reader) Listing {
	t.Helper()
	name, data := readRawEvent(t, r)
	if name != "runs" {
		t.Fatalf("event %q", name)
	}
	var l Listing
	if err := json.Unmarshal([]byte(data), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestEventsFollowARunAsItTrains(t *testing.T) {
	dir := t.TempDir()
	writeFixtureRun(t, filepath.Join(dir, "a"), fixture{Steps: 20, Classes: 2})
	s, ts := newTestServer(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(res.Body)
	first := readEvent(t, r)
	if len(first.Runs) != 1 {
		t.Fatalf("first event %+v", first)
	}
	size := first.Runs[0].Files["metrics.jsonl"].Size

	// The run validates again: a line is appended.
	f, err := os.OpenFile(filepath.Join(dir, "a", "metrics.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(metricsLine(30, 1.5, "val", 0.5, 0.8, 0.01))
	f.Close()
	next := readEvent(t, r)
	if got := next.Runs[0].Files["metrics.jsonl"].Size; got <= size {
		t.Fatalf("metrics.jsonl size %d after append, was %d", got, size)
	}
	// A new run appears.
	writeFixtureRun(t, filepath.Join(dir, "b"), fixture{Steps: 10, Classes: 2})
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := readEvent(t, r)
		if len(l.Runs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new run never reported")
		}
	}
	// The log directory moved away: a problem event says so, once, and the
	// listing comes back with the directory.
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	if name, data := readRawEvent(t, r); name != "problem" || !strings.Contains(data, "gone") {
		t.Fatalf("after the log directory moved: event %q %s", name, data)
	}
	if err := os.Rename(dir+".moved", dir); err != nil {
		t.Fatal(err)
	}
	if l := readEvent(t, r); len(l.Runs) != 2 {
		t.Fatalf("after the log directory came back: %+v", l)
	}
	// Closing the server ends the stream.
	s.Close()
	if _, err := io.Copy(io.Discard, r); err != nil && ctx.Err() != nil {
		t.Fatalf("stream still open after Close: %v", err)
	}
}

func TestServeListensOnLoopbackAndStops(t *testing.T) {
	dir := t.TempDir()
	writeFixtureRun(t, filepath.Join(dir, "a"), fixture{Steps: 20, Classes: 2})
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Options{Logdir: dir, Addr: "127.0.0.1:0", Log: zerolog.Nop(), Ready: func(u string) { urls <- u }})
	}()
	var u string
	select {
	case u = <-urls:
	case err := <-done:
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("url %s", u)
	}
	code, body, _ := get(t, u+"api/runs")
	if code != 200 || !strings.Contains(body, `"id":"a"`) {
		t.Fatalf("%d %s", code, body)
	}
	// An open event stream does not hold up the shutdown.
	res, err := http.Get(u + "api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	// A taken port is an error naming the address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Serve(context.Background(), Options{Logdir: dir, Addr: ln.Addr().String(), Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("taken port: %v", err)
	}
}
