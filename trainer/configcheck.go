package trainer

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// checkNesting refuses a document whose collections nest deeper than limit,
// from one pass over its bytes, before a parser builds anything: goccy's
// parser spends memory quadratic in the depth (200 KB of '[' took it past
// 2 GB). Flow brackets count wherever they stand outside a comment (a JSON
// string is skipped, YAML quotes are not: counting a bracket inside a string
// can only overestimate), and surplus closers count for nothing, so they
// cannot hide openers. In YAML's block style each indentation level and each
// "- " entry opens a level.
func checkNesting(b []byte, limit int, isJSON bool) error {
	var indents []int // columns of the open block nodes
	flow, line := 0, 1
	deep := func() error {
		return fmt.Errorf("line %d: nested deeper than %d levels (a configuration is a flat map of settings)", line, limit)
	}
	for i := 0; i < len(b); {
		end := bytes.IndexByte(b[i:], '\n')
		if end < 0 {
			end = len(b)
		} else {
			end += i
		}
		text := b[i:end]
		if flow == 0 && !isJSON {
			indents = blockLevels(indents, text)
			if len(indents) > limit {
				return deep()
			}
		}
		for j := 0; j < len(text); j++ {
			switch ch := text[j]; {
			case ch == '#' && !isJSON && (j == 0 || text[j-1] == ' ' || text[j-1] == '\t'):
				j = len(text)
			case ch == '"' && isJSON:
				j = skipJSONString(text, j)
			case ch == '[' || ch == '{':
				flow++
				if len(indents)+flow > limit {
					return deep()
				}
			case (ch == ']' || ch == '}') && flow > 0:
				flow--
			}
		}
		i, line = end+1, line+1
	}
	return nil
}

// blockLevels updates the open block nodes for a YAML line: nodes at or
// right of its indentation close, then the line opens one for each "- "
// entry and one for what follows them. Blank and comment lines change
// nothing.
func blockLevels(indents []int, text []byte) []int {
	col := 0
	for col < len(text) && text[col] == ' ' {
		col++
	}
	if col == len(text) || text[col] == '#' || text[col] == '\r' {
		return indents
	}
	for len(indents) > 0 && indents[len(indents)-1] >= col {
		indents = indents[:len(indents)-1]
	}
	for {
		indents = append(indents, col)
		if text[col] != '-' || (col+1 < len(text) && text[col+1] != ' ') {
			return indents
		}
		col++
		for col < len(text) && text[col] == ' ' {
			col++
		}
		if col == len(text) || text[col] == '#' || text[col] == '\r' {
			return indents
		}
	}
}

// skipJSONString returns the index of the quote that closes the string
// opening at text[j] (or the line's last index: JSON strings hold no raw
// newline).
func skipJSONString(text []byte, j int) int {
	for j++; j < len(text); j++ {
		switch text[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(text) - 1
}

// checkNumbers reads the document as a map and checks that each integer
// setting holds a whole number its field can take, so that "epochs: 1.5",
// "epochs: .nan" or "seed: -1" is an error that names the key and its range
// (the decoders would truncate 1.5, turn -.inf into MinInt64 or name a Go
// type). The float settings' ranges are Validate's.
// checkJSONSyntax refuses what encoding/json would read without a word or
// report without a place: a key given twice in one object (the last would
// win), and a syntax error, given here with its line and column.
func checkJSONSyntax(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	type object struct {
		keys   map[string]bool
		expect bool // the next string token is a key
	}
	var stack []*object
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if len(bytes.TrimSpace(b)) == 0 {
				return errors.New("empty: want a JSON object of settings")
			}
			return nil
		}
		if err != nil {
			// The streaming decoder's offsets count from the value it was
			// in; a whole decode's count from the file's start.
			off := dec.InputOffset()
			var se *json.SyntaxError
			if whole := json.Unmarshal(b, new(any)); errors.As(whole, &se) {
				err, off = se, se.Offset-1
			}
			line, col := lineCol(b, off)
			return fmt.Errorf("line %d, column %d: %v", line, col, err)
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if key, ok := tok.(string); ok && top != nil && top.expect {
			if top.keys[key] {
				line, _ := lineCol(b, dec.InputOffset())
				return fmt.Errorf("line %d: %q is given twice in one object", line, key)
			}
			top.keys[key], top.expect = true, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].expect = true // a value ended: a key comes next
		}
	}
}

// lineCol is the 1-based line and column of the byte at offset off in b.
func lineCol(b []byte, off int64) (line, col int) {
	before := b[:min(max(off, 0), int64(len(b)))]
	line = 1 + bytes.Count(before, []byte("\n"))
	return line, len(before) - bytes.LastIndexByte(before, '\n')
}

// settingsMap decodes a file of settings into a map of its keys.
func settingsMap(b []byte, isJSON bool) (map[string]any, error) {
	var m map[string]any
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		return m, dec.Decode(&m)
	}
	return m, DecodeYAML(b, &m)
}

