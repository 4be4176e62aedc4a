package config

import (
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary files to the parser and the conversion to a spec: they must never
// panic, every refusal must be a *Error (so that it names the file), and whatever is accepted
// must be a valid spec. Seeds: the example and the bad configs of TestBadConfigs.
//
//	go test ./internal/config -run '^$' -fuzz FuzzParse -fuzztime 20s
func FuzzParse(f *testing.F) {
	f.Add([]byte(Example))
	f.Add([]byte(header))
	for _, tc := range badConfigs {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "fuzz.yaml")
		if err == nil {
			_, err = file.ToSpec() // validated: what is accepted is a valid spec
		}
		if err == nil {
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %v is a %T, not a *config.Error", err, err)
		}
		if err.Error() == "" {
			t.Fatalf("empty error")
		}
	})
}
