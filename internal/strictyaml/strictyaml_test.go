package strictyaml

import (
	"encoding/json"
	"errors"
	"testing"
)

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

func TestTypedErrors(t *testing.T) {
	type node struct {
		Role string `json:"role"`
	}
	type conf struct {
		Port  int    `json:"port"`
		Nodes []node `json:"nodes"`
	}
	var c conf

	err := Unmarshal([]byte("nodes:\n- role: a\n  cpu: 2\nextra: 1\n"), &c)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Duplicate {
		t.Fatalf("unknown fields: %v (%T)", err, err)
	}
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if errors.As(e, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	if len(paths) != 2 || paths[0] != "extra" && paths[1] != "extra" {
		t.Errorf("unknown field paths = %q, want extra and nodes[0].cpu", paths)
	}
	if err.Error() != `unknown field "extra"`+"\n"+`unknown field "nodes[0].cpu"` && err.Error() != `unknown field "nodes[0].cpu"`+"\n"+`unknown field "extra"` {
		t.Errorf("message = %q", err)
	}

	err = Unmarshal([]byte("port: 1\nnodes:\n- role: a\n  role: b\n"), &c)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 4 || se.Msg != `key "role" already set in map` {
		t.Errorf("duplicate key: %#v (%v)", se, err)
	}

	err = Unmarshal([]byte("port: 1\n  nodes: x\n"), &c)
	if !errors.As(err, &se) || se.Line != 2 {
		t.Errorf("syntax error: %#v (%v)", se, err)
	}

	err = Unmarshal([]byte("port: abc\n"), &c)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field != "port" {
		t.Errorf("type error: %v (%T)", err, err)
	}
}
