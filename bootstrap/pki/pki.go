// Package pki makes the cluster's certificates, keys and kubeconfigs in kubeadm's layout
// (/etc/kubernetes/pki, /etc/kubernetes/*.conf). The certificate definitions (names, SANs, key
// usages, validity) are kubeadm's own, taken from its certs phase; only the writing is ours, so
// that nothing prints to the user's terminal and files can go straight into a node.
package pki

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	certsphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/certs"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"kubeforge.dev/kubeforge/contract"
)

// Algorithm is the key type of every key kubeforge makes: ECDSA P-256 is as strong as RSA-3072 and
// a hundred times faster to generate, which matters for a start measured in seconds.
const Algorithm = kubeadmapi.EncryptionAlgorithmECDSAP256

// Node describes the node certificates are made for.
type Node struct {
	ClusterName   string
	NodeName      string
	NodeIP        netip.Addr
	ServiceSubnet string
	PodSubnet     string
	DNSDomain     string
	// ControlPlaneEndpoint is host:port that nodes use to reach the API server.
	ControlPlaneEndpoint string
	// ExtraSANs are added to the API server certificate (e.g. 127.0.0.1, localhost).
	ExtraSANs []string
}

func (n Node) initConfiguration(dir string) *kubeadmapi.InitConfiguration {
	sans := append([]string{"127.0.0.1", "localhost", n.NodeName}, n.ExtraSANs...)
	return &kubeadmapi.InitConfiguration{
		ClusterConfiguration: kubeadmapi.ClusterConfiguration{
			ClusterName: n.ClusterName,
			Networking: kubeadmapi.Networking{
				ServiceSubnet: n.ServiceSubnet,
				PodSubnet:     n.PodSubnet,
				DNSDomain:     n.DNSDomain,
			},
			CertificatesDir:      dir,
			ControlPlaneEndpoint: n.ControlPlaneEndpoint,
			APIServer:            kubeadmapi.APIServer{CertSANs: sans},
			Etcd: kubeadmapi.Etcd{Local: &kubeadmapi.LocalEtcd{
				ServerCertSANs: []string{"127.0.0.1", "localhost", n.NodeName},
				PeerCertSANs:   []string{n.NodeName},
			}},
			EncryptionAlgorithm: Algorithm,
		},
		LocalAPIEndpoint: kubeadmapi.APIEndpoint{AdvertiseAddress: n.NodeIP.String(), BindPort: 6443},
		NodeRegistration: kubeadmapi.NodeRegistrationOptions{Name: n.NodeName},
	}
}

// Files maps a path relative to the node's root (e.g. "etc/kubernetes/pki/ca.crt") to content.
type Files map[string][]byte

// PKIDir is where kubeadm keeps certificates inside a node (contract.PKIDir).
const PKIDir = contract.PKIDir

// CA is a certificate authority loaded in memory.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Authorities are the cluster-wide secrets: the three CAs and the service-account key pair. They
// are made once per cluster and kept in the cluster's state directory.
type Authorities struct {
	Cluster    CA
	FrontProxy CA
	Etcd       CA
	SAKey      crypto.Signer
}

var caSpecs = []struct {
	spec func() *certsphase.KubeadmCert
	pick func(*Authorities) *CA
}{
	{certsphase.KubeadmCertRootCA, func(a *Authorities) *CA { return &a.Cluster }},
	{certsphase.KubeadmCertFrontProxyCA, func(a *Authorities) *CA { return &a.FrontProxy }},
	{certsphase.KubeadmCertEtcdCA, func(a *Authorities) *CA { return &a.Etcd }},
}

