"""BiGSConfig: the model's hyper-parameters, read from and written to `config.json`.

The keys and their meaning follow the original `BiGS/configuration_bigs.py` (see
shared/SPEC.md), so a config.json written by the original loads here and ours loads there.
Keys this project adds (`padding`, `conv_backend`, `scan_layers`, `remat`, `token_block`)
are plain extra keys: the original ignores them. Unknown keys are kept and written back
unchanged.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from .errors import ConfigError

CONFIG_NAME = "config.json"

# name -> (default, allowed python types). Defaults are those of the published models
# (BiGS_512: 23 layers, hidden 1024, BERT uncased vocabulary).
_FIELDS: dict[str, tuple[Any, tuple[type, ...]]] = {
    "vocab_size": (30522, (int,)),
    "hidden_size": (1024, (int,)),
    "num_hidden_layers": (23, (int,)),
    "intermediate_size": (3072, (int,)),
    "hidden_act": ("gelu", (str,)),
    "hidden_dropout_prob": (0.1, (float, int)),
    "max_position_embeddings": (512, (int,)),
    "type_vocab_size": (2, (int,)),
    "initializer_range": (0.02, (float, int)),
    "layer_norm_eps": (1e-12, (float, int)),
    "pad_token_id": (0, (int,)),
    "position_embedding_type": ("absolute", (str,)),
    "use_cache": (True, (bool,)),
    "classifier_dropout": (None, (float, int, type(None))),
    "num_ssm": (64, (int,)),
    "pre_norm": (True, (bool,)),
    "decode": (False, (bool,)),
    "scaling": ("hippo", (str,)),
    "pooler_type": ("non_padding_mean", (str,)),
    "use_pykeops_kernel": (False, (bool,)),
    "tie_word_embeddings": (True, (bool,)),
    # --- added by this project (ignored by the original code) ---
    # "reference": pads flow through the backward SSM exactly as in the original.
    # "exact": pads contribute nothing; each sequence's outputs equal running it alone.
    "padding": ("reference", (str,)),
    # Convolution backend for the SSMs: "auto" picks by length and platform.
    "conv_backend": ("auto", (str,)),
    # Run the layers with a scan (compile time independent of depth).
    "scan_layers": (True, (bool,)),
    # Rematerialise each layer in the backward pass (less memory, ~1/3 more compute).
    "remat": (False, (bool,)),
    # Tokens per block for each layer's position-wise work (projections, GELUs, gating,
    # LayerNorm): None picks by platform and mode (modeling.choose_token_block), 0 = all at once.
    "token_block": (None, (int, type(None))),
}

_CHOICES = {
    "hidden_act": ("gelu",),
    "scaling": ("hippo", "lin", "inv"),
    "pooler_type": ("mean", "non_padding_mean"),
    "position_embedding_type": ("absolute",),
    "padding": ("reference", "exact"),
    "conv_backend": ("auto", "fft", "toeplitz", "scan"),
    "problem_type": ("regression", "single_label_classification", "multi_label_classification"),
}

_POSITIVE = (
    "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "num_ssm",
)


class BiGSConfig:
    """Hyper-parameters of a BiGS model.

    Any key of the original config can be passed as a keyword; unknown keys are kept.
    `num_labels` (default 2) creates `id2label`/`label2id` as in Hugging Face configs.
    """

    model_type = "BiGS"

    def __init__(self, **kwargs: Any):
        num_labels = kwargs.pop("num_labels", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        kwargs.pop("model_type", None)
        for name, (default, _) in _FIELDS.items():
            setattr(self, name, kwargs.pop(name, copy.deepcopy(default)))
        self.architectures = kwargs.pop("architectures", None)
        self.problem_type = kwargs.pop("problem_type", None)
        # Keep unknown keys (e.g. transformers_version, or keys of a newer release).
        self.extra: dict[str, Any] = kwargs

        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a dict, got {type(id2label).__name__}")
            self.id2label = {int(k): str(v) for k, v in id2label.items()}
            if num_labels is not None and num_labels != len(self.id2label):
                raise ConfigError(
                    f"num_labels={num_labels} disagrees with id2label, which has "
                    f"{len(self.id2label)} entries"
                )
        else:
            n = 2 if num_labels is None else num_labels
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"num_labels must be a positive int, got {n!r}")
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
        if label2id is not None:
            self.label2id = {str(k): int(v) for k, v in label2id.items()}
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}
        self.validate()

    # ----------------------------------------------------------------- labels
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"num_labels must be a positive int, got {n!r}")
        if n != self.num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ConfigError naming the first key with a wrong type or impossible value."""
        for name, (_, types) in _FIELDS.items():
            value = getattr(self, name)
            bad_bool = isinstance(value, bool) and bool not in types
            if bad_bool or not isinstance(value, types):
                expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
                raise ConfigError(
                    f"config key {name!r} must be {expected}, got {value!r} "
                    f"({type(value).__name__})"
                )
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"config key {name!r} must be >= 1, got {getattr(self, name)}")
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ConfigError(f"config key {name!r} must be one of {choices}, got {value!r}")
        for name in ("hidden_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ConfigError(f"config key {name!r} must be in [0, 1), got {value}")
        if self.token_block is not None and self.token_block < 0:
            raise ConfigError(f"config key 'token_block' must be >= 0 or None, got {self.token_block}")
        if self.initializer_range <= 0:
            raise ConfigError(f"initializer_range must be > 0, got {self.initializer_range}")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(
                f"pad_token_id={self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})"
            )
        if self.decode:
            raise ConfigError("decode=True (autoregressive decoding) is not supported by BiGS encoders")

    # --------------------------------------------------------------- json I/O
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        out["model_type"] = self.model_type
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        if self.architectures is not None:
            out["architectures"] = list(self.architectures)
        if self.problem_type is not None:
            out["problem_type"] = self.problem_type
        out.update(self.extra)
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "BiGSConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        merged = dict(data)
        if "num_labels" in overrides and overrides["num_labels"] is not None:
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        # An override of None means "not given", except for keys where None is a value.
        merged.update({k: v for k, v in overrides.items()
                       if v is not None or type(None) in _FIELDS.get(k, (None, ()))[1]})
        model_type = merged.get("model_type", cls.model_type)
        if model_type not in (cls.model_type, "bigs"):
            raise ConfigError(f"config model_type is {model_type!r}, expected 'BiGS'")
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "BiGSConfig":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(data, **overrides)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, **kwargs: Any) -> "BiGSConfig":
        """Read config.json from a local folder or a Hugging Face hub id."""
        from .checkpoint import resolve_file

        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs}
        return cls.from_json_file(resolve_file(path_or_id, CONFIG_NAME, **hub_kwargs), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())
        os.replace(tmp, path)
        return path

    def copy(self, **overrides: Any) -> "BiGSConfig":
        return type(self).from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BiGSConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        # By value, so that Flax modules built from equal configs share compiled functions.
        return hash(self.to_json_string())

    def __repr__(self) -> str:
        return f"BiGSConfig {self.to_json_string()}"
