package tune

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/kiln-ml/kiln/trainer"
)

// Scale says how a range is sampled and gridded.
type Scale string

const (
	Linear Scale = "linear" // uniform
	Log    Scale = "log"    // uniform in the logarithm (learning rates, weight decay)
	Pow2   Scale = "pow2"   // the powers of two in the range, uniformly (batch sizes, widths)
)

// DefaultGridSteps is how many points a linear or log range gives a grid
// when the space does not say (steps:).
const DefaultGridSteps = 3

// Dimension is one setting of the search: a choice of values (a single value
// fixes the setting) or a numeric range with a scale. Key is the setting's
// name in a config file (trainer.Config's YAML names: lr, batch, hidden,
// depth, optimizer, weight_decay, schedule, dropout, …).
type Dimension struct {
	Key    string  `json:"key"`
	Values []any   `json:"values,omitempty"`
	Min    float64 `json:"min,omitempty"`
	Max    float64 `json:"max,omitempty"`
	Scale  Scale   `json:"scale,omitempty"`
	Steps  int     `json:"steps,omitempty"` // grid points of a linear or log range

	kind reflect.Kind // of the Config field, filled by check
}

// IsRange reports whether d is a range rather than a list of values.
func (d Dimension) IsRange() bool { return d.Scale != "" }

// Space is the search space: its dimensions in the order they were given.
type Space struct {
	Dims []Dimension `json:"dims"`
}

// Params are one trial's values, by setting name.
type Params map[string]any

// untunable settings are the tune's own business.
var untunable = map[string]string{
	"run_dir":          "each trial's directory is DIR/trials/<NNN>",
	"threads":          "use --threads or --parallel",
	"device":           "the tune runs every trial on one device",
	"stop_after_epoch": "the tune runs trials to the end or stops them itself",
	"memory_limit_mb":  "set it for the whole tune",
	"world_size":       "it is the number of ranks mpirun starts, not a setting",
}

// configFields maps each Config setting's name to its Go kind.
func configFields() map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	t := reflect.TypeFor[trainer.Config]()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if name != "" && name != "-" {
			out[name] = t.Field(i).Type.Kind()
		}
	}
	return out
}

func tunableKeys() []string {
	var keys []string
	for k := range configFields() {
		if _, no := untunable[k]; !no {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return true
	}
	return false
}

func isNumeric(k reflect.Kind) bool { return isInt(k) || k == reflect.Float64 || k == reflect.Float32 }

// LoadSpace reads a search space from a YAML (or JSON) file: one key per
// setting, each a list of values, a range or a single fixed value:
//
//	lr: {min: 1e-4, max: 0.3, scale: log}
//	batch: {min: 16, max: 128, scale: pow2}
//	hidden: [32, 64, 128]
//	optimizer: [sgd, adamw]
//	weight_decay: {min: 1e-5, max: 1e-2, scale: log, steps: 4}
//	epochs: 2
func LoadSpace(path string) (*Space, error) {
	// Bounded like a configuration: the YAML parser's memory grows with the
	// file's size and nesting.
	b, err := trainer.ReadConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("space: %w", err)
	}
	s, err := ParseSpace(b)
	if err != nil {
		return nil, fmt.Errorf("space %s: %w", path, err)
	}
	return s, nil
}

// ParseSpace parses a search space in LoadSpace's format.
func ParseSpace(b []byte) (*Space, error) {
	b = bytes.TrimPrefix(b, []byte("\ufeff")) // a byte-order mark, as some editors write (as ParseConfig)
	var m yaml.MapSlice
	if err := trainer.OneYAMLDocument(b); err != nil {
		return nil, err
	}
	if err := trainer.DecodeYAML(b, &m, yaml.UseOrderedMap()); err != nil {
		return nil, err
	}
	s := &Space{}
	for _, it := range m {
		key, ok := it.Key.(string)
		if !ok {
			return nil, fmt.Errorf("key %v is not a setting name", it.Key)
		}
		d, err := dimensionFrom(key, it.Value)
		if err != nil {
			return nil, err
		}
		if err := s.Add(d); err != nil {
			return nil, err
		}
	}
	if len(s.Dims) == 0 {
		return nil, fmt.Errorf("the search space is empty")
	}
	return s, nil
}

