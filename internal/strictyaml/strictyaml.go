// Package strictyaml decodes YAML the way Kubernetes components read their configuration: field
// names match case-sensitively, and unknown or duplicate fields are errors. (sigs.k8s.io/yaml's
// UnmarshalStrict goes through encoding/json, which would accept "clusterCidr" for clusterCIDR.)
//
// Errors are typed, so that callers can point at what is wrong: *SyntaxError (YAML that does not
// parse, a key set twice), *FieldError (a field the target does not have), or encoding/json's
// *json.UnmarshalTypeError (a value of the wrong type).
package strictyaml

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// SyntaxError is YAML that does not parse, or a mapping that sets a key twice.
type SyntaxError struct {
	Line int // 1-based; 0 when the parser did not say
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("yaml: line %d: %s", e.Line, e.Msg)
	}
	return "yaml: " + e.Msg
}

// FieldError is a field the target type does not have, or one given twice.
type FieldError struct {
	// Path is the field's path from the document's root, e.g. nodes[0].cpu.
	Path      string
	Duplicate bool
}

func (e *FieldError) Error() string {
	if e.Duplicate {
		return fmt.Sprintf("duplicate field %q", e.Path)
	}
	return fmt.Sprintf("unknown field %q", e.Path)
}

// Unmarshal decodes b into v strictly.
func Unmarshal(b []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return yamlError(err)
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	errs := make([]error, len(strict))
	for i, e := range strict {
		errs[i] = fieldError(e)
	}
	return errors.Join(errs...)
}

var (
	strictMsg = regexp.MustCompile(`^(unknown|duplicate) field "(.*)"$`)
	lineMsg   = regexp.MustCompile(`^\s*(?:yaml: )?line (\d+): (.*)$`)
)

// fieldError types one of sigs.k8s.io/json's strict errors (which are plain messages).
func fieldError(err error) error {
	m := strictMsg.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	return &FieldError{Path: m[2], Duplicate: m[1] == "duplicate"}
}

// yamlError types the YAML parser's errors: "yaml: line 3: msg", or "yaml: unmarshal errors:"
// followed by one "line N: msg" per line.
func yamlError(err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "yaml: unmarshal errors:\n"); ok {
		var errs []error
		for _, l := range strings.Split(rest, "\n") {
			if strings.TrimSpace(l) != "" {
				errs = append(errs, syntaxError(l))
			}
		}
		return errors.Join(errs...)
	}
	return syntaxError(msg)
}

func syntaxError(msg string) *SyntaxError {
	if m := lineMsg.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return &SyntaxError{Line: n, Msg: m[2]}
		}
	}
	return &SyntaxError{Msg: strings.TrimPrefix(strings.TrimSpace(msg), "yaml: ")}
}
