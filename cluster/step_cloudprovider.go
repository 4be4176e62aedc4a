package cluster

import (
	"bytes"
	"context"
	"time"

	"kubeforge.dev/kubeforge/bootstrap"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// hasCloudProvider says whether clusters on driver get a cloud-provider machine (LoadBalancer
// Services): Docker's.
func hasCloudProvider(driver string) bool { return driver == spec.DriverDocker }

// stepCloudProvider (Docker) makes and starts the cluster's cloud-provider machine, which gives
// LoadBalancer Services their addresses and host ports (node/cloud). It runs while the control
// plane boots and waits for nothing: the provider waits for the API server itself.
func stepCloudProvider() step {
	return step{name: "Cloud provider", run: func(ctx context.Context, b *build) error {
		return b.makeCloudProvider(ctx)
	}, undo: undoMachines}
}

// makeCloudProvider makes the cloud-provider machine of b's cluster and starts it.
func (b *build) makeCloudProvider(ctx context.Context) error {
	files, err := bootstrap.CloudProviderFiles(bootstrap.CloudProvider{
		Cluster: b.spec.Name, Network: b.network.Name, Image: b.image, Server: b.endpoint,
	}, b.auth)
	if err != nil {
		return err
	}
	tarball, err := files.Tar()
	if err != nil {
		return err
	}
	name := contract.CloudProviderName(b.spec.Name)
	t0 := time.Now()
	m, err := b.driver.CreateNode(ctx, provision.NodeConfig{
		Cluster: b.spec.Name, Name: name, Role: provision.RoleCloudProvider, Image: b.image,
		Network: b.network, IP: b.network.CloudProviderIP(),
	})
	if err != nil {
		return err
	}
	b.made = append(b.made, name)
	t1 := time.Now()
	if err := m.CopyTar(ctx, bytes.NewReader(tarball)); err != nil {
		return err
	}
	t2 := time.Now()
	if err := m.Start(ctx); err != nil {
		return err
	}
	b.p.log.Debugf("%s: machine made in %s, files copied in %s, started in %s", name,
		t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	return nil
}
