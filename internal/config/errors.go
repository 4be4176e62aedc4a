package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/strictyaml"
)

// Error is a mistake in a config file: the file, the line when known, the field's path when
// there is one (nodes[1].role), and what is wrong and allowed.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Path != "" {
		b.WriteString(": " + e.Path)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// err is an error at path (the whole file when ""), with the line of path.
func (f *File) err(path, format string, a ...any) *Error {
	return &Error{File: f.Name, Line: f.line(path), Path: path, Msg: fmt.Sprintf(format, a...)}
}

// Explain points a spec validation error at the file: a *spec.FieldError becomes an *Error with
// the line of the field (or of the nearest enclosing field the file has). overridden says which
// fields flags set instead: their errors are not the file's and are returned as they are; it may
// be nil. Other errors are returned as they are too.
func (f *File) Explain(err error, overridden func(path string) bool) error {
	var fe *spec.FieldError
	if !errors.As(err, &fe) || (overridden != nil && overridden(fe.Path)) {
		return err
	}
	return f.err(fe.Path, "%s", fe.Msg)
}

// decodeError turns strictyaml's errors into *Errors.
func (f *File) decodeError(err error) error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range joined.Unwrap() {
			errs = append(errs, f.decodeError(e))
		}
		return errors.Join(errs...)
	}
	var (
		se *strictyaml.SyntaxError
		fe *strictyaml.FieldError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		return &Error{File: f.Name, Line: se.Line, Msg: syntaxMessage(se.Msg)}
	case errors.As(err, &fe):
		if fe.Duplicate {
			return f.err(fe.Path, "is given twice")
		}
		return f.err(fe.Path, "unknown field; %s", unknownFieldHint(fe.Path))
	case errors.As(err, &te):
		return f.typeError(te)
	}
	return &Error{File: f.Name, Msg: err.Error()}
}

var dupKey = regexp.MustCompile(`^key (".*") already set in map$`)

func syntaxMessage(msg string) string {
	if m := dupKey.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("the key %s is given twice", m[1])
	}
	return "not valid YAML: " + msg
}

