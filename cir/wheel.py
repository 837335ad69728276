# Installs one wheel into its own layer: /out is the layer, laid out as the
# image's root. Run by the lazy-builder in a helper container of the build
# host's architecture (a wheel is a zip: nothing of the target runs).
#   python3 wheel.py WHEEL SITE BINDIR EPOCH
# Same wheel, same bytes: every file gets mode 0644 (0755 if executable in
# the zip, and scripts), folders 0755, and every time is EPOCH.
import configparser
import os
import sys
import zipfile

whl, site, bindir, epoch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = "/out"


def write(dest, raw, mode):
    p = out + dest
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(raw)
    os.chmod(p, mode)


z = zipfile.ZipFile(whl)
tops = {n.split("/")[0] for n in z.namelist()}
infos = [t for t in tops if t.endswith(".dist-info")]
if len(infos) != 1:
    sys.exit("%s: want one .dist-info folder, found %d" % (os.path.basename(whl), len(infos)))
distinfo = infos[0]
data = distinfo[: -len(".dist-info")] + ".data"
for info in sorted(z.infolist(), key=lambda i: i.filename):
    name = info.filename
    if info.is_dir():
        continue
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "\\" in name:
        sys.exit("%s: entry %r escapes the install folder" % (os.path.basename(whl), name))
    mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
    raw = z.read(name)
    if parts[0] == data:
        kind, rel = parts[1], "/".join(parts[2:])
        if kind in ("purelib", "platlib"):
            write(site + "/" + rel, raw, mode)
        elif kind == "scripts":
            if raw.startswith(b"#!python"):
                raw = b"#!/usr/bin/python3" + raw[raw.index(b"\n"):]
            write(bindir + "/" + rel, raw, 0o755)
        # headers and data are not installed.
        continue
    write(site + "/" + name, raw, mode)

# Console scripts, as pip writes them.
ep = out + site + "/" + distinfo + "/entry_points.txt"
if os.path.exists(ep):
    cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    cp.optionxform = str
    cp.read(ep)
    if cp.has_section("console_scripts"):
        for script, target in sorted(cp.items("console_scripts")):
            mod, _, func = target.strip().partition(":")
            func = func.split("[")[0].strip()
            body = "#!/usr/bin/python3\nimport sys\nfrom %s import %s\nif __name__ == '__main__':\n    sys.exit(%s())\n" % (mod.strip(), func.split(".")[0], func)
            write(bindir + "/" + script, body.encode(), 0o755)
write(site + "/" + distinfo + "/INSTALLER", b"2dfs\n", 0o644)

for root, dirs, files in os.walk(out, topdown=False):
    for d in dirs:
        os.chmod(os.path.join(root, d), 0o755)
    for x in files + dirs:
        os.utime(os.path.join(root, x), (epoch, epoch), follow_symlinks=False)
