"""The experiment trackers, read back with each tool's own client: a 2-epoch run, then a
resume to 3 epochs that must continue the same tracked run."""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import genmod, metrics, optional, small_run

Readback = tuple[dict[int, float], dict[str, str], set[str]]
"""Per epoch the test -ELBO, the logged config (flat, as strings), the image names logged."""


def read_mlflow(out: Path) -> Readback:
    from mlflow import MlflowClient

    ids = json.loads((out / "trackers.json").read_text())
    client = MlflowClient(f"sqlite:///{out.parent / 'mlflow.db'}")
    run = client.get_run(ids["mlflow"])
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "test/loss")}
    images = {Path(a.path).stem for a in client.list_artifacts(run.info.run_id)}
    assert len(client.search_runs([run.info.experiment_id])) == 1  # resume made no second run
    return losses, run.data.params, images


def _wandb_records(path: Path) -> Iterator[object]:
    """The records of a W&B offline run file: a 7-byte header, then 32 KiB blocks of records
    (checksum, length, type) in LevelDB's log format, each a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb(out: Path) -> Readback:
    run_id = json.loads((out / "trackers.json").read_text())["wandb"]
    files = sorted((out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert files, "no offline run file"
    losses, config, images = {}, {}, set()
    for path in files:  # one per session of the same run: the first run, then the resume
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                config.update({u.key: u.value_json for u in record.run.config.update})
            elif kind == "history":
                row: dict = {}
                for item in record.history.item:  # nested keys: an image's fields
                    key, *inner = [item.key] if item.key else list(item.nested_key)
                    value = json.loads(item.value_json)
                    if inner:
                        row.setdefault(key, {})[inner[0]] = value
                    else:
                        row[key] = value
                if "test/loss" in row:
                    losses[row["_step"]] = row["test/loss"]
                images |= {
                    key
                    for key, value in row.items()
                    if isinstance(value, dict) and value.get("_type") == "image-file"
                }
    sections = {key: json.loads(value) for key, value in config.items() if key != "_wandb"}
    flat = {
        f"{section}.{key}": str(value)
        for section, values in sections.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }
    return losses, flat, images


def read_tensorboard(out: Path) -> Readback:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    losses = {event.step: event.value for event in events.Scalars("test/loss")}
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    config = {"train.epochs": "2"} if "epochs: 2" in text else {}
    return losses, config, set(events.Tags()["images"])


READERS: dict[str, tuple[str, Callable[[Path], Readback]]] = {
    "mlflow": ("mlflow", read_mlflow),
    "wandb": ("wandb", read_wandb),
    "tensorboard": ("tensorboard", read_tensorboard),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", READERS)
def test_tracker_logs_config_every_epoch_and_images_and_resume_continues_the_run(tmp_path, name):
    client, read = READERS[name]
    optional(client)
    out = tmp_path / "run"
    first = small_run(out, "--epochs", 2, "--logger", name)
    assert first.exit_code == 0, first.output
    losses, config, images = read(out)
    assert config["train.epochs"] == "2"
    assert losses == pytest.approx({row["epoch"]: row["test"]["loss"] for row in metrics(out)}, rel=1e-6)
    assert {"samples_epoch_000", "samples_epoch_002", "loss_plot"} <= images

    resumed = genmod("run", "--resume", out, "--epochs", 3)
    assert resumed.exit_code == 0, resumed.output
    losses, _, _ = read(out)
    assert sorted(losses) == [1, 2, 3]
    assert losses == pytest.approx({row["epoch"]: row["test"]["loss"] for row in metrics(out)}, rel=1e-6)


def test_a_missing_tracker_client_stops_the_run_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = small_run(tmp_path / "run", "--epochs", 1, "--logger", "mlflow")
    assert result.exit_code == 2 and 'pip install "genmod[mlflow]"' in result.output
    assert not (tmp_path / "run").exists()


def test_an_unknown_tracker_is_named_with_a_suggestion(tmp_path):
    result = small_run(tmp_path / "run", "--epochs", 1, "--logger", "mlflw")
    assert result.exit_code == 2 and "unknown logger 'mlflw'" in result.output and "mlflow" in result.output
