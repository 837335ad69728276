package descriptor

import (
	"reflect"
	"testing"
)

func TestParseDependencies(t *testing.T) {
	in := `{"base": "debian:bookworm", "dependencies": {
  "apt": ["python3", "python3-numpy=1:1.24.2-1", "libstdc++6"],
  "pip": ["requests==2.32.3", "tqdm >= 4.66, <5", "Foo_Bar[socks, http2]~=1.0", "zope.interface", "odd===1.0-local"],
  "pipIndex": "https://pypi.example.com/simple",
  "pipAuthSecret": "pypi-token"
}, "allotments": []}`
	d := mustParse(t, in)
	deps := d.Dependencies
	var apt, pip []string
	for _, a := range deps.Apt {
		apt = append(apt, a.String())
	}
	for _, r := range deps.Pip {
		pip = append(pip, r.String())
	}
	if want := []string{"python3", "python3-numpy=1:1.24.2-1", "libstdc++6"}; !reflect.DeepEqual(apt, want) {
		t.Errorf("apt %q, want %q", apt, want)
	}
	if want := []string{"requests==2.32.3", "tqdm>=4.66,<5", "foo-bar[socks,http2]~=1.0", "zope-interface", "odd===1.0-local"}; !reflect.DeepEqual(pip, want) {
		t.Errorf("pip %q, want %q", pip, want)
	}
	if deps.PipIndex != "https://pypi.example.com/simple" || deps.PipAuthSecret != "pypi-token" || deps.Apt[1].Pos.Line != 2 {
		t.Errorf("deps %+v", deps)
	}
}

func TestParseDependenciesErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no base", `{"dependencies": {"pip": ["a"]}, "allotments": []}`,
			`2dfs.json:1:2: dependencies: needs a "base": the Debian image (with python3 for pip) the dependencies are resolved against and assembled on`},
		{"empty", `{"base": "d", "dependencies": {"apt": []}, "allotments": []}`,
			`2dfs.json:1:31: dependencies: lists no packages; give "apt" or "pip" a package, or leave the block out for a plain 2DFS image`},
		{"typo", `{"base": "d", "dependencies": {"pipindex": "http://x/simple", "pip": ["a"]}, "allotments": []}`,
			`2dfs.json:1:32: "pipindex": unknown key in dependencies; did you mean "pipIndex"? (known keys: apt, pip, pipIndex, pipAuthSecret)`},
		{"credentials in the URL", `{"base": "d", "dependencies": {"pip": ["a"], "pipIndex": "https://user:s3cret@pypi.example.com/simple"}, "allotments": []}`,
			`2dfs.json:1:58: dependencies.pipIndex: URL carries credentials (user info); never put them in the descriptor: store the Authorization header value in a file, pass it with --secret id=NAME,src=FILE and name it with "pipAuthSecret": "NAME"`},
		{"every bad package at once", `{"base": "d", "dependencies": {"apt": ["Python3", "x", "numpy=abc", "curl", "curl=7.88"], "pip": ["requests==2.32.3", "tqdm 4.66", "np>=1.0a1.x", "a; python_version<'3.8'", "b @ https://x/b.whl", "REQUESTS>=2", "c>=1.*"], "pipIndex": "ftp://x/simple", "pipAuthSecret": "a b"}, "allotments": []}`,
			`12 problems in the 2DFS descriptor:
  2dfs.json:1:40: dependencies.apt[0] "Python3": is not a Debian package name (lowercase letters, digits, '+', '-', '.'; at least 2 characters; pin a version with name=version)
  2dfs.json:1:51: dependencies.apt[1] "x": is not a Debian package name (lowercase letters, digits, '+', '-', '.'; at least 2 characters; pin a version with name=version)
  2dfs.json:1:56: dependencies.apt[2] "numpy=abc": "abc" is not a Debian version ([epoch:]upstream[-revision], starting with a digit)
  2dfs.json:1:77: dependencies.apt[4] "curl=7.88": conflicts with "curl" at line 1; list each package once
  2dfs.json:1:119: dependencies.pip[1] "tqdm 4.66": version specifier "4.66" has no operator (==, !=, <=, >=, <, >, ~= or ===)
  2dfs.json:1:132: dependencies.pip[2] "np>=1.0a1.x": "1.0a1.x" is not a PEP 440 version
  2dfs.json:1:147: dependencies.pip[3] "a; python_version<'3.8'": environment markers are not supported: a CIR resolves for each target platform; list the requirement without "; ..."
  2dfs.json:1:174: dependencies.pip[4] "b @ https://x/b.whl": direct URL requirements are not supported: every wheel comes from the index, pinned by its hash
  2dfs.json:1:197: dependencies.pip[5] "REQUESTS>=2": conflicts with "requests==2.32.3" at line 1; list each package once
  2dfs.json:1:212: dependencies.pip[6] "c>=1.*": a wildcard version "1.*" only goes with == or !=
  2dfs.json:1:235: dependencies.pipIndex: URL scheme "ftp" is not supported; an index is an http(s) URL
  2dfs.json:1:270: dependencies.pipAuthSecret: "a b" is not a secret id: use letters, digits, '.', '_' and '-', as in --secret id=NAME,src=FILE`},
		{"secret without index", `{"base": "d", "dependencies": {"pip": ["a"], "pipAuthSecret": "tok"}, "allotments": []}`,
			`2dfs.json:1:63: dependencies.pipAuthSecret: names the secret for "pipIndex", which is not set`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("2dfs.json", []byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
}
