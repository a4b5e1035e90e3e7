"""``genmod new-plugin``: an installable plugin package to start from.

The package registers one example component (a learnable prior of the family its name names,
torch.distributions' Laplace for ``laplace``, else a Gaussian placeholder) and a model that
uses it, ships the model's recipe, and has a README and a test, so that a researcher edits a
working plugin rather than writing one from nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from genmod.errors import ConfigError

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "genmod plugin: the {name} prior and the {model} model"
requires-python = ">=3.10"
dependencies = ["genmod>=0.2,<0.3"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.genmod]
{name} = "{module}"

[tool.setuptools.packages.find]
include = ["{module}*"]

[tool.setuptools.package-data]
{module} = ["*.yaml"]
"""

MODULE = '''\
"""genmod plugin {dist}: the `{name}` prior and the `{model}` model that uses it.

Everything here comes from genmod's public API (`from genmod import ...`).
"""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.distributions import Distribution, Independent, {family}

from genmod import (
    VAE,
    ComponentContext,
    ComponentRef,
    ComponentSpec,
    Decoder,
    Encoder,
    ModelContext,
    ModelSpec,
    Prior,
    VAEConfig,
    diagonal_gaussian,
    hookimpl,
)


class {cls}PriorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scale: float = Field(1.0, gt=0, description="Initial standard deviation of every latent.")


class {cls}Prior(Prior):
    """{doc}"""

    def __init__(self, latent_dim: int, scale: float) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.full((latent_dim,), math.log(scale)))

    def distribution(self) -> Distribution:
        return Independent({family}(self.loc, self.log_scale.exp()), 1)


class {cls}Encoder(Encoder):
    def __init__(self, data_size: int, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(data_size, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> Distribution:
        mean, log_var = self.net(x.flatten(1)).chunk(2, dim=-1)
        return diagonal_gaussian(mean, log_var)


class {cls}Decoder(Decoder):
    def __init__(self, latent_dim: int, hidden: int, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = data_shape
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(data_shape)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unflatten(-1, self.data_shape)


class {cls}Config(VAEConfig):
    prior: ComponentRef = Field(ComponentRef(name="{name}"), description="Registered prior, by name.")
    hidden: int = Field(256, ge=1, description="Hidden layer width of encoder and decoder.")


def build_model(config: {cls}Config, context: ModelContext) -> VAE:
    encoder = {cls}Encoder(math.prod(context.data_shape), config.hidden, config.latent_dim)
    decoder = {cls}Decoder(config.latent_dim, config.hidden, context.data_shape)
    return VAE(encoder, decoder, context.prior(config, encoder), context.likelihood(config), **config.vae_options())


def build_prior(options: {cls}PriorOptions, context: ComponentContext) -> {cls}Prior:
    return {cls}Prior(context.latent_dim, options.scale)


@hookimpl
def register_priors(register):
    register(
        ComponentSpec(
            name="{name}",
            build=build_prior,
            options={cls}PriorOptions,
            description="{description}",
        )
    )


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="{model}",
            config={cls}Config,
            build=build_model,
            recipe=Path(str(files(__name__) / "{model}.yaml")),
            description="An MLP VAE with the {name} prior.",
        )
    )
'''

RECIPE = """\
# `genmod run {model}` trains with this recipe; override any key with --set.
model:
  name: {model}
  latent_dim: 16
  hidden: 256
  prior: {name}
  likelihood: bernoulli
data:
  name: mnist
train:
  epochs: 10
  batch_size: 100
  lr: 1.0e-3
  seed: 0
  sample_epochs: [0, 10]
"""

README = """\
# {dist}

A genmod plugin: the `{name}` prior and the `{model}` model.

```bash
pip install -e ".[test]"
genmod list --kind prior                 # shows {name}, from {dist} 0.1.0
genmod run {model} --epochs 1 --set data.limit=1000
genmod run mlp-vae --set model.prior={name}    # the prior works in any VAE
pytest                                   # offline, in seconds, on generated images
```

Edit `{module}/__init__.py`: `{cls}Prior.distribution` defines p(z); the hooks at the bottom
register the prior and the model. The recipe is `{module}/{model}.yaml`.
"""

