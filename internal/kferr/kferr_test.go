package kferr

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestCodes(t *testing.T) {
	sentinel := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		code int
		hint string
		msg  string
	}{
		{"nil", nil, ExitOK, "", ""},
		{"plain error is internal", sentinel, ExitInternal, "", "boom"},
		{"usage", Usage("bad name %q", "X"), ExitUsage, "", `bad name "X"`},
		{"environment", Environment("start Docker", "docker: %s", "not running"), ExitEnvironment, "start Docker", "docker: not running"},
		{"timeout", Timeout("look at the logs", "waited %ds", 30), ExitTimeout, "look at the logs", "waited 30s"},
		{"with hint", WithHint(sentinel, ExitEnvironment, "free some disk"), ExitEnvironment, "free some disk", "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Code(tc.err); got != tc.code {
				t.Errorf("Code = %d, want %d", got, tc.code)
			}
			if got := Hint(tc.err); got != tc.hint {
				t.Errorf("Hint = %q, want %q", got, tc.hint)
			}
			if tc.err != nil && tc.err.Error() != tc.msg {
				t.Errorf("Error() = %q, want %q", tc.err.Error(), tc.msg)
			}
		})
	}
}

func TestExitCodesAreDistinct(t *testing.T) {
	// Scripts tell failures apart by these numbers (documented in the README): they must not
	// collide or change meaning.
	codes := map[string]int{"ok": ExitOK, "internal": ExitInternal, "usage": ExitUsage, "environment": ExitEnvironment, "timeout": ExitTimeout}
	want := map[string]int{"ok": 0, "internal": 1, "usage": 2, "environment": 3, "timeout": 4}
	for k, v := range want {
		if codes[k] != v {
			t.Errorf("exit code %s = %d, want %d", k, codes[k], v)
		}
	}
}

func TestSurvivesWrapping(t *testing.T) {
	base := Environment("install Docker", "docker not found")
	wrapped := fmt.Errorf("starting cluster %q: %w", "dev", fmt.Errorf("node image: %w", base))
	if got := Code(wrapped); got != ExitEnvironment {
		t.Errorf("Code(wrapped) = %d, want %d", got, ExitEnvironment)
	}
	if got := Hint(wrapped); got != "install Docker" {
		t.Errorf("Hint(wrapped) = %q, want %q", got, "install Docker")
	}
	if want := `starting cluster "dev": node image: docker not found`; wrapped.Error() != want {
		t.Errorf("message = %q, want %q", wrapped.Error(), want)
	}
	var e *Error
	if !errors.As(wrapped, &e) || e != base {
		t.Errorf("errors.As did not find the original *Error")
	}

	// %v (not %w) drops the code, as it should: only real wrapping carries it.
	flat := fmt.Errorf("flattened: %v", base)
	if Code(flat) != ExitInternal || Hint(flat) != "" {
		t.Errorf("Code/Hint of a %%v-formatted error = %d/%q, want %d/\"\"", Code(flat), Hint(flat), ExitInternal)
	}
}

func TestUnderlyingErrorStaysVisible(t *testing.T) {
	// WithHint and the constructors (through %w) must not hide the cause from errors.Is.
	err := fmt.Errorf("reading state: %w", WithHint(fs.ErrNotExist, ExitUsage, "create the cluster first"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(WithHint(fs.ErrNotExist)) = false")
	}
	if Code(err) != ExitUsage || Hint(err) != "create the cluster first" {
		t.Errorf("Code/Hint = %d/%q", Code(err), Hint(err))
	}
	u := Usage("loading config: %w", fs.ErrPermission)
	if !errors.Is(u, fs.ErrPermission) {
		t.Errorf("errors.Is(Usage(%%w fs.ErrPermission)) = false")
	}
	if Code(u) != ExitUsage {
		t.Errorf("Code = %d, want %d", Code(u), ExitUsage)
	}
}

func TestWithHintNil(t *testing.T) {
	if err := WithHint(nil, ExitEnvironment, "hint"); err != nil {
		t.Fatalf("WithHint(nil) = %#v, want nil (a typed nil would make err != nil true)", err)
	}
}

func TestOutermostWins(t *testing.T) {
	// Re-classifying an error with WithHint overrides the inner code and hint.
	inner := Environment("inner hint", "port in use")
	outer := WithHint(fmt.Errorf("api server: %w", inner), ExitTimeout, "outer hint")
	if Code(outer) != ExitTimeout || Hint(outer) != "outer hint" {
		t.Errorf("Code/Hint = %d/%q, want %d/%q", Code(outer), Hint(outer), ExitTimeout, "outer hint")
	}
	if outer.Error() != "api server: port in use" {
		t.Errorf("message = %q", outer.Error())
	}
}

func TestJoinedHints(t *testing.T) {
	a := Environment("start Docker", "docker is down")
	b := fmt.Errorf("cluster vms: %w", Environment("start libvirtd", "libvirt is down"))
	c := Usage("bad name") // no hint
	err := errors.Join(fmt.Errorf("cluster dock: %w", a), b, c, a)
	if got, want := Hint(err), "start Docker; start libvirtd"; got != want {
		t.Errorf("Hint = %q, want %q", got, want)
	}
	if Code(err) != ExitEnvironment {
		t.Errorf("Code = %d, want the first's, %d", Code(err), ExitEnvironment)
	}
	if Hint(errors.New("plain")) != "" || Hint(nil) != "" {
		t.Error("an error without advice has a hint")
	}
}
