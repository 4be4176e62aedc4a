package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/provision"
)

// maxErrOutput is how much of a failed command's output Run keeps for its RunError (the tail).
const maxErrOutput = 64 << 10

// Run runs cmd.Args in the node (docker exec) and waits for it. Stdin, if set, is streamed to
// the command and closed at its end. Stdout and stderr go to cmd.Stdout and cmd.Stderr when set;
// the error of a failed command holds the tail of its stderr, and of its stdout too when
// cmd.Stdout is nil. A command that exits non-zero, or cannot start, gives a *provision.RunError.
//
// When ctx ends, Run stops the command before it returns: Docker never kills an exec'd process
// whose client went away, so the command runs with a token in its environment and a second exec
// signals every process holding it (provision.KillCmd: SIGTERM, SIGKILL after
// provision.KillGrace), which reaches the children it started too.
func (n *Node) Run(ctx context.Context, cmd provision.Cmd) error {
	token := provision.NewExecToken()
	started, err := n.exec(ctx, cmd, []string{provision.ExecTokenEnv + "=" + token})
	if err == nil || ctx.Err() == nil || !started {
		return err
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	if _, kerr := n.exec(kctx, provision.Cmd{Args: provision.KillCmd(token, provision.KillGrace)}, nil); kerr != nil {
		var re *provision.RunError
		if errors.As(err, &re) {
			re.Err = fmt.Errorf("%w (stopping the command in the node failed: it may still run: %v)", re.Err, kerr)
		}
	}
	return err
}

// killTimeout bounds the exec that stops an abandoned command (it takes KillGrace at most).
const killTimeout = provision.KillGrace + 10*time.Second

// exec runs cmd as Run does, its environment extended with env; started says whether Docker may
// have started it (it was created).
func (n *Node) exec(ctx context.Context, cmd provision.Cmd, env []string) (started bool, _ error) {
	fail := func(code int, out string, err error) error {
		return &provision.RunError{Node: n.name, Args: cmd.Args, ExitCode: code, Output: out, Err: err}
	}
	if len(cmd.Args) == 0 {
		return false, fail(-1, "", errors.New("no command"))
	}
	ex, err := n.d.cli.ContainerExecCreate(ctx, n.id, container.ExecOptions{
		Cmd:          cmd.Args,
		Env:          env,
		AttachStdin:  cmd.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return false, fail(-1, "", fmt.Errorf("docker exec: %w", err))
	}
	resp, err := n.d.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return true, fail(-1, "", fmt.Errorf("docker exec attach: %w", err))
	}
	defer resp.Close()
	stop := context.AfterFunc(ctx, resp.Close) // unblock the stream when ctx ends
	defer stop()

	// A panic while reading cmd.Stdin (the caller's reader) ends the copy; Run then fails with it.
	stdinPanic := make(chan error, 1)
	if cmd.Stdin != nil {
		go func() {
			err := safe.Call(func() error {
				_, err := io.Copy(resp.Conn, cmd.Stdin)
				return err
			})
			_ = resp.CloseWrite()
			var pe *safe.PanicError
			if errors.As(err, &pe) {
				stdinPanic <- err
			}
		}()
	}
	tail := &tailBuffer{max: maxErrOutput}
	stdout, stderr := io.Writer(tail), io.Writer(tail)
	if cmd.Stdout != nil {
		stdout = cmd.Stdout
	}
	if cmd.Stderr != nil {
		stderr = io.MultiWriter(cmd.Stderr, tail)
	}
	_, copyErr := stdcopy.StdCopy(stdout, stderr, resp.Reader)
	select {
	case err := <-stdinPanic:
		return true, fail(-1, tail.String(), err)
	default:
	}
	if ctx.Err() != nil {
		return true, fail(-1, tail.String(), ctx.Err())
	}
	if copyErr != nil {
		return true, fail(-1, tail.String(), fmt.Errorf("docker exec output: %w", copyErr))
	}
	// The stream can end a moment before Docker records the exit code.
	delay := 5 * time.Millisecond
	for {
		in, err := n.d.cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			return true, fail(-1, tail.String(), fmt.Errorf("docker exec inspect: %w", err))
		}
		if !in.Running {
			if in.ExitCode != 0 {
				return true, fail(in.ExitCode, tail.String(), nil)
			}
			return true, nil
		}
		select {
		case <-ctx.Done():
			return true, fail(-1, tail.String(), ctx.Err())
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// tmpfsDirs are the node's tmpfs mounts. Docker's archive API works on the container's root
// filesystem and volumes, not on its tmpfs mounts: files copied there before start are hidden by
// the tmpfs, and a running node's tmpfs content is invisible to it.
var tmpfsDirs = []string{"run", "tmp"}

func onTmpfs(name string) bool {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	for _, d := range tmpfsDirs {
		if strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// CopyTar unpacks a tar stream at the node's root (docker cp), keeping the archive's owners and
// modes. It works on a created node that has not been started, including under /var (the
// node's volume). Entries under /run or /tmp are refused (see the package comment); entries
// before a refused one may already have been unpacked.
func (n *Node) CopyTar(ctx context.Context, r io.Reader) error {
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		// Pass the bytes through unchanged while reading the entry names on the side.
		err := safe.Call(func() error {
			tee := io.TeeReader(r, pw)
			tr := tar.NewReader(tee)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					_, err = io.Copy(io.Discard, tee) // the archive's trailing blocks
					return err
				}
				if err != nil {
					if !errors.Is(err, errCopyEnded) {
						err = fmt.Errorf("read tar stream: %w", err)
					}
					return err
				}
				if onTmpfs(h.Name) {
					return fmt.Errorf("%s is on a tmpfs (/run, /tmp) that Docker's copy cannot reach: put it elsewhere or write it with Run",
						path.Clean("/"+h.Name))
				}
			}
		})
		pw.CloseWithError(err)
		checked <- err
	}()
	err := n.d.cli.CopyToContainer(ctx, n.id, "/", pr, container.CopyToContainerOptions{CopyUIDGID: true})
	pr.CloseWithError(errCopyEnded) // stop the checker if Docker gave up early
	if cerr := <-checked; cerr != nil && !errors.Is(cerr, errCopyEnded) {
		return fmt.Errorf("copy files to node %s: %w", n.name, cerr)
	}
	if err != nil {
		return fmt.Errorf("copy files to node %s: %w", n.name, err)
	}
	return nil
}

var errCopyEnded = errors.New("copy ended")

// ReadFile reads a regular file from the node (docker cp), following symbolic links. Files under
// /run and /tmp are read with cat in the running node. A missing file gives an error that
// matches fs.ErrNotExist.
func (n *Node) ReadFile(ctx context.Context, name string) ([]byte, error) {
	p := path.Clean("/" + name)
	for range 16 {
		if onTmpfs(p) {
			var out strings.Builder
			if err := n.Run(ctx, provision.Cmd{Args: []string{"cat", p}, Stdout: &out}); err != nil {
				var re *provision.RunError
				if errors.As(err, &re) && re.ExitCode == 1 && strings.Contains(re.Output, "No such file") {
					return nil, fmt.Errorf("read %s on node %s: %w: %w", p, n.name, fs.ErrNotExist, err)
				}
				return nil, fmt.Errorf("read %s on node %s: %w", p, n.name, err)
			}
			return []byte(out.String()), nil
		}
		rc, _, err := n.d.cli.CopyFromContainer(ctx, n.id, p)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				return nil, fmt.Errorf("read %s on node %s: %w: %w", p, n.name, fs.ErrNotExist, err)
			}
			return nil, fmt.Errorf("read %s on node %s: %w", p, n.name, err)
		}
		h, data, err := extractSingleFile(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s on node %s: %w", p, n.name, err)
		}
		if h.Typeflag != tar.TypeSymlink {
			return data, nil
		}
		if path.IsAbs(h.Linkname) {
			p = path.Clean(h.Linkname)
		} else {
			p = path.Join(path.Dir(p), h.Linkname)
		}
	}
	return nil, fmt.Errorf("read %s on node %s: too many levels of symbolic links", name, n.name)
}

// extractSingleFile reads the first entry of a tar stream: the data of a regular file, or the
// header of a symbolic link. Anything else is an error.
func extractSingleFile(r io.Reader) (*tar.Header, []byte, error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err == io.EOF {
		return nil, nil, errors.New("empty archive")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read archive: %w", err)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, fmt.Errorf("read archive: %w", err)
		}
		return h, data, nil
	case tar.TypeSymlink:
		return h, nil, nil
	case tar.TypeDir:
		return nil, nil, fmt.Errorf("%s is a directory", strings.TrimSuffix(h.Name, "/"))
	}
	return nil, nil, fmt.Errorf("%s is not a regular file (tar type %q)", h.Name, h.Typeflag)
}

// Logs writes the node's console (its PID 1's stdout and stderr, as Docker keeps them) to w;
// with follow it goes on until the node stops or ctx ends.
func (n *Node) Logs(ctx context.Context, w io.Writer, follow bool) error {
	rc, err := n.d.cli.ContainerLogs(ctx, n.id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
	if err != nil {
		return fmt.Errorf("logs of node %s: %w", n.name, err)
	}
	defer rc.Close()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	if _, err := stdcopy.StdCopy(w, w, rc); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("logs of node %s: %w", n.name, err)
	}
	return nil
}
