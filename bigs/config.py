"""BiGSConfig: the model's hyper-parameters, read from and written to `config.json`.

The keys and their meaning follow the original `BiGS/configuration_bigs.py` (see
shared/SPEC.md), so a config.json written by the original loads here and ours loads there.
Keys this project adds (`pad_mode`, `layer_impl`, `conv_backend`, `conv_precision`,
`scan_layers`, `remat`, `token_block`) are plain extra keys: the original ignores them.
Unknown keys are kept and written back unchanged. Each key's meaning and allowed values are
in the comment above it in `FIELDS`; the enums below name the values of the keys that
choose how the model runs (bigs/backends.py resolves their "auto").
"""

from __future__ import annotations

import copy
import enum
import json
import os
from typing import Any

from .errors import ConfigError

CONFIG_NAME = "config.json"


class _Choice(str, enum.Enum):
    """One of a fixed set of strings; a member compares equal to its value."""

    @classmethod
    def _missing_(cls, value):
        raise ValueError(f"{value!r} is not a {cls.__name__}; expected one of {[m.value for m in cls]}")

    def __str__(self) -> str:
        return self.value


class PadMode(_Choice):
    """What padded positions do: flow through the backward SSM as in the original
    (REFERENCE), or contribute nothing (EXACT)."""

    REFERENCE = "reference"
    EXACT = "exact"


class LayerImpl(_Choice):
    """Which BiGS layer runs: the paper-order one (bigs/layers.py) or the fused one
    (bigs/fast_layer.py). Same params, same function."""

    AUTO = "auto"
    REFERENCE = "reference"
    FAST = "fast"


class ConvBackend(_Choice):
    """How the SSM convolution is computed (bigs/ssm.py): the same numbers to rounding."""

    AUTO = "auto"
    FFT = "fft"
    TOEPLITZ = "toeplitz"
    SCAN = "scan"


class ConvPrecision(_Choice):
    """Precision of the Toeplitz and scan backends' matmuls (float32 accumulation in all)."""

    AUTO = "auto"
    FLOAT32 = "float32"      # true float32
    BF16_3X = "bf16_3x"      # three bfloat16 passes (jax's BF16_BF16_F32_X3)
    BF16_6X = "bf16_6x"      # six bfloat16 passes (BF16_BF16_F32_X6)
    TF32_3X = "tf32_3x"      # three TF32 passes (TF32_TF32_F32_X3)


