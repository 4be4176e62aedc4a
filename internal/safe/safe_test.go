package safe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// isPanicError checks that err is the error of a panic with value want: an internal error with
// the hint, and no stack unless KUBEFORGE_DEBUG is set.
func isPanicError(t *testing.T, err error, want string) {
	t.Helper()
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *PanicError", err, err)
	}
	if !strings.Contains(err.Error(), "internal error") || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say internal error and %q", err, want)
	}
	if strings.Contains(err.Error(), "goroutine ") || strings.Contains(err.Error(), ".go:") {
		t.Errorf("error holds a stack without KUBEFORGE_DEBUG: %q", err)
	}
	if kferr.Code(err) != kferr.ExitInternal || kferr.Hint(err) != Hint {
		t.Errorf("exit code %d, hint %q", kferr.Code(err), kferr.Hint(err))
	}
	if !strings.Contains(string(pe.Stack), "safe_test.go") {
		t.Errorf("the stack kept does not show the panic's place:\n%s", pe.Stack)
	}
}

func TestGoTurnsAPanicIntoAnError(t *testing.T) {
	t.Setenv("KUBEFORGE_DEBUG", "")
	g, ctx := errgroup.WithContext(context.Background())
	Go(g, func() error {
		var s []int
		_ = s[3] // index out of range
		return nil
	})
	Go(g, func() error {
		<-ctx.Done() // the panic cancels the group, as an error does
		return nil
	})
	isPanicError(t, g.Wait(), "index out of range")
}

func TestGoKeepsErrors(t *testing.T) {
	var g errgroup.Group
	want := errors.New("plain")
	Go(&g, func() error { return want })
	Go(&g, func() error { return nil })
	if err := g.Wait(); err != want {
		t.Errorf("Wait = %v, want %v", err, want)
	}
}

func TestGoWait(t *testing.T) {
	t.Setenv("KUBEFORGE_DEBUG", "")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		ran  int
	)
	fail := func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }
	GoWait(&wg, fail, func() { panic("boom") })
	GoWait(&wg, fail, func() { mu.Lock(); ran++; mu.Unlock() })
	wg.Wait()
	if len(errs) != 1 || ran != 1 {
		t.Fatalf("errors %v, ran %d", errs, ran)
	}
	isPanicError(t, errs[0], "boom")
}

func TestCallDebugStack(t *testing.T) {
	t.Setenv("KUBEFORGE_DEBUG", "1")
	err := Call(func() error { panic(errors.New("bad state")) })
	if !strings.Contains(err.Error(), "bad state") || !strings.Contains(err.Error(), "goroutine ") {
		t.Errorf("with KUBEFORGE_DEBUG the error holds the stack: %q", err)
	}
	if err := Call(func() error { return nil }); err != nil {
		t.Errorf("Call of a function that succeeds: %v", err)
	}
}
