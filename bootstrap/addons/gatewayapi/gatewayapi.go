// Package gatewayapi holds the Gateway API's standard-channel CRDs (sigs.k8s.io/gateway-api, whose
// Go module embeds none of them), vendored by hack/update-gateway-api-crds.sh, for the ingress
// add-on.
package gatewayapi

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed" // the CRDs
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Version is the Gateway API release whose CRDs are embedded.
const Version = "v1.6.3"

// Annotations the Gateway API puts on its CRDs.
const (
	BundleVersionAnnotation = "gateway.networking.k8s.io/bundle-version"
	ChannelAnnotation       = "gateway.networking.k8s.io/channel"
)

//go:embed standard-v1.6.3.yaml.gz
var standard []byte

// CRDs returns the embedded CustomResourceDefinitions, decoded.
func CRDs() ([]*unstructured.Unstructured, error) {
	zr, err := gzip.NewReader(bytes.NewReader(standard))
	if err != nil {
		return nil, fmt.Errorf("gateway api %s crds: %w", Version, err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(zr))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("gateway api %s crds: %w", Version, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("gateway api %s crds: %w", Version, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}
