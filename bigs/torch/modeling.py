"""BiGS in PyTorch: embeddings, encoder, pooler and the eight BERT-style heads, as
`transformers` 5 models.

The PyTorch twin of bigs/modeling.py, module for module and parameter for parameter (the
layer is bigs/torch/layers.py, the twin of bigs/layers.py). What both frameworks share is
written once, elsewhere: the config keys and their checks (bigs/config.py), the input checks
(bigs/inputs.py), the files, the two weight layouts and the load report (bigs/weights.py).
The heads take the inputs transformers' BERT heads take and return the same output classes,
with the same losses. They load the published Flax checkpoints (flax_model.msgpack) and
this project's model.safetensors without jax:

    import bigs.torch
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(folder_or_hub_id)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)     # out.logits

Differences from the Flax model: one layer (the paper-order one, with its position-wise
work in token blocks in CPU inference; the Flax model's fused layer exists for XLA), the
Toeplitz and scan matmuls in bfloat16 in bfloat16 runs, and the Flax-only execution keys
(layer_impl, scan_layers, remat) kept in the config and ignored (docs/torch.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from .. import weights
from ..config import CONFIG_NAME, BiGSConfig, ConvBackend, PadMode
from ..errors import ConfigError, InputError
from ..inputs import ArraySpec, check_inputs
from . import ssm
from .configuration import BiGSTransformersConfig
from .layers import S4D, BiGSLayer, dense, layer_norm

# Shapes below: B batch, L length, H hidden_size, I intermediate_size, V vocab_size.
IGNORE_INDEX = -100        # labels with this value add nothing to a loss (as in transformers)
TOKEN_BLOCK = 1024         # tokens per block of each layer's position-wise work when "auto" uses blocks


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    """The MLM head's GELU: the exact erf form (transformers' ACT2FN["gelu"])."""
    return F.gelu(x)


def _dropout_rate(config: BiGSTransformersConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


@dataclass
class BiGSForPreTrainingOutput(ModelOutput):
    """BiGSForPreTraining's output: the fields of transformers' BertForPreTrainingOutput.
    loss [] (MLM + NSP, with labels), prediction_logits [B, L, V], seq_relationship_logits
    [B, 2], hidden_states (L+1 tensors [B, L, H]), attentions (always None)."""

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# ------------------------------------------------------------------------ modules
class BiGSEmbeddings(nn.Module):
    """word + position + token-type embeddings, LayerNorm, dropout: ids [B, L] -> [B, L, H]."""

    def __init__(self, config: BiGSTransformersConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = layer_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids):
        words = self.word_embeddings(input_ids)
        hidden = words + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(hidden))


class BiGSEncoder(nn.Module):
    """num_hidden_layers BiGS layers, named "0", "1", ... as in the original. hidden [B, L, H],
    mask [B, L] -> (last hidden [B, L, H], each layer's output when output_hidden_states)."""

    def __init__(self, config: BiGSTransformersConfig):
        super().__init__()
        self.layer = nn.ModuleList(BiGSLayer(config) for _ in range(config.num_hidden_layers))
        self.token_block = config.token_block

    def forward(self, hidden, mask, pad_mode: PadMode, backend: ConvBackend, output_hidden_states: bool = False):
        block = self.token_block
        if block is None:
            # As the Flax model decides "auto" (bigs/backends.py): blocks in inference on a CPU;
            # under a gradient the blocks' outputs are all kept anyway, and GPUs like one large matmul.
            block = TOKEN_BLOCK if not torch.is_grad_enabled() and hidden.device.type == "cpu" else 0
        all_hidden = []                    # kept only when asked for: at 16k each is 50 MB
        for layer in self.layer:
            hidden = layer(hidden, mask, pad_mode, backend, block)
            if output_hidden_states:
                all_hidden.append(hidden)
        return hidden, tuple(all_hidden)


class BiGSPooler(nn.Module):
    """Mean over real tokens (non_padding_mean) or all positions (mean), dense, tanh:
    hidden [B, L, H], mask [B, L] -> [B, H]."""

    def __init__(self, config: BiGSTransformersConfig):
        super().__init__()
        self.pooler_type = config.pooler_type
        self.dense = dense(config, config.hidden_size, config.hidden_size)

    def forward(self, hidden, mask):
        if self.pooler_type == "mean":
            pooled = hidden.mean(dim=1)
        else:
            weights_ = mask.to(hidden.dtype)[:, :, None]
            pooled = (hidden * weights_).sum(dim=1) / weights_.sum(dim=1)
        return torch.tanh(self.dense(pooled))


class BiGSPredictionHeadTransform(nn.Module):
    """`cls.predictions.transform`: dense, exact (erf) GELU, LayerNorm."""

    def __init__(self, config: BiGSTransformersConfig):
        super().__init__()
        self.dense = dense(config, config.hidden_size, config.hidden_size)
        self.LayerNorm = layer_norm(config)

    def forward(self, hidden):
        return self.LayerNorm(gelu_erf(self.dense(hidden)))


class BiGSLMPredictionHead(nn.Module):
    """`cls.predictions`: [..., H] -> vocabulary logits [..., V]. The decoder's weight is tied
    to the word embeddings and its bias to `bias` (BiGSPreTrainedModel._tied_weights_keys)."""

    def __init__(self, config: BiGSTransformersConfig):
        super().__init__()
        self.transform = BiGSPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, hidden):
        return self.decoder(self.transform(hidden))


