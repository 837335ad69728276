package field

import "fmt"

// MaxRunnableLayers is the most layers an image can have and still run whole
// on overlayfs: the kernel stacks at most 500 lower directories in one
// overlay mount (OVL_MAX_STACK; "overlayfs: too many lower directories,
// limit is 500"). containerd, nerdctl, Kubernetes and Docker with the
// containerd image store all run images this way. A larger field builds,
// pushes and partitions fine; only the whole image does not run.
const MaxRunnableLayers = 500

// SafeRunnableLayers is the most layers an image can have and run whole on
// any containerd host. containerd passes the lower directories in one page
// of mount options (4,096 bytes), relative to its snapshots folder as
// "ID/fs:" each, after the absolute upper and work directories (about 200
// bytes with the default root): 433 layers fit with 5-digit snapshot IDs,
// 389 with 6-digit ones (a long-lived host), 500 only while IDs have 3
// digits. Past this many layers, running whole depends on the host.
const SafeRunnableLayers = 384

// RunnableWarning says, for an image of baseLayers + allotments layers,
// whether it can run whole and what to do instead. It returns "" when the
// image is within SafeRunnableLayers.
func RunnableWarning(baseLayers, allotments int) string {
	layers := baseLayers + allotments
	switch {
	case layers > MaxRunnableLayers:
		return fmt.Sprintf("the image has %d layers (%d base + %d allotments), more than the %d overlayfs stacks: "+
			"containerd cannot run it whole (\"mount options is too long\" or \"too many lower directories\"); "+
			"run partitions of it instead (NAME:TAG--r1.c1.r2.c2 through 2dfs-proxy, or 2dfs partition)",
			layers, baseLayers, allotments, MaxRunnableLayers)
	case layers > SafeRunnableLayers:
		return fmt.Sprintf("the image has %d layers (%d base + %d allotments): overlayfs stacks at most %d, and containerd "+
			"fits fewer into one page of mount options on hosts with long snapshot IDs (about 390 with 6-digit IDs), so running it whole "+
			"may fail with \"mount options is too long\"; partitions (NAME:TAG--r1.c1.r2.c2) run anywhere",
			layers, baseLayers, allotments, MaxRunnableLayers)
	}
	return ""
}
