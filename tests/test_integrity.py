"""Nothing lost, nothing wrong, nothing hung: a run folder has one writer, holds nothing of an
earlier run, refuses damaged or meaningless weights, and sizes from the command line are
bounded. (Crafted files of every kind: test_received_files.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from genmod import lock
from helpers import genmod, optional, small_run

PRETRAINED_VAE = Path(__file__).resolve().parents[1] / "pretrained" / "vae"


def one_line(result, *words: str) -> str:
    assert result.exit_code != 0, result.output
    (line,) = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    for word in words:
        assert word in line, line
    return line


def trained(tmp_path: Path, *extra: object) -> Path:
    out = tmp_path / "run"
    done = small_run(out, "--epochs", 1, "--set", "data.validation=200", *extra)
    assert done.exit_code == 0, done.output
    return out


# -- processes -----------------------------------------------------------------------------
@pytest.mark.slow
def test_workers_of_nproc_import_nothing_from_the_current_folder(tmp_path, data_dir):
    (tmp_path / "yaml.py").write_text(f"open({str(tmp_path / 'mark')!r}, 'w').write('ran')\n")
    done = subprocess.run(
        [sys.executable, "-m", "genmod", "run", "mlp-vae", "--nproc", "2", "--epochs", "1", "--device", "cpu",
         "--set", "data.limit=400", "--out", "r"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "mark").exists()


def test_more_processes_than_usable_cores_are_refused(tmp_path):
    one_line(genmod("run", "mlp-vae", "--nproc", 4096, "--out", tmp_path / "r"), "--nproc 4096", "cores")


def test_a_plugin_that_exits_while_imported_is_a_failed_plugin_not_a_silent_exit(tmp_path):
    plugin = tmp_path / "quits.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    listed = genmod("list", "--plugin", plugin)
    assert listed.exit_code == 0 and "called sys.exit(0) while being imported" in listed.output
    assert "mlp-vae" in listed.output  # the others still load
    one_line(genmod("run", "mlp-vae", "--plugin", plugin), "quits.py failed to load", "sys.exit(0)")


# -- one writer, nothing of an earlier run -------------------------------------------------
@pytest.mark.slow
def test_a_second_writer_of_a_run_folder_is_refused_naming_the_first(tmp_path, data_dir):
    out = trained(tmp_path)
    with lock.hold(out):
        import os

        one_line(genmod("run", "--resume", out, "--epochs", 2), "being written by another", str(os.getpid()))
    assert genmod("run", "--resume", out, "--epochs", 2).exit_code == 0  # released with its holder


def test_temporary_files_a_killed_write_left_are_removed_on_resume(tmp_path, data_dir):
    out = trained(tmp_path)
    (out / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half")
    done = genmod("run", "--resume", out, "--epochs", 2)
    assert done.exit_code == 0 and ".checkpoint.pt.x1y2.tmp" in done.output
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_force_leaves_nothing_of_the_earlier_run(tmp_path, data_dir):
    out = trained(tmp_path)
    assert genmod("eval", out, "--k", 2, "--images", 10).exit_code == 0
    assert genmod("export", out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    again = small_run(out, "--epochs", 1, "--force", "--seed", 5)
    assert again.exit_code == 0, again.output
    left = {p.name for p in out.iterdir()}
    assert not {"best.pt", "eval.json", "model.safetensors"} & left
    assert "notes.txt" in left  # not genmod's: not removed
    assert genmod("sample", out, "-n", 4).exit_code == 0  # the new run's last weights


@pytest.mark.slow
def test_a_best_checkpoint_of_an_earlier_run_in_the_folder_is_refused(tmp_path, data_dir):
    out = trained(tmp_path)
    earlier = (out / "best.pt").read_bytes()
    assert small_run(out, "--epochs", 1, "--force", "--seed", 5).exit_code == 0
    (out / "best.pt").write_bytes(earlier)  # put back, as a copy from elsewhere would
    one_line(genmod("sample", out, "-n", 4), "best.pt is from another run")
    assert genmod("sample", out, "-n", 4, "--checkpoint", "last").exit_code == 0


def test_a_resumed_run_writes_its_checkpoint_before_its_samples(tmp_path, data_dir, monkeypatch):
    """A failure after an epoch's training (here: the sample grid) loses no finished epoch."""
    from genmod import artifacts

    out = trained(tmp_path)

    def fails(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "save_grid", fails)
    assert genmod("run", "--resume", out, "--epochs", 2).exit_code != 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2


