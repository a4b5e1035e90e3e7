"""genmod sweep on the mock model: every combination in its own folder, the cores divided,
finished runs skipped on a second call, and Ctrl-C stopping every run at a checkpoint; and
the docs' Optuna example, driving the Python API."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from helpers import checkpoint_epoch, cli, genmod, optional

MOCK = Path(__file__).resolve().parent / "mock" / "genmod_mock.py"
GRID = ("--set", "train.lr=0.01,0.001", "--set", "model.hidden=4,8")


def test_a_grid_names_each_run_by_its_values_and_splits_only_between_values():
    from genmod.sweeps import grid

    runs = grid(["train.lr=1e-3,3e-4", "train.sample_epochs=[0,10],[5]"])
    assert [r.name for r in runs][:2] == ["lr=1e-3_sample_epochs=-0,10-", "lr=1e-3_sample_epochs=-5-"]
    assert runs[0].sets == ("train.lr=1e-3", "train.sample_epochs=[0,10]") and len(runs) == 4
    assert genmod("sweep", "mock", "--set", "train.lr").exit_code == 2


@pytest.mark.slow
def test_a_sweep_trains_every_combination_and_a_second_call_skips_the_finished(tmp_path):
    out = tmp_path / "sweep"
    first = genmod("sweep", "mock", "--plugin", MOCK, *GRID, "--parallel", 2, "--out", out)
    assert first.exit_code == 0, first.output
    folders = sorted(p.name for p in out.iterdir() if (p / "checkpoint.pt").is_file())
    assert folders == ["lr=0.001_hidden=4", "lr=0.001_hidden=8", "lr=0.01_hidden=4", "lr=0.01_hidden=8"]
    assert "1 threads" in first.output  # 2 cores (or 1) shared by 2 runs at once
    config = (out / "lr=0.001_hidden=8" / "config.yaml").read_text()
    assert "lr: 0.001" in config and "hidden: 8" in config
    again = genmod("sweep", "mock", "--plugin", MOCK, *GRID, "--parallel", 2, "--out", out)
    assert again.exit_code == 0 and "4 of 4 runs are finished already" in again.output


@pytest.mark.slow
def test_ctrl_c_stops_every_run_at_a_checkpoint_and_the_same_command_continues(tmp_path):
    out = tmp_path / "sweep"
    command = (
        "sweep",
        "mock",
        "--plugin",
        MOCK,
        "--set",
        "train.lr=0.01,0.001",
        "--epochs",
        60,
        "--out",
        out,
    )
    process = cli(*command, "--parallel", 2)
    runs = [out / "lr=0.01", out / "lr=0.001"]
    while not all(checkpoint_epoch(run / "checkpoint.pt") >= 1 for run in runs):
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait() == 130
    assert "Continue the sweep with the same command" in process.stderr.read()
    assert all(1 <= checkpoint_epoch(run / "checkpoint.pt") < 60 for run in runs)
    continued = cli(*command, "--parallel", 2)
    assert continued.wait() == 0, continued.stderr.read()
    for run in runs:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 61))


def test_the_optuna_example_of_the_docs_runs_its_trials_through_the_python_api(tmp_path, data_dir, capsys):
    optional("optuna")
    page = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    (block,) = [body for body in re.findall(r"```python\n(.*?)```", page, re.S) if "import optuna" in body]
    documented = 'TRIALS, SETTINGS = 20, {"train__epochs": 5, "data__validation": 10000}'
    assert documented in block
    small = 'TRIALS, SETTINGS = 2, {"train__epochs": 1, "data__validation": 200, "data__limit": 1000, "train__device": "cpu"}'
    namespace: dict[str, object] = {}
    exec(compile(block.replace(documented, small), "training.md", "exec"), namespace)
    study = namespace["study"]
    assert len(study.trials) == 2 and all(t.value is not None for t in study.trials)
    for trial in study.trials:
        rows = [
            json.loads(line)
            for line in (tmp_path / "runs" / f"optuna-{trial.number}" / "metrics.jsonl")
            .read_text()
            .splitlines()
        ]
        assert trial.value == pytest.approx(rows[0]["validation"]["loss"])
    assert "{'lr': " in capsys.readouterr().out