// typeError says which value has the wrong type. encoding/json names the field without list
// indices (nodes.cpus); the document gives the first value there of the type it complained
// about, and so the index and the line.
func (f *File) typeError(te *json.UnmarshalTypeError) error {
	got := strings.Fields(te.Value)
	kind := "a value"
	if len(got) > 0 {
		kind = map[string]string{"string": "a string", "number": "a number", "bool": "a boolean", "object": "a mapping", "array": "a list"}[got[0]]
	}
	path := te.Field
	var fields []string
	if te.Field != "" {
		fields = strings.Split(te.Field, ".")
	}
	finder := &kindFinder{got: got, budget: 100000}
	if p, ok := finder.find(f.root, fields, ""); ok {
		path = p
	}
	if path == "" {
		return f.err("", "is %s, not a mapping of fields", kind)
	}
	return f.err(path, "got %s, want %s", kind, describeType(te.Type))
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// kindFinder looks in the document for the value encoding/json complained about. Aliases may
// make the tree exponentially larger than the file: budget bounds the nodes it visits.
type kindFinder struct {
	got    []string // encoding/json's "string", "number"... (UnmarshalTypeError.Value)
	budget int
}

// find looks under n, along fields (struct fields; lists are searched item by item), for the
// first value of the kind f.got, and returns its full path (nodes[1].cpus).
func (f *kindFinder) find(n *yaml.Node, fields []string, prefix string) (string, bool) {
	n = resolve(n)
	if f.budget--; n == nil || f.budget < 0 {
		return "", false
	}
	if n.Kind == yaml.SequenceNode && len(fields) > 0 {
		// encoding/json's path has no indices: the field is in one of the list's items.
		for i, c := range n.Content {
			if p, ok := f.find(c, fields, fmt.Sprintf("%s[%d]", prefix, i)); ok {
				return p, true
			}
		}
		return "", false
	}
	if len(fields) == 0 {
		return f.below(n, prefix)
	}
	_, v := mapValue(n, fields[0])
	if v == nil {
		return "", false
	}
	return f.find(v, fields[1:], joinPath(prefix, fields[0]))
}

// below returns the path of n or of the first value below it (through mappings and lists) of
// the kind f.got.
func (f *kindFinder) below(n *yaml.Node, prefix string) (string, bool) {
	n = resolve(n)
	if f.budget--; n == nil || f.budget < 0 {
		return "", false
	}
	if isKind(n, f.got) {
		return prefix, true
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if p, ok := f.below(n.Content[i+1], joinPath(prefix, n.Content[i].Value)); ok {
				return p, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if p, ok := f.below(c, fmt.Sprintf("%s[%d]", prefix, i)); ok {
				return p, true
			}
		}
	}
	return "", false
}

func isKind(n *yaml.Node, got []string) bool {
	if len(got) == 0 {
		return false
	}
	switch got[0] {
	case "object":
		return n.Kind == yaml.MappingNode
	case "array":
		return n.Kind == yaml.SequenceNode
	case "string":
		return n.Kind == yaml.ScalarNode && n.Tag == "!!str"
	case "number":
		return n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float")
	case "bool":
		return n.Kind == yaml.ScalarNode && n.Tag == "!!bool"
	}
	return false
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// line is the line of the field at path (the key's line), or of the nearest enclosing field
// the file has; 0 when unknown.
func (f *File) line(path string) int {
	n, _ := f.locate(path)
	return n
}

// locate finds path (a.b[2].c; keys may hold dots) in the document and returns the line of its
// key (or value, for list items), and whether the whole path was found; when it was not, the
// line is that of the longest prefix found.
func (f *File) locate(path string) (int, bool) {
	n, line, rest := f.root, 0, path
	if n == nil || path == "" {
		return 0, false
	}
	for rest != "" {
		n = resolve(n)
		switch {
		case strings.HasPrefix(rest, "["):
			end := strings.IndexByte(rest, ']')
			i, err := strconv.Atoi(rest[1:max(end, 1)])
			if end < 0 || err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line, false
			}
			n, line, rest = n.Content[i], n.Content[i].Line, rest[end+1:]
		case n.Kind == yaml.MappingNode:
			k, v := longestKey(n, rest)
			if k == nil {
				return line, false
			}
			n, line, rest = v, k.Line, rest[len(k.Value):]
		default:
			return line, false
		}
		rest = strings.TrimPrefix(rest, ".")
	}
	return line, true
}

// longestKey returns the key of mapping m (and its value) that starts path and is followed by
// the end, "." or "[": the longest, since keys may hold dots.
func longestKey(m *yaml.Node, path string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		key := m.Content[i]
		if !strings.HasPrefix(path, key.Value) || (k != nil && len(key.Value) <= len(k.Value)) {
			continue
		}
		if r := path[len(key.Value):]; r == "" || r[0] == '.' || r[0] == '[' {
			k, v = key, m.Content[i+1]
		}
	}
	return k, v
}

var indexSuffix = regexp.MustCompile(`\[\d+\]`)

// unknownFieldHint says what may be written instead of the unknown field at path: the close
// name meant, or the fields allowed there.
func unknownFieldHint(path string) string {
	parts := strings.Split(indexSuffix.ReplaceAllString(path, ""), ".")
	name := parts[len(parts)-1]
	t := reflect.TypeOf(Cluster{})
	for _, p := range parts[:len(parts)-1] {
		ft, ok := fieldType(t, p)
		if !ok {
			return "see `kubeforge config example`"
		}
		t = ft
	}
	allowed := jsonFields(t)
	if name == "name" && elem(t) == reflect.TypeOf(Node{}) {
		return "nodes are named after the cluster by position (<name>, <name>-m02, <name>-m03...); allowed: " + strings.Join(allowed, ", ")
	}
	if s := closest(name, allowed); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	return "allowed: " + strings.Join(allowed, ", ")
}

// elem is t without the slices, maps and pointers around it.
func elem(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Map || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// fieldType is the type of t's field with JSON name name, through slices, maps and pointers.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	t = elem(t)
	if t.Kind() != reflect.Struct {
		return nil, false
	}
	for i := 0; i < t.NumField(); i++ {
		if jsonName(t.Field(i)) == name {
			return t.Field(i).Type, true
		}
	}
	return nil, false
}

// jsonFields lists the JSON names of t's fields, through slices, maps and pointers.
func jsonFields(t reflect.Type) []string {
	t = elem(t)
	var out []string
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < t.NumField(); i++ {
		if n := jsonName(t.Field(i)); n != "" && n != "-" {
			out = append(out, n)
		}
	}
	return out
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// closest returns the candidate that name most likely meant: the same but for case, or at most
// two edits away; "" if none.
func closest(name string, candidates []string) string {
	best, bestD := "", 3
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if strings.EqualFold(c, name) {
			return c
		}
		if d := spec.EditDistance(strings.ToLower(c), strings.ToLower(name)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}
