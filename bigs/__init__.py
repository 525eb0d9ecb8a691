"""bigs: the BiGS (Bidirectional Gated State Space) encoder in JAX/Flax."""

from .config import BiGSConfig
from .errors import BiGSError, CheckpointError, ConfigError, DataError, InputError
from .modeling import (
    MODEL_CLASSES,
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
from .tokenizer import BiGSTokenizer

__version__ = "0.1.0"

__all__ = [
    "BiGSConfig", "BiGSError", "CheckpointError", "ConfigError", "DataError", "InputError",
    "MODEL_CLASSES", "FlaxBiGSModel", "FlaxBiGSForMaskedLM", "FlaxBiGSForPreTraining",
    "FlaxBiGSForNextSentencePrediction", "FlaxBiGSForSequenceClassification",
    "FlaxBiGSForTokenClassification", "FlaxBiGSForQuestionAnswering", "FlaxBiGSForMultipleChoice",
    "FlaxBiGSPreTrainedModel", "BiGSTokenizer",
]
