"""Alias of the original module path; the implementation lives in `bigs.modeling`."""

from bigs.modeling import (  # noqa: F401
    FlaxBiGSForMaskedLM,
    FlaxBiGSForMultipleChoice,
    FlaxBiGSForNextSentencePrediction,
    FlaxBiGSForPreTraining,
    FlaxBiGSForQuestionAnswering,
    FlaxBiGSForSequenceClassification,
    FlaxBiGSForTokenClassification,
    FlaxBiGSModel,
    FlaxBiGSPreTrainedModel,
)
