"""BiGSTransformersConfig: BiGS's config as a `transformers` config, for the PyTorch model.

Its keys, defaults and checks are those of the framework-neutral `bigs.config.BiGSConfig`
(one dataclass field per key of `bigs.config.FIELDS`), so a config.json written by the
original, by the Flax side or by this class loads in all three. `model_type` is "BiGS", as
in the original's config.json files.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import PreTrainedConfig

from ..config import FIELDS, BiGSConfig
from ..errors import ConfigError


class BiGSTransformersConfig(PreTrainedConfig):
    """transformers config of BiGS: every key of bigs.config.FIELDS (see bigs/config.py for
    each key's meaning and allowed values), plus transformers' own (num_labels, id2label,
    problem_type, output_hidden_states, return_dict, dtype, ...).

        config = BiGSTransformersConfig(hidden_size=64, num_hidden_layers=2, num_labels=3)
        config = AutoConfig.from_pretrained(folder)        # after `import bigs.torch`

    `padding` is read as the old name of `pad_mode`. Raises ConfigError (a ValueError) naming
    the first key with a wrong type or value, as bigs.config.BiGSConfig does.
    """

    model_type = "BiGS"
    # One dataclass field per framework-neutral key, with its default (PreTrainedConfig's
    # subclasses are dataclasses; transformers reads the fields from these two names).
    __annotations__ = {name: Any for name in FIELDS}
    vars().update({name: copy.deepcopy(default) for name, (default, _) in FIELDS.items()})

    def __post_init__(self, **kwargs):
        if "padding" in kwargs:                       # the old name of pad_mode
            padding = kwargs.pop("padding")
            if self.pad_mode not in (padding, FIELDS["pad_mode"][0]):
                raise ConfigError(f"config keys 'padding' (the old name of 'pad_mode') and 'pad_mode' disagree: "
                                  f"{padding!r} vs {self.pad_mode!r}")
            self.pad_mode = padding
        super().__post_init__(**kwargs)
        self.to_bigs_config()                         # the neutral checks

    def to_bigs_config(self) -> BiGSConfig:
        """The framework-neutral BiGSConfig with these values (checked: ConfigError)."""
        values = {name: getattr(self, name) for name in FIELDS}
        return BiGSConfig(**values, id2label=dict(self.id2label or {}), problem_type=self.problem_type)

    def to_diff_dict(self) -> dict[str, Any]:
        """What config.json holds: transformers' keys that differ from their defaults, and
        every BiGS key, as the original's config.json files have them."""
        out = super().to_diff_dict()
        out.update({name: getattr(self, name) for name in FIELDS})
        return dict(sorted(out.items()))
