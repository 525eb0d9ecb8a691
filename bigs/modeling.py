"""BiGS in Flax: embeddings, the encoder of BiGS layers, the pooler and the BERT-style heads,
and the model classes that carry params, config and checkpoint I/O.

Paper: "Pretraining Without Attention", Wang, Yan, Gu, Rush (2022). The layer itself is in
bigs/layers.py (paper order) and bigs/fast_layer.py (fused, the default); bigs/backends.py
resolves how a call runs. The parameter names and shapes are those of the original
`BiGS/modeling_flax_bigs.py`, so its checkpoints load unchanged (see checkpoint.py).
Differences from the official implementation:

- Any input length up to max_position_embeddings runs; the kernel is computed for that
  length. At full length the outputs equal the original's.
- pad_mode="exact" (opt-in) zeroes the SSM inputs at padded positions, so pads contribute
  nothing and each sequence's outputs equal running it alone. The default, "reference",
  feeds pads through the backward SSM exactly as the original does.
- The default layer (fast_layer.py) computes the backward branch as an anti-causal
  convolution instead of flip -> causal convolution -> flip: the same numbers, fewer copies.
- The SSM convolution may run as a Toeplitz matmul or a chunked scan instead of the FFT
  (`conv_backend`, chosen by length and platform): the same numbers to float32 rounding.
- With scan_layers the layers run under `nn.scan`: parameters are stacked along a leading
  layer axis in memory (checkpoints keep the per-layer layout, see checkpoint.py).
- An all-zero attention-mask row is an error rather than NaN; the MLM decoder is always
  tied to the word embeddings.
"""

from __future__ import annotations

import os
from functools import lru_cache, partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from . import backends, losses
from . import initializers as init
from .config import BiGSConfig, ConvBackend, LayerImpl, PadMode
from .errors import ConfigError, InputError
from .inputs import check_inputs
from .fast_layer import FastBiGSLayer
from .layers import BiGSLayer, dense, layer_norm
from .outputs import (
    FlaxBaseModelOutputWithPooling,
    FlaxBiGSForPreTrainingOutput,
    FlaxMaskedLMOutput,
    FlaxMultipleChoiceModelOutput,
    FlaxNextSentencePredictorOutput,
    FlaxQuestionAnsweringModelOutput,
    FlaxSequenceClassifierOutput,
    FlaxTokenClassifierOutput,
    MaskedLMLoss,
)

Array = jax.Array
# Shapes below: B batch, L length, H hidden_size, I intermediate_size, V vocab_size.

LAYERS = {LayerImpl.REFERENCE: BiGSLayer, LayerImpl.FAST: FastBiGSLayer}


def gelu_erf(x):
    """The MLM head's GELU: the exact erf form (transformers' ACT2FN["gelu"])."""
    return jax.nn.gelu(x, approximate=False)


