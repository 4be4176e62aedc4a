package cluster

import "context"

// stepImage finds or builds the node image for the cluster's driver (the registry's nodeImage).
func stepImage() step {
	return step{name: "Node image", run: func(ctx context.Context, b *build) error {
		img, err := registry()[settingsOf(b.spec).name].nodeImage(ctx, b.p, b.spec)
		b.image = img
		return err
	}}
}