// ParseParam parses one dimension from the command line, KEY=SPEC, where
// SPEC is a comma-separated choice (optimizer=sgd,adamw), a range
// MIN..MAX[:SCALE[:STEPS]] (lr=1e-4..0.3:log, batch=16..128:pow2), or any
// YAML value as the space file takes it (lr={min: 1e-4, max: 0.3, scale: log}).
func ParseParam(s string) (Dimension, error) {
	key, spec, ok := strings.Cut(s, "=")
	key = strings.ReplaceAll(strings.TrimSpace(key), "-", "_")
	if !ok || key == "" || spec == "" {
		return Dimension{}, fmt.Errorf("--param %q: want KEY=VALUES, e.g. lr=1e-4..0.3:log or optimizer=sgd,adamw", s)
	}
	if lo, rest, ok := strings.Cut(spec, ".."); ok && !strings.ContainsAny(spec, "{[") {
		parts := strings.Split(rest, ":")
		min, err1 := strconv.ParseFloat(strings.TrimSpace(lo), 64)
		max, err2 := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
		if err1 != nil || err2 != nil {
			return Dimension{}, fmt.Errorf("--param %q: a range is MIN..MAX[:SCALE[:STEPS]] with numbers", s)
		}
		d := Dimension{Key: key, Min: min, Max: max, Scale: Linear}
		if len(parts) > 1 {
			d.Scale = Scale(strings.TrimSpace(parts[1]))
		}
		if len(parts) > 2 {
			if d.Steps, err1 = strconv.Atoi(strings.TrimSpace(parts[2])); err1 != nil {
				return Dimension{}, fmt.Errorf("--param %q: steps %q is not an integer", s, parts[2])
			}
		}
		if len(parts) > 3 {
			return Dimension{}, fmt.Errorf("--param %q: a range is MIN..MAX[:SCALE[:STEPS]]", s)
		}
		return d, d.check()
	}
	var v any
	if strings.ContainsAny(spec, "{[") {
		if err := trainer.DecodeYAML([]byte(spec), &v, yaml.UseOrderedMap()); err != nil {
			return Dimension{}, fmt.Errorf("--param %q: %v", s, err)
		}
	} else {
		var vs []any
		for _, p := range strings.Split(spec, ",") {
			var x any
			if err := trainer.DecodeYAML([]byte(strings.TrimSpace(p)), &x); err != nil {
				return Dimension{}, fmt.Errorf("--param %q: %v", s, err)
			}
			vs = append(vs, x)
		}
		v = vs
	}
	d, err := dimensionFrom(key, v)
	if err != nil {
		return d, fmt.Errorf("--param %q: %w", s, err)
	}
	return d, nil
}

// Add appends a dimension, refusing a second one for the same setting.
func (s *Space) Add(d Dimension) error {
	d.Key = strings.ReplaceAll(d.Key, "-", "_")
	if err := d.check(); err != nil {
		return err
	}
	for _, e := range s.Dims {
		if e.Key == d.Key {
			return fmt.Errorf("%s: given twice", d.Key)
		}
	}
	s.Dims = append(s.Dims, d)
	return nil
}

// Check validates every dimension (a space read back from tune.json).
func (s *Space) Check() error {
	if s == nil || len(s.Dims) == 0 {
		return fmt.Errorf("the search space is empty")
	}
	for i := range s.Dims {
		if err := s.Dims[i].check(); err != nil {
			return err
		}
	}
	return nil
}

// Varies reports whether the space gives setting key more than one value.
func (s *Space) Varies(key string) bool {
	for _, d := range s.Dims {
		if d.Key == key {
			return d.IsRange() || len(d.Values) > 1
		}
	}
	return false
}

// Keys lists the settings of the space in order.
func (s *Space) Keys() []string {
	keys := make([]string, len(s.Dims))
	for i, d := range s.Dims {
		keys[i] = d.Key
	}
	return keys
}

