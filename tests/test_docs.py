"""The docs are executed: writing-plugins.md's files are written and its commands run,
python-api.md's code blocks run, in order, and the quickstart notebook runs on small data."""

import importlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from helpers import genmod, optional, pip_install

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = DOCS.parent / "examples"
DOC = DOCS / "writing-plugins.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def run_command(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    if words[0] == "genmod":
        # In this process, as the other CLI tests run genmod: a fresh interpreter per command
        # would spend most of the walkthrough importing torch. The packages the page installs
        # are on sys.path (the test puts its site folder there), as PYTHONPATH puts them for a
        # shell.
        result = genmod(*words[1:])
        return subprocess.CompletedProcess(words, result.exit_code, result.output, "")
    if words[:3] == ["pip", "install", "-e"]:
        # Installed into a folder of the test's own instead of the environment running the tests.
        installed = subprocess.run(
            pip_install(words[3], env["PYTHONPATH"]), cwd=cwd, capture_output=True, text=True
        )
        importlib.invalidate_caches()  # the new package's entry points, for the next command
        return installed
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_writing_plugins_walkthrough_runs(tmp_path, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    (tmp_path / "site").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
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


# The pages executed above are walked through command by command; every other page's commands
# are checked against the CLI itself, so that no page documents a command or option that does
# not exist.
EXECUTED = {"writing-plugins.md", "python-api.md"}
PAGES = [DOCS.parent / "README.md", *sorted(p for p in DOCS.glob("*.md") if p.name not in EXECUTED)]
ANY_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for _, body in ANY_BLOCK.findall(page.read_text()):
            for line in body.replace("\\\n", " ").splitlines():
                line = line.removeprefix("$ ").split(" #")[0].strip()
                if "genmod " in line and (line.startswith("genmod ") or " -m genmod " in line):
                    found.append((page.name, shlex.split(line[line.index("genmod ") :])[1:]))
    return found


def test_every_genmod_command_the_docs_show_exists_with_the_options_it_uses():
    import typer.main

    from genmod.cli import app

    commands = documented_commands()
    assert len(commands) >= 30
    group = typer.main.get_command(app)
    for page, words in commands:
        command, rest = group, list(words)
        while rest and hasattr(command, "commands") and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        assert command is not group or words[:1] in ([], ["--help"], ["--version"]), (page, words)
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        used = {word.split("=")[0] for word in rest if word.startswith("-")}
        assert used <= options | {"--help"}, (page, words, used - options)


def test_every_python_toml_and_yaml_block_in_the_docs_parses():
    import tomllib
    import yaml

    checked = 0
    for page in PAGES:
        for language, body in ANY_BLOCK.findall(page.read_text()):
            if language == "python":
                compile(body, str(page), "exec")
            elif language == "toml":
                tomllib.loads(body)
            elif language == "yaml":
                yaml.safe_load(body)
            else:
                continue
            checked += 1
    assert checked >= 4


def test_the_api_reference_lists_every_public_name():
    import genmod

    reference = (DOCS / "reference.md").read_text()
    listed = set(re.findall(r"^::: [\w.]+\.(\w+)$", reference, re.M))
    assert listed == set(genmod.__all__) - {"__version__"}