TEST = """\
import json
import math
import subprocess
import sys

import torch

from {module} import {cls}Prior


def genmod(*args):
    return subprocess.run([sys.executable, "-m", "genmod", *map(str, args)], capture_output=True, text=True)


def test_prior_density_integrates_to_one():
    prior = {cls}Prior(latent_dim=2, scale=0.7)
    axis = torch.linspace(-8, 8, 801)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = prior.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(mass.item() - 1) < 1e-3
    assert prior.sample(5).shape == (5, 2)


def test_genmod_lists_the_plugin():
    result = genmod("list", "--json")
    assert result.returncode == 0, result.stderr
    entries = {{(e["kind"], e["name"]): e for e in json.loads(result.stdout)["entries"]}}
    assert entries[("prior", "{name}")]["plugin"] == "{dist}"
    assert ("model", "{model}") in entries


def test_model_trains_one_epoch_offline(tmp_path):
    # A few generated images in genmod's tensor-file format: no dataset download, no MNIST.
    images = tmp_path / "images.pt"
    torch.save({{"train": torch.rand(64, 1, 28, 28), "test": torch.rand(16, 1, 28, 28)}}, images)
    out = tmp_path / "run"
    result = genmod(
        "run", "{model}", "--epochs", 1, "--out", out, "--device", "cpu",
        "--set", "data.name=tensor-file", "--set", f"data.root={{images}}", "--set", "train.batch_size=16",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.jsonl").read_text())
    assert math.isfinite(metrics["test"]["loss"]) and metrics["test"]["terms"]["kl"] > 0
"""


# torch.distributions' location-scale families, by the plugin name that asks for one.
_FAMILIES = {
    "normal": "Normal",
    "gaussian": "Normal",
    "laplace": "Laplace",
    "cauchy": "Cauchy",
    "gumbel": "Gumbel",
}


def _prior_family(name: str) -> dict[str, str]:
    """The scaffold's prior: the torch.distributions family its name names (``laplace`` ->
    ``Laplace``), else a Gaussian that says it is a placeholder for the user's own p(z)."""
    family = _FAMILIES.get(name.replace("-", ""))
    if family is not None:
        return {
            "family": family,
            "doc": f"A diagonal {family} prior with a learnable location and scale per latent.",
            "description": f"A learnable diagonal {family} prior (torch.distributions.{family}).",
        }
    return {
        "family": "Normal",
        "doc": f"A placeholder for the {name} prior: a diagonal Gaussian with a learnable mean and "
        "scale per latent. Write your own p(z) in distribution().",
        "description": f"The {name} prior: for now a learnable diagonal Gaussian, to be replaced.",
    }


def new_plugin(name: str, directory: Path) -> Path:
    """Write the package for plugin ``name`` into ``directory/genmod-<name>``; return its path."""
    if not _NAME.match(name):
        raise ConfigError(
            f"plugin name '{name}' must be lowercase letters and digits joined by '-', e.g. 'laplace'"
        )
    dist = f"genmod-{name}"
    module = dist.replace("-", "_")
    fields = {
        "name": name,
        "dist": dist,
        "module": module,
        "model": f"{name}-vae",
        "cls": "".join(part.capitalize() for part in name.split("-")),
        **_prior_family(name),
    }
    root = directory / dist
    if root.exists():
        raise ConfigError(f"{root} already exists: choose another name or --dir")
    files = {
        "pyproject.toml": PYPROJECT,
        f"{module}/__init__.py": MODULE,
        f"{module}/{fields['model']}.yaml": RECIPE,
        "README.md": README,
        "tests/test_plugin.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields))
    return root