// EnsureAuthorities loads the cluster's CAs and service-account key from dir, creating whatever
// is missing (kubeadm's file names: ca.crt/key, front-proxy-ca.crt/key, etcd/ca.crt/key, sa.key/pub).
func EnsureAuthorities(dir string, clusterName string) (*Authorities, error) {
	a := &Authorities{}
	ic := Node{ClusterName: clusterName}.initConfiguration(dir)
	for _, s := range caSpecs {
		k := s.spec()
		ca := s.pick(a)
		if pkiutil.CertOrKeyExist(dir, k.BaseName) {
			cert, key, err := pkiutil.TryLoadCertAndKeyFromDisk(dir, k.BaseName)
			if err != nil {
				return nil, fmt.Errorf("loading %s from %s: %w (delete the cluster to start afresh)", k.LongName, dir, err)
			}
			ca.Cert, ca.Key = cert, key
			continue
		}
		cfg, err := k.GetConfig(ic)
		if err != nil {
			return nil, fmt.Errorf("configuring %s: %w", k.LongName, err)
		}
		cert, key, err := pkiutil.NewCertificateAuthority(cfg)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", k.LongName, err)
		}
		if err := pkiutil.WriteCertAndKey(dir, k.BaseName, cert, key); err != nil {
			return nil, fmt.Errorf("writing %s: %w", k.LongName, err)
		}
		ca.Cert, ca.Key = cert, key
	}
	name := kubeadmconstants.ServiceAccountKeyBaseName
	if _, err := os.Stat(filepath.Join(dir, kubeadmconstants.ServiceAccountPrivateKeyName)); err == nil {
		key, err := pkiutil.TryLoadKeyFromDisk(dir, name)
		if err != nil {
			return nil, fmt.Errorf("loading the service-account key: %w", err)
		}
		a.SAKey = key
	} else {
		key, err := pkiutil.GeneratePrivateKey(Algorithm)
		if err != nil {
			return nil, err
		}
		if err := pkiutil.WriteKey(dir, name, key); err != nil {
			return nil, err
		}
		if err := pkiutil.WritePublicKey(dir, name, key.Public()); err != nil {
			return nil, err
		}
		a.SAKey = key
	}
	return a, nil
}

// ControlPlaneFiles returns every certificate and key a control-plane node needs under
// /etc/kubernetes/pki: the CAs (with keys: the controller-manager signs with them), the service
// account keys, and the node's own serving and client certificates signed by kubeadm's definitions.
func (a *Authorities) ControlPlaneFiles(n Node) (Files, error) {
	files := Files{}
	ic := n.initConfiguration(PKIDir)
	for _, s := range caSpecs {
		k := s.spec()
		ca := s.pick(a)
		if err := addCertAndKey(files, k.BaseName, ca.Cert, ca.Key); err != nil {
			return nil, err
		}
	}
	saKey, err := keyPEM(a.SAKey)
	if err != nil {
		return nil, err
	}
	saPub, err := pkiutil.EncodePublicKeyPEM(a.SAKey.Public())
	if err != nil {
		return nil, err
	}
	files[path(kubeadmconstants.ServiceAccountPrivateKeyName)] = saKey
	files[path(kubeadmconstants.ServiceAccountPublicKeyName)] = saPub

	leaves := []struct {
		spec func() *certsphase.KubeadmCert
		ca   CA
	}{
		{certsphase.KubeadmCertAPIServer, a.Cluster},
		{certsphase.KubeadmCertKubeletClient, a.Cluster},
		{certsphase.KubeadmCertFrontProxyClient, a.FrontProxy},
		{certsphase.KubeadmCertEtcdServer, a.Etcd},
		{certsphase.KubeadmCertEtcdPeer, a.Etcd},
		{certsphase.KubeadmCertEtcdHealthcheck, a.Etcd},
		{certsphase.KubeadmCertEtcdAPIClient, a.Etcd},
	}
	for _, l := range leaves {
		k := l.spec()
		cfg, err := k.GetConfig(ic)
		if err != nil {
			return nil, fmt.Errorf("configuring %s: %w", k.LongName, err)
		}
		cert, key, err := pkiutil.NewCertAndKey(l.ca.Cert, l.ca.Key, cfg)
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", k.LongName, err)
		}
		if err := addCertAndKey(files, k.BaseName, cert, key); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// NodeFiles returns what a node that is not a control plane needs under /etc/kubernetes/pki: the
// cluster CA certificate only.
func (a *Authorities) NodeFiles() Files {
	return Files{path(kubeadmconstants.CACertName): pkiutil.EncodeCertPEM(a.Cluster.Cert)}
}

// Kubeconfig returns a kubeconfig for a client certificate signed by the cluster CA.
// contextName names the cluster, user and context entries.
func (a *Authorities) Kubeconfig(server, contextName, commonName string, orgs []string) ([]byte, error) {
	cfg := &pkiutil.CertConfig{
		Config: certutil.Config{
			CommonName:   commonName,
			Organization: orgs,
			Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			NotBefore:    time.Now().Add(-kubeadmconstants.CertificateBackdate),
		},
		NotAfter:            time.Now().Add(kubeadmconstants.CertificateValidityPeriod),
		EncryptionAlgorithm: Algorithm,
	}
	cert, key, err := pkiutil.NewCertAndKey(a.Cluster.Cert, a.Cluster.Key, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the client certificate of %s: %w", commonName, err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, err
	}
	// Cluster, user and context are all named after the cluster, as kind and minikube do, so that
	// merged kubeconfigs of several clusters don't collide.
	kc := clientcmdapi.NewConfig()
	kc.Clusters[contextName] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: pkiutil.EncodeCertPEM(a.Cluster.Cert),
	}
	kc.AuthInfos[contextName] = &clientcmdapi.AuthInfo{
		ClientCertificateData: pkiutil.EncodeCertPEM(cert),
		ClientKeyData:         kp,
	}
	kc.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName}
	kc.CurrentContext = contextName
	return clientcmd.Write(*kc)
}

