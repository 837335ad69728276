# Images of this project: the BuildKit frontend and the registry proxy.
# Build them with `docker buildx bake` (docker-bake.hcl).
#
# The static binaries come from the "binaries" stage. By default it is the
# "binaries-from-source" stage, compiled in a Go image; with
# --build-arg BINARIES=host-binaries and a named context "host-binaries" (a
# folder of binaries compiled on the host, as hack/images does) no image is
# pulled at all, since the Go stage is then unreachable.
# No "# syntax" line on purpose: the builtin Dockerfile frontend is enough,
# and an offline builder could not pull another.

ARG GO_IMAGE=golang:1.26-bookworm
ARG BINARIES=binaries-from-source

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags=-s -o /out/${TARGETOS}_${TARGETARCH}/ ./cmd/2dfs-frontend ./cmd/2dfs-proxy ./cmd/2dfs && \
    cp /etc/ssl/certs/ca-certificates.crt /out/

FROM scratch AS binaries-from-source
COPY --from=build /out/ /

FROM ${BINARIES} AS binaries

# The gateway frontend BuildKit runs for `"syntax": "<this image>"`.
FROM scratch AS frontend
ARG TARGETOS TARGETARCH
COPY --from=binaries /${TARGETOS}_${TARGETARCH}/2dfs-frontend /bin/2dfs-frontend
# The frontend needs no network (BuildKit's convention for frontends) and
# reads its inputs, named contexts and subrequests through the gateway.
LABEL moby.buildkit.frontend.network.none="true"
LABEL moby.buildkit.frontend.caps="moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts"
ENTRYPOINT ["/bin/2dfs-frontend"]

# The registry proxy. It dials upstream registries over TLS, hence the CAs.
FROM scratch AS proxy
ARG TARGETOS TARGETARCH
COPY --from=binaries /ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binaries /${TARGETOS}_${TARGETARCH}/2dfs-proxy /bin/2dfs-proxy
USER 65534:65534
EXPOSE 5000
ENTRYPOINT ["/bin/2dfs-proxy"]