func dimensionFrom(key string, v any) (Dimension, error) {
	d := Dimension{Key: strings.ReplaceAll(key, "-", "_")}
	switch v := v.(type) {
	case []any:
		d.Values = v
	case yaml.MapSlice:
		for _, it := range v {
			k, _ := it.Key.(string)
			var err error
			switch k {
			case "values":
				vs, ok := it.Value.([]any)
				if !ok {
					return d, fmt.Errorf("%s: values must be a list", key)
				}
				d.Values = vs
			case "min":
				d.Min, err = number(it.Value)
			case "max":
				d.Max, err = number(it.Value)
			case "scale":
				s, ok := it.Value.(string)
				if !ok {
					return d, fmt.Errorf("%s: scale must be linear, log or pow2", key)
				}
				d.Scale = Scale(s)
			case "steps":
				var f float64
				f, err = number(it.Value)
				d.Steps = int(f)
				if err == nil && float64(d.Steps) != f {
					err = fmt.Errorf("not an integer")
				}
			default:
				return d, fmt.Errorf("%s: unknown field %q (a range has min, max, scale and steps; a choice has values)", key, k)
			}
			if err != nil {
				return d, fmt.Errorf("%s.%s: %v", key, k, err)
			}
		}
		if d.Values == nil && d.Scale == "" {
			d.Scale = Linear
		}
		if d.Values != nil && (d.Scale != "" || d.Min != 0 || d.Max != 0) {
			return d, fmt.Errorf("%s: give either values or a range (min, max, scale), not both", key)
		}
	case nil:
		return d, fmt.Errorf("%s: no value", key)
	default:
		d.Values = []any{v}
	}
	return d, d.check()
}

func number(v any) (float64, error) {
	switch x := v.(type) {
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case float64:
		return x, nil
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return f, nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}

// check validates d against the Config setting it names, and normalises its
// values (numbers to the setting's type), so a mistake is found before any
// trial runs.
func (d *Dimension) check() error {
	kinds := configFields()
	kind, ok := kinds[d.Key]
	if !ok {
		return fmt.Errorf("%s: not a training setting (have %s)", d.Key, strings.Join(tunableKeys(), ", "))
	}
	if why, no := untunable[d.Key]; no {
		return fmt.Errorf("%s: cannot be searched (%s)", d.Key, why)
	}
	d.kind = kind
	if !d.IsRange() {
		if len(d.Values) == 0 {
			return fmt.Errorf("%s: an empty list of values", d.Key)
		}
		for i, v := range d.Values {
			nv, err := normalise(d.Key, kind, v)
			if err != nil {
				return err
			}
			d.Values[i] = nv
		}
		return nil
	}
	if !isNumeric(kind) {
		return fmt.Errorf("%s: a range needs a numeric setting; list the values instead", d.Key)
	}
	finite := !math.IsNaN(d.Min) && !math.IsInf(d.Min, 0) && !math.IsNaN(d.Max) && !math.IsInf(d.Max, 0)
	switch {
	case !finite || d.Min > d.Max:
		return fmt.Errorf("%s: range [%v, %v]: want finite min ≤ max", d.Key, d.Min, d.Max)
	case d.Steps < 0:
		return fmt.Errorf("%s: steps %d must not be negative", d.Key, d.Steps)
	}
	switch d.Scale {
	case Linear:
	case Log:
		if d.Min <= 0 {
			return fmt.Errorf("%s: a log range needs min > 0 (have %v)", d.Key, d.Min)
		}
	case Pow2:
		if d.Min <= 0 {
			return fmt.Errorf("%s: a pow2 range needs min > 0 (have %v)", d.Key, d.Min)
		}
		if lo, hi := pow2Exponents(d.Min, d.Max); lo > hi {
			return fmt.Errorf("%s: no power of two in [%v, %v]", d.Key, d.Min, d.Max)
		}
	default:
		return fmt.Errorf("%s: scale %q: want linear, log or pow2", d.Key, d.Scale)
	}
	if isInt(kind) && math.Floor(d.Max) < math.Ceil(d.Min) {
		return fmt.Errorf("%s: no integer in [%v, %v]", d.Key, d.Min, d.Max)
	}
	return nil
}

// normalise turns a value read from YAML or JSON into the setting's type, or
// says why it cannot be one.
func normalise(key string, kind reflect.Kind, v any) (any, error) {
	if isNumeric(kind) {
		f, err := number(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", key, err)
		}
		if isInt(kind) {
			if f != math.Trunc(f) {
				return nil, fmt.Errorf("%s: %v is not an integer", key, v)
			}
			return int64(f), nil
		}
		return f, nil
	}
	// Anything else goes through the Config's own decoding.
	if _, err := (Params{key: v}).Apply(trainer.DefaultConfig()); err != nil {
		return nil, err
	}
	return v, nil
}

func pow2Exponents(min, max float64) (int, int) {
	return int(math.Ceil(math.Log2(min) - 1e-9)), int(math.Floor(math.Log2(max) + 1e-9))
}

// sample draws one value.
func (d Dimension) sample(r *rand.Rand) any {
	if !d.IsRange() {
		return d.Values[r.IntN(len(d.Values))]
	}
	var v float64
	switch d.Scale {
	case Pow2:
		lo, hi := pow2Exponents(d.Min, d.Max)
		v = math.Ldexp(1, lo+r.IntN(hi-lo+1))
	case Log:
		v = math.Exp(math.Log(d.Min) + r.Float64()*(math.Log(d.Max)-math.Log(d.Min)))
	default:
		if isInt(d.kind) {
			lo, hi := int64(math.Ceil(d.Min)), int64(math.Floor(d.Max))
			return lo + r.Int64N(hi-lo+1)
		}
		v = d.Min + r.Float64()*(d.Max-d.Min)
	}
	return d.value(v)
}

// value rounds a point of a range to the setting's type: integers to the
// nearest in range, floats to four significant digits (tables stay readable
// and the draw keeps its distribution).
func (d Dimension) value(v float64) any {
	if isInt(d.kind) {
		n := int64(math.Round(v))
		return min(max(n, int64(math.Ceil(d.Min))), int64(math.Floor(d.Max)))
	}
	if v == 0 {
		return 0.0
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 4, 64), 64)
	return min(max(r, d.Min), d.Max)
}