# -- damaged or meaningless weights --------------------------------------------------------
def flip_bits_in(path: Path, record_suffix: str) -> None:
    """Invert 4 KB in the middle of the record whose name ends with ``record_suffix``."""
    with zipfile.ZipFile(path) as archive:
        info = max(
            (i for i in archive.infolist() if i.filename.endswith(record_suffix)), key=lambda i: i.file_size
        )
    content = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    content[start : start + 4096] = bytes(b ^ 0xFF for b in content[start : start + 4096])
    path.write_bytes(bytes(content))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["checkpoint.pt", "best.pt"])
def test_flipped_bits_inside_a_weight_are_refused_by_their_checksum(tmp_path, data_dir, name):
    out = trained(tmp_path)
    flip_bits_in(out / name, "data/0")
    which = "last" if name == "checkpoint.pt" else "best"
    one_line(genmod("eval", out, "--k", 2, "--images", 4, "--checkpoint", which), name, "checksum")


def test_an_export_whose_weights_changed_is_refused_by_its_checksum(tmp_path, data_dir):
    shipped = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, shipped)
    assert genmod("export", shipped, "-o", tmp_path / "m.safetensors").exit_code == 0
    content = bytearray((tmp_path / "m.safetensors").read_bytes())
    content[-5000:-4000] = bytes(b ^ 0xFF for b in content[-5000:-4000])
    (tmp_path / "m.safetensors").write_bytes(bytes(content))
    one_line(genmod("sample", tmp_path / "m.safetensors"), "m.safetensors", "checksum")


def test_infinite_weights_are_refused_not_sampled_as_a_black_grid(tmp_path, data_dir):
    out = trained(tmp_path)
    state = torch.load(out / "best.pt", weights_only=True)
    state["model"]["decoder.body.0.weight"][0, 0] = float("inf")
    torch.save(state, out / "best.pt")
    one_line(genmod("sample", out, "-n", 4), "best.pt", "non-finite", "decoder.body.0.weight")


def test_a_checkpoint_whose_epoch_disagrees_with_its_history_is_refused(tmp_path, data_dir):
    out = trained(tmp_path)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["epoch"] = -5
    torch.save(state, out / "checkpoint.pt")
    one_line(genmod("run", "--resume", out, "--epochs", 3), "checkpoint.pt", "inconsistent")
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1


# -- evaluations are kept, sizes are bounded -----------------------------------------------
def test_an_evaluation_with_another_k_goes_beside_the_one_there(tmp_path, data_dir):
    shipped = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, shipped)
    kept = (shipped / "eval.json").read_text()
    done = genmod("eval", shipped, "--k", 1, "--images", 5)
    assert done.exit_code == 0 and "kept" in done.output
    assert (shipped / "eval.json").read_text() == kept
    assert json.loads((shipped / "eval-test-k1-5.json").read_text())["images"] == 5
    assert "IS-NLL 87.71" in genmod("info", shipped).output


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "RUN", "--k", 10**26],
        ["sample", "RUN", "-n", 10**8],
        ["run", "mlp-vae", "--set", "train.samples=100000000", "--out", "new"],
    ],
    ids=["k", "grid", "train.samples"],
)
def test_sizes_given_on_the_command_line_are_bounded(tmp_path, args):
    run = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, run)
    done = genmod(*[run if a == "RUN" else a for a in args])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert not (tmp_path / "new").exists()


