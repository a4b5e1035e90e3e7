"""Saving and loading a run's full training state.

A checkpoint holds everything needed to continue a run bit for bit: model, optimizer and
scheduler states, the epoch, every random number generator, the metrics so far, and the
resolved config. It is written atomically and read with ``weights_only=True``, so a crash
never leaves a half-written file and loading a file cannot execute code.
"""

# No `from __future__ import annotations` here: TypedDict sees NotRequired only unquoted.
import hashlib
import json
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from typing_extensions import NotRequired, TypedDict

from genmod.errors import CheckpointError, ConfigError, one_line

FORMAT = "genmod-checkpoint"
FORMAT_VERSION = 3
FILENAME = "checkpoint.pt"
BEST = "best.pt"
"""The weights of the epoch with the best ``train.monitor`` (by default the validation bound),
beside the last checkpoint."""
WEIGHTS_FORMAT = "genmod-weights"
EXPORTED_SUFFIX = ".safetensors"
"""Weights exported by ``genmod export``: tensors, with the resolved config as metadata."""


class Position(TypedDict):
    """How far an unfinished epoch got (see ``training.EpochPosition``)."""

    order_state: torch.Tensor
    step: int
    totals: list[torch.Tensor]
    """Every process's sums so far, in rank order (one tensor, not a list, before genmod 0.3)."""
    skipped: int


class Best(TypedDict):
    """The best value of ``train.monitor`` so far (``loss``, whatever the metric), for early
    stopping and ``best.pt``."""

    epoch: int
    loss: float
    since: int
    """Epochs since it was reached."""


class RNGStates(TypedDict):
    torch: list[torch.Tensor]
    """Every process's CPU generator, in rank order."""
    cuda: torch.Tensor | None
    data: torch.Tensor
    """The data-order generator."""


class CheckpointState(TypedDict):
    """The checkpoint's schema: everything needed to continue a run bit for bit."""

    model_name: str
    config: dict[str, Any]
    epoch: int
    """Epochs completed."""
    position: Position | None
    """Progress into the next epoch, when the run stopped mid-epoch."""
    data_shape: list[int]
    data_levels: NotRequired[int | None]
    """The values each pixel took in training (2, 256, or None for continuous images): the
    model is rebuilt with them (absent before genmod 0.3)."""
    model: dict[str, torch.Tensor]
    evaluated: NotRequired[dict[str, torch.Tensor]]
    """The weights evaluation and sampling use where they differ from ``model``'s: the average
    of ``train.ema_decay``."""
    optimizer: dict[str, Any]
    """Every optimizer's state, by the name the model gave it (one optimizer's state itself
    before genmod 0.3)."""
    schedule: dict[str, Any]
    """Every optimizer's learning-rate schedule, by the same names."""
    callbacks: NotRequired[dict[str, dict[str, Any]]]
    """Every callback's state, by name (absent before genmod 0.3)."""
    scaler: NotRequired[dict[str, Any]]
    """float16's loss scale and its growth counter (``{}`` for other precisions; absent
    before genmod 0.3)."""
    run: NotRequired[str]
    """The run's identity, a random id made when it started: its checkpoints, ``best.pt``,
    exports and evaluations carry it, so that no file of an earlier run in the same folder is
    taken for this one's (absent before genmod 0.3)."""
    best: Best | None
    """With ``data.validation``; else ``None``."""
    rng: RNGStates
    history: list[dict[str, Any]]
    """The ``metrics.EpochRecord`` of every completed epoch, as plain dicts."""


REQUIRED = tuple(CheckpointState.__required_keys__)


def save_checkpoint(path: Path, state: CheckpointState) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename."""
    _atomic_save(path, {"format": FORMAT, "format_version": FORMAT_VERSION, **state})


def _atomic_save(path: Path, payload: dict[str, Any]) -> None:
    """Write via a temporary file and an atomic rename: a failure leaves the previous file."""
    _atomic_write(path, lambda handle: torch.save(payload, handle))


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` into a hidden temporary file beside ``path``, then rename it over ``path``.

    A full disk or any other failed write removes the temporary file and is one line saying
    that the previous file is kept; nothing half-written is ever left under either name.
    """
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError)):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc, 100)
            kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
            raise CheckpointError(
                f"could not write {path} ({reason}): {kept}; free some space (or write elsewhere) and retry"
            ) from None
        raise


