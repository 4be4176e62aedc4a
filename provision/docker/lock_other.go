//go:build !unix

package docker

func hostLock(string) func() { return func() {} }
