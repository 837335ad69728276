package descriptor

import (
	"reflect"
	"testing"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct{ file, in string }{
		{"2dfs.json", `{"base": "debian", "config": {"entrypoint": ["python3", "/app/main.py"], "cmd": [], "env": ["PYTHONUNBUFFERED=1", "EMPTY="],
			"workdir": "/app/", "user": 1000, "exposedPorts": [8080, "53/UDP", "8080/tcp"]}, "allotments": []}`},
		{"2dfs.yaml", "base: debian\nconfig:\n  entrypoint: [python3, /app/main.py]\n  cmd: []\n  env: [PYTHONUNBUFFERED=1, EMPTY=]\n" +
			"  workdir: /app/\n  user: 1000\n  exposedPorts: [8080, 53/UDP, 8080/tcp]\nallotments: []\n"},
	} {
		d, err := Parse(tc.file, []byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		c := d.Config
		want := Config{
			Entrypoint:   ArgList{Set: true, Args: []string{"python3", "/app/main.py"}},
			Cmd:          ArgList{Set: true, Args: []string{}},
			Env:          []string{"PYTHONUNBUFFERED=1", "EMPTY="},
			WorkingDir:   "/app",
			User:         "1000",
			ExposedPorts: []string{"8080/tcp", "53/udp"},
			Pos:          c.Pos,
		}
		if !reflect.DeepEqual(*c, want) {
			t.Fatalf("%s: config\n%+v\nwant\n%+v", tc.file, *c, want)
		}
	}
	d := mustParse(t, `{"allotments": []}`)
	if d.Config != nil || d.Dependencies != nil {
		t.Fatalf("absent blocks parsed as %+v %+v", d.Config, d.Dependencies)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"typo", `{"config": {"entrypiont": ["a"]}, "allotments": []}`,
			`2dfs.json:1:13: "entrypiont": unknown key in config; did you mean "entrypoint"? (known keys: entrypoint, cmd, env, workdir, user, exposedPorts)`},
		{"shell form", `{"config": {"cmd": "python3 main.py"}, "allotments": []}`,
			`2dfs.json:1:20: config.cmd: must be a list of arguments (exec form), such as ["python3 main.py"]; for a shell command write ["/bin/sh", "-c", "python3 main.py"]`},
		{"not object", `{"config": ["a"], "allotments": []}`,
			`2dfs.json:1:12: config: must be an object with any of entrypoint, cmd, env, workdir, user, exposedPorts`},
		{"every bad value at once", `{"config": {"entrypoint": ["a", 1], "env": ["A", "=x", "B=1", "B=2"], "workdir": "app", "user": "a b", "exposedPorts": [0, "80/icmp", "x", 70000]}, "allotments": []}`,
			`10 problems in the 2DFS descriptor:
  2dfs.json:1:33: config.entrypoint[1]: must be a string, got 1
  2dfs.json:1:45: config.env[0]: "A" is not KEY=VALUE (write "A=" for an empty value)
  2dfs.json:1:50: config.env[1]: "=x": the variable name must be non-empty and hold no blanks
  2dfs.json:1:63: config.env[3]: B is already set by config.env[2]
  2dfs.json:1:82: config.workdir "app": must be an absolute path in the image
  2dfs.json:1:97: config.user "a b": must be "user", "uid", "user:group" or "uid:gid" (names of letters, digits, '_', '-', '.'; numbers below 2^32)
  2dfs.json:1:121: config.exposedPorts[0]: 0 is not a port: want a number from 1 to 65535, optionally with /tcp, /udp or /sctp
  2dfs.json:1:124: config.exposedPorts[1]: protocol "icmp" is not tcp, udp or sctp
  2dfs.json:1:135: config.exposedPorts[2]: "x" is not a port: want a number from 1 to 65535, optionally with /tcp, /udp or /sctp
  2dfs.json:1:140: config.exposedPorts[3]: 70000 is not a port: want a number from 1 to 65535, optionally with /tcp, /udp or /sctp`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("2dfs.json", []byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
}
