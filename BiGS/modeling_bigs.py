"""Alias of the original PyTorch port's module path (`from BiGS.modeling_bigs import ...`);
the implementation lives in `bigs.torch`, which loads the Flax checkpoints."""

from bigs.torch import (  # noqa: F401
    BiGSForMaskedLM,
    BiGSForMultipleChoice,
    BiGSForNextSentencePrediction,
    BiGSForPreTraining,
    BiGSForQuestionAnswering,
    BiGSForSequenceClassification,
    BiGSForTokenClassification,
    BiGSModel,
    BiGSPreTrainedModel,
    BiGSTransformersConfig,
)
