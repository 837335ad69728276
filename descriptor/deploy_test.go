package descriptor

import (
	"strings"
	"testing"
)

func TestParseDeploy(t *testing.T) {
	for _, tc := range []struct {
		name, file, in string
		syntax         string
	}{
		{"syntax only", "2dfs.json", `{"syntax": "registry.example/2dfs/frontend:v1"}`, "registry.example/2dfs/frontend:v1"},
		{"empty object", "2dfs.json", `{}`, ""},
		{"empty file", "2dfs.json", "\n", ""},
		{"yaml", "2dfs.yaml", "syntax: registry.example/2dfs/frontend:v1\n", "registry.example/2dfs/frontend:v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDeploy(tc.file, []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if d.Syntax != tc.syntax || d.Filename != tc.file {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

// An application descriptor handed to a deploy is refused at each key that
// would be ignored, with the same located errors as Parse.
func TestParseDeployRefusesApplicationKeys(t *testing.T) {
	in := `{
  "syntax": "registry.example/2dfs/frontend:v1",
  "base": "debian:bookworm",
  "allotments": [{"src": "app", "dst": "/app", "row": 0, "col": 0}],
  "alotments": []
}`
	_, err := ParseDeploy("2dfs.json", []byte(in))
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, want := range []string{
		"3 problems in the 2DFS descriptor:",
		`2dfs.json:3:3: base: not allowed when the build deploys a CIR (the "cir" named context)`,
		`2dfs.json:4:3: allotments: not allowed when the build deploys a CIR`,
		`2dfs.json:5:3: "alotments": unknown key in the descriptor; did you mean "allotments"?`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("error lacks %q:\n%s", want, got)
		}
	}
	if _, err := ParseDeploy("2dfs.json", []byte(`{"syntax": 1,}`)); err == nil || !strings.Contains(err.Error(), "2dfs.json:1:15: invalid JSON") {
		t.Errorf("invalid JSON: %v", err)
	}
	if _, err := ParseDeploy("2dfs.json", []byte(`["syntax"]`)); err == nil || !strings.Contains(err.Error(), "must be an object") {
		t.Errorf("a list: %v", err)
	}
}
