// Package redact removes credentials from what `kubeforge export logs` writes: the bundle gets
// attached to public bug reports, so whatever could let someone in (a proxy's password, a token,
// a private key) is replaced with Mask, and everything else is left as it was, for the bundle to
// stay useful.
//
// Text works on free text (logs, command output, YAML); JSON works on a JSON document field by
// field (a secret-named field's value, the data of a Secret, an env var named like a secret) and
// applies Text to its other strings.
package redact

import (
	"bytes"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Mask replaces what is redacted.
const Mask = "REDACTED"

var (
	// A PEM private key ("PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"...), newlines
	// real or JSON-escaped.
	pemBlock = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(?s:.*?)-----END [A-Z0-9 ]*PRIVATE KEY-----`)
	// The beginning of a private key whose end was cut off (a truncated log): its header lines
	// and base64 lines, whole lines only; or, newlines JSON-escaped, its base64 lines.
	pemStart = regexp.MustCompile(`-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(?:(?m:(?:\r?\n(?:[A-Za-z0-9+/=]+|Proc-Type: .*|DEK-Info: .*)\r?$)+)|(?:(?:\\r)?\\n[A-Za-z0-9+/=]+)+)`)
	// The userinfo of a URL: scheme://user:password@host. Up to the last @ before the host.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#"'<>\\@]*(?:@[^\s/?#"'<>\\@]*)*@`)
	// An HTTP Authorization header's credentials.
	authzHeader = regexp.MustCompile(`(?i)(\bauthorization["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token|negotiate)\s+)?)[^\s"',;]+`)
	// The scheme of an Authorization header's value.
	authScheme = regexp.MustCompile(`(?i)^(?:bearer|basic|token|negotiate)$`)
	// A bearer token (long enough not to be a word of a sentence: "bearer token").
	bearer = regexp.MustCompile(`(?i)(\bbearer\s+(?:token\s+)?)[A-Za-z0-9._~+/-]{16,}=*`)
	// A JSON Web Token (service account tokens, OIDC ID tokens).
	jwt = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`)
	// A command-line flag named like a secret (--token, --password, --client-secret...), with
	// its value after = or a space.
	secretFlag = regexp.MustCompile(`(?i)(^|[\s"'\[,(])(--?[a-z0-9-]*(?:token|password|passwd|secret))(=|[ \t]+)("[^"\n]*"|'[^'\n]*'|[^\s"',\])]+)`)
	// "key": "value" (JSON, anywhere on a line).
	jsonField = regexp.MustCompile(`"([A-Za-z0-9_.-]+)"(\s*:\s*)("(?:[^"\\\n]|\\.)*")`)
	// key: value at the start of a line (YAML, kubeconfig-shaped content).
	yamlField = regexp.MustCompile(`(?m)^([ \t]*(?:- +)?)(["']?)([A-Za-z0-9_.-]+)(["']?:[ \t]+)([^\s#][^\n]*?)([ \t]*\r?)$`)
	// key=value (environment, logfmt, klog's structured logging).
	envField = regexp.MustCompile(`\b([A-Za-z0-9_.][A-Za-z0-9_.-]*)=("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s"',;&]+)`)
)

// Text returns b with the credentials it holds replaced with Mask: private keys (PEM), the
// userinfo of URLs (http://user:pass@host -> http://REDACTED@host), Authorization headers,
// bearer tokens, JWTs, bootstrap tokens' secrets, flags such as --token= and --password=, and
// the values of fields named like a secret (token, password, client-key-data,
// client-certificate-data...) in YAML, JSON or key=value form. Proxy settings without a scheme
// (HTTP_PROXY=user:pass@host:3128) lose their userinfo too.
func Text(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	if bytes.Contains(b, []byte("PRIVATE KEY-----")) { // keys span lines
		b = pemBlock.ReplaceAll(b, []byte("-----BEGIN ${1}----- "+Mask+" -----END ${1}-----"))
		b = pemStart.ReplaceAll(b, []byte("-----BEGIN ${1}----- "+Mask))
	}
	// Line by line, each rule only on the lines that hold its cheap sign (a keyword): most of a
	// bundle is logs that hold none, and Go's regular expressions are slow over megabytes.
	var out, lower []byte // out stays nil while no line changes
	for off := 0; off < len(b); {
		end := len(b)
		if i := bytes.IndexByte(b[off:], '\n'); i >= 0 {
			end = off + i + 1
		}
		line := b[off:end]
		lower = appendLower(lower[:0], line)
		if red := textLine(line, lower); red != nil {
			if out == nil {
				out = append(make([]byte, 0, len(b)+len(b)/16), b[:off]...)
			}
			out = append(out, red...)
		} else if out != nil {
			out = append(out, line...)
		}
		off = end
	}
	if out == nil {
		return b
	}
	return out
}

