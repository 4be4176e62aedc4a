package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubeforge.dev/kubeforge/internal/fsutil"
)

// UserKubeconfig is the file kubectl reads by default: the first entry of $KUBECONFIG, else
// ~/.kube/config.
func UserKubeconfig() string {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if len(rules.Precedence) > 0 {
		return rules.Precedence[0]
	}
	return rules.GetDefaultFilename()
}

// lockFile takes an exclusive lock next to path, so concurrent kubeforge runs don't lose each
// other's kubeconfig edits.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// MergeKubeconfig adds (or replaces) the cluster, user and context named name from src into the
// kubeconfig file at path, and makes it current.
func MergeKubeconfig(path string, src []byte, name string) error {
	in, err := clientcmd.Load(src)
	if err != nil {
		return err
	}
	return editKubeconfig(path, func(cfg *clientcmdapi.Config) bool {
		cfg.Clusters[name] = in.Clusters[name]
		cfg.AuthInfos[name] = in.AuthInfos[name]
		cfg.Contexts[name] = in.Contexts[name]
		cfg.CurrentContext = name
		return true
	})
}

// RemoveFromKubeconfig removes name's cluster, user and context from the file at path (if it
// made them); the current context is unset if it was name.
func RemoveFromKubeconfig(path, name string) error {
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	return editKubeconfig(path, func(cfg *clientcmdapi.Config) bool {
		if _, ok := cfg.Contexts[name]; !ok {
			return false
		}
		delete(cfg.Clusters, name)
		delete(cfg.AuthInfos, name)
		delete(cfg.Contexts, name)
		if cfg.CurrentContext == name {
			cfg.CurrentContext = ""
		}
		return true
	})
}

// editKubeconfig applies edit to the kubeconfig at path under its lock, writing it back when
// edit reports a change.
func editKubeconfig(path string, edit func(*clientcmdapi.Config) bool) error {
	unlock, err := lockFile(path)
	if err != nil {
		return fmt.Errorf("locking %s: %w", path, err)
	}
	defer unlock()
	cfg, err := loadOrNew(path)
	if err != nil {
		return err
	}
	if !edit(cfg) {
		return nil
	}
	return write(path, cfg)
}

func loadOrNew(path string) (*clientcmdapi.Config, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if os.IsNotExist(err) {
		return clientcmdapi.NewConfig(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w (fix or move the file)", path, err)
	}
	return cfg, nil
}

func write(path string, cfg *clientcmdapi.Config) error {
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o600, 0o700)
}
