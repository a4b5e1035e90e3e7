"""The docs are executed: writing-plugins.md's files are written and its commands run,
python-api.md's code blocks run, in order, and the quickstart notebook runs on small data."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import optional, pip_install

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = DOCS.parent / "examples"
DOC = DOCS / "writing-plugins.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def run_command(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    if words[0] == "genmod":
        command = [sys.executable, "-m", "genmod", *words[1:]]
    elif words[:3] == ["pip", "install", "-e"]:
        # Installed into a folder of the test's own instead of the environment running the tests.
        command = pip_install(words[3], env["PYTHONPATH"])
    else:
        command = ["bash", "-c", line]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_writing_plugins_walkthrough_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    executed = 0
    for language, body in BLOCK.findall(DOC.read_text()):
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            path = tmp_path / first.removeprefix("# file: ")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rest if language == "toml" else body)
        elif language == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    result = run_command(line[2:], tmp_path, env)
                    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
                    executed += 1
    assert executed >= 10
    for run in ("laplace", "laplace-narrow", "laplace-package", "gumbel"):
        assert (tmp_path / "runs" / run / "checkpoint.pt").is_file(), run
    assert "scale: 0.5" in (tmp_path / "runs" / "laplace-narrow" / "config.yaml").read_text()


@pytest.mark.slow
def test_python_api_page_runs(tmp_path, data_dir):
    namespace: dict[str, object] = {}
    blocks = [
        body for language, body in BLOCK.findall((DOCS / "python-api.md").read_text()) if language == "python"
    ]
    assert len(blocks) >= 5
    for body in blocks:  # the autouse fixture runs each test in its own folder: tmp_path
        exec(compile(body, "python-api.md", "exec"), namespace)
    assert (tmp_path / "runs" / "quick" / "best.pt").is_file()


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, data_dir):
    optional("nbformat")
    optional("nbclient")
    import nbclient
    import nbformat

    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    parameters.source = "epochs = 2\nlimit = 2000"  # small data, as papermill would inject it
    nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 2  # the plots
    assert any("IS-NLL" in output.get("text", "") for output in outputs)
    assert (tmp_path / "runs" / "notebook" / "metrics.jsonl").is_file()