// keywords are what a line must hold (lower-cased) for the field and flag rules to run on it:
// parts of every name IsSecretName or isProxyName accepts.
var keywords = [][]byte{[]byte("token"), []byte("secret"), []byte("passw"), []byte("key"), []byte("auth"), []byte("credential"),
	[]byte("certificate"), []byte("proxy")}

// textLine returns the line redacted, or nil when nothing changed; lower is the line in lower case.
func textLine(line, lower []byte) []byte {
	b := line
	if bytes.Contains(b, []byte("://")) && bytes.IndexByte(b, '@') >= 0 {
		b = urlUserinfo.ReplaceAll(b, []byte("${1}"+Mask+"@"))
	}
	if bytes.Contains(lower, []byte("authorization")) {
		b = authzHeader.ReplaceAll(b, []byte("${1}"+Mask))
	}
	if bytes.Contains(lower, []byte("bearer")) {
		b = bearer.ReplaceAll(b, []byte("${1}"+Mask))
	}
	if bytes.Contains(b, []byte("eyJ")) {
		b = jwt.ReplaceAll(b, []byte(Mask))
	}
	if bytes.IndexByte(b, '.') >= 0 {
		b = bootstrapTokens(b)
	}
	if slices.ContainsFunc(keywords, func(k []byte) bool { return bytes.Contains(lower, k) }) {
		b = fields(b)
	}
	if len(b) == len(line) && (len(b) == 0 || &b[0] == &line[0]) {
		return nil
	}
	return b
}

// fields applies the rules on named values: flags, JSON, YAML and key=value fields.
func fields(b []byte) []byte {
	if bytes.IndexByte(b, '-') >= 0 {
		b = replace(secretFlag, b, func(m [][]byte) []byte {
			sep, val := string(m[3]), m[4]
			if strings.TrimSpace(sep) == "" && bytes.HasPrefix(val, []byte("-")) {
				return nil // a flag without a value, then another flag
			}
			return join(m[1], m[2], m[3], maskValue(val))
		})
	}
	if bytes.IndexByte(b, '"') >= 0 {
		b = replace(jsonField, b, func(m [][]byte) []byte {
			v := field(string(m[1]), m[3])
			if v == nil {
				return nil
			}
			return join([]byte(`"`), m[1], []byte(`"`), m[2], v)
		})
	}
	if bytes.IndexByte(b, ':') >= 0 {
		b = replace(yamlField, b, func(m [][]byte) []byte {
			v := field(string(m[3]), m[5])
			if v == nil {
				return nil
			}
			return join(m[1], m[2], m[3], m[4], v, m[6])
		})
	}
	if bytes.IndexByte(b, '=') >= 0 {
		b = replace(envField, b, func(m [][]byte) []byte {
			v := field(string(m[1]), m[2])
			if v == nil {
				return nil
			}
			return join(m[1], []byte("="), v)
		})
	}
	return b
}