def _dropout_rate(config: BiGSConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


def _renamed_padding(pad_mode: str | None, padding: str | None) -> str | None:
    """pad_mode, or `padding` (its old name) when only that is given; ValueError if they differ."""
    if padding is None:
        return pad_mode
    if pad_mode is not None and pad_mode != padding:
        raise ValueError(f"padding={padding!r} (the old name of pad_mode) and pad_mode={pad_mode!r} disagree")
    return padding


# ------------------------------------------------------------------------ modules
class BiGSEmbeddings(nn.Module):
    """word + position + token-type embeddings, LayerNorm, dropout: ids [B, L] -> [B, L, H].
    Each table is initialised N(0, initializer_range^2)."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, position_ids, deterministic=True):
        cfg = self.config

        def embed(n, name):
            return nn.Embed(n, cfg.hidden_size, embedding_init=init.normal(cfg.initializer_range),
                            param_dtype=jnp.float32, name=name)

        words = embed(cfg.vocab_size, "word_embeddings")(input_ids.astype("i4"))
        positions = embed(cfg.max_position_embeddings, "position_embeddings")(position_ids.astype("i4"))
        types = embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids.astype("i4"))
        hidden = layer_norm(cfg, self.dtype)(words + positions + types)
        return nn.Dropout(cfg.hidden_dropout_prob)(hidden, deterministic=deterministic)


class BiGSEncoder(nn.Module):
    """num_hidden_layers BiGS layers of the kind plan.layer_impl names, unrolled (params
    `layer/<i>/...`) or under nn.scan (stacked `layer/...`, a leading layer axis).
    hidden [B, L, H], mask [B, L] -> (last hidden [B, L, H], each layer's output when
    output_hidden_states else ()). Each layer runs under nn.remat with plan.remat_policy,
    except with everything_saveable, which is plain autodiff."""

    config: BiGSConfig
    plan: backends.Plan
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask, output_hidden_states=False):
        cfg = self.config
        layer_cls = LAYERS[self.plan.layer_impl]
        if self.plan.remat_policy is not jax.checkpoint_policies.everything_saveable:
            layer_cls = nn.remat(layer_cls, prevent_cse=not cfg.scan_layers, policy=self.plan.remat_policy)
        if not cfg.scan_layers:
            layers = _UnrolledLayers(layer_cls, dict(config=cfg, plan=self.plan, dtype=self.dtype),
                                     cfg.num_hidden_layers, name="layer")
            return layers(hidden, mask)

        def step(layer, hidden, mask):
            hidden = layer(hidden, mask)
            return hidden, (hidden if output_hidden_states else None)

        stack = nn.scan(step, variable_axes={"params": 0}, split_rngs={"params": True},
                        in_axes=nn.broadcast, length=cfg.num_hidden_layers)
        hidden, per_layer = stack(layer_cls(cfg, self.plan, self.dtype, name="layer"), hidden, mask)
        return hidden, tuple(per_layer[i] for i in range(cfg.num_hidden_layers)) if output_hidden_states else ()


class _UnrolledLayers(nn.Module):
    """The layers one after another, named "0", "1", ... as in the original."""

    layer_cls: Any
    layer_kwargs: dict
    num_layers: int

    @nn.compact
    def __call__(self, hidden, mask):
        all_hidden = []
        for i in range(self.num_layers):
            hidden = self.layer_cls(**self.layer_kwargs, name=str(i))(hidden, mask)
            all_hidden.append(hidden)
        return hidden, tuple(all_hidden)


class BiGSPooler(nn.Module):
    """Mean over real tokens (non_padding_mean) or all positions (mean), dense, tanh:
    hidden [B, L, H], mask [B, L] -> [B, H]."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask):
        if self.config.pooler_type == "mean":
            pooled = jnp.mean(hidden, axis=1)
        else:
            weights = mask.astype(hidden.dtype)[:, :, None]
            pooled = jnp.sum(hidden * weights, axis=1) / jnp.sum(weights, axis=1)
        return jnp.tanh(dense(self.config, self.config.hidden_size, self.dtype, "dense")(pooled))


class BiGSModule(nn.Module):
    """The backbone: embeddings -> encoder -> (pooler). Returns a FlaxBaseModelOutputWithPooling.

    Inputs are int arrays [B, L]; attention_mask holds 1 for tokens and 0 for pads. The
    keywords override the config for this call: pad_mode ("reference", "exact"; `padding`
    is its old name), conv_backend ("auto", "fft", "toeplitz", "scan"), layer_impl ("auto",
    "reference", "fast") and remat_policy (a jax.checkpoint policy for training). They are
    resolved here, once per call (backends.resolve); a bad value raises ValueError.
    """

    config: BiGSConfig
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, *,
                 deterministic=True, output_hidden_states=False, pad_mode=None, conv_backend=None,
                 layer_impl=None, remat_policy=None, padding=None):
        cfg = self.config
        plan = backends.resolve(cfg, input_ids.shape[-1], deterministic=deterministic,
                                pad_mode=_renamed_padding(pad_mode, padding), conv_backend=conv_backend,
                                layer_impl=layer_impl, remat_policy=remat_policy)
        hidden = BiGSEmbeddings(cfg, self.dtype, name="embeddings")(
            input_ids, token_type_ids, position_ids, deterministic=deterministic)
        last, layers = BiGSEncoder(cfg, plan, self.dtype, name="encoder")(
            hidden, attention_mask, output_hidden_states=output_hidden_states)
        pooled = BiGSPooler(cfg, self.dtype, name="pooler")(last, attention_mask) if self.add_pooling_layer else None
        return FlaxBaseModelOutputWithPooling(
            last_hidden_state=last, pooler_output=pooled,
            hidden_states=(hidden,) + layers if output_hidden_states else None)


