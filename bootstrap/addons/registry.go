package addons

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// LocalRegistryHostingHelp is the help URL of the local-registry-hosting ConfigMap: KEP-1755,
// which describes it (kubeforge has no documentation site).
const LocalRegistryHostingHelp = "https://github.com/kubernetes/enhancements/tree/master/keps/sig-cluster-lifecycle/generic/1755-communicating-a-local-registry"

// LocalRegistryHosting is the ConfigMap kube-public/local-registry-hosting of KEP-1755 (as kind
// documents it), telling tools (Tilt, Skaffold...) where to push: host is what the host pushes to
// (localhost:5001), fromRuntime the name the nodes' container runtime pulls by, fromNetwork the
// address a pod reaches the registry at.
func LocalRegistryHosting(host, fromRuntime, fromNetwork string) []runtime.Object {
	v1 := fmt.Sprintf("host: %q\nhostFromContainerRuntime: %q\nhostFromClusterNetwork: %q\nhelp: %q\n",
		host, fromRuntime, fromNetwork, LocalRegistryHostingHelp)
	return []runtime.Object{&corev1.ConfigMap{
		TypeMeta:   tm("v1", "ConfigMap"),
		ObjectMeta: metav1.ObjectMeta{Name: "local-registry-hosting", Namespace: metav1.NamespacePublic},
		Data:       map[string]string{"localRegistryHosting.v1": v1},
	}}
}
