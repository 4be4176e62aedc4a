package trace

import "strings"

// Components, as Step.Component names them.
const (
	ComponentKubectl              = "kubectl"
	ComponentKubelet              = "kubelet"
	ComponentScheduler            = "scheduler"
	ComponentDeploymentController = "deployment-controller"
	ComponentReplicaSetController = "replicaset-controller"
	ComponentNodeLifecycle        = "node-lifecycle-controller"
	ComponentGarbageCollector     = "garbage-collector"
	ComponentControllerManager    = "controller-manager"
	ComponentAPIServer            = "api-server"
	ComponentKubeforge            = "kubeforge"
)

// controllerAccounts maps the controller-manager's service accounts (it runs each controller
// with its own, --use-service-account-credentials) to the component names trace uses, where
// they differ from the account's name.
var controllerAccounts = map[string]string{
	"node-controller":           ComponentNodeLifecycle,
	"generic-garbage-collector": ComponentGarbageCollector,
	"daemon-set-controller":     "daemonset-controller",
	"pod-garbage-collector":     "pod-garbage-collector",
}

// Component says which component made a request, from the authenticated user and the user
// agent: the component, and for a kubelet its node.
func Component(user, userAgent string) (component, node string) {
	const saPrefix = "system:serviceaccount:kube-system:"
	switch {
	case strings.HasPrefix(user, "system:node:"):
		return ComponentKubelet, strings.TrimPrefix(user, "system:node:")
	case user == "system:kube-scheduler":
		return ComponentScheduler, ""
	case user == "system:kube-controller-manager":
		return ComponentControllerManager, ""
	case user == "system:apiserver":
		return ComponentAPIServer, ""
	case strings.HasPrefix(user, saPrefix):
		// A controller of the controller-manager, or another kube-system workload (coredns...).
		sa := strings.TrimPrefix(user, saPrefix)
		if c, ok := controllerAccounts[sa]; ok {
			return c, ""
		}
		return sa, ""
	}
	product, _, _ := strings.Cut(userAgent, "/")
	switch {
	case product == "kubectl" || strings.HasPrefix(product, "kubectl-"):
		return ComponentKubectl, ""
	case product == "kubeforge":
		return ComponentKubeforge, ""
	case product != "" && !strings.Contains(product, " "):
		return product, ""
	}
	return user, ""
}