def save_best(path: Path, state: CheckpointState) -> None:
    """The weights of ``state`` that evaluation uses (the average, with ``train.ema_decay``)
    alone, without optimizer or RNG states, written atomically: with the run's ``config.yaml``
    it is all a shipped model needs."""
    weights = {
        "model_name": state["model_name"],
        "epoch": state["epoch"],
        "data_shape": state["data_shape"],
        "data_levels": state.get("data_levels"),
        "model": state.get("evaluated", state["model"]),
        "run": state.get("run", ""),
    }
    _atomic_save(path, {"format": WEIGHTS_FORMAT, **weights})


def load_weights_file(path: Path, model_name: str) -> dict[str, Any]:
    """Read ``best.pt``: ``{"model_name", "epoch", "data_shape", "model"}``."""
    return _read(path, WEIGHTS_FORMAT, model_name)


def _read(path: Path, expected: str, model_name: str | None) -> dict[str, Any]:
    """Load ``path`` without unpickling code, refusing another format or another model's file."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: the run has not finished an epoch yet")
    _check_records(path)
    try:
        with warnings.catch_warnings():
            # torch warns about unusual pickle protocols before refusing them; the refusal below
            # is the one line the user needs.
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        # torch's refusal of a pickled class or function (not of damaged bytes) names the global.
        if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path} holds Python objects besides tensors, which could run code when loaded: "
                "it was not loaded, for safety (genmod reads only its own checkpoints)"
            ) from None
        raise CheckpointError(
            f"{path} is truncated, corrupted or not a genmod checkpoint ({one_line(exc, 120)})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != expected:
        raise CheckpointError(
            f"{path} is not a genmod {'checkpoint' if expected == FORMAT else 'weights file'}"
        )
    if model_name is not None and state.get("model_name") != model_name:
        raise CheckpointError(
            f"{path} is a checkpoint of model '{state.get('model_name')}', not '{model_name}'"
        )
    check_finite(path, state.get("model"))
    return state


def check_finite(path: Path, weights: object) -> None:
    """Refuse weights that are not a mapping of tensors, or hold NaN or infinite values."""
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise CheckpointError(f"{path} holds no model weights: it is not a genmod checkpoint")
    bad = [k for k, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(
            f"{path} holds non-finite weights ({', '.join(bad[:3])}): it was not loaded; use another copy"
        )


def _check_records(path: Path) -> None:
    """Refuse a zip whose records are compressed before torch unpacks it: torch stores its
    records as they are, and a compressed one can unpack to far more memory than the file's size."""
    if not zipfile.is_zipfile(path):
        return  # torch's reader says what else is wrong with it
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is truncated, corrupted or not a genmod checkpoint ({one_line(exc, 120)})"
        ) from None
    packed = [r.filename for r in records if r.compress_type != zipfile.ZIP_STORED]
    if packed or sum(r.file_size for r in records) > path.stat().st_size:
        raise CheckpointError(
            f"{path} holds compressed records ({', '.join(packed[:2]) or 'sizes beyond the file'}), which "
            "torch never writes: it was not loaded, for safety"
        )
    # torch writes a CRC-32 with every record but never checks it: a flipped bit in a weight
    # would load silently.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        damaged = one_line(exc, 80)
    if damaged is not None:
        raise CheckpointError(
            f"{path} is corrupted: its record {damaged} fails its checksum; use another copy or the "
            "previous checkpoint"
        )


def load_checkpoint(path: Path, model_name: str | None = None) -> CheckpointState:
    """Read a checkpoint, refusing anything that is not a complete genmod checkpoint.

    With ``model_name``, a checkpoint of another model is refused too.
    """
    state = _read(path, FORMAT, model_name)
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state.get('format_version')}; this genmod reads "
            f"format {FORMAT_VERSION}"
        )
    missing = sorted(key for key in REQUIRED if key not in state)
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    epoch, history = state["epoch"], state["history"]
    if not (isinstance(epoch, int) and epoch >= 0 and isinstance(history, list) and len(history) == epoch):
        raise CheckpointError(
            f"{path} is inconsistent: epoch {epoch!r} with {len(history) if isinstance(history, list) else '?'} "
            "epochs of history; use another copy"
        )
    return state  # type: ignore[return-value]


