// Package safe runs goroutines so that a panic in one becomes an error, never a Go stack printed
// to the user: the CLI recovers panics only in its main goroutine, and a panic in any other
// goroutine would end the process with a stack trace. The error says "internal error" and carries
// the stack only when KUBEFORGE_DEBUG is set.
package safe

import (
	"fmt"
	"os"
	"runtime/debug"
	"sync"

	"golang.org/x/sync/errgroup"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// PanicError is a panic turned into an error.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string {
	msg := fmt.Sprintf("internal error in kubeforge: %v", e.Value)
	if os.Getenv("KUBEFORGE_DEBUG") != "" {
		msg += "\n" + string(e.Stack)
	}
	return msg
}

// Hint is the advice the CLI prints with a PanicError.
const Hint = "this is a bug; please report it with the command you ran and `kubeforge export logs DIR` (run `kubeforge delete` if something was left half-made)"

// Recover, deferred, turns a panic of its goroutine into *errp (an internal error, exit 1, with
// Hint). It must be called directly by the deferred statement: defer safe.Recover(&err).
func Recover(errp *error) {
	if r := recover(); r != nil {
		*errp = kferr.WithHint(&PanicError{Value: r, Stack: debug.Stack()}, kferr.ExitInternal, Hint)
	}
}

// Call runs f and returns its error, or its panic as an error.
func Call(f func() error) (err error) {
	defer Recover(&err)
	return f()
}

// Go runs f in g (g.Go); a panic in f becomes its error, which g.Wait returns (and which cancels
// the group's context, as any error does).
func Go(g *errgroup.Group, f func() error) {
	g.Go(func() error { return Call(f) })
}

// GoWait runs f in a goroutine counted by wg; a panic in f is passed to fail as an error (fail
// may be called from several goroutines at once: it must be safe for that).
func GoWait(wg *sync.WaitGroup, fail func(error), f func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := Call(func() error { f(); return nil }); err != nil {
			fail(err)
		}
	}()
}
