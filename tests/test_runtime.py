"""bigs.runtime: when the commands restart with malloc on huge pages, and that it works."""

import os
import subprocess
import sys

import pytest

from bigs import runtime

LINUX = dict(platform="linux", glibc=(2, 36), thp_mode="madvise")


def test_the_tunable_is_added_where_it_helps():
    env = runtime.hugepage_environment({"PATH": "/bin"}, **LINUX)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    env = runtime.hugepage_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **LINUX)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    # ...and taken out again, keeping the others.
    assert runtime.without_hugepages(env) == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}


@pytest.mark.parametrize("environ, facts", [
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, {}),   # the user chose
    ({"BIGS_HUGEPAGES": "0"}, {}),
    ({"BIGS_HUGEPAGES": "off"}, {}),
    ({}, {"platform": "darwin"}),
    ({}, {"glibc": (2, 31)}),                              # no such tunable before 2.35
    ({}, {"thp_mode": "always"}),                          # huge pages already
    ({}, {"thp_mode": "never"}),
])
def test_no_restart_where_it_changes_nothing(environ, facts):
    assert runtime.hugepage_environment(environ, **{**LINUX, **facts}) is None


def test_only_the_process_s_own_command_restarts(monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "bigs.cli.main", "demo", "--seed", "1"])
    monkeypatch.setattr(sys, "argv", ["/x/bigs/cli/main.py", "demo", "--seed", "1"])
    assert runtime._restart_command() == ["python", "-m", "bigs.cli.main", "demo", "--seed", "1"]
    # `%run run_glue.py --seed 1` in a notebook: sys.argv is not the kernel's command line.
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "ipykernel_launcher", "-f", "k.json"])
    monkeypatch.setattr(sys, "argv", ["run_glue.py", "--seed", "1"])
    assert runtime._restart_command() is None


def test_thp_mode_is_read_from_the_bracketed_word(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert runtime._thp_mode(path) == "madvise"
    assert runtime._thp_mode(tmp_path / "absent") is None


PROBE = """
import os, resource, sys
from bigs.runtime import relaunch_with_hugepages
print("start", os.environ.get("GLIBC_TUNABLES", ""), flush=True)
relaunch_with_hugepages()
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
size = 256 * 2**20
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(libc.malloc(size), 1, size)  # 256 MB from malloc (as XLA allocates), every page touched
print("faults", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_probe(*args, **env):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GLIBC_TUNABLES": "", **env})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return [line.strip() for line in lines if line.startswith("start")], int(lines[-1].split()[1]), done.stderr


def test_relaunch_restarts_once_with_huge_pages_and_cuts_page_faults():
    if runtime.hugepage_environment({}) is None:
        pytest.skip("huge pages through malloc do not apply here (needs Linux, glibc >= 2.35, THP 'madvise')")
    starts, faults, said = run_probe()
    assert starts == ["start", "start glibc.malloc.hugetlb=1"]      # restarted once, with the tunable
    assert said.count("restarted with GLIBC_TUNABLES=glibc.malloc.hugetlb=1") == 1 and "--no_hugepages" in said
    off_starts, off_faults, said = run_probe(BIGS_HUGEPAGES="0")
    assert off_starts == ["start"] and said == ""
    assert run_probe("--no_hugepages")[0] == ["start"]
    # 256 MB in 4 KB pages is 65,536 faults; in 2 MB pages, a few hundred.
    assert off_faults > 60000
    assert faults < off_faults / 10


def test_the_command_line_restarts_before_loading_jax():
    # `import bigs` is lazy, so restarting costs no jax import and `bigs --help` stays fast.
    code = "import sys, bigs, bigs.cli.main, bigs.runtime; print('jax' in sys.modules, bigs.BiGSConfig.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "BiGSConfig"]


def test_a_command_s_restart_notice_is_said_once(monkeypatch):
    # The commands restart with say_now=False: the line waits for training (bigs.train.loop),
    # so a command refused before training prints its one error line only.
    monkeypatch.setenv(runtime.NOTICE_VARIABLE, "restarted with GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    assert runtime.restart_notice() == "restarted with GLIBC_TUNABLES=glibc.malloc.hugetlb=1"
    assert runtime.restart_notice() is None and runtime.NOTICE_VARIABLE not in os.environ


def test_a_ctrl_c_noted_while_a_command_starts_reaches_its_training_loop():
    import signal

    def swallowed_ctrl_c():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:          # as Python does inside a gc callback
            pass

    with runtime.ctrl_c_noted() as program:     # bigs.cli.main.run_program
        swallowed_ctrl_c()
        with runtime.ctrl_c_noted() as loop:    # bigs.train.loop.train, later
            assert loop is program and loop == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with runtime.ctrl_c_noted() as fresh:       # the next program starts with none
        assert fresh == []