// bootstrapTokens masks the secret half of bootstrap tokens (id.secret: [a-z0-9]{6}.[a-z0-9]{16},
// standing alone), without a regular expression: it looks at every dot of every line.
func bootstrapTokens(b []byte) []byte {
	alnum := func(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }
	word := func(i int) bool {
		return i >= 0 && i < len(b) && (alnum(b[i]) || 'A' <= b[i] && b[i] <= 'Z' || b[i] == '_')
	}
	var out []byte
	last := 0
	for i := 6; i+16 < len(b); i++ { // b[i] the dot, b[i-6:i] the id, b[i+1:i+17] the secret
		if b[i] != '.' || word(i-7) || word(i+17) {
			continue
		}
		ok := true
		for j := i - 6; j < i+17 && ok; j++ {
			ok = j == i || alnum(b[j])
		}
		if !ok {
			continue
		}
		out = append(append(out, b[last:i+1]...), Mask...)
		last = i + 17
		i += 16
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// appendLower appends b in lower case (ASCII) to dst.
func appendLower(dst, b []byte) []byte {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// String is Text for a string.
func String(s string) string { return string(Text([]byte(s))) }

// URL returns a URL-valued setting (a proxy) without its userinfo, keeping the scheme, host and
// port; it understands the scheme-less form user:pass@host:port that HTTP_PROXY allows.
func URL(s string) string {
	if strings.Contains(s, "://") {
		return urlUserinfo.ReplaceAllString(s, "${1}"+Mask+"@")
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || strings.ContainsAny(s[:at], "/ \t,;") {
		return s
	}
	return Mask + s[at:]
}

// IsSecretName says whether a field, variable or flag name (any case; -, _ and . ignored) names
// a credential: ...token, ...secret, ...password, client-key-data, client-certificate-data,
// private keys, API and access keys, authorization.
func IsSecretName(name string) bool {
	n := normalize(name)
	for _, s := range []string{"token", "secret", "password", "passwd", "privatekey", "apikey", "accesskey", "secretkey", "clientkeydata", "clientcertificatedata"} {
		if strings.HasSuffix(n, s) {
			return true
		}
	}
	return n == "auth" || n == "authorization" || n == "credentials"
}

// isProxyName says whether a name is a proxy setting (HTTP_PROXY, httpsProxy...), whose value is
// a URL that may carry userinfo.
func isProxyName(name string) bool { return strings.HasSuffix(normalize(name), "proxy") }

func normalize(name string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.':
			return -1
		}
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, name)
}

// field returns the redacted value (quoted as it was) of the field name, or nil to keep it.
func field(name string, val []byte) []byte {
	switch {
	case IsSecretName(name):
		v := unquote(val)
		if nonSecret(v) {
			return nil
		}
		if scheme, _, ok := strings.Cut(v, " "); ok && authScheme.MatchString(scheme) {
			return requote(val, scheme+" "+Mask) // Authorization: Basic REDACTED
		}
		return maskValue(val)
	case isProxyName(name):
		inner := unquote(val)
		r := URL(inner)
		if r == inner {
			return nil
		}
		return requote(val, r)
	}
	return nil
}

// nonSecret says whether a secret-named field's value cannot be a secret: empty, a boolean, a
// number, null, already masked, or the start of a nested YAML/JSON value.
func nonSecret(v string) bool {
	switch strings.ToLower(v) {
	case "", "true", "false", "null", "~", "{}", "[]", "{", "[", "|", ">", "|-", ">-", strings.ToLower(Mask), "<nil>":
		return true
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return true
	}
	return false
}

// maskValue replaces a value with Mask, keeping its quotes.
func maskValue(val []byte) []byte {
	if nonSecret(unquote(val)) {
		return val
	}
	return requote(val, Mask)
}

func unquote(val []byte) string {
	if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
		return string(val[1 : len(val)-1])
	}
	return string(val)
}

func requote(orig []byte, s string) []byte {
	if len(orig) >= 2 && (orig[0] == '"' || orig[0] == '\'') && orig[len(orig)-1] == orig[0] {
		return []byte(string(orig[0]) + s + string(orig[0]))
	}
	return []byte(s)
}

// replace replaces every match of re in b with what f returns for its submatches (m[0] the whole
// match); f returning nil keeps the match.
func replace(re *regexp.Regexp, b []byte, f func(m [][]byte) []byte) []byte {
	idx := re.FindAllSubmatchIndex(b, -1)
	if idx == nil {
		return b
	}
	var out bytes.Buffer
	last := 0
	for _, loc := range idx {
		m := make([][]byte, len(loc)/2)
		for i := range m {
			if loc[2*i] >= 0 {
				m[i] = b[loc[2*i]:loc[2*i+1]]
			}
		}
		r := f(m)
		if r == nil {
			continue
		}
		out.Write(b[last:loc[0]])
		out.Write(r)
		last = loc[1]
	}
	if last == 0 {
		return b
	}
	out.Write(b[last:])
	return out.Bytes()
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
