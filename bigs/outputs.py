"""Model output containers, with the field names of the original (Hugging Face Flax) outputs.

Head outputs start with `loss`, set when the call was given labels (None otherwise, and then
left out of `to_tuple`), as in transformers' PyTorch outputs. Fields can be read as attributes (`out.logits`), by name (`out["logits"]`) or by position
over the fields that are set (`out[0]`), like transformers' ModelOutput. They are pytrees,
so jitted functions can return them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.struct


class ModelOutput:
    """Base of the output dataclasses: attribute, name and position access (see the module)."""

    def to_tuple(self) -> tuple:
        """The fields that are set (not None), in declaration order."""
        return tuple(v for v in (getattr(self, f.name) for f in dataclasses.fields(self)) if v is not None)

    def keys(self) -> list[str]:
        """Names of the fields that are set (not None)."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.keys())


Tensors = Optional[tuple]


@flax.struct.dataclass
class FlaxBaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxMaskedLMOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxBiGSForPreTrainingOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    prediction_logits: Any = None
    seq_relationship_logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxNextSentencePredictorOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxSequenceClassifierOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxTokenClassifierOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxQuestionAnsweringModelOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    start_logits: Any = None
    end_logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class FlaxMultipleChoiceModelOutput(ModelOutput):
    loss: Any = None          # with labels: the loss transformers' BERT head gives
    logits: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@flax.struct.dataclass
class MaskedLMLoss(ModelOutput):
    """MLM loss over the labelled positions only (labels != -100)."""

    loss: Any = None          # mean cross-entropy over labelled positions
    correct: Any = None       # number of labelled positions predicted right
    count: Any = None         # number of labelled positions