class BiGSOnlyMLMHead(nn.Module):
    """The `cls` subtree of the MLM model."""

    def __init__(self, config):
        super().__init__()
        self.predictions = BiGSLMPredictionHead(config)

    def forward(self, hidden):
        return self.predictions(hidden)


class BiGSOnlyNSPHead(nn.Module):
    """The `cls` subtree of the NSP model: `seq_relationship` [H, 2] on the pooled output."""

    def __init__(self, config):
        super().__init__()
        self.seq_relationship = dense(config, config.hidden_size, 2)

    def forward(self, pooled):
        return self.seq_relationship(pooled)


class BiGSPreTrainingHeads(nn.Module):
    """The `cls` subtree of the pretraining model: MLM `predictions` and NSP `seq_relationship`."""

    def __init__(self, config):
        super().__init__()
        self.predictions = BiGSLMPredictionHead(config)
        self.seq_relationship = dense(config, config.hidden_size, 2)

    def forward(self, hidden, pooled):
        return self.predictions(hidden), self.seq_relationship(pooled)


# ----------------------------------------------------------- the pretrained model
def _as_checked(tensor: torch.Tensor | None):
    """A tensor as bigs.inputs.check_inputs takes it: numpy values, or only the shape while
    torch traces or compiles the model (values unknown then)."""
    if tensor is None:
        return None
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"model inputs must be torch tensors, got {type(tensor).__name__}")
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or tensor.device.type == "meta":
        dtype = np.dtype(np.float32 if tensor.is_floating_point() else np.int64)
        return ArraySpec(tuple(tensor.shape), dtype)
    if tensor.dtype == torch.bool:
        return tensor.detach().cpu().numpy().astype(np.int64)
    return tensor.detach().cpu().numpy()


