# Makes the one layer of the alternatives links an apt closure registers,
# and of the files its postinst scripts install with ucf (below):
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
# The base's dpkg path filters (DPKG_FILTERS, as deb.sh gets them) leave
# files out of the package layers; update-alternatives makes no link to a
# file that does not exist (it refuses an alternative whose path is
# missing, and skips a --slave whose file is): such links are listed as
# skipped, not made dangling (a man page --slave on a slim base).
import glob
import io
import os
import posixpath
import re
import shlex
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dpkgfilter  # noqa: E402  (beside this script in the helper)


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


# ucf: `ucf [options] NEW DEST` in a postinst installs the file NEW as the
# configuration file DEST, copying it with its mode when DEST does not
# exist (r-base-core makes R's /etc/R/Renviron that way, from
# /usr/lib/R/etc/Renviron.ucf; without it R says "cannot find system
# Renviron" and starts without its default packages utils and stats). This step puts NEW's bytes, taken from the package's own
# data archive, at DEST. NEW and DEST are literal paths, or variables the
# script assigns once: to a literal path, or to $(mktemp) filled once with
# `cat FILE > "$VAR"` or `cp FILE "$VAR"` (r-base-core copies the template
# to a temporary file and passes that). Other commands on such a temporary
# file (r-base-core's sed sets the paper size from paperconf) cannot be
# run here: they are listed in the report as not applied. Calls whose
# arguments cannot be read so are listed as skipped, like alternatives.
# Options taking a value, the -d/-D debug levels (value attached, optional)
# and the calls that install nothing, as ucf's getopt spells them.
UCF_LONG = {"src-dir": "arg", "sum-file": "arg", "dest-dir": "arg", "package": "arg", "state-dir": "arg",
            "debconf-template": "arg", "debug": "opt", "DEBUG": "opt", "verbose": "flag", "three-way": "flag",
            "debconf-ok": "flag", "no-action": "none", "purge": "none", "help": "none"}
UCF_SHORT = {"s": "arg", "P": "arg", "d": "opt", "D": "opt", "v": "flag", "Z": "flag", "n": "none", "p": "none", "h": "none"}
SHELL_KEYWORDS = ("if", "then", "else", "elif", "do", "while", "until", "!", "{", "}")


def ucf_operands(words):
    """NEW and DEST of ucf's arguments, or None when it installs nothing or
    the arguments are not ucf's."""
    operands = []
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w == "--":
            operands += words[i:]
            break
        if not w.startswith("-") or w == "-":
            operands.append(w)
            continue
        name, eq, _ = w.lstrip("-").partition("=")
        if w.startswith("--") or name in UCF_LONG:  # getopt -a: -long too
            kind = UCF_LONG.get(name)
            if kind is None or kind == "none" or (kind == "flag" and eq):
                return None
            if kind == "arg" and not eq:
                i += 1
            continue
        for j, c in enumerate(w[1:], 2):
            kind = UCF_SHORT.get(c)
            if kind is None or kind == "none":
                return None
            if kind == "arg" and j == len(w):
                i += 1
            if kind in ("arg", "opt"):
                break  # the rest of the word is the value
    if dest_dir_given(words) or len(operands) != 2:
        return None
    return operands


def dest_dir_given(words):
    # --dest-dir is in ucf's getopt but not in its option loop.
    return any(w.lstrip("-").partition("=")[0] == "dest-dir" for w in words)


def simple_commands(text):
    """(line, words) of each simple command of a script, words None for a
    line shlex cannot split. A command ends at ; & | ( ) and its leading
    shell keywords are dropped; quotes are removed, redirections kept."""
    for line in text.splitlines():
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
            lex.whitespace_split = True
            tokens = list(lex) + [";"]
        except ValueError:
            yield line, None
            continue
        words = []
        for tok in tokens:
            if tok and set(tok) <= set(";&|()"):
                while words and words[0] in SHELL_KEYWORDS:
                    words.pop(0)
                if words:
                    yield line, words
                words = []
            else:
                words.append(tok)


def without_redirections(words):
    """words without their redirections: > FILE, 2> FILE, >&2, 2>&1..."""
    out = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif "<" in w or ">" in w:
            if out and out[-1].isdigit():
                out.pop()  # the 2 of 2>, split from it by shlex
            skip = True  # the file, or the descriptor of >&
        else:
            out.append(w)
    return out


