package provision

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Stopping a command whose caller went away.
//
// Neither driver's transport stops a command when the host side gives up: Docker never kills an
// exec'd process when its client disconnects, and sshd leaves a session's command (without a
// pty) running when the connection closes; `kubeforge logs -f` (tail -F, crictl logs -f) or
// `kubeforge ssh -- CMD` interrupted with Ctrl-C would leave their process in the node for
// ever. So every command a driver runs carries a token of its own in its environment
// (ExecTokenEnv=<token>), which its children inherit; when the caller's context ends, the driver
// runs KillCmd in the node, a second command that signals every process holding the token. That
// reaches the whole tree the command started (a shell's children, a pipeline), needs no pid to be
// reported back (Docker only knows a host pid, which may be in another PID namespace or on
// another machine) and works the same in containers and VMs. Only processes that clear their
// environment escape (no command kubeforge runs does).

// ExecTokenEnv is the environment variable holding a command's token.
const ExecTokenEnv = "KUBEFORGE_EXEC"

// KillGrace is how long KillCmd lets the processes end after SIGTERM before SIGKILL.
const KillGrace = 2 * time.Second

// NewExecToken returns a new random token for a command.
func NewExecToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// killScript signals every process whose environment holds "$1" (ExecTokenEnv=<token>, a whole
// entry): SIGTERM, then, while some are left, a check every 0.1 s, $2 times, then SIGKILL. It
// needs only a POSIX shell, grep -z (GNU or busybox) and /proc. grep's exit status is not
// trusted (processes that end while it reads make it 2): only its output is. A process that
// ended but is not yet reaped has an empty environ and is not counted.
const killScript = `t=$1 n=$2
sig() {
  fs=$(grep -lsxzF -e "$t" /proc/[0-9]*/environ 2>/dev/null)
  [ -n "$fs" ] || return 1
  for f in $fs; do p=${f#/proc/}; kill -"$1" "${p%/environ}" 2>/dev/null; done
  return 0
}
sig TERM || exit 0
while [ "$n" -gt 0 ]; do
  sleep 0.1
  sig 0 || exit 0
  n=$((n-1))
done
sig KILL
exit 0`

// KillCmd is the command that stops, in a node, every process started with token (see the
// comment above): SIGTERM, SIGKILL after grace for those left. It exits 0.
func KillCmd(token string, grace time.Duration) []string {
	checks := int(grace / (100 * time.Millisecond))
	return []string{"sh", "-c", killScript, "kubeforge-kill", ExecTokenEnv + "=" + token, fmt.Sprint(checks)}
}