# name -> (default, allowed python types). Defaults are those of the published models
# (BiGS_512: 23 layers, hidden 1024, BERT uncased vocabulary).
FIELDS: dict[str, tuple[Any, tuple[type, ...]]] = {
    # Number of token ids: rows of the word embeddings and columns of the MLM logits.
    "vocab_size": (30522, (int,)),
    # Width H of the residual stream, the embeddings and the SSM inputs.
    "hidden_size": (1024, (int,)),
    # Number of BiGS layers.
    "num_hidden_layers": (23, (int,)),
    # Width I of each layer's gate (dv) and of dol's output.
    "intermediate_size": (3072, (int,)),
    # The MLM head transform's activation: only "gelu" (exact erf form); the layers always
    # use the tanh-approximate GELU, as the original does.
    "hidden_act": ("gelu", (str,)),
    # Dropout after the embeddings, and in the heads when classifier_dropout is None; [0, 1).
    "hidden_dropout_prob": (0.1, (float, int)),
    # Longest input: rows of the position embeddings (the original accepts only this length).
    "max_position_embeddings": (512, (int,)),
    # Number of token types (segments A/B): rows of the token-type embeddings.
    "type_vocab_size": (2, (int,)),
    # Standard deviation of the normal init of dense kernels and embeddings; > 0.
    "initializer_range": (0.02, (float, int)),
    # Epsilon of every LayerNorm; > 0.
    "layer_norm_eps": (1e-12, (float, int)),
    # The pad token's id, in [0, vocab_size); the model finds pads by attention_mask, not by id.
    "pad_token_id": (0, (int,)),
    # Kept from BERT's config: only "absolute" (learned position embeddings).
    "position_embedding_type": ("absolute", (str,)),
    # Kept from BERT's config, unused: an encoder has no decoding cache. true or false.
    "use_cache": (True, (bool,)),
    # Dropout before the sequence, token and multiple-choice classifiers, in [0, 1); None:
    # hidden_dropout_prob.
    "classifier_dropout": (None, (float, int, type(None))),
    # Number N of complex states of each S4D SSM.
    "num_ssm": (64, (int,)),
    # true: each layer is h + f(LN(h)); false: LN(h + f(h)), with the same LayerNorm.
    "pre_norm": (True, (bool,)),
    # The original's autoregressive-decoding switch: must be false (BiGS is an encoder).
    "decode": (False, (bool,)),
    # Initial S4D state matrix A: "hippo" (S4D-LegS), "lin" (S4D-Lin) or "inv" (S4D-Inv).
    "scaling": ("hippo", (str,)),
    # Pooler input: "non_padding_mean" (mean over attention_mask tokens) or "mean" (all positions).
    "pooler_type": ("non_padding_mean", (str,)),
    # The original PyTorch port's switch for a pykeops Vandermonde kernel; ignored here.
    "use_pykeops_kernel": (False, (bool,)),
    # The MLM decoder shares the word embeddings; this implementation always ties them.
    "tie_word_embeddings": (True, (bool,)),
    # --- added by this project (ignored by the original code) ---
    # PadMode: "reference" (pads flow through the backward SSM, as in the original) or
    # "exact" (pads contribute nothing: each sequence's outputs equal running it alone).
    "pad_mode": ("reference", (str,)),
    # LayerImpl: "auto" (the fast one), "reference" (paper order) or "fast" (fused).
    "layer_impl": ("auto", (str,)),
    # ConvBackend: "auto" (by length and platform), "fft", "toeplitz" or "scan".
    "conv_backend": ("auto", (str,)),
    # ConvPrecision: "auto" (float32; bf16_3x on a GPU), "float32", "bf16_3x", "bf16_6x", "tf32_3x".
    "conv_precision": ("auto", (str,)),
    # true: the layers run under nn.scan (compile time independent of depth); false: unrolled.
    "scan_layers": (True, (bool,)),
    # true: the backward pass keeps only each layer's input (least memory, ~1/3 more
    # compute); false: it keeps the layers' matmul and convolution outputs.
    "remat": (False, (bool,)),
    # Tokens per block of the fast layer's position-wise work (projections, GELUs, gating,
    # LayerNorm), >= 0: None picks by platform and mode (backends.resolve), 0 = all at once.
    "token_block": (None, (int, type(None))),
}

# Old names still read from config.json and keyword arguments; written under the new name.
_ALIASES = {"padding": "pad_mode"}

_CHOICES = {
    "hidden_act": ("gelu",),
    "scaling": ("hippo", "lin", "inv"),
    "pooler_type": ("mean", "non_padding_mean"),
    "position_embedding_type": ("absolute",),
    "pad_mode": tuple(m.value for m in PadMode),
    "layer_impl": tuple(m.value for m in LayerImpl),
    "conv_backend": tuple(m.value for m in ConvBackend),
    "conv_precision": tuple(m.value for m in ConvPrecision),
    "problem_type": ("regression", "single_label_classification", "multi_label_classification"),
}

_POSITIVE = (
    "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
    "max_position_embeddings", "type_vocab_size", "num_ssm",
)


