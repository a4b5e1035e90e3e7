"""Which plugin files genmod may import: the ones the user names, and the ones they trained with.

A run remembers its plugin files so that ``eval``, ``sample`` and ``--resume`` work without
``--plugin``. But a run folder can come from anyone, and importing a file runs it, so a
remembered file is imported only if this user named it on this machine (``--plugin``,
``$GENMOD_PLUGINS``) and it has not changed since: each named file's absolute path and the
SHA-256 of its content are kept in ``trusted-plugins.json`` in genmod's config folder
(``$GENMOD_CONFIG_DIR``, else the platform's user config folder). This is pip's rule, "you
install what you name", and Hugging Face's ``trust_remote_code``: code nobody chose never runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

CONFIG_ENV = "GENMOD_CONFIG_DIR"
FILENAME = "trusted-plugins.json"


def config_dir() -> Path:
    """genmod's folder for this user's settings."""
    from platformdirs import user_config_dir

    return Path(os.environ.get(CONFIG_ENV) or user_config_dir("genmod"))


def digest(path: Path) -> str:
    """The SHA-256 of a file's content (only regular files are read: a pipe would block)."""
    if not path.is_file():
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read() -> dict[str, str]:
    try:
        trusted = json.loads((config_dir() / FILENAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(trusted, dict):
        return {}
    return {str(k): str(v) for k, v in trusted.items()}


def remember(paths: Iterable[Path]) -> None:
    """Trust ``paths`` as they are now: the user named them. A config folder that cannot be
    written only means that later commands need ``--plugin`` again."""
    trusted = _read()
    added = {str(p.resolve()): digest(p) for p in paths if p.is_file()}
    if not added or all(trusted.get(k) == v for k, v in added.items()):
        return
    trusted.update(added)
    folder = config_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{FILENAME}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(trusted, handle, indent=2)
        os.replace(tmp, folder / FILENAME)
    except OSError:
        return


def is_trusted(path: Path) -> bool:
    """Whether this user named ``path`` on this machine and it is unchanged since."""
    recorded = _read().get(str(path.resolve()))
    return recorded is not None and recorded == digest(path)