// points are the values d gives a grid.
func (d Dimension) points() []any {
	if !d.IsRange() {
		return d.Values
	}
	var out []any
	add := func(v any) {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	if d.Scale == Pow2 {
		lo, hi := pow2Exponents(d.Min, d.Max)
		for e := lo; e <= hi; e++ {
			add(d.value(math.Ldexp(1, e)))
		}
		return out
	}
	if isInt(d.kind) && d.Scale == Linear && d.Steps == 0 && math.Floor(d.Max)-math.Ceil(d.Min) < 10 {
		for n := int64(math.Ceil(d.Min)); n <= int64(math.Floor(d.Max)); n++ {
			add(n)
		}
		return out
	}
	n := d.Steps
	if n == 0 {
		n = DefaultGridSteps
	}
	if n == 1 || d.Min == d.Max {
		if d.Scale == Log {
			return []any{d.value(math.Sqrt(d.Min * d.Max))}
		}
		return []any{d.value((d.Min + d.Max) / 2)}
	}
	for i := 0; i < n; i++ {
		f := float64(i) / float64(n-1)
		if d.Scale == Log {
			add(d.value(math.Exp(math.Log(d.Min) + f*(math.Log(d.Max)-math.Log(d.Min)))))
		} else {
			add(d.value(d.Min + f*(d.Max-d.Min)))
		}
	}
	return out
}

// GridSize is the number of points of the full grid.
func (s *Space) GridSize() int {
	n := 1
	for _, d := range s.Dims {
		n *= len(d.points())
		if n > 1<<20 {
			return n
		}
	}
	return n
}

// Grid enumerates the grid, the last dimension varying fastest.
func (s *Space) Grid() []Params {
	out := []Params{{}}
	for _, d := range s.Dims {
		pts := d.points()
		next := make([]Params, 0, len(out)*len(pts))
		for _, p := range out {
			for _, v := range pts {
				q := clone(p)
				q[d.Key] = v
				next = append(next, q)
			}
		}
		out = next
	}
	return out
}

func clone(p Params) Params {
	q := make(Params, len(p)+1)
	for k, v := range p {
		q[k] = v
	}
	return q
}

// Sample draws trial i's values (0-based). Each trial has its own stream
// from (seed, i), so the draws do not depend on how many came before.
func (s *Space) Sample(seed uint64, i int) Params { return s.redraw(seed, i, 0) }

// redraw is Sample's draw number a for trial i (Sample's own is a = 0).
func (s *Space) redraw(seed uint64, i, a int) Params {
	r := rand.New(rand.NewPCG(seed, 0x74756e65^uint64(i)^uint64(a)<<32))
	p := Params{}
	for _, d := range s.Dims {
		p[d.Key] = d.sample(r)
	}
	return p
}

// maxRedraws bounds the draws of one trial in a space too large to count,
// where a repeat is only a coincidence of rounding.
const maxRedraws = 1000

// Draws returns n trials' values drawn as Sample draws them, but none
// twice: a trial whose draw repeats an earlier trial's draws again from its
// next stream, as KerasTuner's random search does. Two trials with the same
// values and seed would train the same run twice. A space of fewer than n
// distinct settings (Distinct) gives each of them once.
func (s *Space) Draws(seed uint64, n int) []Params {
	if d := s.Distinct(); d > 0 && d < n {
		n = d
	}
	seen := map[string]bool{}
	out := make([]Params, 0, n)
	for i := 0; i < n; i++ {
		p := s.Sample(seed, i)
		for a := 1; seen[p.key()] && a <= maxRedraws; a++ {
			p = s.redraw(seed, i, a)
		}
		seen[p.key()] = true
		out = append(out, p)
	}
	return out
}

// Distinct is the number of distinct settings a draw can give, or 0 when a
// dimension is a range of floats (too many to count) or the count passes
// 2^30.
func (s *Space) Distinct() int {
	n := 1
	for _, d := range s.Dims {
		var k int
		switch {
		case !d.IsRange():
			vs := map[string]bool{}
			for _, v := range d.Values {
				vs[String(v)] = true
			}
			k = len(vs)
		case d.Scale == Pow2:
			lo, hi := pow2Exponents(d.Min, d.Max)
			k = hi - lo + 1
		case d.Min == d.Max: // one value, whatever the scale
			k = 1
		case isInt(d.kind) && (d.Scale == Linear || d.Scale == Log) && math.Floor(d.Max)-math.Ceil(d.Min) < 1<<30:
			k = int(math.Floor(d.Max)-math.Ceil(d.Min)) + 1 // whole numbers, drawn on either scale
		default:
			return 0
		}
		if n *= k; n > 1<<30 {
			return 0
		}
	}
	return n
}

// key names p's values, one string per distinct setting.
func (p Params) key() string {
	keys := slices.Sorted(maps.Keys(p))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s;", k, String(p[k]))
	}
	return b.String()
}

// Apply returns base with the values of p, decoded as a config file's
// values are, so a value of the wrong type is an error naming the setting.
func (p Params) Apply(base trainer.Config) (trainer.Config, error) {
	m, err := configMap(base)
	if err != nil {
		return base, err
	}
	for k, v := range p {
		if ms, ok := v.(yaml.MapSlice); ok {
			v = ms.ToMap()
		}
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return base, fmt.Errorf("tune: %v", err)
	}
	var c trainer.Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return base, fmt.Errorf("%s: %v is not a %s", te.Field, p[te.Field], te.Type)
		}
		return base, fmt.Errorf("tune: %v", err)
	}
	return c, nil
}

// configMap is c as its JSON object.
func configMap(c trainer.Config) (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // a seed past 2^53 stays exact (float64 rounded it; past 2^63 the trial was invalid)
	return m, dec.Decode(&m)
}

// String formats a value for tables and CSV.
func String(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return x
	case nil:
		return ""
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}
