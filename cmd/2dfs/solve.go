package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/docker/cli/cli/config"
	"github.com/moby/buildkit/client"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/util/progress/progressui"
	"golang.org/x/sync/errgroup"
)

// solve runs fn on buildkitd under the progress display, as 2dfs build and
// 2dfs deploy both do. The progress is redacted (buildkitd's messages may
// repeat a signed URL's query). Warnings scroll by in the progress output,
// or are hidden in quiet and tty modes: they are repeated last, where they
// are seen, whether or not the solve failed.
func solve(ctx context.Context, c *client.Client, opt client.SolveOpt, product, progress string, fn gateway.BuildFunc) (*client.SolveResponse, error) {
	display, err := progressui.NewDisplay(os.Stderr, progressui.DisplayMode(progress))
	if err != nil {
		return nil, err
	}
	ch := make(chan *client.SolveStatus)
	eg, ctx := errgroup.WithContext(ctx)
	var resp *client.SolveResponse
	var warnings []client.VertexWarning
	eg.Go(func() error {
		var err error
		resp, err = c.Build(ctx, opt, product, fn, ch)
		return err
	})
	eg.Go(func() error {
		var err error
		warnings, err = display.UpdateFrom(context.WithoutCancel(ctx), redactProgress(ch))
		return err
	})
	err = eg.Wait()
	printWarnings(os.Stderr, warnings)
	return resp, err
}

// sessionAttachables are what buildkitd asks this process for during a
// solve: registry credentials from the Docker config, as buildctl and
// docker buildx read them, and the --secret values.
func sessionAttachables(secrets session.Attachable) []session.Attachable {
	auth := authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: authprovider.LoadAuthConfig(config.LoadDefaultConfigFile(os.Stderr)),
	})
	return []session.Attachable{auth, secrets}
}

// reportSolve prints the image digest of a finished solve and writes
// --metadata-file, as buildctl does.
func reportSolve(resp *client.SolveResponse, metadataFile string) error {
	if dgst := resp.ExporterResponse["containerimage.digest"]; dgst != "" {
		fmt.Fprintln(os.Stdout, dgst)
	}
	if metadataFile == "" {
		return nil
	}
	dt, err := json.MarshalIndent(resp.ExporterResponse, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(metadataFile, dt, 0o644)
}
