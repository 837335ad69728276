// Images of this project. `docker buildx bake` builds the default group.
//
//   REGISTRY=registry.example.com/2dfs TAG=v1 docker buildx bake --push
//
// BINARIES=out/bin uses binaries compiled on the host (hack/images does
// this), instead of compiling them in a Go image.

variable "REGISTRY" {
  default = "localhost:5000/2dfs"
}

variable "TAG" {
  default = "latest"
}

variable "BINARIES" {
  default = ""
}

variable "PLATFORMS" {
  default = "linux/amd64,linux/arm64"
}

group "default" {
  targets = ["frontend", "proxy"]
}

target "_common" {
  dockerfile = "Dockerfile"
  context    = "."
  platforms  = split(",", PLATFORMS)
  contexts   = BINARIES == "" ? {} : { host-binaries = BINARIES }
  args = {
    SOURCE_DATE_EPOCH = "0"
    BINARIES          = BINARIES == "" ? "binaries-from-source" : "host-binaries"
  }
}

target "frontend" {
  inherits = ["_common"]
  target   = "frontend"
  tags     = ["${REGISTRY}/frontend:${TAG}"]
}

target "proxy" {
  inherits = ["_common"]
  target   = "proxy"
  tags     = ["${REGISTRY}/proxy:${TAG}"]
}