class BiGSPreTrainedModel(PreTrainedModel):
    """Base of the BiGS models: config class, weight init, tied weights, checkpoint I/O.

    `from_pretrained(folder_or_hub_id, **overrides)` loads flax_model.msgpack (the published
    checkpoints, Flax layout) or model.safetensors (either layout, told apart by its
    metadata), without jax. Keyword overrides go to the config (`num_labels=2`,
    `pad_mode="exact"`); a head of another size is re-initialised and reported, base and
    head checkpoints load into each other, and every parameter that was missing,
    unexpected or re-initialised is logged (logger `bigs`), as on the Flax side.
    `save_pretrained` writes config.json and model.safetensors (PyTorch layout).
    """

    config_class = BiGSTransformersConfig
    base_model_prefix = weights.BACKBONE
    main_input_name = "input_ids"
    _no_split_modules = ["BiGSEmbeddings", "BiGSLayer"]

    def __init__(self, config: BiGSTransformersConfig, *args, **kwargs):
        # transformers' Auto classes set keyword overrides on the config after building it,
        # past its own checks: check every value again here, before any weight is made.
        if not isinstance(config, BiGSTransformersConfig):
            raise ConfigError(f"config must be a BiGSTransformersConfig, got {type(config).__name__}")
        config.to_bigs_config()
        super().__init__(config, *args, **kwargs)

    # ------------------------------------------------------------- construction
    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The original's init (the Flax modules declare the same): dense and embedding
        weights N(0, initializer_range^2), biases 0, LayerNorm 1 and 0, S4D its own."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, S4D):
            module.reset_parameters()
        elif isinstance(module, BiGSLMPredictionHead):
            module.bias.zero_()

    def _checked_inputs(self, input_ids, attention_mask, token_type_ids, position_ids, multiple_choice=False):
        """Validate (bigs.inputs.check_inputs, as the Flax model does) and fill in the
        defaults: mask of ones, type 0, positions 0..L-1. Raises InputError."""
        if input_ids is None:
            raise InputError("input_ids is required (BiGS takes no inputs_embeds)")
        check_inputs(self.config, *(_as_checked(t) for t in
                                    (input_ids, attention_mask, token_type_ids, position_ids)),
                     multiple_choice=multiple_choice)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
        return input_ids.long(), attention_mask.long(), token_type_ids.long(), position_ids.long()

    def _outputs_wanted(self, output_hidden_states, return_dict) -> tuple[bool, bool]:
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return bool(hidden), self.config.return_dict if return_dict is None else return_dict

    # -------------------------------------------------------------- checkpoints
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, cache_dir=None,
                        force_download: bool = False, local_files_only: bool = False, token=None,
                        revision: str | None = None, output_loading_info: bool = False, dtype=None,
                        torch_dtype=None, device_map=None, **kwargs):
        """Load a local folder or hub id (config.json + flax_model.msgpack or model.safetensors).

        `config`: a BiGSTransformersConfig to use instead of the folder's. Other keywords
        that name config keys override the config (`num_labels=2`, `pad_mode="exact"`).
        `dtype` (or `torch_dtype`): torch.float32 (default, also "auto") or torch.bfloat16.
        `device_map`: a single device ("cpu", "cuda:0") to put the model on. Returns the model
        in eval mode, plus a bigs.weights.LoadReport with output_loading_info.
        Raises ConfigError or CheckpointError naming the problem; TypeError for a keyword
        that is neither a config key nor a loading option.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional model arguments, got {model_args}")
        for ignored in ("trust_remote_code", "adapter_kwargs", "_from_auto", "_from_pipeline", "proxies",
                        "use_safetensors", "low_cpu_mem_usage", "attn_implementation", "code_revision"):
            kwargs.pop(ignored, None)
        if kwargs.pop("subfolder", "") or kwargs.pop("gguf_file", None) or kwargs.pop("quantization_config", None):
            raise TypeError("subfolder, gguf_file and quantization_config are not supported by BiGS models")
        overrides = _config_overrides(kwargs)
        hub = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        source = os.fspath(pretrained_model_name_or_path)
        if config is None:
            config = _read_config(cls.config_class, source, hub, overrides)
        elif overrides:
            config = cls.config_class.from_dict({**config.to_dict(), **overrides})
        loaded = weights.read_params(source, prefer_safetensors=True, **hub)
        model = cls(config)
        report = model.load_flax_layout(loaded, source)
        for message in report.messages(cls.__name__, source):
            weights.logger.warning(message)
        dtype = _torch_dtype(dtype if dtype is not None else torch_dtype)
        model.to(dtype)
        if device_map is not None:
            if not isinstance(device_map, (str, torch.device)) or device_map == "auto":
                raise TypeError(f"device_map must name one device (e.g. 'cpu', 'cuda:0'), got {device_map!r}")
            model.to(device_map)
        model.eval()
        return (model, report) if output_loading_info else model

    def load_flax_layout(self, loaded: dict, source: str) -> weights.LoadReport:
        """Copy a Flax-layout parameter tree (numpy; bigs.weights.read_params) into this model:
        re-rooted base <-> head and fitted by bigs.weights.fit_params; what the report lists
        as missing or re-initialised keeps this model's fresh init."""
        state = self.state_dict()
        shapes = {name: np.broadcast_to(np.zeros((), np.float32), tuple(t.shape)) for name, t in state.items()}
        fitted, report = weights.fit_params(loaded, weights.from_torch_layout(shapes), source)
        present = weights.unflatten({k: v for k, v in weights.flatten(fitted).items() if v is not None})
        tensors = {name: torch.from_numpy(np.array(value, np.float32))
                   for name, value in weights.to_torch_layout(present).items()}
        result = self.load_state_dict(tensors, strict=False)
        if result.unexpected_keys:   # the layouts disagree with the modules: a bug, not bad input
            raise RuntimeError(f"parameters without a module: {result.unexpected_keys}")
        return report

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save_pretrained (config.json, model.safetensors in the PyTorch
        layout). A flax_model.msgpack already in the folder is rewritten with the same
        weights, so the folder's two files never disagree."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        msgpack_path = os.path.join(save_directory, weights.FLAX_WEIGHTS_NAME)
        if os.path.isfile(msgpack_path):
            from ..files import write_bytes

            write_bytes(msgpack_path, weights.msgpack_bytes(self.flax_layout()))
        return result

    def flax_layout(self) -> dict:
        """This model's parameters as a Flax-layout tree of float32 numpy arrays."""
        state = {name: tensor.detach().float().cpu().numpy() for name, tensor in self.state_dict().items()}
        return weights.from_torch_layout(state)


