# Applies a base's dpkg path filters to a package unpacked with dpkg-deb -x
# (which reads no dpkg configuration) into ROOT:
#
#   DPKG_FILTERS="path-exclude P\npath-include P..." python3 dpkgfilter.py ROOT
#
# so the package's layer holds what dpkg, run by apt-get install in the
# base, would have unpacked (docs/cir.md, "Unpacking"). The rules are
# dpkg's (src/main/filters.c): each path, as "/usr/share/doc/x" (no
# trailing slash), is tested against every filter in order with fnmatch(3)
# and no flags ("*" matches "/"); the last match wins. An excluded folder or
# symlink is kept anyway when the path starts with the fixed part (before
# the first "*?[\", trailing "/" removed) of any include, so an include can
# bring files back under it. fnmatch is the C library's own, in the C
# locale, as dpkg runs it in a container, not a Python rewrite. Removal goes
# from the leaves up: an excluded folder something under it was kept for is
# kept (on a real system it exists already). Prints what it removed,
# sorted, to stderr.
import ctypes
import locale
import os
import stat
import sys

locale.setlocale(locale.LC_ALL, "C")
_libc = ctypes.CDLL(None)
_fnmatch = _libc.fnmatch
_fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
_fnmatch.restype = ctypes.c_int


def parse(text):
    filters = []
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        opt, sep, pattern = line.partition(" ")
        if opt not in ("path-exclude", "path-include") or not sep:
            sys.exit("dpkgfilter: DPKG_FILTERS line %d is not 'path-exclude PATTERN' or 'path-include PATTERN': %r" % (n, line))
        filters.append((opt == "path-include", os.fsencode(pattern)))
    return filters


def should_skip(filters, name, is_dir_or_link):
    skip = False
    for include, pattern in filters:
        if _fnmatch(pattern, name, 0) == 0:
            skip = not include
    if skip and is_dir_or_link:
        for include, pattern in filters:
            if not include:
                continue
            n = len(pattern)
            for i, c in enumerate(pattern):
                if c in b"*?[\\":
                    n = i
                    break
            while n and pattern[n - 1:n] == b"/":
                n -= 1
            if name[:n] == pattern[:n]:
                return False
    return skip


def walk(filters, root, rel, removed):
    """Filters the folder root+rel; returns whether it is now empty."""
    empty = True
    for entry in sorted(os.listdir(root + rel)):
        name = rel + b"/" + entry
        path = root + name
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            sub_empty = walk(filters, root, name, removed)
            if should_skip(filters, name, True) and sub_empty:
                os.rmdir(path)
                removed.append(name)
                continue
        elif should_skip(filters, name, stat.S_ISLNK(mode)):
            os.unlink(path)
            removed.append(name)
            continue
        empty = False
    return empty


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: DPKG_FILTERS=... dpkgfilter.py ROOT")
    filters = parse(os.environ.get("DPKG_FILTERS", ""))
    removed = []
    if filters:
        walk(filters, os.fsencode(sys.argv[1].rstrip("/")), b"", removed)
    for name in sorted(removed):
        sys.stderr.write("dpkgfilter: left out %s\n" % os.fsdecode(name))


# alternatives.py imports the rules.
if __name__ == "__main__":
    main()
