"""`stages[0].init`: a plan that starts from a pretrained Hugging Face model directory.

`shape_fields` is the one reader of a Hugging Face config: which fields are the shape, which
family it is, and the family's other fields (`Shape.arch`), kept as the config has them.
`resolve_init` completes a raw plan before it is bound: stage 0's shape is the model's (a shape
the plan gives must agree), a later stage's fields left out are the stage before's, and the
tokenizer is the model directory's unless the plan names one. Reading the model's config.json is
the only file access of the config layer; the weights are read later, by the coordinator.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from raygrow.config.binding import require
from raygrow.config.shape import FAMILIES, Shape
from raygrow.errors import ConfigError

INIT = "stages[0].init"
# Hugging Face config key → Shape field.
SHAPE_KEYS = {
    "num_hidden_layers": "layers",
    "hidden_size": "hidden",
    "num_attention_heads": "heads",
    "num_key_value_heads": "kv_heads",
    "intermediate_size": "ffn",
    "vocab_size": "vocab",
    "max_position_embeddings": "max_positions",
    "tie_word_embeddings": "tie_embeddings",
}
# Written about the file or the run, not the model's function: not kept in `arch`. layer_types
# is rebuilt for the grown depth (only all-full-attention models are taken, see below).
NOT_KEPT = (
    "architectures",
    "model_type",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "_name_or_path",
    "use_cache",
    "head_dim",
    "layer_types",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
)
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# Fields a stage after the first takes from the stage before when its shape leaves them out, in
# every plan: growth never changes them.
INHERITED = ("head_dim", "family", "arch")


def shape_fields(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The Shape fields of a Hugging Face config dict; ConfigError naming `where` when raygrow
    cannot build or grow that model."""
    model_type = config.get("model_type")
    require(
        model_type in FAMILIES,
        where,
        f"model_type {model_type!r} is not supported "
        f"(raygrow builds and grows {', '.join(FAMILIES)})",
    )
    for key in (
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
    ):
        require(isinstance(config.get(key), int), where, f"has no {key}")
    layer_types = config.get("layer_types") or ["full_attention"]
    require(
        set(layer_types) == {"full_attention"},
        where,
        f"layer_types {sorted(set(layer_types))} mixes sliding-window and full attention; "
        "raygrow grows models whose layers all attend alike",
    )
    require(
        not config.get("use_sliding_window"),
        where,
        "use_sliding_window is true (Qwen2 sliding-window layers); raygrow grows models whose "
        "layers all attend alike",
    )
    fields = {name: config[key] for key, name in SHAPE_KEYS.items() if config.get(key) is not None}
    head_dim = config.get("head_dim")
    if head_dim and head_dim != config["hidden_size"] // config["num_attention_heads"]:
        fields["head_dim"] = head_dim
    fields["family"] = model_type
    fields["arch"] = {
        key: value for key, value in config.items() if key not in SHAPE_KEYS and key not in NOT_KEPT
    }
    return fields


