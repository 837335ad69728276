# Lists every requirement of a closure pip finds no wheel for, direct or
# transitive, with the path that required it: pip's resolver stops at the
# first one. Run by resolve.sh after pip failed, in the same environment
#   python3 -S missing.py REQ...     (PIPOPTS: pip's options for the target)
# It walks the closure level by level with pip --no-deps (one pip run per
# level, each requirement alone when the level fails) and writes to stdout
# one line per missing requirement: REQ, a tab, the path of name version
# from the direct requirement down ("" for a direct one). A requirement the
# base already satisfies is not walked into: pip reports nothing to install.
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pipdrv  # noqa: E402
from pip._vendor.packaging.requirements import Requirement  # noqa: E402
from pip._vendor.packaging.utils import canonicalize_name  # noqa: E402

opts = os.environ["PIPOPTS"].split()
NOT_FOUND = ("No matching distribution", "Could not find a version")


def pip(reqs):
    """Returns pip's report items for reqs, or None and pip's log."""
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "r.json")
        p = subprocess.run([sys.executable, "-S", os.path.join(os.path.dirname(pipdrv.__file__), "pipdrv.py"), "install"]
                           + opts + ["--no-deps", "--report", report] + reqs,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            return None, p.stdout
        with open(report) as f:
            return json.load(f)["install"], ""


def children(item, extras):
    env = pipdrv.target_environment()
    out = []
    for spec in item["metadata"].get("requires_dist", []):
        r = Requirement(spec)
        if r.marker is not None and not any(r.marker.evaluate(dict(env, extra=e)) for e in [""] + sorted(extras)):
            continue
        r.marker = None
        out.append(str(r))
    return out


# A bound on the walk: an index whose every release requires a new
# project would otherwise keep it running one pip call a level for ever.
# Real closures are a few levels deep; what is deeper is not reported.
MAX_LEVELS = 64

level = [(r, []) for r in sys.argv[1:]]
seen = set()
depth = 0
while level and depth < MAX_LEVELS:
    depth += 1
    todo = []
    for req, path in level:
        if req not in seen:
            seen.add(req)
            todo.append((req, path))
    items, _ = pip([r for r, _ in todo]) if todo else ([], "")
    found = {}
    if items is not None:
        for it in items:
            found[canonicalize_name(it["metadata"]["name"])] = it
    level = []
    for req, path in todo:
        r = Requirement(req)
        if items is None:
            one, log = pip([req])
            if one is None:
                if any(s in log for s in NOT_FOUND):
                    print("%s\t%s" % (req, " → ".join(path)))
                continue
            it = one[0] if one else None
        else:
            it = found.get(canonicalize_name(r.name))
        if it is None:
            continue  # the base has it
        step = path + ["%s %s" % (it["metadata"]["name"], it["metadata"]["version"])]
        level += [(c, step) for c in children(it, r.extras)]
