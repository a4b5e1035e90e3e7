"""genmod: a plugin-based framework for deep generative models.

Everything a plugin needs is importable from here; other modules are private. Names are
loaded on first use (PEP 562), so that ``genmod --help`` and ``genmod --version`` start
without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

from genmod.vae import _EXPORTS as _VAE_EXPORTS

# Each public name and the module that defines it.
_EXPORTS = {
    "train": "genmod.api",
    "launch": "genmod.api",
    "load": "genmod.api",
    "evaluate": "genmod.api",
    "sample_quality": "genmod.api",
    "registry": "genmod.api",
    "dataset": "genmod.api",
    "export": "genmod.api",
    "open_run": "genmod.trained",
    "remembered_plugins": "genmod.api",
    "is_trusted": "genmod.trust",
    "list_runs": "genmod.run_index",
    "summarize": "genmod.run_index",
    "sweep": "genmod.sweeps",
    "pack_dataset": "genmod.streaming",
    "train_features": "genmod.feature_training",
    "Bound": "genmod.bound",
    "GenerativeModel": "genmod.model",
    "TrainingProgress": "genmod.model",
    "Step": "genmod.step",
    "OptimizerFactory": "genmod.optim",
    "Callback": "genmod.callbacks",
    "WeightAveraging": "genmod.callbacks",
    "TrainConfig": "genmod.config",
    "DataConfig": "genmod.config",
    "KindSpec": "genmod.specs",
    "Probe": "genmod.checks",
    "ComponentSpec": "genmod.specs",
    "DatasetSpec": "genmod.specs",
    "LoggerSpec": "genmod.specs",
    "EvaluatorSpec": "genmod.specs",
    "ModelContext": "genmod.specs",
    "ModelSpec": "genmod.specs",
    "NoOptions": "genmod.specs",
    "ComponentRef": "genmod.config",
    "ModelConfig": "genmod.config",
    "log_mean_exp": "genmod.evaluation",
    # The VAE family's names, listed once in its own package (which imports nothing to list them).
    **_VAE_EXPORTS,
    "hookimpl": "genmod.hookspecs",
    "Logger": "genmod.loggers",
    "Opened": "genmod.loggers",
    "RunInfo": "genmod.loggers",
    "Evaluator": "genmod.evaluators",
    "EpochRecord": "genmod.metrics",
    "SplitMetrics": "genmod.metrics",
    # What the public functions return: registry() a Registry, train() a Run, evaluate() an
    # NLLResult, dataset() a Data, open_run() a TrainedRun, list_runs() RunSummary rows,
    # sweep() a Sweep, train_features() a TrainedFeatures.
    "Registry": "genmod.plugins",
    "Run": "genmod.runner",
    "TrainedRun": "genmod.trained",
    "RunSummary": "genmod.run_index",
    "Sweep": "genmod.sweeps",
    "TrainedFeatures": "genmod.feature_training",
    "NLLResult": "genmod.evaluation",
    "SampleQuality": "genmod.quality",
    "Data": "genmod.data",
    # The errors, each one line for a user: catch GenmodError for all of them.
    "GenmodError": "genmod.errors",
    "ConfigError": "genmod.errors",
    "UnknownNameError": "genmod.errors",
    "Interrupted": "genmod.runner",
    "PluginError": "genmod.errors",
    "UntrustedPluginError": "genmod.errors",
    "DataError": "genmod.errors",
    "CheckpointError": "genmod.errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genmod' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from genmod.api import (
        dataset,
        evaluate,
        export,
        launch,
        load,
        registry,
        remembered_plugins,
        sample_quality,
        train,
    )
    from genmod.bound import Bound
    from genmod.callbacks import Callback, WeightAveraging
    from genmod.checks import Probe
    from genmod.config import ComponentRef, DataConfig, ModelConfig, TrainConfig
    from genmod.data import Data
    from genmod.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        GenmodError,
        PluginError,
        UnknownNameError,
        UntrustedPluginError,
    )
    from genmod.evaluation import NLLResult, log_mean_exp
    from genmod.evaluators import Evaluator
    from genmod.feature_training import TrainedFeatures, train_features
    from genmod.hookspecs import hookimpl
    from genmod.loggers import Logger, Opened, RunInfo
    from genmod.metrics import EpochRecord, SplitMetrics
    from genmod.model import (
        GenerativeModel,
        TrainingProgress,
    )
    from genmod.optim import OptimizerFactory
    from genmod.plugins import Registry
    from genmod.quality import SampleQuality
    from genmod.run_index import RunSummary, list_runs, summarize
    from genmod.runner import Interrupted, Run
    from genmod.specs import (
        ComponentSpec,
        DatasetSpec,
        EvaluatorSpec,
        KindSpec,
        LoggerSpec,
        ModelContext,
        ModelSpec,
        NoOptions,
    )
    from genmod.step import Step
    from genmod.streaming import pack_dataset
    from genmod.sweeps import Sweep, sweep
    from genmod.trained import TrainedRun, open_run
    from genmod.trust import is_trusted
    from genmod.vae.components import Decoder, Encoder, Likelihood, Prior, diagonal_gaussian
    from genmod.vae.config import LatentConfig, VAEConfig
    from genmod.vae.elbo import ELBOTerms, kl_term
    from genmod.vae.model import VAE
    from genmod.vae.scaffold import new_plugin
    from genmod.vae.specs import ComponentContext