def _config_overrides(kwargs: dict) -> dict:
    """The keywords that name config keys; TypeError for any other."""
    known = set(BiGSTransformersConfig.__dataclass_fields__) | {"num_labels", "padding"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}: neither a config key nor a loading option")
    return dict(kwargs)


def _read_config(config_class, source: str, hub: dict, overrides: dict) -> BiGSTransformersConfig:
    """config.json of `source` with `overrides`, read and checked by the framework-neutral
    BiGSConfig (the same messages as the Flax side), as a transformers config."""
    path = weights.resolve_file(source, CONFIG_NAME, **hub)
    return config_class.from_dict(BiGSConfig.from_json_file(path, **overrides).to_dict())


def _torch_dtype(dtype) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, dtype)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ConfigError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}")
    return dtype


# ----------------------------------------------------------------------- backbone
class BiGSModel(BiGSPreTrainedModel):
    """The backbone: embeddings -> encoder -> (pooler), the twin of the Flax BiGSModule.

    forward(input_ids [B, L] int, attention_mask [B, L] 0/1, token_type_ids, position_ids)
    -> BaseModelOutputWithPoolingAndCrossAttentions: last_hidden_state [B, L, H],
    pooler_output [B, H] (None without the pooler), hidden_states (L+1 tensors [B, L, H]:
    the embeddings, then each layer) with output_hidden_states. `pad_mode` ("reference",
    "exact") and `conv_backend` ("auto", "fft", "toeplitz") override the config for one
    call. BiGS has no attention: output_attentions is accepted and gives None.
    Raises InputError for bad inputs (ids out of range, too long, shapes that disagree).
    """

    def __init__(self, config: BiGSTransformersConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BiGSEmbeddings(config)
        self.encoder = BiGSEncoder(config)
        self.pooler = BiGSPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, pad_mode=None,
                conv_backend=None):
        input_ids, attention_mask, token_type_ids, position_ids = self._checked_inputs(
            input_ids, attention_mask, token_type_ids, position_ids)
        output_hidden_states, return_dict = self._outputs_wanted(output_hidden_states, return_dict)
        pad_mode, backend = self._plan(pad_mode, conv_backend, input_ids)
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        last, layers = self.encoder(hidden, attention_mask, pad_mode, backend, output_hidden_states)
        pooled = self.pooler(last, attention_mask) if self.pooler is not None else None
        out = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=last, pooler_output=pooled,
            hidden_states=(hidden,) + layers if output_hidden_states else None)
        return out if return_dict else out.to_tuple()

    def _plan(self, pad_mode, conv_backend, input_ids) -> tuple[PadMode, ConvBackend]:
        """This call's pad mode and convolution backend; InputError names a bad value."""
        try:
            pad_mode = PadMode(pad_mode or self.config.pad_mode)
        except ValueError as error:
            raise InputError(f"pad_mode: {error}") from None
        try:
            backend = ssm.choose_backend(conv_backend or self.config.conv_backend, input_ids.shape[-1],
                                         input_ids.device)
        except ValueError as error:
            raise InputError(f"conv_backend: {error}") from None
        return pad_mode, backend


