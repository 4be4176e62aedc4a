// Package kferr gives errors an exit code and a hint, so that the CLI can tell the user what went
// wrong and what to do, and scripts can tell usage errors from environment problems.
package kferr

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Exit codes, documented in the README.
const (
	ExitOK          = 0
	ExitInternal    = 1 // a failure of kubeforge or the cluster
	ExitUsage       = 2 // bad flags, names or configuration
	ExitEnvironment = 3 // something outside kubeforge is missing or broken (Docker, disk, ports)
	ExitTimeout     = 4 // a wait ran out of time
)

// Error is an error with an exit code and advice.
type Error struct {
	Code int
	Hint string
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func newf(code int, hint, format string, a ...any) error {
	return &Error{Code: code, Hint: hint, Err: fmt.Errorf(format, a...)}
}

// Usage is a mistake in what the user asked for.
func Usage(format string, a ...any) error { return newf(ExitUsage, "", format, a...) }

// Environment is a problem outside kubeforge; hint says how to fix it.
func Environment(hint string, format string, a ...any) error {
	return newf(ExitEnvironment, hint, format, a...)
}

// Timeout is a wait that ran out.
func Timeout(hint string, format string, a ...any) error {
	return newf(ExitTimeout, hint, format, a...)
}

// WithHint wraps err with a code and advice.
func WithHint(err error, code int, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Hint: hint, Err: err}
}

// Code returns the exit code for err.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitInternal
}

// Hint returns the advice carried by err, if any. Of errors joined together (errors.Join) each
// brings its own advice, once: "fix one; fix two".
func Hint(err error) string {
	return strings.Join(hints(err), "; ")
}

// hints walks err's chain: the outermost *Error of a chain speaks for it, every branch of a
// joined error for itself.
func hints(err error) []string {
	for err != nil {
		switch e := err.(type) {
		case *Error:
			if e.Hint == "" {
				return nil
			}
			return []string{e.Hint}
		case interface{ Unwrap() []error }:
			var hs []string
			for _, b := range e.Unwrap() {
				for _, h := range hints(b) {
					if !slices.Contains(hs, h) {
						hs = append(hs, h)
					}
				}
			}
			return hs
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return nil
		}
	}
	return nil
}
