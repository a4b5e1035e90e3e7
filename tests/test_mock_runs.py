"""The runner, checkpoints, evaluation and CLI driven by the mock model and dataset
(tests/mock): the contributor's fast loop (``pytest -m "not slow"``) checks them in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import genmod, losses

MOCK = Path(__file__).resolve().parent / "mock" / "genmod_mock.py"


def run(*args: object):
    return genmod("run", "mock", "--plugin", MOCK, *args)


def test_a_mock_run_learns_and_resumes_bit_for_bit(tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert run("--epochs", 4, "--out", whole).exit_code == 0
    assert run("--epochs", 2, "--out", halves).exit_code == 0
    resumed = genmod("run", "--resume", halves, "--epochs", 4, "--plugin", MOCK)
    assert resumed.exit_code == 0, resumed.output
    assert losses(whole) == losses(halves)
    a, b = (torch.load(out / "checkpoint.pt", weights_only=True)["model"] for out in (whole, halves))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = losses(whole)
    assert rows[-1]["train"]["loss"] < rows[0]["train"]["loss"] and rows[-1]["quantity"] == "NLL"


def test_eval_sample_runs_and_info_name_what_a_mock_run_reports(tmp_path):
    out = tmp_path / "mock"
    assert run("--out", out).exit_code == 0
    evaluated = genmod("eval", out, "--plugin", MOCK)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((out / "eval.json").read_text())
    assert report["quantity"] == "exact NLL" and report["images"] == 128 and report["epoch"] >= 1
    assert genmod("sample", out, "--plugin", MOCK, "-n", 4).exit_code == 0
    assert (out / "samples.png").is_file()
    listed = genmod("runs", tmp_path).output
    assert "mock" in listed and "exact NLL" in listed
    info = genmod("info", out, "--plugin", MOCK).output
    assert f"test exact NLL {report['nll']:.2f}" in info and "validation/loss" in info


def test_a_mistyped_setting_stops_in_one_line_naming_the_key(tmp_path):
    result = run("--set", "train.lr=fast", "--out", tmp_path / "x")
    (line,) = result.output.strip().splitlines()
    assert result.exit_code == 2 and "train.lr" in line and not (tmp_path / "x").exists()
    result = run("--set", "model.hiden=3", "--out", tmp_path / "y")
    assert result.exit_code == 2 and "model.hidden" in result.output  # did you mean


def test_openmp_threads_wait_passively_on_a_busy_machine_and_the_users_choice_is_kept(monkeypatch):
    from genmod import openmp

    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(openmp, "usable_cores", lambda: 2)
    monkeypatch.setattr(openmp.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    assert openmp.choose_wait_policy() == "GOMP_SPINCOUNT=20000"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setattr(openmp.os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert openmp.choose_wait_policy() == "OMP_WAIT_POLICY=PASSIVE"
    assert openmp.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert openmp.choose_wait_policy() is None and openmp.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_training_started_beside_another_waits_passively(tmp_path, monkeypatch):
    from genmod import openmp

    monkeypatch.setattr(openmp.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(openmp, "SETTLE_S", 0.0)
    folder = openmp.trainings_dir()
    folder.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / str(sleeper.pid)).touch()  # another training, running
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        (folder / gone.stdout.strip()).touch()  # one that has exited: not counted, cleaned up
        assert openmp.announce_training().trainings == 1
        assert (folder / str(os.getpid())).exists() and not (folder / gone.stdout.strip()).exists()
        if sys.platform.startswith("linux"):  # where the process's state can be read
            sleeper.send_signal(signal.SIGSTOP)  # a paused training takes no CPU: not counted
            deadline = time.monotonic() + 5
            while openmp._state(sleeper.pid) not in ("T", "t") and time.monotonic() < deadline:
                time.sleep(0.01)  # the signal is delivered asynchronously
            assert openmp.announce_training().trainings == 0 and (folder / str(sleeper.pid)).exists()
    finally:
        sleeper.kill()
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(openmp, "usable_cores", lambda: 2)
    assert openmp.choose_wait_policy(openmp.Neighbours(1, 0.0)) == "OMP_WAIT_POLICY=PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert openmp.choose_wait_policy(openmp.Neighbours(0, 1.6)) == "OMP_WAIT_POLICY=PASSIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    # Busy by the 1-minute load average (a job that just ended), idle as measured: spin.
    monkeypatch.setattr(openmp.os, "getloadavg", lambda: (3.0, 3.0, 3.0))
    assert openmp.choose_wait_policy(openmp.Neighbours(0, 0.1)) == "GOMP_SPINCOUNT=20000"


def test_a_training_shares_its_threads_with_trainings_started_after_it(tmp_path, monkeypatch):
    import torch

    from genmod import openmp

    monkeypatch.setattr(openmp.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(openmp, "usable_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    folder = openmp.trainings_dir()
    folder.mkdir(parents=True)
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: set_to.append(n))
    set_to: list[int] = []
    threads = 4
    share = openmp.ThreadShare(every=0.0)
    assert share.adjust() is None  # alone: torch's own choice stands
    later = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        (folder / str(later[0].pid)).touch()  # a training started after this one
        assert share.adjust() == 2 and set_to == [2]
        threads = 2
        (folder / str(later[1].pid)).touch()
        assert share.adjust() == 1
        threads = 1
    finally:
        for process in later:
            process.kill()
            process.wait()
    assert share.adjust() == 4  # both gone: the threads come back
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is kept
    threads = 3
    (folder / str(os.getpid() + 1)).touch()
    assert openmp.ThreadShare(every=0.0).adjust() is None


@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one thread has nothing to share")
def test_a_training_beside_another_trains_on_its_share_says_so_and_gives_the_threads_back(
    tmp_path, monkeypatch
):
    from genmod import openmp

    monkeypatch.setattr(openmp.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    alone = torch.get_num_threads()
    folder = openmp.trainings_dir()
    folder.mkdir(parents=True)
    seen: list[set[str]] = []  # the trainings announced, at each step
    adjust = openmp.ThreadShare.adjust

    def adjust_and_look(share: openmp.ThreadShare) -> int | None:
        seen.append({p.name for p in folder.iterdir()})
        return adjust(share)

    monkeypatch.setattr(openmp.ThreadShare, "adjust", adjust_and_look)
    neighbour = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / str(neighbour.pid)).touch()  # another training, running
        out = tmp_path / "mock"
        assert run("--out", out, "--epochs", 1).exit_code == 0  # in this process, as from Python
    finally:
        neighbour.kill()
        neighbour.wait()
    (session,) = json.loads((out / "machine.json").read_text())
    # Its reductions split differently from there on: its bits repeat only where threads did.
    assert session["threads_changed"] == [{"epoch": 1, "threads": alone // 2}]
    assert torch.get_num_threads() == alone
    # Counted by the others while it trained (not only `genmod run`'s process), not after.
    assert seen and all(str(os.getpid()) in names for names in seen)
    assert not (folder / str(os.getpid())).exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's per-CPU counters")
def test_busy_cores_are_measured_on_the_cores_this_process_may_use():
    from genmod import openmp

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        busy = openmp.busy_cores(0.5)
    finally:
        spinner.kill()
    assert 0.6 < busy <= len(os.sched_getaffinity(0)) + 0.01


def test_machine_json_says_how_openmp_threads_waited(tmp_path, monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "20000")
    out = tmp_path / "mock"
    assert run("--out", out, "--epochs", 1).exit_code == 0
    (session,) = json.loads((out / "machine.json").read_text())
    assert session["openmp"]["GOMP_SPINCOUNT"] == "20000"


def test_bits_are_expected_to_repeat_only_where_the_fingerprint_and_threads_held():
    from genmod import machine

    here = machine.fingerprint()
    assert machine.differences(dict(here), here) == []
    assert machine.differences({**here, "threads": here["threads"] + 1}, here) == ["threads"]
    changed = {**here, "threads_changed": [{"epoch": 4, "threads": 1}]}
    assert machine.differences(changed, here, epochs=3) == []  # the first three came before
    assert machine.differences(changed, here) == ["threads during the run"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: two threads' worth, rounded up
        ({"cpu.max": "max 100000\n"}, 64),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 64),
    ],
    ids=["v2-quota", "v2-unlimited", "v1-quota", "v1-unlimited"],
)
def test_usable_cores_are_capped_by_the_containers_cpu_quota(tmp_path, monkeypatch, files, expected):
    from genmod import openmp

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(
        openmp, "CGROUP_QUOTAS", (tmp_path / "cpu.max", tmp_path / "cpu" / "cpu.cfs_quota_us")
    )
    monkeypatch.setattr(openmp.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert openmp.usable_cores() == expected
