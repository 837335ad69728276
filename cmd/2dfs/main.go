// Command 2dfs builds and works with 2DFS field images.
package main

import (
	"fmt"
	"os"

	"github.com/moby/buildkit/util/appcontext"
	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/internal/version"
)

func main() {
	root := &cobra.Command{
		Use:           "2dfs",
		Short:         "Build 2DFS field images with BuildKit",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newBuildCommand())
	root.AddCommand(newExportCommand())
	root.AddCommand(newInspectCommand())
	root.AddCommand(newPartitionCommand())
	root.AddCommand(newVersionCommand(version.Read()))
	root.AddCommand(newSplitCommand())
	if err := root.ExecuteContext(appcontext.Context()); err != nil {
		fmt.Fprintf(os.Stderr, "2dfs: %v\n", err)
		os.Exit(1)
	}
}
