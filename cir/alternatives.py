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
# Each .deb is read here, not with dpkg-deb: two dpkg-deb processes per
# package made this step, which runs after the closure is fetched and before
# anything is assembled, take 1.7 s on a 77-package closure. A .deb is an ar
# archive whose control.tar.* holds control and postinst; a member tarfile
# cannot read (zstd) falls back to dpkg-deb for that package.
import glob
import io
import os
import shlex
import subprocess
import sys
import tarfile


def ar_members(deb):
    """The members of the ar archive deb as {name: (offset, size)}."""
    members = {}
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError("%s: not an ar archive" % deb)
        while True:
            head = f.read(60)
            if len(head) < 60:
                return members
            if head[58:60] != b"`\n":
                raise ValueError("%s: bad ar member header" % deb)
            name = head[0:16].decode("ascii", "replace").rstrip(" ").rstrip("/")
            size = int(head[48:58].decode("ascii").strip())
            members[name] = (f.tell(), size)
            f.seek(size + (size & 1), os.SEEK_CUR)


def ar_read(deb, members, prefix):
    """The bytes of the member of deb named prefix.*, or None."""
    for name, (offset, size) in members.items():
        if name == prefix or name.startswith(prefix + "."):
            with open(deb, "rb") as f:
                f.seek(offset)
                return f.read(size)
    return None


def tar_files(data):
    """The members of a (compressed) tar by path without "./", and the
    tarfile; tarfile reads gzip, xz, bzip2 and plain tars."""
    t = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    files = {}
    for m in t.getmembers():
        n = m.name[2:] if m.name.startswith("./") else m.name
        files[n] = m
    return files, t


def shell_text(raw):
    # As dpkg-deb's output read in text mode: UTF-8, universal newlines.
    return raw.decode("utf-8", "surrogateescape").replace("\r\n", "\n").replace("\r", "\n")


def control(deb):
    """(Package, postinst text or None) of deb."""
    try:
        members = ar_members(deb)
        files, t = tar_files(ar_read(deb, members, "control.tar"))
        pkg = ""
        c = files.get("control")
        if c is not None and c.isfile():
            for line in shell_text(t.extractfile(c).read()).splitlines():
                if line[:8].lower() == "package:":
                    pkg = line[8:].strip()
                    break
        p = files.get("postinst")
        if p is None or not p.isfile():
            return pkg, None
        return pkg, shell_text(t.extractfile(p).read())
    except Exception:
        # A compression tarfile cannot read (zstd), or a .deb this reader
        # does not understand: dpkg-deb reads it.
        pkg = subprocess.run(["dpkg-deb", "-f", deb, "Package"], capture_output=True, text=True).stdout.strip()
        r = subprocess.run(["dpkg-deb", "-I", deb, "postinst"], capture_output=True, text=True)
        return pkg, (r.stdout if r.returncode == 0 else None)


epoch = int(sys.argv[1])
merged_usr = len(sys.argv) > 2 and sys.argv[2] == "merged-usr"
best = {}  # name -> (priority, package, link, path, slaves)
skipped = []
for deb in sorted(glob.glob("/in/*/*.deb")):
    pkg, postinst = control(deb)
    if postinst is None:
        continue
    text = postinst.replace("\\\n", " ")
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
