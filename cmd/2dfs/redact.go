package main

import (
	"github.com/moby/buildkit/client"

	"github.com/tdfs-kit/tdfs/descriptor"
)

// redactProgress passes build progress on with the user info and query
// string of every URL removed. Our own vertex names carry no credentials,
// but buildkitd's messages do: a checksum mismatch names the URL it fetched,
// signed query and all.
func redactProgress(in <-chan *client.SolveStatus) chan *client.SolveStatus {
	out := make(chan *client.SolveStatus)
	go func() {
		defer close(out)
		for s := range in {
			out <- redactStatus(s)
		}
	}()
	return out
}

func redactStatus(s *client.SolveStatus) *client.SolveStatus {
	r := *s
	r.Vertexes = make([]*client.Vertex, len(s.Vertexes))
	for i, v := range s.Vertexes {
		c := *v
		c.Name = descriptor.RedactText(v.Name)
		c.Error = descriptor.RedactText(v.Error)
		r.Vertexes[i] = &c
	}
	r.Statuses = make([]*client.VertexStatus, len(s.Statuses))
	for i, v := range s.Statuses {
		c := *v
		c.ID = descriptor.RedactText(v.ID)
		c.Name = descriptor.RedactText(v.Name)
		r.Statuses[i] = &c
	}
	r.Logs = make([]*client.VertexLog, len(s.Logs))
	for i, v := range s.Logs {
		c := *v
		c.Data = []byte(descriptor.RedactText(string(v.Data)))
		r.Logs[i] = &c
	}
	r.Warnings = make([]*client.VertexWarning, len(s.Warnings))
	for i, v := range s.Warnings {
		c := *v
		c.Short = []byte(descriptor.RedactText(string(v.Short)))
		c.Detail = make([][]byte, len(v.Detail))
		for j, d := range v.Detail {
			c.Detail[j] = []byte(descriptor.RedactText(string(d)))
		}
		r.Warnings[i] = &c
	}
	return &r
}