def test_a_metrics_file_no_run_could_write_is_listed_as_unreadable(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(PRETRAINED_VAE, runs / "vae")
    shutil.copytree(PRETRAINED_VAE, runs / "huge")
    with (runs / "huge" / "metrics.jsonl").open("wb") as handle:
        handle.truncate(300 * 2**20)  # sparse: 300 MB that take no disk
    listing = genmod("runs", runs)
    assert (
        listing.exit_code == 0
        and "unreadable" in listing.output
        and "more than any run writes" in listing.output
    )
    assert "vae" in listing.output


@pytest.mark.slow
def test_a_copied_run_folder_is_tracked_as_a_new_run(tmp_path, data_dir):
    optional("tensorboard")
    out = trained(tmp_path, "--logger", "tensorboard")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    done = genmod("run", "--resume", copy, "--epochs", 2)
    assert done.exit_code == 0 and "this copy is tracked as a new run" in done.output
    assert json.loads((copy / "trackers.json").read_text())["folder"] == str(copy.resolve())
    assert json.loads((out / "trackers.json").read_text())["folder"] == str(out.resolve())


def test_a_non_finite_evaluation_is_null_and_named_in_valid_json(tmp_path, data_dir, monkeypatch):
    from genmod import evaluation

    shipped = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, shipped)
    (shipped / "eval.json").unlink()

    def diverged(model, images, k, *args, **options):
        return evaluation.NLLResult(len(images), k, float("nan"), float("nan"), float("inf"), 0.0, 0.1)

    monkeypatch.setattr(evaluation, "importance_sampled_nll", diverged)
    assert genmod("eval", shipped, "--k", 2, "--images", 4).exit_code == 0
    report = json.loads((shipped / "eval.json").read_text(), parse_constant=pytest.fail)
    assert report["nll"] is None and report["negative_elbo"] is None
    assert report["non_finite"] == ["nll", "nll_se", "negative_elbo"]


def test_an_export_removes_the_temporary_file_a_killed_export_left(tmp_path):
    shipped = tmp_path / "vae"
    shutil.copytree(PRETRAINED_VAE, shipped)
    stale = tmp_path / ".m.safetensors.k1ll3d.tmp"
    stale.write_bytes(bytes(2**20))
    assert genmod("export", shipped, "-o", tmp_path / "m.safetensors").exit_code == 0
    assert not stale.exists() and (tmp_path / "m.safetensors").is_file()


def test_a_named_pipe_in_place_of_a_packed_index_is_not_waited_on(tmp_path):
    import os

    folder = tmp_path / "packed"
    folder.mkdir()
    os.mkfifo(folder / "genmod.json")
    done = genmod(
        "run", "mlp-vae", "--set", "data.name=streaming", "--data-dir", folder, "--out", tmp_path / "r"
    )  # would block forever reading the pipe
    one_line(done, "not found in")


def test_an_evaluation_names_its_run_and_is_marked_stale_once_the_weights_move_on(tmp_path, data_dir):
    runs = tmp_path / "runs"
    out = runs / "run"
    assert small_run(out, "--epochs", 1).exit_code == 0
    assert genmod("eval", out, "--k", 2, "--images", 5).exit_code == 0
    report = json.loads((out / "eval.json").read_text())
    assert (
        report["run"] == torch.load(out / "checkpoint.pt", weights_only=True)["run"] and report["epoch"] == 1
    )
    assert "stale" not in genmod("info", out).output
    assert genmod("run", "--resume", out, "--epochs", 2).exit_code == 0
    assert "stale: of epoch 1's weights, these are epoch 2's" in genmod("info", out).output
    assert "stale" in genmod("runs", runs).output


def test_images_with_no_pixels_are_refused_not_scored_zero(tmp_path):
    path = tmp_path / "empty.pt"
    torch.save({"train": torch.zeros(4, 1, 0, 0, dtype=torch.uint8), "test": torch.zeros(4, 1, 0, 0)}, path)
    done = genmod(
        "run", "mlp-vae", "--set", "data.name=tensor-file", "--data-dir", path, "--out", tmp_path / "r"
    )
    one_line(done, "empty.pt", "none of them 0")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the death signal is Linux's")
def test_the_workers_of_nproc_die_with_their_launcher(tmp_path, data_dir):
    import os
    import signal
    import time

    launcher = subprocess.Popen(
        [sys.executable, "-m", "genmod", "run", "mlp-vae", "--nproc", "2", "--epochs", "1000", "--device", "cpu",
         "--set", "data.limit=2000", "--out", str(tmp_path / "r")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def workers() -> list[int]:
        found = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in found.split()]

    deadline = time.monotonic() + 60
    while len(workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    started = workers()
    assert len(started) == 2
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 30
    alive = started
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in started if os.path.exists(f"/proc/{pid}") and _running(pid)]
    assert not alive, f"workers {alive} outlived their launcher"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, awaiting its reaper, has finished)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
