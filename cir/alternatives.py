# Makes the one layer of the alternatives links an apt closure registers:
# maintainer scripts do not run when the lazy-builder unpacks .debs, and
# some packages create files only through update-alternatives in their
# postinst (libblas3 and liblapack3 make libblas.so.3 and liblapack.so.3
# that way). Run by the lazy-builder in the helper with each .deb mounted
# in /in/N/; /out is the layer, /out-report says what was made and skipped.
#   python3 alternatives.py EPOCH [merged-usr]
# For each name, the highest priority wins (ties: the package sorted first),
# as update-alternatives' automatic mode does: LINK -> /etc/alternatives/NAME
# -> PATH, and so for each --slave. Calls that use shell variables cannot be
# read without running the script; they are listed in /out-report, not made.
# On a merged-/usr base ("merged-usr") a link under /bin, /sbin or /lib* is
# made under /usr, as deb.sh does with package files: a real /lib folder in
# the layer would hide the base's /lib symlink and with it the dynamic
# loader (cpp registers /lib/cpp; every binary then failed to start).
import glob
import os
import shlex
import subprocess
import sys

epoch = int(sys.argv[1])
merged_usr = len(sys.argv) > 2 and sys.argv[2] == "merged-usr"
best = {}  # name -> (priority, package, link, path, slaves)
skipped = []
for deb in sorted(glob.glob("/in/*/*.deb")):
    pkg = subprocess.run(["dpkg-deb", "-f", deb, "Package"], capture_output=True, text=True).stdout.strip()
    r = subprocess.run(["dpkg-deb", "-I", deb, "postinst"], capture_output=True, text=True)
    if r.returncode != 0:
        continue  # no postinst
    text = r.stdout.replace("\\\n", " ")
    for line in text.splitlines():
        if "update-alternatives" not in line or "--install" not in line:
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            skipped.append("%s: %s" % (pkg, line.strip()))
            continue
        i = words.index("--install") if "--install" in words else -1
        if i < 0 or len(words) < i + 5:
            skipped.append("%s: %s" % (pkg, line.strip()))
            continue
        link, name, path, prio = words[i + 1 : i + 5]
        prio = prio.rstrip(";")
        rest = words[i + 5 :]
        if any("$" in w or "`" in w for w in (link, name, path, prio)) or not prio.lstrip("-").isdigit():
            skipped.append("%s: %s" % (pkg, line.strip()))
            continue
        slaves = []
        j = 0
        while j + 4 <= len(rest) and rest[j] == "--slave":
            slaves.append(tuple(rest[j + 1 : j + 4]))
            j += 4
        cand = (int(prio), pkg, link, path, slaves)
        if name not in best or (cand[0], best[name][1]) > (best[name][0], cand[1]):
            best[name] = cand

made = []


def link(at, target):
    if merged_usr and at.split("/")[1] in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        at = "/usr" + at
    p = "/out" + at
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p):
        os.unlink(p)
    os.symlink(target, p)
    made.append("%s -> %s" % (at, target))


for name in sorted(best):
    prio, pkg, lnk, path, slaves = best[name]
    link("/etc/alternatives/" + name, path)
    link(lnk, "/etc/alternatives/" + name)
    for slink, sname, spath in slaves:
        if "$" in slink + sname + spath:
            continue
        link("/etc/alternatives/" + sname, spath)
        link(slink, "/etc/alternatives/" + sname)

os.makedirs("/out-report", exist_ok=True)
with open("/out-report/made", "w") as f:
    f.write("".join(m + "\n" for m in made))
with open("/out-report/skipped", "w") as f:
    f.write("".join(s + "\n" for s in skipped))
for root, dirs, files in os.walk("/out", topdown=False):
    for d in dirs:
        os.chmod(os.path.join(root, d), 0o755)
    for x in files + dirs:
        os.utime(os.path.join(root, x), (epoch, epoch), follow_symlinks=False)
