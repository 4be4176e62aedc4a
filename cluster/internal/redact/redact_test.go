package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

const rsaKey = `-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAsecretsecretsecretsecretsecretsecretsecretsecret
c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj==
-----END RSA PRIVATE KEY-----`

func TestText(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"proxy URL", "HTTP_PROXY=http://alice:s3cret@proxy.corp:3128", "HTTP_PROXY=http://REDACTED@proxy.corp:3128"},
		{"URL in a log line", `E0101 12:00:00.000 pull.go:12] failed to pull "x": Get "https://bob:pw@registry.example.com/v2/": EOF`,
			`E0101 12:00:00.000 pull.go:12] failed to pull "x": Get "https://REDACTED@registry.example.com/v2/": EOF`},
		{"@ in the password", "socks5://u:p@ss@h:1080/x", "socks5://REDACTED@h:1080/x"},
		{"username only", "qemu+ssh://me@big/system", "qemu+ssh://REDACTED@big/system"},
		{"scheme-less proxy", "HTTPS_PROXY=alice:s3cret@proxy.corp:3128", "HTTPS_PROXY=REDACTED@proxy.corp:3128"},
		{"bearer", `curl -H "Authorization: Bearer abcdefghijklmnop0123.xyz" https://10.0.0.1:6443`, `curl -H "Authorization: Bearer REDACTED" https://10.0.0.1:6443`},
		{"bearer alone", "using bearer abcdefghijklmnop0123.xyz for", "using bearer REDACTED for"},
		{"bearer token", "sent Bearer Token abcdefghijklmnop0123.xyz", "sent Bearer Token REDACTED"},
		{"basic auth header", "authorization: Basic dXNlcjpwYXNz", "authorization: Basic REDACTED"},
		{"jwt", "sa token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl end", "sa token REDACTED end"},
		{"bootstrap token", "kubeadm join 10.0.0.2:6443 --discovery-token-ca-cert-hash sha256:ab abcdef.0123456789abcdef", "kubeadm join 10.0.0.2:6443 --discovery-token-ca-cert-hash sha256:ab abcdef.REDACTED"},
		{"--token=", "kubelet --token=abc123 --v=2", "kubelet --token=REDACTED --v=2"},
		{"--token value", "join --token abc123 --v=2", "join --token REDACTED --v=2"},
		{"--password=", `run --db-password="p w" --client-secret='x' -x`, `run --db-password="REDACTED" --client-secret='REDACTED' -x`},
		{"flag then flag", "x --token --other", "x --token --other"},
		{"yaml token", "users:\n- name: admin\n  user:\n    token: abc.def\n", "users:\n- name: admin\n  user:\n    token: REDACTED\n"},
		{"kubeconfig keys", "    client-certificate-data: LS0tLS1CRUdJTg==\n    client-key-data: LS0tLS1CRUdJTiBQUklW\n    certificate-authority-data: LS0tQ0E=\n",
			"    client-certificate-data: REDACTED\n    client-key-data: REDACTED\n    certificate-authority-data: LS0tQ0E=\n"},
		{"yaml password quoted", `  password: "hunter2"`, `  password: "REDACTED"`},
		{"json fields", `{"user":"bob","password":"hunter2","token":"t0k","httpProxy":"http://a:b@p:1"}`, `{"user":"bob","password":"REDACTED","token":"REDACTED","httpProxy":"http://REDACTED@p:1"}`},
		{"cri log of json", `2026-01-01T00:00:00Z stdout F {"level":"info","apiToken":"zzz"}`, `2026-01-01T00:00:00Z stdout F {"level":"info","apiToken":"REDACTED"}`},
		{"env", "DB_PASSWORD=hunter2 AWS_SECRET_ACCESS_KEY=abc PATH=/bin", "DB_PASSWORD=REDACTED AWS_SECRET_ACCESS_KEY=REDACTED PATH=/bin"},
		{"query token", "GET /x?access_token=abc&x=1", "GET /x?access_token=REDACTED&x=1"},
		{"pem", "key:\n" + rsaKey + "\nafter", "key:\n-----BEGIN RSA PRIVATE KEY----- REDACTED -----END RSA PRIVATE KEY-----\nafter"},
		{"pem escaped", `{"key":"-----BEGIN PRIVATE KEY-----\nMIIEvQ==\n-----END PRIVATE KEY-----\n"}`, `{"key":"-----BEGIN PRIVATE KEY----- REDACTED -----END PRIVATE KEY-----\n"}`},
		{"pem cut off, escaped", `"-----BEGIN PRIVATE KEY-----\nMIIEvQ==\nMIIEvQ`, `"-----BEGIN PRIVATE KEY----- REDACTED`},
		{"pem cut off", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIsecret\nMoreBase64==\nthe log goes on", "-----BEGIN EC PRIVATE KEY----- REDACTED\nthe log goes on"},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
		if again := String(c.want); again != c.want {
			t.Errorf("%s: redacting twice changed %q to %q", c.name, c.want, again)
		}
	}
}

