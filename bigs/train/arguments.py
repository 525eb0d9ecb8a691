"""The settings of the training commands, as dataclasses whose fields are the flags.

`TrainingArguments` is what every training command shares; `FinetuneConfig` (bigs glue,
run_glue.py, bigs demo) and `PretrainArgs` (bigs pretrain, pretrain.py) add their own. Each
`validate()` raises ConfigError naming the first impossible value. This module imports
neither jax nor numpy, so a command's --help and its flag parsing stay fast; the jobs
themselves are in loop.py, finetune.py and pretrain.py, which re-export these names.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, DataError

@dataclasses.dataclass(kw_only=True)
class TrainingArguments:
    """What every training command shares. Names follow transformers' TrainingArguments; the
    command line flags have the same names (the published flags that differ are aliases)."""

    # where checkpoints, logs and the model go
    output_dir: str
    # start over in an output_dir that holds a run: its checkpoints, logs and results are deleted
    overwrite_output_dir: bool = False
    # continue the run in output_dir: True expects one, False refuses one, None continues one if found
    resume: bool | None = None
    seed: int = 42
    # optimiser updates to run; <= 0 lets the command decide (fine-tuning: from num_train_epochs)
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 32
    # micro-batches per update: an update sees per_device_train_batch_size * devices * this examples
    gradient_accumulation_steps: int = 1
    # peak learning rate, reached after warmup_steps of linear warm-up
    learning_rate: float = 2e-5
    # decay after the warm-up: "linear" (to 0), "cosine" (to cosine_schedule_alpha * peak) or "constant"
    schedule_type: str = "linear"
    cosine_schedule_alpha: float = 0.0
    warmup_steps: int = 0
    # AdamW; biases and LayerNorm scales are never decayed
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-6
    # global-norm gradient clipping; 0 turns it off
    max_grad_norm: float = 1.0
    # log the mean loss and the learning rate every this many steps (and at the last)
    logging_steps: int = 100
    # evaluate every this many steps and at the last; 0: never (fine-tuning: None is every epoch)
    eval_steps: int | None = None
    # save a training checkpoint every this many steps and at the last (fine-tuning: None is
    # with each evaluation)
    save_steps: int | None = None
    # training checkpoints kept for resuming
    save_total_limit: int = 2
    # computation dtype, "float32" or "bfloat16"; params and optimiser state stay float32
    dtype: str = "float32"
    # devices: the first num_devices (None: all), as a [num_devices // fsdp, fsdp] mesh
    num_devices: int | None = None
    fsdp: int = 1
    # hide the progress bar
    disable_tqdm: bool = False
    # "tensorboard": TensorBoard logs in output_dir/runs; "none"
    report_to: str = "tensorboard"

    def validate(self) -> None:
        """Raise ConfigError naming the first flag with an impossible value."""
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "logging_steps", "save_total_limit", "fsdp")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name}={value}; expected a positive integer")
        for name in ("eval_steps", "save_steps", "warmup_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name}={value}; expected a non-negative integer")
        for name in ("learning_rate", "adam_epsilon"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"--{name}={value}; expected a finite number > 0")
        for name in ("weight_decay", "max_grad_norm", "cosine_schedule_alpha"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"--{name}={value}; expected a finite number >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name}={getattr(self, name)}; expected a value in [0, 1)")
        choices = {"schedule_type": ("linear", "cosine", "constant"), "dtype": ("float32", "bfloat16"),
                   "report_to": ("tensorboard", "none")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name}={getattr(self, name)!r}; expected one of {', '.join(allowed)}")


PAD_MODES = ("exact", "reference")
# Fine-tuning's --max_seq_length when none is given (the original run_glue.py's), cut to the
# model's max_position_embeddings when that is shorter.
DEFAULT_MAX_SEQ_LENGTH = 128
# The published --padding values, each a (batching, pad_mode) pair.
PADDING_ALIASES = {"exact": ("longest", "exact"), "max_length": ("max_length", "exact"),
                   "reference": ("max_length", "reference")}
# Model config keys that may be set from flags when training from random initialisation.
MODEL_SIZE_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_ssm", "max_position_embeddings")


@dataclasses.dataclass(kw_only=True)
class FinetuneConfig(TrainingArguments):
    """Everything one fine-tuning run needs; the CLI flags have the same names."""

    # checkpoint folder or hub id; None trains from random initialisation
    model_name_or_path: str | None = None
    # a GLUE task ("mrpc", "sst2", ...), or None with train_file/validation_file
    task_name: str | None = None
    # folder of GLUE TSV files; None: $GLUE_DIR, else ./glue_data, else the hub with `datasets`
    data_dir: str | None = None
    # the user's own CSV/TSV/JSON(L) files
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    # text and label columns of the user's files (detected when None)
    text_columns: Sequence[str] | None = None
    label_column: str | None = None
    # random init: a config.json to start from, the tokenizer, and size overrides
    config_name: str | None = None
    tokenizer_name: str | None = None
    model_overrides: dict[str, int] = dataclasses.field(default_factory=dict)
    # longest sequence in tokens, [CLS]/[SEP] included; longer inputs are truncated. None:
    # DEFAULT_MAX_SEQ_LENGTH, or the model's max_position_embeddings when that is shorter
    max_seq_length: int | None = None
    # "longest" or "max_length" (see the module docstring)
    batching: str = "longest"
    # "exact" or "reference": how the model treats pads (see the module docstring)
    pad_mode: str = "exact"
    # "longest" batching rounds each batch's length up to a multiple of this
    pad_to_multiple_of: int = 32
    num_train_epochs: float = 3.0
    # do not train the SSM kernel parameters and token-type embeddings
    freeze_kernel: bool = False
    # which phases run; all three when none is set
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    # use only the first n examples of a split (quick runs)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    # fine-tuning refuses an output_dir holding a run unless --resume or --overwrite_output_dir
    resume: bool | None = False

    def validate(self) -> None:
        super().validate()
        if self.batching not in ("longest", "max_length"):
            raise ConfigError(f"--batching={self.batching!r}; expected longest or max_length")
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"--pad_mode={self.pad_mode!r}; expected one of {', '.join(PAD_MODES)}")
        if self.pad_to_multiple_of < 1:
            raise ConfigError(f"--pad_to_multiple_of={self.pad_to_multiple_of}; expected a positive integer")
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples", "max_predict_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name}={getattr(self, name)}; expected a positive integer")
        for name, default in (("eval_steps", "each epoch"), ("save_steps", "with each evaluation")):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name}={getattr(self, name)}; expected a positive integer, or no flag "
                                  f"for {default}")
        if self.max_steps <= 0 and not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ConfigError(f"--num_train_epochs={self.num_train_epochs}; expected > 0 (or --max_steps > 0)")


# The size flags: (PretrainArgs field, BiGSConfig key, default from scratch: BiGS_128's).
SIZE_FLAGS = (("n_layers", "num_hidden_layers", 23), ("hidden_size", "hidden_size", 1024),
              ("intermediate_size", "intermediate_size", 3072), ("num_ssm", "num_ssm", 64),
              ("hidden_dropout_prob", "hidden_dropout_prob", 0.1))


@dataclasses.dataclass(kw_only=True)
class PretrainArgs(TrainingArguments):
    """Everything a pretraining run depends on; the CLI flags map one to one onto these
    (the original's `--num_total_train_steps`, `--keep_checkpoints` and
    `--disable_progress_bar` are aliases of max_steps, save_total_limit and disable_tqdm)."""

    # a folder of train_shard_*.hdf5 files (or one shard file)
    dataset_path: str
    # held-out shards; None: the test_shard_* files beside the train shards, or a `heldout` folder
    eval_dataset_path: str | None = None
    # sequence length of the model (max_position_embeddings); shards may not be longer
    max_seq_length: int = 128
    # lr multiplier for the SSM rates (A_re, A_im, log_step; not decayed); None: plain groups
    ssm_lr_factor: float | None = None
    # model shape; None: BiGS_128's (SIZE_FLAGS) from scratch, the checkpoint's with
    # model_name_or_path (a value given there must equal the checkpoint's)
    n_layers: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_ssm: int | None = None
    hidden_dropout_prob: float | None = None
    # None: data_info.json beside the shards, else BERT uncased (30522)
    vocab_size: int | None = None
    # continue from a Hugging Face-format BiGS checkpoint (folder or hub id)
    model_name_or_path: str | None = None
    # re-mask every epoch instead of using the shards' static masks
    dynamic_masking: bool = False
    max_train_shards: int | None = None
    # evaluate on at most this many held-out batches of per_device_eval_batch_size sequences
    # (one device's batches: the same sequences on any number of devices); None: all of them
    max_eval_batches: int | None = None
    # the original pretrain.py's defaults (shared/SPEC.md)
    seed: int = 0
    max_steps: int = 100_000
    per_device_train_batch_size: int = 131
    per_device_eval_batch_size: int = 131
    learning_rate: float = 6e-4
    schedule_type: str = "cosine"
    cosine_schedule_alpha: float = 0.1
    warmup_steps: int = 2000
    weight_decay: float = 0.05
    adam_beta2: float = 0.98
    save_steps: int | None = 1000
    eval_steps: int | None = 1000
    save_total_limit: int = 3

    def validate(self) -> None:
        super().validate()
        for name in ("max_seq_length", "max_steps", "save_steps"):
            value = getattr(self, name)
            if value is None or value < 1:
                raise ConfigError(f"--{name}={value}; expected a positive integer")
        for name in ("n_layers", "hidden_size", "intermediate_size", "num_ssm", "max_eval_batches", "vocab_size",
                     "max_train_shards"):           # optional: None, or a positive integer
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name}={value}; expected a positive integer")
        if self.hidden_dropout_prob is not None and not 0 <= self.hidden_dropout_prob < 1:
            raise ConfigError(f"--hidden_dropout_prob={self.hidden_dropout_prob}; expected 0 <= p < 1")
        if self.ssm_lr_factor is not None and self.ssm_lr_factor <= 0:
            raise ConfigError(f"--ssm_lr_factor={self.ssm_lr_factor}; expected > 0")
        if not Path(self.dataset_path).exists():
            raise DataError(f"--dataset_path {self.dataset_path!r} does not exist; expected a folder of shards")