def export_safetensors(
    path: Path, weights: dict[str, Any], config: dict[str, Any], requires: dict[str, str]
) -> None:
    """Write the weights of ``weights`` (as :func:`load_weights_file` returns them) and the run's
    resolved ``config`` as one safetensors file: tensors, and strings as metadata. ``requires``
    names the installed plugins (distribution: version) the model comes from."""
    _need_safetensors()
    metadata = {
        "format": WEIGHTS_FORMAT,
        "model_name": weights["model_name"],
        "epoch": str(weights["epoch"]),
        "run": str(weights.get("run", "")),
        "data_shape": json.dumps(list(weights["data_shape"])),
        "data_levels": json.dumps(weights.get("data_levels")),
        "config": json.dumps(config),
        "requires": json.dumps(requires),
    }
    # safetensors refuses tensors that share memory; a copy of each is what a reader rebuilds.
    tensors = {name: tensor.detach().clone().contiguous() for name, tensor in weights["model"].items()}
    from safetensors import SafetensorError
    from safetensors.torch import save

    try:
        # The data section does not depend on the metadata: serialised once to hash it.
        metadata["sha256"] = _data_digest(save(tensors, metadata=metadata))
        content = save(tensors, metadata=metadata)
    except SafetensorError as exc:
        raise CheckpointError(f"could not export to {path} ({one_line(exc, 120)})") from None
    # An export killed while writing left its hidden temporary file: the next export removes it.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    _atomic_write(path, lambda handle: handle.write(content))


def _data_digest(content: bytes) -> str:
    """The SHA-256 of a safetensors file's tensor data (after its 8-byte length and header)."""
    header = int.from_bytes(content[:8], "little")
    return hashlib.sha256(memoryview(content)[8 + header :]).hexdigest()


def read_exported_config(path: Path) -> dict[str, Any]:
    """The resolved config stored in an exported file's metadata, without plugin files: a file
    received from someone never makes genmod import one (files of genmod before 0.3 list them)."""
    metadata = _exported_metadata(path)
    try:
        config = json.loads(metadata["config"])
    except ValueError as exc:
        raise CheckpointError(f"{path} has a damaged config in its metadata ({one_line(exc, 120)})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has a damaged config in its metadata (not a mapping)")
    return {**config, "plugins": []}


def exported_plugin_files(path: Path) -> list[str]:
    """The plugin files an exported file's config names: only files of genmod before 0.3 do,
    and they are refused unless trusted, never imported on the file's word."""
    try:
        config = json.loads(_exported_metadata(path)["config"])
    except ValueError:
        return []  # reading its config says what is wrong
    plugins = config.get("plugins") if isinstance(config, dict) else None
    return [str(p) for p in plugins] if isinstance(plugins, list) else []


def exported_requirements(path: Path) -> dict[str, str]:
    """The installed plugins (distribution: version) an exported model comes from, if recorded."""
    try:
        requires = json.loads(_exported_metadata(path).get("requires", "{}"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in requires.items()} if isinstance(requires, dict) else {}


def read_exported(path: Path, model_name: str) -> dict[str, Any]:
    """Read an exported file like ``best.pt``: ``{"model_name", "epoch", "data_shape", "model"}``.
    safetensors holds tensors and strings only, so nothing is unpickled."""
    _need_safetensors()

    metadata = _exported_metadata(path)
    if metadata.get("model_name") != model_name:
        raise CheckpointError(
            f"{path} holds weights of model '{metadata.get('model_name')}', not '{model_name}'"
        )
    try:
        epoch, data_shape = int(metadata["epoch"]), json.loads(metadata["data_shape"])
        if not (
            isinstance(data_shape, list) and all(isinstance(d, int) and 0 < d <= 2**16 for d in data_shape)
        ):
            raise ValueError(f"data_shape {str(data_shape)[:40]} is not a list of image sizes")
        if epoch < 0:
            raise ValueError(f"epoch {epoch} is negative")
        levels = json.loads(metadata.get("data_levels", "null"))
        if not (levels is None or isinstance(levels, int) and 1 < levels <= 2**16):
            raise ValueError(f"data_levels {str(levels)[:20]} is not a number of pixel values")
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} has damaged metadata ({one_line(exc, 120)})") from None
    content = path.read_bytes()
    if "sha256" in metadata and _data_digest(content) != metadata["sha256"]:
        raise CheckpointError(f"{path} is corrupted: its weights fail their checksum; use another copy")
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        weights = load(content)
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is corrupted ({one_line(exc, 120)})") from None
    check_finite(path, weights)
    return {
        "model_name": model_name,
        "epoch": epoch,
        "data_shape": data_shape,
        "data_levels": levels,
        "model": weights,
        "run": metadata.get("run", ""),
    }


def _need_safetensors() -> None:
    try:
        import safetensors  # noqa: F401
    except ImportError:
        raise ConfigError(
            'exported weights need the safetensors package: pip install "genmod[safetensors]"'
        ) from None


def _exported_metadata(path: Path) -> dict[str, str]:
    _need_safetensors()
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({one_line(exc, 120)})") from None
    if metadata.get("format") != WEIGHTS_FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not one 'genmod export' wrote")
    return metadata
