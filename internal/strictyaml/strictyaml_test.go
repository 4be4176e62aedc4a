package strictyaml

import "testing"

func TestUnmarshal(t *testing.T) {
	type conf struct {
		ClusterCIDR string `json:"clusterCIDR"`
	}
	var c conf
	if err := Unmarshal([]byte("clusterCIDR: 10.0.0.0/8\n"), &c); err != nil || c.ClusterCIDR != "10.0.0.0/8" {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, bad := range []string{"clusterCidr: x\n", "other: 1\n", "clusterCIDR: a\nclusterCIDR: b\n", ": :"} {
		if err := Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