class _MLMTransform(nn.Module):
    """`cls/predictions/transform`: dense, exact (erf) GELU, LayerNorm."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden):
        hidden = gelu_erf(dense(self.config, self.config.hidden_size, self.dtype, "dense")(hidden))
        return layer_norm(self.config, self.dtype)(hidden)


class BiGSMLMHead(nn.Module):
    """`cls/predictions`: [..., H] -> vocabulary logits [..., V], decoder tied to the word
    embeddings plus a bias."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, word_embeddings, targets=None):
        """Logits [..., V]; with targets [...] instead (nll, hit) from
        `losses.tied_softmax_cross_entropy`, without returning the logits."""
        hidden = _MLMTransform(self.config, self.dtype, name="transform")(hidden)
        bias = self.param("bias", init.zeros, (self.config.vocab_size,))
        embeddings = word_embeddings.astype(hidden.dtype)
        if targets is not None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            nll, hit = losses.tied_softmax_cross_entropy(flat, embeddings, bias, targets.reshape(-1))
            return nll.reshape(targets.shape), hit.reshape(targets.shape)
        logits = jnp.einsum("...h,vh->...v", hidden, embeddings, preferred_element_type=jnp.float32)
        return logits + bias


def _word_embeddings(backbone: BiGSModule) -> Array:
    return nn.meta.unbox(backbone.variables["params"]["embeddings"]["word_embeddings"]["embedding"])


class _HeadModule(nn.Module):
    """Common call signature of every task module; subclasses implement `head`. The
    keyword `options` (pad_mode, conv_backend, layer_impl, remat_policy) go to BiGSModule."""

    config: BiGSConfig
    dtype: Any = jnp.float32
    add_pooling_layer = True

    def setup(self):
        self.s4_bert = BiGSModule(self.config, self.dtype, add_pooling_layer=self.add_pooling_layer)
        self.setup_head()

    def setup_head(self):
        """Make the head's submodules (none here); a task module overrides it."""

    def head(self, out, mask, deterministic):
        """The task's output from the backbone's FlaxBaseModelOutputWithPooling `out` and the
        attention mask [B, L]; a task module overrides it."""
        raise NotImplementedError(f"{type(self).__name__} has no head")

    def backbone(self, input_ids, attention_mask, token_type_ids, position_ids, deterministic,
                 output_hidden_states, options):
        return self.s4_bert(input_ids, attention_mask, token_type_ids, position_ids,
                            deterministic=deterministic, output_hidden_states=output_hidden_states, **options)

    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, *,
                 deterministic=True, output_hidden_states=False, **options):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, deterministic,
                            output_hidden_states, options)
        return self.head(out, attention_mask, deterministic)


class FlaxBiGSModule(BiGSModule):
    """FlaxBiGSModel: the backbone at the root of the param tree (no `s4_bert` prefix)."""


class FlaxBiGSForMaskedLMModule(_HeadModule):
    """FlaxBiGSForMaskedLM's Flax module: backbone under `s4_bert`, MLM head under `cls`."""

    add_pooling_layer = False

    def setup_head(self):
        self.cls = _Predictions(self.config, self.dtype, with_nsp=False)

    def head(self, out, mask, deterministic):
        logits = self.cls(out.last_hidden_state, _word_embeddings(self.s4_bert))[0]
        return FlaxMaskedLMOutput(logits=logits, hidden_states=out.hidden_states)

    def mlm_loss(self, input_ids, attention_mask, token_type_ids, position_ids, labels, *,
                 max_predictions, deterministic=True, **options):
        """Mean cross-entropy over labelled positions (labels != -100), computing vocabulary
        logits only at up to `max_predictions` labelled positions per sequence."""
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, deterministic,
                            False, options)

        def predict(picked, targets):          # -> (nll, hit) at the picked positions
            return self.cls(picked, _word_embeddings(self.s4_bert), targets=targets)[0]
        return losses.masked_lm_loss(predict, out.last_hidden_state, labels, max_predictions)


