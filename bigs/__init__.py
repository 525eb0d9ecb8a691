"""bigs: the BiGS (Bidirectional Gated State Space) encoder in JAX/Flax.

The public names (`_WHERE`) and submodules are imported on first use, so `import
bigs.runtime` or `bigs --help` does not load jax; `from bigs import FlaxBiGSModel` works as
usual.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_WHERE = {
    **dict.fromkeys(("BiGSConfig", "ConvBackend", "ConvPrecision", "LayerImpl", "PadMode"), "config"),
    **dict.fromkeys(("BiGSError", "CheckpointError", "ConfigError", "DataError", "InputError"), "errors"),
    **dict.fromkeys(("MODEL_CLASSES", "FlaxBiGSModel", "FlaxBiGSForMaskedLM", "FlaxBiGSForPreTraining",
                     "FlaxBiGSForNextSentencePrediction", "FlaxBiGSForSequenceClassification",
                     "FlaxBiGSForTokenClassification", "FlaxBiGSForQuestionAnswering",
                     "FlaxBiGSForMultipleChoice", "FlaxBiGSPreTrainedModel"), "modeling"),
    "BiGSTokenizer": "tokenizer",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    else:
        try:                                   # a submodule: `import bigs; bigs.modeling`
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))

