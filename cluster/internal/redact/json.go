package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
)

// JSON redacts a JSON document field by field and returns it indented, its fields in their
// order:
//   - a string field named like a secret (IsSecretName: token, password, client-key-data...) is
//     masked; one named like a proxy setting (httpProxy, HTTP_PROXY...) loses its URL's userinfo;
//   - the values of a Secret's data and stringData (an object of kind Secret, or an item of a
//     SecretList) are masked, their keys kept;
//   - an environment variable {"name": "DB_PASSWORD", "value": "..."} has its value masked;
//   - in a list of strings (a command line), the element after a secret flag given alone
//     (["--token", "abc"]) is masked;
//   - any other string goes through Text, and a string that is itself a JSON document (the
//     last-applied-configuration annotation) through JSON.
//
// What does not parse as one JSON value goes through Text instead.
func JSON(b []byte) []byte { return Object(b, "") }

// Object is JSON for a Kubernetes object or list whose kind is known apart: typed objects as
// client-go returns them are marshalled without their kind (no TypeMeta), and a SecretList's
// items must still be taken for Secrets.
func Object(b []byte, kind string) []byte {
	v, err := decode(b)
	if err != nil {
		return Text(b)
	}
	if o, ok := v.(object); ok && kind != "" && o.str("kind") == "" {
		v = append(object{{key: "kind", val: kind}}, o...)
		red := walk(v, false).(object)[1:]
		return indent(red, b)
	}
	return indent(walk(v, false), b)
}

func indent(v any, orig []byte) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, encode(nil, v), "", "  "); err != nil {
		return Text(orig) // cannot happen: encode writes valid JSON
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// object is a JSON object, its members in order.
type object []member

type member struct {
	key string
	val any
}

func (o object) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

func (o object) str(key string) string {
	v, _ := o.get(key)
	s, _ := v.(string)
	return s
}

// decode parses one JSON value: objects as object, arrays as []any, numbers as json.Number.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		o := object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			o = append(o, member{key: k.(string), val: v})
		}
		_, err := dec.Token() // }
		return o, err
	case json.Delim('['):
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token() // ]
		return a, err
	}
	return tok, nil
}

// encode appends v as compact JSON.
func encode(dst []byte, v any) []byte {
	switch v := v.(type) {
	case object:
		dst = append(dst, '{')
		for i, m := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, m.key)
			dst = append(dst, ':')
			dst = encode(dst, m.val)
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = encode(dst, e)
		}
		return append(dst, ']')
	case string:
		return appendString(dst, v)
	case json.Number:
		return append(dst, v...)
	case bool:
		if v {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	}
	return append(dst, "null"...)
}

func appendString(dst []byte, s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(dst, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...)
}

// flagAlone is a secret flag without its value (the value is the next argument).
var flagAlone = regexp.MustCompile(`(?i)^--?[a-z0-9-]*(?:token|password|passwd|secret)$`)

// walk returns v redacted; secret says v is a Secret (an item of a SecretList has no kind).
func walk(v any, secret bool) any {
	switch v := v.(type) {
	case object:
		kind := v.str("kind")
		secret = secret || kind == "Secret"
		envVar := IsSecretName(v.str("name"))
		out := make(object, len(v))
		for i, m := range v {
			val := m.val
			switch s, isString := val.(string); {
			case secret && (m.key == "data" || m.key == "stringData"):
				val = maskAll(val)
			case kind == "SecretList" && m.key == "items":
				if items, ok := val.([]any); ok {
					red := make([]any, len(items))
					for j, it := range items {
						red[j] = walk(it, true)
					}
					val = red
				} else {
					val = walk(val, false)
				}
			case isString && (IsSecretName(m.key) || envVar && m.key == "value"):
				if !nonSecret(s) {
					val = Mask
				}
			case isString && isProxyName(m.key):
				val = String(URL(s))
			default:
				val = walk(val, false)
			}
			out[i] = member{key: m.key, val: val}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			if s, ok := e.(string); ok && i > 0 {
				if prev, ok := v[i-1].(string); ok && flagAlone.MatchString(prev) && !strings.HasPrefix(s, "-") && !nonSecret(s) {
					out[i] = Mask
					continue
				}
			}
			out[i] = walk(e, false)
		}
		return out
	case string:
		if t := strings.TrimSpace(v); len(t) > 1 && (t[0] == '{' || t[0] == '[') {
			if doc, err := decode([]byte(t)); err == nil {
				return string(encode(nil, walk(doc, false)))
			}
		}
		return String(v)
	}
	return v
}

// maskAll masks every value of a Secret's data.
func maskAll(v any) any {
	o, ok := v.(object)
	if !ok {
		if v == nil {
			return nil
		}
		return Mask
	}
	out := make(object, len(o))
	for i, m := range o {
		out[i] = member{key: m.key, val: Mask}
	}
	return out
}
