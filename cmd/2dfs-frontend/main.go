// Command 2dfs-frontend is the BuildKit gateway frontend for 2DFS
// descriptors, run by BuildKit from the frontend image.
package main

import (
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/gateway/grpcclient"
	"github.com/moby/buildkit/util/appcontext"

	"github.com/tdfs-kit/tdfs/frontend"
)

func main() {
	if err := grpcclient.RunFromEnvironment(appcontext.Context(), frontend.Build); err != nil {
		fmt.Fprintf(os.Stderr, "2dfs-frontend: %v\n", err)
		os.Exit(1)
	}
}