# -------------------------------------------------------------------------- heads
class _BiGSHead(BiGSPreTrainedModel):
    """What every head shares: the backbone under `s4_bert`, and its call."""

    add_pooling_layer = True

    def __init__(self, config: BiGSTransformersConfig):
        super().__init__(config)
        self.s4_bert = BiGSModel(config, add_pooling_layer=self.add_pooling_layer)
        self.setup_head(config)
        self.post_init()

    def setup_head(self, config):
        """Make the head's submodules from `config`; every task model overrides it."""
        raise NotImplementedError

    def backbone(self, input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                 pad_mode, conv_backend):
        return self.s4_bert(input_ids, attention_mask, token_type_ids, position_ids,
                            output_hidden_states=output_hidden_states, return_dict=True, pad_mode=pad_mode,
                            conv_backend=conv_backend)

    def _finish(self, output: ModelOutput, return_dict):
        return output if (self.config.return_dict if return_dict is None else return_dict) else output.to_tuple()


class _TiedMLM:
    """The tied MLM decoder, declared the transformers 5 way."""

    _tied_weights_keys = dict(weights.TIED_WEIGHTS)

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias


def _mlm_loss(logits, labels, vocab_size):
    return F.cross_entropy(logits.view(-1, vocab_size).float(), labels.view(-1), ignore_index=IGNORE_INDEX)


class BiGSForMaskedLM(_TiedMLM, _BiGSHead):
    """MLM head on the backbone (no pooler): logits [B, L, V]; with labels [B, L] (-100 =
    ignored) the mean cross-entropy over labelled positions -> MaskedLMOutput."""

    add_pooling_layer = False

    def setup_head(self, config):
        self.cls = BiGSOnlyMLMHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, pad_mode=None,
                conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            pad_mode, conv_backend)
        logits = self.cls(out.last_hidden_state)
        loss = _mlm_loss(logits, labels, self.config.vocab_size) if labels is not None else None
        return self._finish(MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states), return_dict)


class BiGSForPreTraining(_TiedMLM, _BiGSHead):
    """MLM and NSP heads: prediction_logits [B, L, V], seq_relationship_logits [B, 2]; with
    labels [B, L] and next_sentence_label [B] the loss is their sum -> BiGSForPreTrainingOutput."""

    def setup_head(self, config):
        self.cls = BiGSPreTrainingHeads(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                next_sentence_label=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                pad_mode=None, conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            pad_mode, conv_backend)
        logits, nsp = self.cls(out.last_hidden_state, out.pooler_output)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = _mlm_loss(logits, labels, self.config.vocab_size) + \
                F.cross_entropy(nsp.view(-1, 2).float(), next_sentence_label.view(-1))
        return self._finish(BiGSForPreTrainingOutput(loss=loss, prediction_logits=logits, seq_relationship_logits=nsp,
                                                     hidden_states=out.hidden_states), return_dict)


class BiGSForNextSentencePrediction(_BiGSHead):
    """NSP head on the pooled output: logits [B, 2]; labels [B] (0 = B follows A) ->
    NextSentencePredictorOutput."""

    def setup_head(self, config):
        self.cls = BiGSOnlyNSPHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, pad_mode=None,
                conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            pad_mode, conv_backend)
        logits = self.cls(out.pooler_output)
        loss = F.cross_entropy(logits.view(-1, 2).float(), labels.view(-1)) if labels is not None else None
        return self._finish(NextSentencePredictorOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                            return_dict)


