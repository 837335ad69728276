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

// A deploy descriptor may name a lock file in the build context; a path
// that is not one is refused at its line.
func TestParseDeployLock(t *testing.T) {
	d, err := ParseDeploy("2dfs.json", []byte(`{"syntax": "f", "lock": "locks/./app.lock"}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Lock != "locks/app.lock" || d.LockPos.Line != 1 || d.LockPos.Column != 25 {
		t.Fatalf("lock %q at %+v", d.Lock, d.LockPos)
	}
	if d, err := ParseDeploy("2dfs.yaml", []byte("syntax: f\n")); err != nil || d.Lock != "" {
		t.Fatalf("no lock: %q %v", d.Lock, err)
	}
	for in, want := range map[string]string{
		`{"lock": "/etc/app.lock"}`:  `2dfs.json:1:10: lock: "/etc/app.lock" is absolute`,
		`{"lock": "../app.lock"}`:    `2dfs.json:1:10: lock: "../app.lock" is not a file in the build context`,
		`{"lock": "."}`:              `2dfs.json:1:10: lock: "." is not a file in the build context`,
		`{"lock": ""}`:               `2dfs.json:1:10: lock: is empty`,
		`{"lock": 3}`:                `2dfs.json:1:10: lock: must be a string`,
		`{"lock": "a\\b.lock"}`:      `has a backslash`,
		`{"lock": "a", "lock": "b"}`: `key given twice`,
	} {
		if _, err := ParseDeploy("2dfs.json", []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	// An application descriptor has no "lock": the lock is a deploy's.
	if _, err := Parse("2dfs.json", []byte(`{"lock": "a.lock", "allotments": []}`)); err == nil || !strings.Contains(err.Error(), `"lock": unknown key`) {
		t.Errorf("lock in an application descriptor: %v", err)
	}
}