class FlaxBiGSForPreTrainingModule(FlaxBiGSForMaskedLMModule):
    """FlaxBiGSForPreTraining's Flax module: MLM and NSP heads under `cls`."""

    add_pooling_layer = True

    def setup_head(self):
        self.cls = _Predictions(self.config, self.dtype, with_nsp=True)

    def head(self, out, mask, deterministic):
        logits, nsp = self.cls(out.last_hidden_state, _word_embeddings(self.s4_bert), out.pooler_output)
        return FlaxBiGSForPreTrainingOutput(prediction_logits=logits, seq_relationship_logits=nsp,
                                            hidden_states=out.hidden_states)


class _Predictions(nn.Module):
    """The `cls` subtree: `predictions` (MLM) and, for pretraining/NSP, `seq_relationship`."""

    config: BiGSConfig
    dtype: Any = jnp.float32
    with_mlm: bool = True
    with_nsp: bool = False

    @nn.compact
    def __call__(self, hidden, word_embeddings, pooled=None, targets=None):
        # The MLM head's logits, or (nll, hit) when targets are given.
        mlm = (BiGSMLMHead(self.config, self.dtype, name="predictions")(hidden, word_embeddings, targets)
               if self.with_mlm else None)
        nsp = None
        if self.with_nsp and pooled is not None:
            nsp = dense(self.config, 2, self.dtype, "seq_relationship")(pooled)
        return mlm, nsp


class FlaxBiGSForNextSentencePredictionModule(_HeadModule):
    """FlaxBiGSForNextSentencePrediction's Flax module: the backbone under `s4_bert` and its head."""

    def setup_head(self):
        self.cls = _Predictions(self.config, self.dtype, with_mlm=False, with_nsp=True)

    def head(self, out, mask, deterministic):
        return FlaxNextSentencePredictorOutput(logits=self.cls(None, None, out.pooler_output)[1],
                                               hidden_states=out.hidden_states)


class FlaxBiGSForSequenceClassificationModule(_HeadModule):
    """Pooled output -> dropout -> classifier [H, num_labels] (num_labels=1: regression)."""

    def setup_head(self):
        self.dropout = nn.Dropout(_dropout_rate(self.config))
        self.classifier = dense(self.config, self.config.num_labels, self.dtype, "classifier")

    def head(self, out, mask, deterministic):
        logits = self.classifier(self.dropout(out.pooler_output, deterministic=deterministic))
        return FlaxSequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states)


class FlaxBiGSForTokenClassificationModule(_HeadModule):
    """FlaxBiGSForTokenClassification's Flax module: the backbone under `s4_bert` and its head."""

    add_pooling_layer = False

    def setup_head(self):
        self.dropout = nn.Dropout(_dropout_rate(self.config))
        self.classifier = dense(self.config, self.config.num_labels, self.dtype, "classifier")

    def head(self, out, mask, deterministic):
        logits = self.classifier(self.dropout(out.last_hidden_state, deterministic=deterministic))
        return FlaxTokenClassifierOutput(logits=logits, hidden_states=out.hidden_states)


class FlaxBiGSForQuestionAnsweringModule(_HeadModule):
    """Per-token start and end logits from `qa_outputs` [H, 2]."""

    add_pooling_layer = False

    def setup_head(self):
        self.qa_outputs = dense(self.config, self.config.num_labels, self.dtype, "qa_outputs")

    def head(self, out, mask, deterministic):
        start, end = jnp.split(self.qa_outputs(out.last_hidden_state), 2, axis=-1)
        return FlaxQuestionAnsweringModelOutput(start_logits=start[..., 0], end_logits=end[..., 0],
                                                hidden_states=out.hidden_states)


class FlaxBiGSForMultipleChoiceModule(_HeadModule):
    """Inputs [B, choices, L] are run as [B*choices, L]; one score per choice -> [B, choices]."""

    def setup_head(self):
        self.dropout = nn.Dropout(_dropout_rate(self.config))
        self.classifier = dense(self.config, 1, self.dtype, "classifier")

    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, *,
                 deterministic=True, output_hidden_states=False, **options):
        num_choices = input_ids.shape[1] if input_ids.ndim == 3 else 1
        flat = [x.reshape(-1, x.shape[-1]) for x in (input_ids, attention_mask, token_type_ids, position_ids)]
        out = self.backbone(*flat, deterministic, output_hidden_states, options)
        logits = self.classifier(self.dropout(out.pooler_output, deterministic=deterministic))
        return FlaxMultipleChoiceModelOutput(logits=logits.reshape(-1, num_choices),
                                             hidden_states=out.hidden_states)