// KubeletServing returns a node's kubelet serving certificate and key (PEM), signed by the
// cluster CA for the node's name and address, as the kubelet's serverTLSBootstrap would get them
// through a CertificateSigningRequest (CN system:node:<name>, O system:nodes).
func (a *Authorities) KubeletServing(node string, ip net.IP) (certPEM, keyPEMBytes []byte, err error) {
	id := KubeletIdentity(node)
	cfg := &pkiutil.CertConfig{
		Config: certutil.Config{
			CommonName:   id.CommonName,
			Organization: id.Organizations,
			AltNames:     certutil.AltNames{DNSNames: []string{node}, IPs: []net.IP{ip}},
			Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			NotBefore:    time.Now().Add(-kubeadmconstants.CertificateBackdate),
		},
		NotAfter:            time.Now().Add(kubeadmconstants.CertificateValidityPeriod),
		EncryptionAlgorithm: Algorithm,
	}
	cert, key, err := pkiutil.NewCertAndKey(a.Cluster.Cert, a.Cluster.Key, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the kubelet serving certificate of %s: %w", node, err)
	}
	kp, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pkiutil.EncodeCertPEM(cert), kp, nil
}

// Well-known identities, as kubeadm makes them.
var (
	// Admin is in kubeadm:cluster-admins, which kubeforge binds to cluster-admin.
	Admin = Identity{"kubernetes-admin", []string{kubeadmconstants.ClusterAdminsGroupAndClusterRoleBinding}}
	// SuperAdmin is in system:masters; kubeforge uses it only to bootstrap.
	SuperAdmin        = Identity{"kubernetes-super-admin", []string{kubeadmconstants.SystemPrivilegedGroup}}
	ControllerManager = Identity{kubeadmconstants.ControllerManagerUser, nil}
	Scheduler         = Identity{kubeadmconstants.SchedulerUser, nil}
)

// Identity is a client certificate's subject.
type Identity struct {
	CommonName    string
	Organizations []string
}

// KubeletIdentity is the identity of a node's kubelet (system:node:<name> in system:nodes).
func KubeletIdentity(node string) Identity {
	return Identity{kubeadmconstants.NodesUserPrefix + node, []string{kubeadmconstants.NodesGroup}}
}

// KubeconfigFor returns a kubeconfig for id.
func (a *Authorities) KubeconfigFor(server, contextName string, id Identity) ([]byte, error) {
	return a.Kubeconfig(server, contextName, id.CommonName, id.Organizations)
}

func path(name string) string { return filepath.Join(PKIDir, name)[1:] }

func addCertAndKey(files Files, base string, cert *x509.Certificate, key crypto.Signer) error {
	kp, err := keyPEM(key)
	if err != nil {
		return fmt.Errorf("encoding the key of %s: %w", base, err)
	}
	files[path(base+".crt")] = pkiutil.EncodeCertPEM(cert)
	files[path(base+".key")] = kp
	return nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	return keyutil.MarshalPrivateKeyToPEM(key)
}