def _classification_loss(config, logits, labels):
    """transformers' rule: regression (MSE) when num_labels is 1, single-label (cross-entropy)
    for integer labels, multi-label (BCE with logits) otherwise, unless config.problem_type says."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        return F.mse_loss(logits.squeeze().float(), labels.squeeze().to(torch.float32))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels).float(), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.to(torch.float32))


class BiGSForSequenceClassification(_BiGSHead):
    """Pooled output -> dropout -> classifier [H, num_labels]: logits [B, num_labels]
    (num_labels 1: regression). labels [B] (or [B, num_labels] multi-label) give the loss
    transformers' BERT gives -> SequenceClassifierOutput."""

    def setup_head(self, config):
        self.dropout = nn.Dropout(_dropout_rate(config))
        self.classifier = dense(config, config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, pad_mode=None,
                conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            pad_mode, conv_backend)
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = _classification_loss(self.config, logits, labels) if labels is not None else None
        return self._finish(SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                            return_dict)


class BiGSForTokenClassification(_BiGSHead):
    """Per-token classifier (no pooler): logits [B, L, num_labels]; labels [B, L] (-100 =
    ignored) -> TokenClassifierOutput."""

    add_pooling_layer = False

    def setup_head(self, config):
        self.dropout = nn.Dropout(_dropout_rate(config))
        self.classifier = dense(config, config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, pad_mode=None,
                conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            pad_mode, conv_backend)
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.num_labels).float(), labels.view(-1),
                                   ignore_index=IGNORE_INDEX)
        return self._finish(TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                            return_dict)


class BiGSForQuestionAnswering(_BiGSHead):
    """Per-token start and end logits [B, L] from `qa_outputs` [H, 2] (num_labels must be 2).
    start_positions, end_positions [B] give the mean of the two cross-entropies; positions
    outside the sequence are clamped to L and ignored, as in transformers' BERT ->
    QuestionAnsweringModelOutput."""

    add_pooling_layer = False

    def __init__(self, config: BiGSTransformersConfig):
        if config.num_labels != 2:
            raise ConfigError(f"question answering needs num_labels=2 (start, end), got {config.num_labels}")
        super().__init__(config)

    def setup_head(self, config):
        self.qa_outputs = dense(config, config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, pad_mode=None, conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, output_hidden_states,
                            pad_mode, conv_backend)
        start, end = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            length = start.shape[1]
            start_positions = start_positions.view(-1).clamp(0, length)
            end_positions = end_positions.view(-1).clamp(0, length)
            loss = (F.cross_entropy(start.float(), start_positions, ignore_index=length)
                    + F.cross_entropy(end.float(), end_positions, ignore_index=length)) / 2
        return self._finish(QuestionAnsweringModelOutput(loss=loss, start_logits=start.contiguous(),
                                                         end_logits=end.contiguous(),
                                                         hidden_states=out.hidden_states), return_dict)


class BiGSForMultipleChoice(_BiGSHead):
    """Inputs [B, choices, L] run as [B*choices, L]; pooled -> dropout -> classifier [H, 1]:
    logits [B, choices]; labels [B] (the right choice) -> MultipleChoiceModelOutput."""

    def setup_head(self, config):
        self.dropout = nn.Dropout(_dropout_rate(config))
        self.classifier = dense(config, config.hidden_size, 1)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, pad_mode=None,
                conv_backend=None):
        inputs = (input_ids, attention_mask, token_type_ids, position_ids)
        if input_ids is None:
            raise InputError("input_ids is required (BiGS takes no inputs_embeds)")
        check_inputs(self.config, *(_as_checked(t) for t in inputs), multiple_choice=True)
        num_choices = input_ids.shape[1] if input_ids.dim() == 3 else 1
        flat = [None if x is None else x.reshape(-1, x.shape[-1]) for x in inputs]
        out = self.backbone(*flat, output_hidden_states, pad_mode, conv_backend)
        logits = self.classifier(self.dropout(out.pooler_output)).view(-1, num_choices)
        loss = F.cross_entropy(logits.float(), labels.view(-1)) if labels is not None else None
        return self._finish(MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                            return_dict)


MODEL_CLASSES = {cls.__name__: cls for cls in (
    BiGSModel, BiGSForMaskedLM, BiGSForPreTraining, BiGSForNextSentencePrediction, BiGSForSequenceClassification,
    BiGSForTokenClassification, BiGSForQuestionAnswering, BiGSForMultipleChoice)}
