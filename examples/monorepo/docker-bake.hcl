// Two models in one repository that share their tokenizer and embeddings.
// One `docker buildx bake --push` builds both; the shared allotments are the
// same layers, so the registry stores them once and each model's re-build
// only touches what changed.
//
//   FRONTEND=registry.example.com/2dfs/frontend:v1 REGISTRY=registry.example.com/models \
//     docker buildx bake --push

variable "FRONTEND" {
  // The 2DFS frontend image (docker-bake.hcl at the repository root builds it).
  default = "localhost:5000/2dfs/frontend:latest"
}

variable "REGISTRY" {
  default = "localhost:5000/models"
}

variable "TAG" {
  default = "latest"
}

variable "BASE" {
  // Optional base image for both models, e.g. docker-image://registry.example.com/runtime:v1
  default = ""
}

group "default" {
  targets = ["chat", "code"]
}

target "_field" {
  context  = "."
  args     = { BUILDKIT_SYNTAX = FRONTEND }
  contexts = BASE == "" ? {} : { base = BASE }
  // Model weights barely compress; zstd at its fastest level exports them
  // several times faster than BuildKit's gzip default. Use compression=gzip
  // for runtimes older than containerd 1.5 or Docker 23, or the reference
  // 2DFS tools.
  output = ["type=image,compression=zstd,compression-level=1"]
}

target "chat" {
  inherits   = ["_field"]
  dockerfile = "chat/2dfs.json"
  tags       = ["${REGISTRY}/chat:${TAG}"]
}

target "code" {
  inherits   = ["_field"]
  dockerfile = "code/2dfs.json"
  tags       = ["${REGISTRY}/code:${TAG}"]
}
