"""The modules of a sentence-transformers directory after its Transformer, read from their own
files: Pooling (``1_Pooling/config.json``), Dense (config and weights) and Normalize. Settings
the graph cannot reproduce are refused (``inexpressible``), naming the file's field.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.encoders.encoder_sources import SourceError, inexpressible
from models.encoders.text_pooling import ST_POOLING_MODES, TextPooling, st_poolings
from models.encoders.text_source_support import L2Normalize, read_json

# sentence-transformers' legacy boolean pooling flags, in the order it concatenates them.
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Module kinds by the last part of their modules.json type (old and new import paths).
MODULE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
_SENTENCE_EMBEDDING = "sentence_embedding"


@dataclass(frozen=True)
class ModuleEntry:
    """One row of ``modules.json``: its kind (one of ``MODULE_KINDS``) and folder."""

    index: int
    kind: str
    path: Path


def read_modules(directory: Path) -> list[ModuleEntry]:
    """``modules.json`` as Transformer, Pooling, then any Dense and Normalize modules."""
    rows = read_json_list(directory / "modules.json")
    entries: list[ModuleEntry] = []
    for index, row in enumerate(rows):
        type_name = str(row.get("type", ""))
        kind = type_name.rsplit(".", 1)[-1]
        if not type_name.startswith("sentence_transformers.") or kind not in MODULE_KINDS:
            raise inexpressible(
                f"modules.json[{index}].type",
                type_name,
                "only Transformer, Pooling, Dense and Normalize modules can be exported",
            )
        entries.append(ModuleEntry(index, kind, directory / str(row.get("path", ""))))
    kinds = [entry.kind for entry in entries]
    if kinds[:2] != ["Transformer", "Pooling"] or any(
        kind not in ("Dense", "Normalize") for kind in kinds[2:]
    ):
        raise inexpressible(
            "modules.json",
            kinds,
            "the pipeline must be Transformer, Pooling, then Dense and Normalize modules",
        )
    return entries


def read_json_list(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects (``modules.json``)."""
    if not path.is_file():
        raise SourceError(f"{path} does not exist", field=path.name)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SourceError(f"{path} is not readable JSON: {error}", field=path.name) from error
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise SourceError(f"{path} is not a list of modules", field=path.name)
    return rows


def pooling_modes(config: dict[str, Any], where: str) -> tuple[str, ...]:
    """The pooling modes a Pooling config selects (legacy flags or ``pooling_mode``)."""
    if "pooling_mode" in config:
        value = config["pooling_mode"]
        modes = (value,) if isinstance(value, str) else tuple(value)
    else:
        modes = tuple(mode for flag, mode in _LEGACY_POOLING_FLAGS.items() if config.get(flag))
        # sentence-transformers' default when no flag is set.
        modes = modes or ("mean",)
    unknown = [mode for mode in modes if mode not in ST_POOLING_MODES]
    if unknown or not modes:
        raise inexpressible(
            f"{where}.pooling_mode", config.get("pooling_mode"), f"modes are {ST_POOLING_MODES}"
        )
    return modes


def load_pooling(entry: ModuleEntry, hidden_size: int, prompt: str) -> tuple[TextPooling, int]:
    """The Pooling module's pooling and its output width; ``include_prompt=False`` is refused
    when a prompt is in use (the graph does not know where the prompt ends)."""
    where = entry.path.name
    config = read_json(entry.path / "config.json")
    dimension = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    if dimension is not None and dimension != hidden_size:
        raise inexpressible(
            f"{where}.embedding_dimension",
            dimension,
            f"the transformer's hidden size is {hidden_size}",
        )
    if config.get("include_prompt", True) is False and prompt:
        raise inexpressible(
            f"{where}.include_prompt",
            False,
            "pooling that leaves the prompt's tokens out is not reproduced by the graph",
        )
    modes = pooling_modes(config, where)
    return st_poolings(modes), hidden_size * len(modes)


class StDense(nn.Module):
    """sentence-transformers' Dense: ``activation(linear(x))``, plus the input (or its
    projection) when ``use_residual``."""

    def __init__(
        self, linear: nn.Linear, activation: nn.Module, residual: nn.Module | None
    ) -> None:
        super().__init__()
        self.linear = linear
        self.activation = activation
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(self.linear(x))
        if self.residual is not None:
            out = out + self.residual(x)
        return out


def _activation(name: object, where: str) -> nn.Module:
    """An activation module from its dotted class name, as sentence-transformers saves it.
    sentence-transformers itself only imports names under ``torch.`` (others fall back to
    Tanh without ``trust_remote_code``), so only those are accepted."""
    if not isinstance(name, str) or not name.startswith("torch."):
        raise inexpressible(
            f"{where}.activation_function",
            name,
            "only torch activations are loaded as saved (sentence-transformers replaces "
            "others with Tanh)",
        )
    module_name, _, class_name = name.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise inexpressible(f"{where}.activation_function", name, str(error)) from error
    if not (isinstance(factory, type) and issubclass(factory, nn.Module)):
        raise inexpressible(f"{where}.activation_function", name, "not a torch.nn module")
    activation: nn.Module = factory()
    return activation


def _dense_weights(folder: Path) -> dict[str, torch.Tensor]:
    safetensors_path = folder / "model.safetensors"
    if safetensors_path.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors_path))
    bin_path = folder / "pytorch_model.bin"
    if bin_path.is_file():
        weights: dict[str, torch.Tensor] = torch.load(
            str(bin_path), map_location="cpu", weights_only=True
        )
        return weights
    raise SourceError(f"{folder} has no model.safetensors or pytorch_model.bin", field=folder.name)


def _check_feature_names(config: dict[str, Any], where: str) -> None:
    for key in ("module_input_name", "module_output_name"):
        value = config.get(key)
        if value is not None and value != _SENTENCE_EMBEDDING:
            raise inexpressible(
                f"{where}.{key}", value, "only the sentence embedding is transformed"
            )


def load_dense(entry: ModuleEntry, in_features: int) -> StDense:
    """A Dense module with its saved weights and activation."""
    where = entry.path.name
    config = read_json(entry.path / "config.json")
    _check_feature_names(config, where)
    if config.get("in_features") != in_features:
        raise inexpressible(
            f"{where}.in_features",
            config.get("in_features"),
            f"the embedding reaching it has {in_features} values",
        )
    out_features = int(config["out_features"])
    bias = bool(config.get("bias", True))
    activation = _activation(
        config.get("activation_function", "torch.nn.modules.activation.Tanh"), where
    )
    weights = _dense_weights(entry.path)
    linear = nn.Linear(in_features, out_features, bias=bias)
    state = {"weight": weights["linear.weight"]}
    if bias:
        state["bias"] = weights["linear.bias"]
    linear.load_state_dict(state)
    residual: nn.Module | None = None
    if config.get("use_residual", False):
        if in_features == out_features:
            residual = nn.Identity()
        else:
            projection = nn.Linear(in_features, out_features, bias=False)
            projection.load_state_dict({"weight": weights["residual.weight"]})
            residual = projection
    return StDense(linear, activation, residual)


def load_normalize(entry: ModuleEntry) -> L2Normalize:
    """A Normalize module (its folder and config are optional)."""
    _check_feature_names(read_json(entry.path / "config.json", required=False), entry.path.name)
    return L2Normalize()
