"""BiGS in PyTorch, as `transformers` 5 models (needs the `torch` extra:
`pip install "bigs[torch]"`; jax is not needed).

Importing this package registers BiGS (model_type "BiGS") with transformers' Auto classes
(AutoConfig, AutoTokenizer and the eight AutoModel classes of its heads), so `AutoModelForSequenceClassification.from_pretrained(folder)` and the other Auto
classes load BiGS checkpoints, the published Flax ones included:

    import bigs.torch
    from transformers import AutoModelForMaskedLM
    model = AutoModelForMaskedLM.from_pretrained("JunxiongWang/BiGS_512")   # or a local folder

`BiGS.modeling_bigs` is an alias of this package, under the original's PyTorch port's name.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForNextSentencePrediction,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertTokenizer,
)

from .configuration import BiGSTransformersConfig
from .modeling import (
    MODEL_CLASSES,
    BiGSForMaskedLM,
    BiGSForMultipleChoice,
    BiGSForNextSentencePrediction,
    BiGSForPreTraining,
    BiGSForPreTrainingOutput,
    BiGSForQuestionAnswering,
    BiGSForSequenceClassification,
    BiGSForTokenClassification,
    BiGSModel,
    BiGSPreTrainedModel,
)

__all__ = [
    "BiGSTransformersConfig", "BiGSPreTrainedModel", "BiGSModel", "BiGSForMaskedLM", "BiGSForPreTraining",
    "BiGSForNextSentencePrediction", "BiGSForSequenceClassification", "BiGSForTokenClassification",
    "BiGSForQuestionAnswering", "BiGSForMultipleChoice", "BiGSForPreTrainingOutput", "MODEL_CLASSES",
]

_AUTO_CLASSES = {
    AutoModel: BiGSModel,
    AutoModelForMaskedLM: BiGSForMaskedLM,
    AutoModelForPreTraining: BiGSForPreTraining,
    AutoModelForNextSentencePrediction: BiGSForNextSentencePrediction,
    AutoModelForSequenceClassification: BiGSForSequenceClassification,
    AutoModelForTokenClassification: BiGSForTokenClassification,
    AutoModelForQuestionAnswering: BiGSForQuestionAnswering,
    AutoModelForMultipleChoice: BiGSForMultipleChoice,
}

AutoConfig.register(BiGSTransformersConfig.model_type, BiGSTransformersConfig, exist_ok=True)
# BiGS uses BERT's WordPiece tokenizer (transformers 5's BertTokenizer is the fast one): a
# folder with only vocab.txt and config.json still gets a tokenizer.
AutoTokenizer.register(BiGSTransformersConfig, tokenizer_class=BertTokenizer, exist_ok=True)
for _auto, _model in _AUTO_CLASSES.items():
    _auto.register(BiGSTransformersConfig, _model, exist_ok=True)