// TestTextKeeps: what is not a secret stays, for the bundle to stay useful.
func TestTextKeeps(t *testing.T) {
	for _, s := range []string{
		"kube-apiserver --authorization-mode=Node,RBAC --token-auth-file=/etc/kubernetes/tokens.csv --enable-bootstrap-token-auth=true",
		"--service-account-key-file=/etc/kubernetes/pki/sa.pub --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
		"    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n    server: https://127.0.0.1:6443\n",
		"automountServiceAccountToken: false\nserviceAccountName: default\n  - key: node-role.kubernetes.io/control-plane\n",
		`E0101 kubelet.go:1] "Failed to get token" err="context deadline exceeded" pod="kube-system/coredns-x"`,
		"failed to validate bearer token: expired",
		`MountVolume.SetUp failed for volume "cert" : secret "webhook-cert" not found`,
		"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIRAJ\n-----END CERTIFICATE-----\n",
		"-----BEGIN PUBLIC KEY-----\nMIIBszCCAVmgAwIBAgIRAJ\n-----END PUBLIC KEY-----\n",
		"Get https://10.96.0.1:443/api?timeout=32s: dial tcp 10.96.0.1:443: i/o timeout",
		"NO_PROXY=localhost,127.0.0.1,.svc,10.96.0.0/12",
		"alice@example.com wrote git@github.com:x/y.git",
		`{"tokenExpirationSeconds":3600,"token":"","password":null}`,
		"",
	} {
		if got := String(s); got != s {
			t.Errorf("changed:\n  %q\n->%q", s, got)
		}
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:pass@proxy:3128":       "http://REDACTED@proxy:3128",
		"http://proxy:3128":                 "http://proxy:3128",
		"user:pass@proxy:3128":              "REDACTED@proxy:3128",
		"proxy:3128":                        "proxy:3128",
		"":                                  "",
		"localhost,.svc,me@x/y":             "localhost,.svc,me@x/y",
		"https://tok@h/a?b=c@d":             "https://REDACTED@h/a?b=c@d",
		"http://u%40corp:p%3Ass@proxy:3128": "http://REDACTED@proxy:3128",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsSecretName(t *testing.T) {
	for _, n := range []string{"token", "Token", "bearer_token", "client-secret", "clientSecret", "DB_PASSWORD", "passwd", "client-key-data",
		"client-certificate-data", "apiKey", "AWS_SECRET_ACCESS_KEY", "auth", "Authorization", "id-token", "refresh-token", "privateKey"} {
		if !IsSecretName(n) {
			t.Errorf("%q is not taken for a secret", n)
		}
	}
	for _, n := range []string{"name", "secretName", "tokenFile", "token-auth-file", "certificate-authority-data", "key", "SandboxKey",
		"automountServiceAccountTokenX", "authorization-mode", "serviceAccountName", "kind"} {
		if IsSecretName(n) {
			t.Errorf("%q is taken for a secret", n)
		}
	}
}

func TestJSON(t *testing.T) {
	in := `{
 "spec": {"name": "dev", "proxy": {"httpProxy": "http://alice:s3cret@proxy.corp:3128", "httpsProxy": "alice:s3cret@proxy.corp:3129", "noProxy": "localhost,.svc"},
  "extraArgs": {"kube-apiserver": {"oidc-client-secret": "shh", "v": "2"}}, "libvirtURI": "qemu:///system"},
 "apiServerPort": 6443, "big": 12345678901234567890, "complete": true, "none": null
}`
	var got map[string]any
	out := JSON([]byte(in))
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	s := string(out)
	for _, leak := range []string{"alice", "s3cret", "shh"} {
		if strings.Contains(s, leak) {
			t.Errorf("%q left in\n%s", leak, s)
		}
	}
	for _, keep := range []string{`"httpProxy": "http://REDACTED@proxy.corp:3128"`, `"httpsProxy": "REDACTED@proxy.corp:3129"`, `"noProxy": "localhost,.svc"`,
		`"oidc-client-secret": "REDACTED"`, `"v": "2"`, `"big": 12345678901234567890`, `"complete": true`, `"none": null`, `"libvirtURI": "qemu:///system"`} {
		if !strings.Contains(s, keep) {
			t.Errorf("no %s in\n%s", keep, s)
		}
	}
	// Field order kept.
	if strings.Index(s, `"spec"`) > strings.Index(s, `"apiServerPort"`) || strings.Index(s, `"httpProxy"`) > strings.Index(s, `"noProxy"`) {
		t.Errorf("fields reordered:\n%s", s)
	}
}

func TestJSONKubernetesObjects(t *testing.T) {
	in := `{"kind":"List","items":[
 {"kind":"Secret","metadata":{"name":"db","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"Secret\",\"stringData\":{\"pw\":\"hunter2\"}}\n"}},
  "data":{"pw":"aHVudGVyMg=="},"stringData":{"user":"hunter3"},"type":"Opaque"},
 {"kind":"Pod","metadata":{"name":"app"},"spec":{"containers":[{"name":"c","args":["--token","tok1","--v","2","--password=tok2"],
  "env":[{"name":"DB_PASSWORD","value":"tok3"},{"name":"MODE","value":"prod"},{"name":"HTTPS_PROXY","value":"http://u:tok4@p:1"},
   {"name":"API_TOKEN","valueFrom":{"secretKeyRef":{"name":"db","key":"token"}}}]}],
  "automountServiceAccountToken":false}}]}`
	out := string(JSON([]byte(in)))
	for _, leak := range []string{"hunter2", "aHVudGVyMg", "hunter3", "tok1", "tok2", "tok3", "tok4"} {
		if strings.Contains(out, leak) {
			t.Errorf("%q left in\n%s", leak, out)
		}
	}
	for _, keep := range []string{`"pw": "REDACTED"`, `"user": "REDACTED"`, `"type": "Opaque"`, `"MODE"`, `"prod"`, `"2"`, `"--token"`,
		`"--password=REDACTED"`, `"key": "token"`, `"automountServiceAccountToken": false`, `"name": "db"`, "http://REDACTED@p:1"} {
		if !strings.Contains(out, keep) {
			t.Errorf("no %s in\n%s", keep, out)
		}
	}
	list := `{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":"c2VjcmV0"}}]}`
	if out := string(JSON([]byte(list))); strings.Contains(out, "c2VjcmV0") || !strings.Contains(out, `"k": "REDACTED"`) {
		t.Errorf("SecretList item not redacted:\n%s", out)
	}
}

func TestJSONNotJSON(t *testing.T) {
	in := "not json token: x\npassword: hunter2\n"
	if got := string(JSON([]byte(in))); got != "not json token: x\npassword: REDACTED\n" {
		t.Errorf("got %q", got)
	}
	if got := string(JSON([]byte(`{"a":1} {"b":2}`))); got != `{"a":1} {"b":2}` {
		t.Errorf("two documents: %q", got)
	}
}

// TestObjectKind: a typed SecretList marshalled without its kind is still taken for one, and the
// kind given is not added to the output.
func TestObjectKind(t *testing.T) {
	in := `{"metadata":{},"items":[{"metadata":{"name":"a"},"data":{"k":"c2VjcmV0"}}]}`
	out := string(Object([]byte(in), "SecretList"))
	if strings.Contains(out, "c2VjcmV0") || !strings.Contains(out, `"k": "REDACTED"`) || strings.Contains(out, "kind") {
		t.Errorf("got:\n%s", out)
	}
	if out := string(Object([]byte(in), "")); !strings.Contains(out, "c2VjcmV0") {
		t.Errorf("without a kind, data that is not named like a secret stays:\n%s", out)
	}
}
