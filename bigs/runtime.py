"""Process settings that make training faster on CPU: transparent huge pages for malloc.

XLA on CPU allocates each compiled program's buffers with malloc, and glibc hands large
requests fresh pages from the kernel on every call. A training step then spends part of its
time in page faults: 312,000 of them per step at base size, L=128, batch 8 (1.3 GB of new
4 KB pages). With glibc's `glibc.malloc.hugetlb=1` tunable, malloc asks for transparent huge
pages (2 MB), the faults drop to about a thousand, and the step takes 7% less time; a small
pretraining step 15% less (docs/performance.md, "Huge pages").

glibc reads tunables only when a process starts, so the `bigs` commands and the benchmark
scripts start themselves again with the tunable added (`relaunch_with_hugepages`), before
any work. This applies on Linux with glibc 2.35 or newer and the kernel's transparent huge
pages in "madvise" mode; set BIGS_HUGEPAGES=0 to turn it off. Library users can export
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 themselves.

Memory written once is the exception: drawing a model's fresh params was slower in huge
pages, so `initializers.init_params` draws them inside `small_pages()`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
OFF = ("0", "false", "no", "off")
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42     # linux/prctl.h


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, TypeError, ValueError):
        return None


def _thp_mode(path: Path = THP_MODE) -> str | None:
    """The kernel's transparent huge page mode: "always", "madvise" or "never"."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def hugepage_environment(environ=None, *, platform: str | None = None, glibc=None,
                         thp_mode: str | None = None) -> dict | None:
    """The environment to start this process again with so that malloc uses transparent huge
    pages, or None where that would change nothing: not Linux, glibc older than 2.35 (it lacks
    the tunable), the kernel's mode not "madvise" ("always" already gives huge pages, "never"
    gives none), the tunable already set, or BIGS_HUGEPAGES=0. The keyword arguments stand in
    for this machine's facts (tests)."""
    environ = dict(os.environ if environ is None else environ)
    platform = platform or sys.platform
    glibc = _glibc_version() if glibc is None else glibc
    thp_mode = _thp_mode() if thp_mode is None else thp_mode
    if (not platform.startswith("linux") or glibc is None or glibc < (2, 35) or thp_mode != "madvise"
            or _tunable_value(environ) is not None or environ.get("BIGS_HUGEPAGES", "").lower() in OFF):
        return None
    environ["GLIBC_TUNABLES"] = ":".join(filter(None, (environ.get("GLIBC_TUNABLES", ""), f"{TUNABLE}=1")))
    return environ


def _tunable_value(environ) -> str | None:
    """The value GLIBC_TUNABLES in `environ` gives the huge-page tunable; None if absent."""
    for item in environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = item.partition("=")
        if name == TUNABLE:
            return value
    return None


def without_hugepages(environ) -> dict:
    """`environ` with the huge-page tunable taken out of GLIBC_TUNABLES (other tunables kept)."""
    items = environ.get("GLIBC_TUNABLES", "").split(":")
    return {**environ, "GLIBC_TUNABLES": ":".join(i for i in items if i.partition("=")[0] != TUNABLE)}


def _malloc_asks_for_hugepages() -> bool:
    """Whether this process started with the tunable set to a value other than 0."""
    return _tunable_value(os.environ) not in (None, "", "0")


def hugepages_on() -> bool:
    """Whether malloc gets huge pages in this process: the tunable was set when it started,
    or the kernel gives them to every process ("always")."""
    return _malloc_asks_for_hugepages() or _thp_mode() == "always"


def _restart_command() -> list[str] | None:
    """The command line that started this process, if the running program is that command:
    not inside IPython or Jupyter (`%run script.py` sets sys.argv, not the process's)."""
    argv, args = list(getattr(sys, "orig_argv", None) or []), sys.argv[1:]
    if not argv or not sys.executable or "IPython" in sys.modules or (args and argv[-len(args):] != args):
        return None
    return argv


def relaunch_with_hugepages() -> None:
    """Replace this process by the same command with huge pages on, where that applies
    (`hugepage_environment`); otherwise return. Call it first thing, before any work: the
    process is started again from scratch."""
    environ = hugepage_environment()
    argv = _restart_command()
    if environ is None or argv is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environ)


def _prctl(option: int, value: int = 0) -> int:
    """Linux prctl(option, value); -1 where it fails or there is none."""
    if not sys.platform.startswith("linux"):
        return -1
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (AttributeError, OSError):
        return -1


@contextmanager
def small_pages():
    """Within: no transparent huge pages for this process, when malloc asks for them (the
    tunable is set); as before afterwards. Memory that is written once, like a model's fresh
    params, is slower to set up in huge pages: building a base-size model took 1.5-1.8 s with
    them and 1.2-1.4 s without (docs/performance.md, "Huge pages"). Process-wide while it lasts."""
    switch = _malloc_asks_for_hugepages() and _prctl(PR_GET_THP_DISABLE) == 0
    switch = switch and _prctl(PR_SET_THP_DISABLE, 1) == 0
    try:
        yield
    finally:
        if switch:
            _prctl(PR_SET_THP_DISABLE, 0)
