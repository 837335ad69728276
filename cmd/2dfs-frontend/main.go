// Command 2dfs-frontend is the BuildKit gateway frontend for 2DFS
// descriptors, run by BuildKit from the frontend image.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/gateway/grpcclient"
	"github.com/moby/buildkit/util/appcontext"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/stack"

	"github.com/tdfs-kit/tdfs/frontend"
	"github.com/tdfs-kit/tdfs/internal/version"
)

func main() {
	info := version.Read()
	showVersion := flag.Bool("version", false, "print the module version and commit, then exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(info.Line("2dfs-frontend"))
		return
	}
	// As BuildKit's Dockerfile frontend does: the version goes into the
	// stack traces of errors, and (our addition) one line into buildkitd's
	// log, which receives the frontend's stderr, so a bug report can say
	// which frontend build ran.
	stack.SetVersionInfo(info.Version, info.Revision)
	bklog.L.Infof("%s", info.Line("2dfs-frontend"))
	if err := grpcclient.RunFromEnvironment(appcontext.Context(), frontend.Build); err != nil {
		fmt.Fprintf(os.Stderr, "2dfs-frontend: %v\n", err)
		os.Exit(1)
	}
}
