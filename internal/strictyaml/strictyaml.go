// Package strictyaml decodes YAML the way Kubernetes components read their configuration: field
// names match case-sensitively, and unknown or duplicate fields are errors. (sigs.k8s.io/yaml's
// UnmarshalStrict goes through encoding/json, which would accept "clusterCidr" for clusterCIDR.)
package strictyaml

import (
	"errors"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Unmarshal decodes b into v strictly.
func Unmarshal(b []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}
