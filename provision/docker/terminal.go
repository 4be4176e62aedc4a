package docker

import "os/exec"

// TerminalCommand is `docker exec -it <node> bash -l`: the Docker CLI handles the terminal best
// (raw mode, resizes). ok is false without a docker CLI on the host.
func (n *Node) TerminalCommand() (argv []string, cleanup func(), ok bool, err error) {
	docker, lerr := exec.LookPath("docker")
	if lerr != nil {
		return nil, nil, false, nil
	}
	return []string{docker, "exec", "-it", n.id, "bash", "-l"}, func() {}, true, nil
}
