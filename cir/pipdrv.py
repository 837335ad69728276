# Runs pip for a target platform in a helper container of the build host's
# architecture (the lazy-builder's resolution, docs/cir.md):
#   python3 -S pipdrv.py install ...
# with PYTHONPATH naming pip's own package folder and the folders holding the
# base's installed metadata (*.dist-info, *.egg-info), so pip sees the
# base's distributions as installed and nothing of the helper's. Two things
# pip does not do on its own, patched here:
# - pip 23.0 (Debian 12) refuses --platform/--python-version without
#   --target, and --target makes it ignore every installed distribution;
#   later pips allow them with --dry-run, which is all this does.
# - pip evaluates environment markers for the interpreter it runs on, not
#   for the target: platform_machine and python_version are the target's
#   here (MACHINE, PYVER in the environment).
import os
import sys

from pip._vendor.packaging import markers

_default_environment = markers.default_environment


def target_environment():
    env = dict(_default_environment())
    ver = os.environ["PYVER"]
    if env["python_version"] != ver:
        # Only the minor version of the target is known.
        env["python_full_version"] = ver + ".0"
        env["implementation_version"] = ver + ".0"
    env.update(python_version=ver, platform_machine=os.environ["MACHINE"], sys_platform="linux",
               platform_system="Linux", os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def patch():
    markers.default_environment = target_environment
    from pip._internal.cli import cmdoptions

    check = cmdoptions.check_dist_restriction
    cmdoptions.check_dist_restriction = lambda options, check_target=False: check(options, check_target=False)


if __name__ == "__main__":
    patch()
    from pip._internal.cli.main import main

    sys.exit(main(sys.argv[1:]))
