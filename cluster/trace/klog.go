package trace

import (
	"strconv"
	"strings"
	"time"
)

// klogLine is one line of a component's log in klog's text format:
//
//	I1207 21:56:36.583067       1 schedule_one.go:1052] "Calculated node's final score for pod" pod="default/web-1" node="kf-m02" score=594
type klogLine struct {
	Time time.Time
	Msg  string
	KV   map[string]string // values unquoted; objects ({...}, [...]) as written
}

// parseKlog parses a structured klog line; false for anything else (a continuation line, an
// unstructured message). The header has no year: year is used (the log's lines are recent), in
// UTC, the nodes' zone.
func parseKlog(line string, year int) (klogLine, bool) {
	if len(line) < 30 || !strings.ContainsRune("IWEF", rune(line[0])) {
		return klogLine{}, false
	}
	t, err := time.ParseInLocation("0102 15:04:05.000000", line[1:21], time.UTC)
	if err != nil {
		return klogLine{}, false
	}
	t = t.AddDate(year, 0, 0)
	_, rest, ok := strings.Cut(line[21:], "] ")
	if !ok || !strings.HasPrefix(rest, `"`) {
		return klogLine{}, false
	}
	msg, rest, ok := quoted(rest)
	if !ok {
		return klogLine{}, false
	}
	l := klogLine{Time: t, Msg: msg, KV: map[string]string{}}
	for {
		rest = strings.TrimLeft(rest, " ")
		key, after, ok := strings.Cut(rest, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return l, true
		}
		var v string
		switch {
		case strings.HasPrefix(after, `"`):
			if v, rest, ok = quoted(after); !ok {
				return l, true
			}
		case strings.HasPrefix(after, "{") || strings.HasPrefix(after, "["):
			n := balanced(after)
			v, rest = after[:n], after[n:]
		case strings.HasPrefix(after, "<"): // a multi-line value follows on the next lines
			return l, true
		default:
			if i := strings.IndexByte(after, ' '); i >= 0 {
				v, rest = after[:i], after[i:]
			} else {
				v, rest = after, ""
			}
		}
		l.KV[key] = v
	}
}

// quoted reads the Go-quoted string s starts with; it returns it unquoted and what follows.
func quoted(s string) (string, string, bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, s[i+1:], err == nil
		}
	}
	return "", "", false
}

// balanced is the length of the JSON object or array s starts with (all of s when unbalanced).
func balanced(s string) int {
	depth, inString := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(s)
}