def run_config_raw(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with `stages[0].init` resolved (see the module docstring) and the fields every
    stage inherits filled in; unchanged when there are no stages."""
    stages = raw.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        return raw  # from_dict names what is wrong
    raw = copy.deepcopy(raw)
    stages = raw["stages"]
    if stages[0].get("init") is not None:
        _resolve_init(raw, stages)
    previous = stages[0].get("shape")
    for stage in stages[1:]:
        shape = stage.get("shape")
        if isinstance(previous, dict) and isinstance(shape, dict):
            stage["shape"] = {
                **{key: previous[key] for key in INHERITED if key in previous},
                **shape,
            }
        previous = stage.get("shape")
    return raw


def _resolve_init(raw: dict[str, Any], stages: list[dict[str, Any]]) -> None:
    path = stages[0]["init"]
    require(
        isinstance(path, str) and bool(path),
        INIT,
        f"must name a Hugging Face model directory (local or s3://), got {path!r}",
    )
    s3 = raw.get("s3") if isinstance(raw.get("s3"), dict) else {}
    model = pretrained_shape(path, s3.get("endpoint_url"), s3.get("region"))
    _check_agrees(stages[0].get("shape"), model, path)
    if "://" not in path:  # the coordinator and its tasks may run in another directory
        stages[0]["init"] = str(Path(path).expanduser().absolute())
    stages[0]["shape"] = model
    for stage in stages[1:]:  # unspecified fields come from the stage before
        if isinstance(stage.get("shape"), dict):
            stage["shape"] = {**model, **stage["shape"]}
            model = stage["shape"]
    data = raw.setdefault("data", {})
    if isinstance(data, dict) and data.get("tokenizer") is None:
        data["tokenizer"] = _tokenizer_of(path)


def pretrained_shape(
    path: str, endpoint_url: str | None = None, region: str | None = None
) -> dict[str, Any]:
    """The Shape fields of the model directory `path` (local or s3://), refusing one that is not
    a Hugging Face model directory."""
    config_text = _read_model_files(path, endpoint_url, region)
    try:
        config = json.loads(config_text)
    except ValueError:
        raise ConfigError(INIT, f"{path}/config.json is not valid JSON") from None
    require(isinstance(config, dict), INIT, f"{path}/config.json must hold a mapping")
    fields = shape_fields(config, INIT)
    try:
        Shape(**fields)
    except ConfigError as error:
        raise ConfigError(INIT, f"{path}/config.json: {error}") from None
    return fields


def _read_model_files(path: str, endpoint_url: str | None, region: str | None) -> str:
    """config.json of a model directory that also holds weights."""
    if "://" in path:
        from raygrow import (
            storage,  # only for an S3 model: the config layer stays file-free
        )

        storage.configure_s3(endpoint_url, region)
        present = (
            {storage.base_name(entry.path) for entry in storage.list_files(path, recursive=False)}
            if storage.is_dir(path)
            else set()
        )
        read = lambda name: storage.read_bytes(f"{path.rstrip('/')}/{name}").decode()
    else:
        local = Path(path).expanduser()
        require(
            local.exists(),
            INIT,
            f"{path} does not exist; give a Hugging Face model directory "
            "(config.json and weights, as save_pretrained writes it)",
        )
        require(local.is_dir(), INIT, f"{path} is not a directory")
        present = {entry.name for entry in local.iterdir()}
        read = lambda name: (local / name).read_text()
    require(
        "config.json" in present,
        INIT,
        f"{path} is not a Hugging Face model directory: it has no config.json",
    )
    require(
        any(name in present for name in WEIGHT_FILES),
        INIT,
        f"{path} has a config.json but no weights ({' or '.join(WEIGHT_FILES[:2])})",
    )
    return read("config.json")


def _check_agrees(given: Any, model: dict[str, Any], path: str) -> None:
    """A stage-0 shape given in the plan must be the model's, field by field."""
    if given is None:
        return
    require(isinstance(given, dict), "stages[0].shape", f"must be a mapping, got {given!r}")
    defaults = Shape(**model)
    for key, value in given.items():
        if key not in Shape.__dataclass_fields__:
            continue  # from_dict names an unknown key
        actual = getattr(defaults, key)
        require(
            value == actual,
            f"stages[0].shape.{key}",
            f"is {value!r}, but the model in {path} has {actual!r}; leave it out to take "
            "the model's",
        )


def _tokenizer_of(path: str) -> str:
    """The tokenizer a plan uses when it names none: the model directory's own."""
    require(
        "://" not in path,
        "data.tokenizer",
        f"required when {INIT} is on S3 ({path}): tokenizers load from a local directory; "
        "give the model's tokenizer directory",
    )
    local = Path(path).expanduser()
    require(
        any((local / name).is_file() for name in TOKENIZER_FILES),
        INIT,
        f"{path} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}); name one in data.tokenizer",
    )
    return str(local.absolute())