def is_ucf(words):
    return words[0] == "ucf" or words[0].endswith("/ucf")


LITERAL_PATH = re.compile(r"/[^$`\\]*")
ASSIGNED = re.compile(r"(?<![\w$:{/.-])([A-Za-z_]\w*)=")
SIMPLE_ASSIGNMENT = re.compile(r"\s*(?:export\s+|readonly\s+|local\s+)?([A-Za-z_]\w*)=(.*?)\s*;?\s*")
MKTEMP = re.compile(r'"?(\$\(\s*mktemp\b[^()$`]*\)|`\s*mktemp\b[^`$]*`)"?')
OTHER_BINDING = re.compile(r"\b(?:for|read(?:\s+-\w+)*)\s+([A-Za-z_]\w*)")
TEMP = object()


def assignments(text):
    """{name: value} of the variables text assigns exactly once: a literal
    string, or TEMP for $(mktemp); None for any other binding."""
    seen = {}
    for line in text.splitlines():
        simple = SIMPLE_ASSIGNMENT.fullmatch(line)
        names = [m.group(1) for m in ASSIGNED.finditer(line)] + OTHER_BINDING.findall(line)
        for n in names:
            value = None
            if simple and n == simple.group(1) and len(names) == 1:
                v = simple.group(2)
                if MKTEMP.fullmatch(v):
                    value = TEMP
                elif "$" not in v and "`" not in v:
                    try:
                        words = shlex.split(v, comments=True)
                    except ValueError:
                        words = None
                    if words is not None and len(words) <= 1:
                        value = words[0] if words else ""
            seen[n] = None if n in seen else value
    return seen


def variable(word):
    m = re.fullmatch(r"\$(?:([A-Za-z_]\w*)|\{([A-Za-z_]\w*)\})", word)
    return m and (m.group(1) or m.group(2))


def ucf_calls(pkg, text):
    """The ucf calls of a postinst: (DEST, NEW, mode or None for NEW's own,
    edits not applied) each; unreadable calls go to skipped."""
    commands = list(simple_commands(text))
    vars_ = assignments(text)
    calls = []
    for line, words in commands:
        if words is None:
            if re.search(r"(^|[\s;&|(])ucf\s", line):
                skipped.append("%s: %s" % (pkg, line.strip()))
            continue
        if not is_ucf(words):
            continue
        ops = ucf_operands(without_redirections(words[1:]))
        if ops is None:
            if not any(w.lstrip("-") in ("purge", "p", "no-action", "n", "help", "h") for w in words[1:]):
                skipped.append("%s: %s" % (pkg, line.strip()))
            continue
        new, dest = ops
        dv = variable(dest)
        if dv is not None:
            dest = vars_.get(dv)
        resolved = None
        if LITERAL_PATH.fullmatch(new):
            resolved = (new, None, [])
        elif variable(new) is not None:
            v = vars_.get(variable(new))
            if v is TEMP:
                resolved = temp_file(variable(new), commands)
            elif isinstance(v, str) and LITERAL_PATH.fullmatch(v):
                resolved = (v, None, [])
        if resolved is None or not isinstance(dest, str) or not LITERAL_PATH.fullmatch(dest):
            skipped.append("%s: %s" % (pkg, line.strip()))
            continue
        src, mode, edits = resolved
        calls.append((posixpath.normpath(dest), src, mode, edits))
    return calls


def temp_file(name, commands):
    """(FILE, mode, edits) of the temporary file $name when one command
    fills it from a literal FILE, or None. Its mode is mktemp's 0600 unless
    an octal chmod sets it (or cp -p/-a copies FILE's, mode None)."""
    ref = re.compile(r"\$(%s\b|\{%s\})" % (name, name))
    fills, mode, edits = [], 0o600, []
    for line, words in commands:
        if words is None:
            if ref.search(line):
                edits.append(line.strip())
            continue
        if not any(ref.search(w) for w in words) or is_ucf(words) or words[0] in ("ucfr", "rm"):
            continue
        target = variable(words[-1]) == name
        if words[0] == "cat" and len(words) == 4 and words[2] == ">" and target and LITERAL_PATH.fullmatch(words[1]):
            fills.append(words[1])
        elif words[0] == "cp" and len(words) >= 3 and target and LITERAL_PATH.fullmatch(words[-2]) and all(w.startswith("-") for w in words[1:-2]):
            fills.append(words[-2])
            if any(w in ("-p", "-a", "--preserve", "--archive") or (not w.startswith("--") and ("p" in w or "a" in w)) for w in words[1:-2]):
                mode = None
        elif words[0] == "chmod" and len(words) == 3 and target and re.fullmatch(r"[0-7]{3,4}", words[1]):
            mode = int(words[1], 8)
        else:
            edits.append(line.strip())
    if len(fills) != 1:
        return None
    return fills[0], mode, edits


