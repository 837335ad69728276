package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tdfs-kit/tdfs/internal/version"
)

func newVersionCommand(info version.Info) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version and commit this binary was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), info.Line("2dfs"))
			return err
		},
	}
}