# ------------------------------------------------------------------ user-facing API
def _is_concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def validate_inputs(config: BiGSConfig, input_ids, attention_mask, token_type_ids, position_ids,
                    multiple_choice: bool = False) -> None:
    """Raise InputError naming the problem (inputs.check_inputs, shared with the PyTorch
    model). Value checks run only on concrete arrays (not inside jit)."""
    def concrete(x):
        return np.asarray(x) if _is_concrete(x) else x

    check_inputs(config, concrete(input_ids), concrete(attention_mask), concrete(token_type_ids),
                 concrete(position_ids), multiple_choice=multiple_choice)


def _call_options(pad_mode=None, conv_backend=None, layer_impl=None, padding=None) -> dict:
    """A model call's overrides, checked by their enums; InputError names a bad one.
    `padding` is pad_mode's old name."""
    try:
        options = {"pad_mode": _renamed_padding(pad_mode, padding), "conv_backend": conv_backend,
                   "layer_impl": layer_impl}
    except ValueError as error:
        raise InputError(str(error)) from None
    for (name, value), choice in zip(options.items(), (PadMode, ConvBackend, LayerImpl)):
        try:
            options[name] = None if value is None else choice(value).value
        except ValueError as error:
            shown = "padding (pad_mode)" if name == "pad_mode" and padding is not None else name
            raise InputError(f"{shown}: {error}") from None
    return options