def data_file(deb, path):
    """(bytes, mode) of the regular file path in deb's data archive, through
    symlinks and hard links in it; None when deb has no such file."""
    for _ in range(16):
        m, data = data_member(deb, path.lstrip("/"))
        if m is None:
            return None
        if m.issym():
            path = posixpath.normpath(posixpath.join(posixpath.dirname("/" + path.lstrip("/")), m.linkname))
        elif m.islnk():
            path = m.linkname[1:] if m.linkname.startswith("./") else m.linkname
        elif m.isfile():
            return data, m.mode & 0o7777
        else:
            return None
    return None


def data_member(deb, path):
    """The member path of deb's data archive, and its bytes if it is a
    regular file. The archive is streamed up to the member, not read whole:
    r-base-core's data.tar.xz takes seconds to decompress, and its
    Renviron.ucf comes early."""
    proc = None
    try:
        t = tarfile.open(fileobj=io.BytesIO(ar_read(deb, ar_members(deb), "data.tar")), mode="r|*")
    except Exception:
        # A compression tarfile cannot read (zstd): dpkg-deb reads it.
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        t = tarfile.open(fileobj=proc.stdout, mode="r|")
    try:
        for m in t:
            n = m.name[2:] if m.name.startswith("./") else m.name
            if n.rstrip("/") == path:
                return m, (t.extractfile(m).read() if m.isfile() else None)
        return None, None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


epoch = int(sys.argv[1])
merged_usr = len(sys.argv) > 2 and sys.argv[2] == "merged-usr"
filters = dpkgfilter.parse(os.environ.get("DPKG_FILTERS", ""))


def left_out(path):
    """Whether the base's dpkg filters leave path out of its package."""
    return bool(filters) and dpkgfilter.should_skip(filters, os.fsencode(path.rstrip("/")), False)


best = {}  # name -> (priority, package, link, path, slaves)
skipped = []
ucf = []  # (deb, package, DEST, NEW, mode, edits)
for deb in sorted(glob.glob("/in/*/*.deb")):
    pkg, postinst = control(deb)
    if postinst is None:
        continue
    text = postinst.replace("\\\n", " ")
    if "ucf" in text:
        ucf += [(deb, pkg) + c for c in ucf_calls(pkg, text)]
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
        if left_out(path):
            skipped.append("%s: alternative %s: %s is left out by the base's dpkg filters" % (pkg, name, path))
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


def usr_merged(at):
    if merged_usr and at.split("/")[1] in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        return "/usr" + at
    return at


def link(at, target):
    at = usr_merged(at)
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
        if left_out(spath):
            skipped.append("%s: alternative %s, slave %s: %s is left out by the base's dpkg filters" % (pkg, name, sname, spath))
            continue
        link("/etc/alternatives/" + sname, spath)
        link(slink, "/etc/alternatives/" + sname)

for deb, pkg, dest, src, mode, edits in ucf:
    dest = usr_merged(dest)
    p = "/out" + dest
    parents = [posixpath.dirname(p)]
    while parents[-1] != "/out":
        parents.append(posixpath.dirname(parents[-1]))
    if os.path.lexists(p) or any(os.path.islink(d) or (os.path.lexists(d) and not os.path.isdir(d)) for d in parents):
        # The first package (in closure order) or an alternatives link made
        # it; a symlinked parent would lead out of the layer.
        skipped.append("%s: ucf %s %s: %s is made already" % (pkg, src, dest, dest))
        continue
    got = data_file(deb, src)
    if got is None:
        skipped.append("%s: ucf %s %s: %s is not a file of %s" % (pkg, src, dest, src, pkg))
        continue
    data, own = got
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, own if mode is None else mode)
    made.append("%s < %s:%s" % (dest, pkg, src))
    skipped += ["%s: %s (not applied to %s)" % (pkg, e, dest) for e in edits]

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