func checkNumbers(b []byte, isJSON bool) error {
	m, err := settingsMap(b, isJSON)
	if err != nil {
		return nil // the struct decoder reports it
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fields := configKinds()
	for _, k := range keys {
		t, ok := fields[k]
		if !ok {
			continue
		}
		if err := checkShape(k, t, m[k]); err != nil {
			return err
		}
		if err := checkWhole(k, t, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// jsonWholes writes the whole numbers of b's integer settings given as 2.0
// or 1e2 as integers, which encoding/json would refuse with a Go error
// ("cannot unmarshal number 2.0 into Go struct field Config.epochs of type
// int") where YAML takes them: checkNumbers has checked they are whole.
func jsonWholes(b []byte) []byte {
	m, err := settingsMap(b, true)
	if err != nil {
		return b
	}
	fields, changed := configKinds(), false
	whole := func(v any, unsigned bool) (any, bool) {
		n, ok := v.(json.Number)
		if !ok {
			return v, false
		}
		if !strings.ContainsAny(string(n), ".eE") {
			return v, false // an integer literal: exact as it is (a seed past 2^63 too), not through a float64
		}
		if f, ok := wholeNumber(n, unsigned); ok {
			return json.Number(strconv.FormatFloat(f, 'f', -1, 64)), true
		}
		return v, false
	}
	for k, v := range m {
		t, ok := fields[k]
		switch {
		case !ok:
		case t.Kind() == reflect.Int || t.Kind() == reflect.Uint64:
			var c bool
			m[k], c = whole(v, t.Kind() == reflect.Uint64)
			changed = changed || c
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Int:
			list, _ := v.([]any)
			for i, e := range list {
				var c bool
				list[i], c = whole(e, false)
				changed = changed || c
			}
		}
	}
	if !changed {
		return b
	}
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// configKinds maps each configuration key to its field's type.
func configKinds() map[string]reflect.Type {
	typ := reflect.TypeFor[Config]()
	out := map[string]reflect.Type{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		out[strings.Split(f.Tag.Get("yaml"), ",")[0]] = f.Type
	}
	return out
}

// checkShape refuses a list or a mapping for a single value, and a single
// value for a list, naming what the key takes (the decoder would name Go
// types).
func checkShape(key string, t reflect.Type, v any) error {
	var got string
	switch v.(type) {
	case nil:
		return nil
	case []any:
		got = "a list"
	case map[string]any:
		got = "a mapping"
	}
	if t.Kind() == reflect.Slice {
		if got == "a list" {
			return nil
		}
		return settingErr(key, cmp.Or(got, fmt.Sprint(v)), "must be a list of %s, e.g. [1, 2]", SettingRange(key))
	}
	if got == "" {
		return nil
	}
	want := SettingRange(key)
	if want == "" {
		want = map[reflect.Kind]string{reflect.String: "a word", reflect.Bool: "true or false",
			reflect.Float64: "a number", reflect.Int: "a whole number", reflect.Uint64: "a whole number"}[t.Kind()]
	}
	return settingErr(key, got, "must be %s, one value", cmp.Or(want, "one value"))
}

// checkWhole checks an integer field's (or integer list's) value as the
// decoder gave it.
func checkWhole(key string, t reflect.Type, v any) error {
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Int {
		list, ok := v.([]any)
		if !ok {
			return nil
		}
		for _, e := range list {
			if _, ok := wholeNumber(e, false); !ok {
				return settingErr(key, e, "must be %s", SettingRange(key))
			}
		}
		return nil
	}
	unsigned := t.Kind() == reflect.Uint64
	if t.Kind() != reflect.Int && !unsigned || v == nil {
		return nil
	}
	if _, ok := wholeNumber(v, unsigned); !ok {
		want := SettingRange(key)
		if want == "" {
			want = "a whole number"
		}
		return settingErr(key, v, "must be %s", want)
	}
	return nil
}

// wholeNumber reads a decoded scalar as an integer in int's range (or
// uint64's): goccy gives int64, uint64 or float64 (2.0, .nan), and leaves
// some numbers as strings (1e3, 99999999999999999999); JSON gives
// json.Number.
func wholeNumber(v any, unsigned bool) (float64, bool) {
	var s string
	switch x := v.(type) {
	case int64:
		return float64(x), !unsigned || x >= 0
	case uint64:
		return float64(x), unsigned || x <= math.MaxInt64
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		s = string(x)
	case string:
		s = x
	default:
		return 0, false
	}
	if unsigned {
		n, err := strconv.ParseUint(s, 10, 64)
		return float64(n), err == nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil {
		return float64(n), true
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && f == math.Trunc(f) && math.Abs(f) < math.MaxInt64
}

// DecodeYAML is yaml.UnmarshalWithOptions that returns the decoder's panic
// as an error: goccy/go-yaml v1.19.2 dereferences nil on a tag with no value
// where a list belongs ("classes: !a" and a newline, found by
// FuzzLoadConfig).
// Every YAML that Kiln decodes passes here, so the size and nesting limits
// of a file of settings hold for text from flags too (kiln tune --param).
func DecodeYAML(b []byte, v any, opts ...yaml.DecodeOption) (err error) {
	if len(b) > MaxConfigBytes {
		return fmt.Errorf("%d bytes of YAML, more than the %d KiB a file of settings may have", len(b), MaxConfigBytes>>10)
	}
	if err := checkNesting(b, MaxConfigDepth, false); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML decoder failed on this file (%v)", r)
		}
	}()
	return yaml.UnmarshalWithOptions(b, v, opts...)
}