def _init_declared(module: nn.Module, rng) -> dict:
    """`module.init` on a short input: the params, each in an initializers.Declared box."""
    ids = jnp.zeros((1, min(8, module.config.max_position_embeddings)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    variables = module.init({"params": rng, "dropout": rng}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), positions)
    return variables["params"]


@lru_cache(maxsize=64)  # per distinct module (modules built from equal configs are equal)
def _declared_shapes(module: nn.Module) -> dict:
    """The param tree of `module`: Declared boxes around jax.ShapeDtypeStruct, nothing drawn."""
    return jax.eval_shape(partial(_init_declared, module), jax.random.PRNGKey(0))


_OPTIONS = ("pad_mode", "conv_backend", "layer_impl")


@partial(jax.jit, static_argnames=("module", "train", "output_hidden_states") + _OPTIONS)
def _forward(module, params, input_ids, attention_mask, token_type_ids, position_ids, dropout_rng, *,
             train, output_hidden_states, pad_mode, conv_backend, layer_impl):
    return module.apply({"params": params}, input_ids, attention_mask, token_type_ids, position_ids,
                        deterministic=not train, output_hidden_states=output_hidden_states, pad_mode=pad_mode,
                        conv_backend=conv_backend, layer_impl=layer_impl,
                        rngs={"dropout": dropout_rng} if train else {})


@partial(jax.jit, static_argnames=("module", "max_predictions", "train") + _OPTIONS)
def _mlm_loss(module, params, input_ids, attention_mask, token_type_ids, position_ids, labels, dropout_rng, *,
              max_predictions, train, pad_mode, conv_backend, layer_impl):
    return module.apply({"params": params}, input_ids, attention_mask, token_type_ids, position_ids, labels,
                        max_predictions=max_predictions, deterministic=not train, pad_mode=pad_mode,
                        conv_backend=conv_backend, layer_impl=layer_impl,
                        rngs={"dropout": dropout_rng} if train else {}, method=FlaxBiGSForMaskedLMModule.mlm_loss)


class FlaxBiGSPreTrainedModel:
    """A BiGS module with its params, config and checkpoint I/O, called like the original:

        model = FlaxBiGSForSequenceClassification.from_pretrained(folder_or_hub_id)
        out = model(input_ids, attention_mask=mask, token_type_ids=types)   # out.logits

    `model.params` holds the weights (stacked layers when config.scan_layers); `model.module`
    is the Flax module for `module.apply({"params": params}, ...)` in your own jitted code.
    """

    module_class: type[nn.Module]
    architecture: str
    config_class = BiGSConfig
    base_model_prefix = "s4_bert"

    def __init__(self, config: BiGSConfig, input_shape=None, seed: int = 0, dtype=jnp.float32,
                 _do_init: bool = True):
        config.validate()
        self.config = config
        self.dtype = jnp.dtype(dtype)
        if self.dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
            raise ConfigError(f"dtype must be float32 or bfloat16, got {self.dtype}")
        if self.module_class is FlaxBiGSForQuestionAnsweringModule and config.num_labels != 2:
            raise ConfigError(f"question answering needs num_labels=2 (start, end), got {config.num_labels}")
        self.module = self.module_class(config=config, dtype=self.dtype)
        self.seed = seed
        self.params = self.init_weights(jax.random.PRNGKey(seed)) if _do_init else None

    # ------------------------------------------------------------- construction
    def init_weights(self, rng, shardings: dict | None = None) -> dict:
        """Fresh params (their shapes do not depend on the input length), from the
        distributions the modules declare: drawn on the host (initializers.draw_on_host)
        when `rng` is a concrete key, and placed by `shardings` when given; by `module.init`
        when `rng` is traced (inside jit)."""
        if isinstance(rng, jax.core.Tracer):
            with jax.threefry_partitionable(False):  # the faster threefry on CPU
                return nn.meta.unbox(_init_declared(self.module, rng))
        return init.draw_on_host(_declared_shapes(self.module), rng, shardings)

    def init_shapes(self) -> dict:
        """The param tree as jax.ShapeDtypeStruct leaves, allocating nothing."""
        return nn.meta.unbox(_declared_shapes(self.module))  # new dicts: the cached tree stays intact

    @property
    def num_parameters(self) -> int:
        """How many numbers the params hold (every array's size summed)."""
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))

    # ------------------------------------------------------------------ calling
    def prepare_inputs(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        """Validate and fill in the defaults (mask of ones, type 0, positions 0..L-1)."""
        input_ids = jnp.asarray(input_ids)
        validate_inputs(self.config, input_ids, attention_mask, token_type_ids, position_ids,
                        multiple_choice=self.module_class is FlaxBiGSForMultipleChoiceModule)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        return (input_ids.astype(jnp.int32), jnp.asarray(attention_mask, jnp.int32),
                jnp.asarray(token_type_ids, jnp.int32), jnp.asarray(position_ids, jnp.int32))

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, params=None,
                 dropout_rng=None, train: bool = False, output_attentions: bool | None = None,
                 output_hidden_states: bool | None = None, return_dict: bool | None = None,
                 pad_mode: str | None = None, conv_backend: str | None = None, layer_impl: str | None = None,
                 padding: str | None = None, **labels):
        """Run the model on input_ids [B, L] ([B, choices, L] for multiple choice).

        `pad_mode` ("reference" or "exact"; `padding` is its old name), `conv_backend`
        ("auto", "fft", "toeplitz", "scan") and `layer_impl` ("auto", "reference", "fast")
        override the config for this call. BiGS has no attention, so output_attentions is
        accepted and ignored. `labels` are the head's, as in transformers' BERT: `labels`
        ([B, L] with -100 ignored for MLM and token classification; [B] for classification,
        NSP and multiple choice; float for regression), `next_sentence_label` (pretraining),
        `start_positions` and `end_positions` (question answering); with them the output's
        `loss` is the loss transformers' BERT head gives. Raises InputError for bad inputs,
        options or label names."""
        inputs = self.prepare_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        if train and dropout_rng is None:
            raise InputError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")
        label_names = losses.HEAD_LABELS[self.architecture]
        unknown = sorted(set(labels) - set(label_names))
        if unknown:
            raise InputError(f"{type(self).__name__} takes the labels {list(label_names) or 'none'}, "
                             f"not {unknown}")
        out = _forward(self.module, self.params if params is None else params, *inputs, dropout_rng,
                       train=train, output_hidden_states=bool(output_hidden_states),
                       **_call_options(pad_mode, conv_backend, layer_impl, padding))
        if any(value is not None for value in labels.values()):
            out = out.replace(loss=losses.head_loss(self.architecture, self.config, out, **labels))
        return out if return_dict in (None, True) else out.to_tuple()

    # -------------------------------------------------------------- checkpoints
    def checkpoint_params(self, params=None) -> dict:
        """Params in the checkpoint (per-layer) layout, as numpy arrays."""
        from .checkpoint import unstack_layers

        params = self.params if params is None else params
        return unstack_layers(jax.tree.map(np.asarray, jax.device_get(params)))

    def set_checkpoint_params(self, params: dict) -> None:
        """Set params given in the checkpoint (per-layer) layout."""
        from .checkpoint import stack_layers

        self.params = jax.tree.map(jnp.asarray, stack_layers(params) if self.config.scan_layers else params)

    def save_pretrained(self, save_directory, params=None, tokenizer=None, safe_serialization: bool = True) -> None:
        """Write config.json and flax_model.msgpack (+ model.safetensors, + tokenizer files)."""
        from .checkpoint import write_params

        config = self.config.copy()
        config.architectures = [self.architecture]
        config.save_pretrained(save_directory)
        write_params(save_directory, self.checkpoint_params(params), safetensors=safe_serialization)
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, config: BiGSConfig | None = None,
                        dtype=jnp.float32, seed: int = 0, output_loading_info: bool = False,
                        revision: str | None = None, cache_dir: str | None = None, token=None,
                        local_files_only: bool = False, **config_overrides):
        """Load a local folder or a hub id. Keyword overrides go to the config, e.g.
        `num_labels=2` (a checkpoint head of another size is re-initialised and reported),
        `pad_mode="exact"`. Returns the model, plus a LoadReport if output_loading_info.

        Raises CheckpointError for a folder or hub id that cannot be read (named, with the
        reason: missing, unreachable offline, damaged files) or whose shapes do not match the
        config (each named); ConfigError for overrides the config refuses."""
        from .checkpoint import fill_missing, fit_params, logger, read_params, unstack_layers

        hub = dict(revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        source = os.fspath(pretrained_model_name_or_path)
        if config is None:
            config = BiGSConfig.from_pretrained(source, **hub, **config_overrides)
        elif config_overrides:
            config = config.copy(**config_overrides)
        loaded = read_params(source, **hub)
        model = cls(config, seed=seed, dtype=dtype, _do_init=False)
        fitted, report = fit_params(loaded, unstack_layers(model.init_shapes()), source)
        if report.needs_init:  # only then pay for a real initialisation
            fitted = fill_missing(fitted, unstack_layers(jax.device_get(model.init_weights(jax.random.PRNGKey(seed)))))
        model.set_checkpoint_params(fitted)
        for message in report.messages(cls.__name__, source):
            logger.warning(message)
        return (model, report) if output_loading_info else model


class FlaxBiGSModel(FlaxBiGSPreTrainedModel):
    """The BiGS encoder alone, as transformers' FlaxBertModel (weights at the param tree's root).

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Returns FlaxBaseModelOutputWithPooling: last_hidden_state [B, L, hidden_size],
    pooler_output [B, hidden_size] (tanh of a dense layer on the [CLS] state), and with
    output_hidden_states the embeddings and every layer's output, num_hidden_layers + 1
    arrays [B, L, hidden_size]; in the model's dtype (float32 or bfloat16). Takes no labels.
    """

    module_class = FlaxBiGSModule
    architecture = "BiGSModel"


class _MLMMixin:
    def mlm_loss(self, input_ids, labels, attention_mask=None, token_type_ids=None, position_ids=None,
                 params=None, dropout_rng=None, train: bool = False, max_predictions: int | None = None,
                 pad_mode=None, conv_backend=None, layer_impl=None, padding=None) -> MaskedLMLoss:
        """Mean MLM cross-entropy over labels != -100, with vocabulary logits computed only
        at (up to max_predictions, default all) labelled positions per sequence. Options as
        in `__call__`."""
        inputs = self.prepare_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        labels = jnp.asarray(labels, jnp.int32)
        if labels.shape != inputs[0].shape:
            raise InputError(f"labels has shape {labels.shape} but input_ids has shape {inputs[0].shape}")
        if max_predictions is None:
            max_predictions = int(np.max(np.sum(np.asarray(labels) != losses.IGNORE_INDEX, axis=1))) if _is_concrete(labels) else labels.shape[1]
        return _mlm_loss(self.module, self.params if params is None else params, *inputs, labels, dropout_rng,
                         max_predictions=max(1, max_predictions), train=train,
                         **_call_options(pad_mode, conv_backend, layer_impl, padding))


class FlaxBiGSForMaskedLM(_MLMMixin, FlaxBiGSPreTrainedModel):
    """BiGS with BERT's masked-language-model head (decoder tied to the word embeddings).

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Returns FlaxMaskedLMOutput: logits [B, L, vocab_size]; with labels int [B, L] (-100 at
    positions not scored) also loss, the mean cross-entropy, float32 []. `mlm_loss` gives the
    same loss computing vocabulary logits only at the labelled positions (pretraining's path).
    """

    module_class = FlaxBiGSForMaskedLMModule
    architecture = "BiGSForMaskedLM"


class FlaxBiGSForPreTraining(_MLMMixin, FlaxBiGSPreTrainedModel):
    """BiGS with the MLM and next-sentence heads, the original's pretraining model (paper, sec. 4).

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Returns FlaxBiGSForPreTrainingOutput: prediction_logits [B, L, vocab_size] and
    seq_relationship_logits [B, 2]; with labels int [B, L] (-100 not scored) and
    next_sentence_label int [B] (0: B follows A, 1: a random B) also loss = MLM + NSP
    cross-entropy, float32 [].
    """

    module_class = FlaxBiGSForPreTrainingModule
    architecture = "BiGSForPreTraining"


class FlaxBiGSForNextSentencePrediction(FlaxBiGSPreTrainedModel):
    """BiGS with BERT's next-sentence head on the pooled [CLS] state.

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Returns FlaxNextSentencePredictorOutput: logits [B, 2]; with labels int [B] (0: B follows
    A) also loss, the mean cross-entropy, float32 [].
    """

    module_class = FlaxBiGSForNextSentencePredictionModule
    architecture = "BiGSForNextSentencePrediction"


class FlaxBiGSForSequenceClassification(FlaxBiGSPreTrainedModel):
    """BiGS with a dropout + linear classifier on the pooled [CLS] state (GLUE, `bigs glue`).

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Returns FlaxSequenceClassifierOutput: logits [B, num_labels]; with labels also loss,
    float32 []: mean squared error when num_labels is 1 or problem_type "regression" (labels
    float [B]), cross-entropy for int labels [B], binary cross-entropy for float multi-label
    targets [B, num_labels].
    """

    module_class = FlaxBiGSForSequenceClassificationModule
    architecture = "BiGSForSequenceClassification"


class FlaxBiGSForTokenClassification(FlaxBiGSPreTrainedModel):
    """BiGS with a dropout + linear classifier on every token's last hidden state (NER, tagging).

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Returns FlaxTokenClassifierOutput: logits [B, L, num_labels]; with labels int [B, L]
    (-100 not scored) also loss, the mean cross-entropy, float32 [].
    """

    module_class = FlaxBiGSForTokenClassificationModule
    architecture = "BiGSForTokenClassification"


class FlaxBiGSForQuestionAnswering(FlaxBiGSPreTrainedModel):
    """BiGS with a span head: a linear layer giving each token a start and an end score (SQuAD).

    Call it as FlaxBiGSPreTrainedModel.__call__ says: input_ids, attention_mask and
    token_type_ids int [B, L] (B sequences of L <= max_position_embeddings tokens).
    Needs num_labels=2 (ConfigError otherwise). Returns FlaxQuestionAnsweringModelOutput:
    start_logits and end_logits [B, L]; with start_positions and end_positions int [B] also
    loss, the mean of the two cross-entropies (positions past the sequence are ignored, as
    in transformers), float32 [].
    """

    module_class = FlaxBiGSForQuestionAnsweringModule
    architecture = "BiGSForQuestionAnswering"


class FlaxBiGSForMultipleChoice(FlaxBiGSPreTrainedModel):
    """BiGS scoring each choice with a linear layer on its pooled [CLS] state (SWAG, RACE).

    input_ids, attention_mask and token_type_ids are int [B, C, L]: C choices of L tokens
    for each of B questions. Returns FlaxMultipleChoiceModelOutput: logits [B, C]; with
    labels int [B] (the right choice) also loss, the mean cross-entropy, float32 [].
    """

    module_class = FlaxBiGSForMultipleChoiceModule
    architecture = "BiGSForMultipleChoice"


MODEL_CLASSES = {cls.__name__: cls for cls in (
    FlaxBiGSModel, FlaxBiGSForMaskedLM, FlaxBiGSForPreTraining, FlaxBiGSForNextSentencePrediction,
    FlaxBiGSForSequenceClassification, FlaxBiGSForTokenClassification, FlaxBiGSForQuestionAnswering,
    FlaxBiGSForMultipleChoice)}
