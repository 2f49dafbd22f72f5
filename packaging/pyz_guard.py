"""millstream.pyz's __main__: check the interpreter and the cache directory, then start shiv.

Runs before anything is extracted, under whatever `python3` the user has, so it is written in
syntax that even Python 2.7 parses (strings are joined with +) and it prints exactly one line when it refuses to start.

MILLSTREAM_CACHE chooses where the native libraries are extracted (default
$XDG_CACHE_HOME/millstream, else ~/.cache/millstream); it must be writable and not mounted noexec.
"""

import os
import sys

NEEDS = "CPython 3.10-3.13 on x86_64 Linux with glibc >= 2.28"
SUPPORTED = ((3, 10), (3, 11), (3, 12), (3, 13))
MIN_GLIBC = (2, 28)
ST_NOEXEC = 8  # os.ST_NOEXEC on Linux
# shiv's build id (content hash of site-packages), filled in by build_pyz.py when it installs this file
BUILD_ID = None
ENTRY_MODULE = "millstream_pyz"


def glibc_version():
    """(major, minor) of the running glibc, or None (musl, not Linux)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    if not text or not text.startswith("glibc "):
        return None
    try:
        return tuple(int(x) for x in text.split()[1].split(".")[:2])
    except ValueError:
        return None


def implementation_name():
    impl = getattr(sys, "implementation", None)
    if impl is not None:
        return {"cpython": "CPython", "pypy": "PyPy"}.get(impl.name, impl.name)
    import platform

    return platform.python_implementation()


def _dotted(version):
    # no f-strings or %-formatting in this file: the linter wants the first, Python 2.7 cannot parse it
    return str(version[0]) + "." + str(version[1])


def interpreter_problem(version, implementation, system, machine, glibc):
    """None when this interpreter can run the pyz, else what it is (for the one-line message)."""
    running = implementation + " " + _dotted(version)
    if implementation != "CPython":
        return "this is " + running
    if tuple(version[:2]) not in SUPPORTED:
        return "this is " + running
    if not system.startswith("linux"):
        return "this is " + system
    if machine not in ("x86_64", "amd64"):
        return "this machine is " + machine
    if glibc is None:
        return "this system has no glibc"
    if tuple(glibc) < MIN_GLIBC:
        return "this system has glibc " + _dotted(glibc)
    return None


def cache_root(environ):
    root = environ.get("MILLSTREAM_CACHE")
    if not root:
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "millstream")
    return os.path.abspath(os.path.expanduser(root))


def cache_problem(root):
    """None when `root` can hold the extracted libraries, else why not."""
    try:
        if not os.path.isdir(root):
            os.makedirs(root)
    except OSError as e:
        return "cannot create cache directory " + root + " (" + str(e.strerror or e) + ")"
    if not os.access(root, os.W_OK | os.X_OK):
        return "cache directory " + root + " is not writable"
    try:
        if os.statvfs(root).f_flag & ST_NOEXEC:
            return "cache directory " + root + " is on a noexec mount, native libraries cannot load from it"
    except (AttributeError, OSError):
        pass
    return None


def main():
    problem = interpreter_problem(sys.version_info, implementation_name(), sys.platform,
                                  os.uname()[4] if hasattr(os, "uname") else "unknown", glibc_version())
    if problem:
        sys.stderr.write("millstream: needs " + NEEDS + "; " + problem + " (" + str(sys.executable) + ")\n")
        sys.exit(3)
    root = cache_root(os.environ)
    problem = cache_problem(root)
    if problem:
        sys.stderr.write("millstream: " + problem + "; set MILLSTREAM_CACHE to a writable directory on an exec mount\n")
        sys.exit(3)
    os.environ["SHIV_ROOT"] = root
    if not warm_start(root, sys.argv[0]):
        import _bootstrap  # shiv: extracts site-packages on first run, then starts the entry point

        _bootstrap.bootstrap()


def warm_start(root, archive):
    """Start from an existing extraction without shiv's bootstrap module.

    shiv's bootstrap imports compileall, subprocess, zipfile and more before it finds the
    extraction already in place, about 0.1 s on every start. When this build is extracted
    (shiv moves it into place atomically) and no SHIV_* override asks for shiv's behaviour,
    do what shiv would do: add site-packages ahead of the interpreter's, run the entry point.
    """
    if BUILD_ID is None or any(k.startswith("SHIV_") and k != "SHIV_ROOT" for k in os.environ):
        return False
    name = os.path.basename(os.path.realpath(archive))
    site_packages = os.path.join(root, name + "_" + BUILD_ID, "site-packages")
    if not os.path.isfile(os.path.join(site_packages, ENTRY_MODULE + ".py")):
        return False
    import site

    length = len(sys.path)
    index = length
    for i, part in enumerate(sys.path):
        if os.path.basename(part) in ("site-packages", "dist-packages"):
            index = i
            break
    site.addsitedir(site_packages)
    sys.path[:] = sys.path[:index] + sys.path[length:] + sys.path[index:length]
    entry = __import__(ENTRY_MODULE)
    sys.exit(entry.main())


if __name__ == "__main__":
    main()
