"""What the training commands do to their own process: restart with malloc on huge pages.

XLA on CPU allocates each compiled program's buffers with malloc, and glibc hands large
requests fresh 4 KB pages from the kernel on every call, so a training step spends part of
its time in page faults. glibc's `glibc.malloc.hugetlb=1` tunable makes malloc ask for
transparent huge pages (2 MB) instead, which made CPU training steps faster
(docs/performance.md, "Huge pages").

glibc reads tunables only when a process starts, so the training commands (`bigs demo`,
`bigs glue`, `bigs pretrain`, run_glue.py, pretrain.py) and the benchmark scripts start
themselves again with the tunable added (`relaunch_with_hugepages`), first thing, and say so
in one line: the commands when training starts (`restart_notice`, so that a refused command
prints only its error), the benchmarks at once. This applies on Linux with glibc 2.35 or
newer and the kernel's transparent huge pages in "madvise" mode; `--no_hugepages` or
BIGS_HUGEPAGES=0 turns it off.
Only the commands do this: importing or calling the library changes no process state.
Library users can export GLIBC_TUNABLES=glibc.malloc.hugetlb=1 themselves.

`sigint_handler` is the one exception, and it is temporary: a command run as a program,
training and checkpoint saves handle Ctrl-C themselves while they run (bigs.cli.main,
bigs.train.loop, bigs.train.checkpointing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
OFF = ("0", "false", "no", "off")
# The flag that keeps a command from restarting (each command's parser accepts it).
NO_HUGEPAGES_FLAG = "--no_hugepages"
# Carries the restart's notice into the restarted process, for `restart_notice`.
NOTICE_VARIABLE = "BIGS_RESTART_NOTICE"


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


def hugepages_on() -> bool:
    """Whether malloc gets huge pages in this process: the tunable was set (not to 0) when it
    started, or the kernel gives them to every process ("always")."""
    return _tunable_value(os.environ) not in (None, "", "0") or _thp_mode() == "always"


def _restart_command() -> list[str] | None:
    """The command line that started this process, if the running program is that command:
    not inside IPython or Jupyter (`%run script.py` sets sys.argv, not the process's)."""
    argv, args = list(getattr(sys, "orig_argv", None) or []), sys.argv[1:]
    if not argv or not sys.executable or "IPython" in sys.modules or (args and argv[-len(args):] != args):
        return None
    return argv


def relaunch_with_hugepages(say_now: bool = True) -> None:
    """Replace this process by the same command with huge pages on, where that applies
    (`hugepage_environment`) and the command line does not hold --no_hugepages; otherwise
    return. The one line that says so goes to stderr now, or with say_now=False to the
    restarted process's `restart_notice()`. Call it first thing, before any work: the process
    is started again from scratch."""
    environ = hugepage_environment()
    argv = _restart_command()
    if environ is None or argv is None or NO_HUGEPAGES_FLAG in sys.argv[1:]:
        return
    notice = (f"restarted with GLIBC_TUNABLES={environ['GLIBC_TUNABLES']} (malloc on transparent huge pages: "
              f"faster CPU training; {NO_HUGEPAGES_FLAG} or BIGS_HUGEPAGES=0 turns this off)")
    if say_now:
        print(notice, file=sys.stderr)
    else:
        environ[NOTICE_VARIABLE] = notice
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environ)


def restart_notice() -> str | None:
    """The line saying this process was restarted with huge pages (relaunch_with_hugepages with
    say_now=False), once: later calls, and processes this one starts, get None."""
    return os.environ.pop(NOTICE_VARIABLE, None)


@contextlib.contextmanager
def sigint_handler(handler: Callable, replaces: Callable[[Callable], bool]) -> Iterator[bool]:
    """Handle Ctrl-C (SIGINT) with `handler(signum, frame)` inside the block, where Python can:
    in the main thread, and only over a Python handler in place for which `replaces(it)` is
    true. Yields whether `handler` was installed; the previous handler is back on exit."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main else None
    if not callable(previous) or not replaces(previous):
        yield False
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield True
    finally:
        signal.signal(signal.SIGINT, previous)


_NOTED: list[int] = []      # the Ctrl-Cs seen by _note_and_raise, shared by nested ctrl_c_noted


def _note_and_raise(signum, frame):
    _NOTED.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_noted() -> Iterator[list[int]]:
    """Yield a list that gets an entry at each Ctrl-C (SIGINT), which still raises
    KeyboardInterrupt as usual. Python drops an exception raised where it cannot propagate
    (in a garbage-collector callback of jax's, for one), so a Ctrl-C landing there would be
    lost and the work would go on; whoever holds the list can check it (the training loop,
    after every step). Nested uses share one list: a Ctrl-C noted while a command starts up
    stops its training. Only over Python's default handler, in the main thread."""
    def replaces(previous) -> bool:
        if previous is signal.default_int_handler:
            _NOTED.clear()               # the outermost use: a fresh list
            return True
        return False

    with sigint_handler(_note_and_raise, replaces=replaces):
        yield _NOTED
