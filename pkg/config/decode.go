package config

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with one key of a configuration file.
type FieldError struct {
	Path string // key path, e.g. "tunnels[1].inside.local"
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors holds every problem found in a configuration, in the order found.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// decoder walks the generic tree that YAML decoding produced, converting
// leaves into typed values and collecting an error, with its key path, for
// every key that is unknown, missing or malformed.
type decoder struct {
	errs     Errors
	warnings []string
	names    peerNames
	baseDir  string          // relative secret paths are resolved against it
	seen     map[string]bool // every key path asked for, list indexes as []
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

func (d *decoder) warnf(path, format string, args ...any) {
	d.warnings = append(d.warnings, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}.Error())
}

func (d *decoder) errorf(path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// obj is one YAML mapping being decoded; it remembers which keys were read
// so that done can report the rest as unknown.
type obj struct {
	d    *decoder
	path string
	m    map[string]any
	used map[string]bool
}

func (d *decoder) object(path string, v any) *obj {
	o := &obj{d: d, path: path, used: map[string]bool{}}
	switch t := v.(type) {
	case nil:
		o.m = map[string]any{}
	case map[string]any:
		o.m = t
	default:
		d.errorf(path, "must be a mapping, got %s", describe(v))
		o.m = map[string]any{}
	}
	return o
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (o *obj) key(k string) string { return join(o.path, k) }

func (o *obj) get(k string) (any, bool) {
	o.used[k] = true
	if o.d.seen != nil {
		o.d.seen[indexRE.ReplaceAllString(o.key(k), "[]")] = true
	}
	v, ok := o.m[k]
	if ok && v == nil {
		return nil, false
	}
	return v, ok
}

// done reports every key of the mapping that no accessor asked for.
func (o *obj) done() {
	var unknown []string
	for k := range o.m {
		if !o.used[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		o.d.errorf(o.key(k), "unknown key")
	}
}

func (o *obj) child(k string) *obj {
	v, _ := o.get(k)
	return o.d.object(o.key(k), v)
}

func (o *obj) str(k string, required bool) (string, bool) {
	v, ok := o.get(k)
	if !ok {
		if required {
			o.d.errorf(o.key(k), "required")
		}
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		o.d.errorf(o.key(k), "must be a string, got %s", describe(v))
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		if required {
			o.d.errorf(o.key(k), "required")
		}
		return "", false
	}
	return strings.TrimSpace(s), true
}

func (o *obj) integer(k string, required bool, lo, hi int64) (int64, bool) {
	v, ok := o.get(k)
	if !ok {
		if required {
			o.d.errorf(o.key(k), "required")
		}
		return 0, false
	}
	var n int64
	switch t := v.(type) {
	case int:
		n = int64(t)
	case int64:
		n = t
	case uint64:
		if t > math.MaxInt64 {
			o.d.errorf(o.key(k), "%d out of range %d..%d", t, lo, hi)
			return 0, false
		}
		n = int64(t)
	case float64:
		if t != math.Trunc(t) || t > math.MaxInt64 || t < math.MinInt64 {
			o.d.errorf(o.key(k), "must be a whole number, got %v", t)
			return 0, false
		}
		n = int64(t)
	case string:
		p, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
		if err != nil {
			o.d.errorf(o.key(k), "must be a whole number, got %q", t)
			return 0, false
		}
		n = p
	default:
		o.d.errorf(o.key(k), "must be a whole number, got %s", describe(v))
		return 0, false
	}
	if n < lo || n > hi {
		o.d.errorf(o.key(k), "%d out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return n, true
}

func (o *obj) boolean(k string) (bool, bool) {
	v, ok := o.get(k)
	if !ok {
		return false, false
	}
	b, isBool := v.(bool)
	if !isBool {
		o.d.errorf(o.key(k), "must be true or false, got %s", describe(v))
		return false, false
	}
	return b, true
}

func (o *obj) duration(k string, def time.Duration) time.Duration {
	s, ok := o.str(k, false)
	if !ok {
		return def
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		o.d.errorf(o.key(k), "not a duration (examples: 9s, 300ms): %q", s)
		return def
	}
	if dur <= 0 {
		o.d.errorf(o.key(k), "must be positive, got %s", s)
		return def
	}
	return dur
}

// absPath reads an optional absolute path.
func (o *obj) absPath(k, def string) string {
	s, ok := o.str(k, false)
	if !ok {
		return def
	}
	if !filepath.IsAbs(s) {
		o.d.errorf(o.key(k), "must be an absolute path, got %q", s)
	}
	return s
}

func (o *obj) addr(k string, required bool) netip.Addr {
	s, ok := o.str(k, required)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		o.d.errorf(o.key(k), "not an IP address: %q", s)
		return netip.Addr{}
	}
	if a.Zone() != "" {
		o.d.errorf(o.key(k), "zoned addresses are not supported: %q", s)
		return netip.Addr{}
	}
	return a
}

// list returns the elements of a YAML sequence with their key paths.
func (o *obj) list(k string) ([]any, []string) {
	v, ok := o.get(k)
	if !ok {
		return nil, nil
	}
	l, isList := v.([]any)
	if !isList {
		o.d.errorf(o.key(k), "must be a list, got %s", describe(v))
		return nil, nil
	}
	paths := make([]string, len(l))
	for i := range l {
		paths[i] = fmt.Sprintf("%s[%d]", o.key(k), i)
	}
	return l, paths
}

func (o *obj) strings(k string) ([]string, []string) {
	l, paths := o.list(k)
	var out, outPaths []string
	for i, v := range l {
		s, ok := v.(string)
		if !ok || strings.TrimSpace(s) == "" {
			o.d.errorf(paths[i], "must be a non-empty string, got %s", describe(v))
			continue
		}
		out = append(out, strings.TrimSpace(s))
		outPaths = append(outPaths, paths[i])
	}
	return out, outPaths
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "nothing"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	default:
		return fmt.Sprintf("%T %v", v, v)
	}
}