def new_names(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with old key names (_ALIASES) renamed; an old and a new name that disagree
    raise ConfigError."""
    values = dict(values)
    for old, new in _ALIASES.items():
        if old in values:
            value = values.pop(old)
            if new in values and values[new] != value:
                raise ConfigError(f"config keys {old!r} (the old name of {new!r}) and {new!r} disagree: "
                                  f"{value!r} vs {values[new]!r}")
            values[new] = value
    return values


class BiGSConfig:
    """Hyper-parameters of a BiGS model.

    Any key of `FIELDS` can be passed as a keyword (old names too: `padding` for
    `pad_mode`); unknown keys are kept. Besides those, as in Hugging Face configs:

        num_labels     outputs of the classification heads (>= 1; 1 means regression);
                       default 2. Setting it renames the labels LABEL_0, LABEL_1, ...
        id2label       {int: str}, the label names; num_labels is its length
        label2id       {str: int}, the inverse of id2label
        problem_type   None, "regression", "single_label_classification" or
                       "multi_label_classification"
        architectures  the model classes a checkpoint was saved from, e.g. ["BiGSForMaskedLM"]

    Raises ConfigError naming the first key with a wrong type or value.
    """

    model_type = "BiGS"

    def __init__(self, **kwargs: Any):
        num_labels = kwargs.pop("num_labels", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        kwargs.pop("model_type", None)
        kwargs = new_names(kwargs)
        for name, (default, _) in FIELDS.items():
            setattr(self, name, kwargs.pop(name, copy.deepcopy(default)))
        self.architectures = kwargs.pop("architectures", None)
        self.problem_type = kwargs.pop("problem_type", None)
        # Keep unknown keys (e.g. transformers_version, or keys of a newer release).
        self.extra: dict[str, Any] = kwargs

        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a dict, got {type(id2label).__name__}")
            self.id2label = {int(k): str(v) for k, v in id2label.items()}
            if not self.id2label:
                raise ConfigError(f"num_labels must be a positive int, got {num_labels if num_labels is not None else 0}")
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
        """Number of classifier outputs (len(id2label)); setting it renames the labels
        LABEL_0..LABEL_{n-1} unless n is unchanged. ConfigError unless a positive int."""
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
        for name, (_, types) in FIELDS.items():
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
        """Every field as config.json holds it (id2label keys as strings, model_type added)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in FIELDS}
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
        """config.json's text: to_dict() as indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "BiGSConfig":
        """A config from config.json's dict (the original's names are read too), then
        `overrides`. Raises ConfigError for a non-dict, unknown types or invalid values."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        merged = new_names(data)
        # An override of None means "not given", except for keys where None is a value.
        overrides = new_names({k: v for k, v in overrides.items()
                                if v is not None or type(None) in FIELDS.get(k, (None, ()))[1]})
        if "num_labels" in overrides:
            merged.pop("id2label", None)
            merged.pop("label2id", None)
        merged.update(overrides)
        model_type = merged.get("model_type", cls.model_type)
        if model_type not in (cls.model_type, "bigs"):
            raise ConfigError(f"config model_type is {model_type!r}, expected 'BiGS'")
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "BiGSConfig":
        """Read a config.json; ConfigError when it is missing, unreadable, not UTF-8 JSON or
        not a valid config."""
        from .files import read_json_object

        return cls.from_dict(read_json_object(path, "a BiGS config.json", ConfigError), **overrides)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, **kwargs: Any) -> "BiGSConfig":
        """Read config.json from a local folder or a Hugging Face hub id."""
        from .weights import resolve_file

        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs}
        return cls.from_json_file(resolve_file(path_or_id, CONFIG_NAME, **hub_kwargs), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write config.json into `save_directory` (made if missing), atomically; returns its path."""
        from .files import write_text

        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        write_text(path, self.to_json_string())
        return path

    def copy(self, **overrides: Any) -> "BiGSConfig":
        """A new config with the same values, then `overrides` (validated as from_dict does)."""
        return type(self).from_dict(self.to_dict(), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BiGSConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        # By value, so that Flax modules built from equal configs share compiled functions.
        return hash(self.to_json_string())

    def __repr__(self) -> str:
        return f"BiGSConfig {self.to_json_string()}"
