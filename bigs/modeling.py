"""BiGS in Flax: embeddings, the gated bidirectional SSM layer, the encoder, the pooler and
the BERT-style heads.

Paper: "Pretraining Without Attention", Wang, Yan, Gu, Rush (2022). The parameter names and
shapes are those of the original `BiGS/modeling_flax_bigs.py`, so its checkpoints load
unchanged (see checkpoint.py). Differences from the official implementation:

- Any input length up to max_position_embeddings runs; the kernel is computed for that
  length. At full length the outputs equal the original's.
- padding="exact" (opt-in) zeroes the SSM inputs at padded positions, so pads contribute
  nothing and each sequence's outputs equal running it alone. The default, "reference",
  feeds pads through the backward SSM exactly as the original does.
- The backward branch is computed as an anti-causal convolution instead of
  flip -> causal convolution -> flip: the same numbers, two fewer copies.
- With scan_layers the layers run under `nn.scan`: parameters are stacked along a leading
  layer axis in memory (checkpoints keep the per-layer layout, see checkpoint.py).
"""

from __future__ import annotations

import os
from functools import lru_cache, partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from . import losses, ssm
from .config import BiGSConfig
from .errors import ConfigError, InputError
from .initializers import flax_initializer as initializer
from .initializers import init_params
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


def gelu_tanh(x):
    """The layers' GELU: Flax's default, the tanh approximation."""
    return jax.nn.gelu(x, approximate=True)


def gelu_erf(x):
    """The MLM head's GELU: the exact erf form (transformers' ACT2FN["gelu"])."""
    return jax.nn.gelu(x, approximate=False)


def _dense(config, features, dtype, name):
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=initializer("kernel", config), bias_init=initializer("bias", config))


def _layer_norm(config, dtype, name="LayerNorm"):
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=jnp.float32, name=name,
                        scale_init=initializer("scale", config), bias_init=initializer("bias", config))


def _dropout_rate(config: BiGSConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


# ------------------------------------------------------------------------ modules
class BiGSEmbeddings(nn.Module):
    """word + position + token-type embeddings, LayerNorm, dropout -> [B, L, H]."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, position_ids, deterministic=True):
        cfg = self.config

        def embed(n, name):
            return nn.Embed(n, cfg.hidden_size, embedding_init=initializer("embedding", cfg),
                            param_dtype=jnp.float32, name=name)

        words = embed(cfg.vocab_size, "word_embeddings")(input_ids.astype("i4"))
        positions = embed(cfg.max_position_embeddings, "position_embeddings")(position_ids.astype("i4"))
        types = embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids.astype("i4"))
        hidden = _layer_norm(cfg, self.dtype)(words + positions + types)
        return nn.Dropout(cfg.hidden_dropout_prob)(hidden, deterministic=deterministic)


class S4D(nn.Module):
    """The params of one diagonal SSM with num_ssm complex states, shared by all channels.

    Returns them as a dict; BiGSLayer runs its forward and backward S4D together through
    ssm.multi_conv (one FFT / matmul / scan for both)."""

    config: BiGSConfig

    @nn.compact
    def __call__(self) -> dict:
        # Initial values (bigs/initializers.py): A deterministic (config.scaling), C a
        # unit-variance complex normal, D = 1, dt log-uniform on [0.01, 1].
        shapes = {"A_re": (self.config.num_ssm,), "A_im": (self.config.num_ssm,), "C": (self.config.num_ssm, 2),
                  "D": (1,), "log_step": (1,)}
        return {name: self.param(name, initializer(name, self.config), shape) for name, shape in shapes.items()}


class _DenseParams(nn.Module):
    """The params of an nn.Dense (same names, shapes and init), returned unapplied so that
    several projections of one input can run as one matmul."""

    config: BiGSConfig
    in_features: int
    features: int

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", initializer("kernel", self.config), (self.in_features, self.features))
        bias = self.param("bias", initializer("bias", self.config), (self.features,))
        return kernel, bias


class _LayerNormParams(nn.Module):
    """The params of an nn.LayerNorm (same names, shapes and init), returned unapplied."""

    config: BiGSConfig
    features: int

    @nn.compact
    def __call__(self):
        return (self.param("scale", initializer("scale", self.config), (self.features,)),
                self.param("bias", initializer("bias", self.config), (self.features,)))


def _apply_layer_norm(x, scale, bias, eps, dtype):
    """nn.LayerNorm as a function: float32 statistics, variance as E[x^2] - E[x]^2."""
    x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = x32.mean(-1, keepdims=True)
    var = jnp.maximum(0.0, jnp.square(x32).mean(-1, keepdims=True) - jnp.square(mean))
    return ((x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias).astype(dtype)


# Tokens per block of the layers' position-wise work when config.token_block is None, on
# CPU in inference. A layer's matmuls then read and write block-sized activations that stay
# in cache ([1024, 3072] float32 is 12 MB, this CPU's L3 32 MB) instead of [B*L, 3072]
# arrays in memory. Measured at base size, float32, on the 2-core CPU, alternating in one
# process (benchmarks/train_variants.py, docs/performance.md "Token blocks"): forward
# L=16384 b1 24.4, 25.9 s -> 22.0, 22.8 s; L=512 b8 2-4% faster. Under a gradient the blocks
# were 6% slower (train step L=512 b8 21.4, 20.6 s -> 22.7, 21.8 s: the loop stacks the
# matmul outputs the backward pass keeps), so training runs all tokens at once.
TOKEN_BLOCK = 1024


def choose_token_block(deterministic: bool, platform: str | None = None) -> int:
    """The token block for config.token_block=None: TOKEN_BLOCK for inference
    (deterministic=True) on CPU, 0 (all tokens at once) in training and on GPUs and TPUs,
    where one large matmul is faster than a loop of smaller ones."""
    platform = platform or jax.default_backend()
    return TOKEN_BLOCK if deterministic and platform == "cpu" else 0


def _per_token(fn, block, *arrays):
    """fn of one token's slices, applied to every token of arrays [B, L, ...].

    block > 0 runs it over blocks of at most `block` tokens (a loop of matmuls with
    block rows); 0 runs all B*L tokens at once.
    """
    batch, length = arrays[0].shape[:2]
    tokens = batch * length
    flat = [a.reshape(tokens, *a.shape[2:]) for a in arrays]
    if not block or tokens <= block:
        out = jax.vmap(fn)(*flat)
    else:
        size = -(-tokens // -(-tokens // block))      # equal blocks, as few as possible
        out = jax.lax.map(lambda xs: fn(*xs), flat, batch_size=size)
    return out.reshape(batch, length, *out.shape[1:])


class BiGSLayer(nn.Module):
    """One BiGS layer (paper Fig. 2), pre-norm `h + f(LN(h))` or post-norm `LN(h + f(h))`:

        v  = gelu(dv(x))                                    [B, L, I]  gate
        sf = fs4(gelu(du_forward(x)))                       [B, L, H]  causal SSM
        sb = bs4(gelu(du_backward(x)))                      [B, L, H]  anti-causal SSM
        f  = do(gelu(dol(duc_forward(sf) * duc_backward(sb))) * v)   [B, L, H]

    du_forward and du_backward read the same x, so they run as one [H, 2H] matmul; dv runs
    after the convolution, from x = LN(h) recomputed there, so that only h and the SSM
    inputs stay alive through it; fs4 and bs4 run as one two-direction convolution. All but
    the convolution works on one token at a time (`ssm_inputs`, `mix`), over the tokens in
    blocks of `token_block` (`_per_token`).
    """

    config: BiGSConfig
    dtype: Any = jnp.float32
    padding: str = "reference"
    backend: str = "fft"
    collect_hidden: bool = False
    token_block: int = 0

    @nn.compact
    def __call__(self, hidden, mask):
        """hidden [B, L, H], mask [B, L] (1 real, 0 pad) -> (hidden, hidden or None)."""
        cfg = self.config
        H, I = cfg.hidden_size, cfg.intermediate_size
        dense = {name: _DenseParams(cfg, n_in, n_out, name=name)()
                 for name, n_in, n_out in (("dv", H, I), ("du_forward", H, H), ("du_backward", H, H),
                                           ("duc_forward", H, H), ("duc_backward", H, H),
                                           ("dol", H, I), ("do", I, H))}
        norm_params = _LayerNormParams(cfg, H, name="LayerNorm")()
        dtype = self.dtype

        def norm(h):
            return _apply_layer_norm(h, *norm_params, cfg.layer_norm_eps, dtype)

        # Kernels and biases in the compute dtype, once per call rather than once per block;
        # du_forward and du_backward read the same x, so they are one [H, 2H] matmul ("du").
        def cast(kernel, bias):
            return kernel.astype(dtype), bias.astype(dtype)

        weights = {name: cast(*dense[name]) for name in ("dv", "duc_forward", "duc_backward", "dol", "do")}
        weights["du"] = cast(*(jnp.concatenate(parts, -1) for parts in zip(dense["du_forward"], dense["du_backward"])))

        def linear(x, name):
            kernel, bias = weights[name]
            return jnp.dot(x.astype(dtype), kernel) + bias

        def ssm_inputs(hidden, mask):          # one token: [H], [] -> [2, H]
            x = norm(hidden) if cfg.pre_norm else hidden
            u = gelu_tanh(linear(x, "du")).reshape(2, H)
            if self.padding == "exact":
                # Pads feed nothing into either SSM: each sequence sees only its own tokens.
                u = u * mask.astype(u.dtype)
            return u

        def mix(hidden, s):                    # one token: [H], [2, H] -> [H]
            # x is recomputed here rather than kept alive through the convolution.
            x = norm(hidden) if cfg.pre_norm else hidden
            mixed = linear(s[0], "duc_forward") * linear(s[1], "duc_backward")
            gate = gelu_tanh(linear(x, "dv"))
            update = linear(gelu_tanh(linear(mixed, "dol")) * gate, "do")
            return hidden + update if cfg.pre_norm else norm(hidden + update)

        u = _per_token(ssm_inputs, self.token_block, hidden, mask)       # [B, L, 2, H]
        ssm_params = ssm.stack_directions(S4D(cfg, name="fs4")(), S4D(cfg, name="bs4")())
        s = checkpoint_name(ssm.multi_conv(u, ssm_params, (False, True), backend=self.backend), "ssm_conv")
        hidden = _per_token(mix, self.token_block, hidden, s)
        return hidden, (hidden if self.collect_hidden else None)


# What the backward pass keeps of a layer (see BiGSEncoder): the dense layers' outputs and
# the SSM convolution's output.
_SAVE_MATMULS = jax.checkpoint_policies.save_from_both_policies(
    jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    jax.checkpoint_policies.save_only_these_names("ssm_conv"))


class BiGSEncoder(nn.Module):
    """num_hidden_layers BiGS layers, unrolled or under nn.scan (params `layer/<i>/...`
    or stacked `layer/...` with a leading layer axis)."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask, *, padding, backend, token_block=0, output_hidden_states=False):
        cfg = self.config
        # The backward pass keeps each layer's matmul and convolution outputs and recomputes
        # the elementwise work between them (GELUs, LayerNorm, gating): stored, those
        # intermediates were most of the training memory and, under the layer scan, copied
        # in and out of the stacked buffers at every step (base size, L=128, batch 8:
        # 6.3 s -> 5.3 s a step, 5.9 -> 3.5 GB). remat=True keeps only the layer inputs.
        layer_cls = nn.remat(BiGSLayer, prevent_cse=not cfg.scan_layers,
                             policy=None if cfg.remat else _SAVE_MATMULS)
        kwargs = dict(config=cfg, dtype=self.dtype, padding=padding, backend=backend,
                      collect_hidden=output_hidden_states, token_block=token_block)
        if cfg.scan_layers:
            stack = nn.scan(layer_cls, variable_axes={"params": 0}, split_rngs={"params": True},
                            in_axes=nn.broadcast, length=cfg.num_hidden_layers)
            hidden, per_layer = stack(**kwargs, name="layer")(hidden, mask)
            all_hidden = tuple(per_layer[i] for i in range(cfg.num_hidden_layers)) if output_hidden_states else ()
        else:
            hidden, all_hidden = _UnrolledLayers(layer_cls, kwargs, cfg.num_hidden_layers, name="layer")(hidden, mask)
        return hidden, all_hidden


class _UnrolledLayers(nn.Module):
    """The layers one after another, named "0", "1", ... as in the original."""

    layer_cls: Any
    layer_kwargs: dict
    num_layers: int

    @nn.compact
    def __call__(self, hidden, mask):
        all_hidden = []
        for i in range(self.num_layers):
            hidden, _ = self.layer_cls(**self.layer_kwargs, name=str(i))(hidden, mask)
            all_hidden.append(hidden)
        return hidden, tuple(all_hidden)


class BiGSPooler(nn.Module):
    """Mean over real tokens (non_padding_mean) or all positions (mean), dense, tanh."""

    config: BiGSConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, mask):
        if self.config.pooler_type == "mean":
            pooled = jnp.mean(hidden, axis=1)
        else:
            weights = mask.astype(hidden.dtype)[:, :, None]
            pooled = jnp.sum(hidden * weights, axis=1) / jnp.sum(weights, axis=1)
        return jnp.tanh(_dense(self.config, self.config.hidden_size, self.dtype, "dense")(pooled))


class BiGSModule(nn.Module):
    """The backbone: embeddings -> encoder -> (pooler). Returns a FlaxBaseModelOutputWithPooling."""

    config: BiGSConfig
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, *,
                 deterministic=True, output_hidden_states=False, padding=None, conv_backend=None):
        cfg = self.config
        padding = padding or cfg.padding
        backend = conv_backend or cfg.conv_backend
        if backend == "auto":
            backend = ssm.choose_backend(input_ids.shape[-1])
        token_block = cfg.token_block if cfg.token_block is not None else choose_token_block(deterministic)
        hidden = BiGSEmbeddings(cfg, self.dtype, name="embeddings")(
            input_ids, token_type_ids, position_ids, deterministic=deterministic)
        last, layers = BiGSEncoder(cfg, self.dtype, name="encoder")(
            hidden, attention_mask, padding=padding, backend=backend, token_block=token_block,
            output_hidden_states=output_hidden_states)
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
        hidden = gelu_erf(_dense(self.config, self.config.hidden_size, self.dtype, "dense")(hidden))
        return _layer_norm(self.config, self.dtype)(hidden)


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
        bias = self.param("bias", initializer("bias", self.config), (self.config.vocab_size,))
        embeddings = word_embeddings.astype(hidden.dtype)
        if targets is not None:
            flat = hidden.reshape(-1, hidden.shape[-1])
            nll, hit = losses.tied_softmax_cross_entropy(flat, embeddings, bias, targets.reshape(-1))
            return nll.reshape(targets.shape), hit.reshape(targets.shape)
        logits = jnp.einsum("...h,vh->...v", hidden, embeddings, preferred_element_type=jnp.float32)
        return logits + bias


def _word_embeddings(backbone: BiGSModule) -> Array:
    return backbone.variables["params"]["embeddings"]["word_embeddings"]["embedding"]


class _HeadModule(nn.Module):
    """Common call signature of every task module; subclasses implement `head`."""

    config: BiGSConfig
    dtype: Any = jnp.float32
    add_pooling_layer = True

    def setup(self):
        self.s4_bert = BiGSModule(self.config, self.dtype, add_pooling_layer=self.add_pooling_layer)
        self.setup_head()

    def setup_head(self):
        pass

    def backbone(self, input_ids, attention_mask, token_type_ids, position_ids, deterministic,
                 output_hidden_states, padding, conv_backend):
        return self.s4_bert(input_ids, attention_mask, token_type_ids, position_ids,
                            deterministic=deterministic, output_hidden_states=output_hidden_states,
                            padding=padding, conv_backend=conv_backend)

    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, *,
                 deterministic=True, output_hidden_states=False, padding=None, conv_backend=None):
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, deterministic,
                            output_hidden_states, padding, conv_backend)
        return self.head(out, attention_mask, deterministic)


class FlaxBiGSModule(BiGSModule):
    """FlaxBiGSModel: the backbone at the root of the param tree (no `s4_bert` prefix)."""


class FlaxBiGSForMaskedLMModule(_HeadModule):
    add_pooling_layer = False

    def setup_head(self):
        self.cls = _Predictions(self.config, self.dtype, with_nsp=False)

    def head(self, out, mask, deterministic):
        logits = self.cls(out.last_hidden_state, _word_embeddings(self.s4_bert))[0]
        return FlaxMaskedLMOutput(logits=logits, hidden_states=out.hidden_states)

    def mlm_loss(self, input_ids, attention_mask, token_type_ids, position_ids, labels, *,
                 max_predictions, deterministic=True, padding=None, conv_backend=None):
        """Mean cross-entropy over labelled positions (labels != -100), computing vocabulary
        logits only at up to `max_predictions` labelled positions per sequence."""
        out = self.backbone(input_ids, attention_mask, token_type_ids, position_ids, deterministic,
                            False, padding, conv_backend)

        def predict(picked, targets):          # -> (nll, hit) at the picked positions
            return self.cls(picked, _word_embeddings(self.s4_bert), targets=targets)[0]
        return losses.masked_lm_loss(predict, out.last_hidden_state, labels, max_predictions)


class FlaxBiGSForPreTrainingModule(FlaxBiGSForMaskedLMModule):
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
            nsp = _dense(self.config, 2, self.dtype, "seq_relationship")(pooled)
        return mlm, nsp


class FlaxBiGSForNextSentencePredictionModule(_HeadModule):
    def setup_head(self):
        self.cls = _Predictions(self.config, self.dtype, with_mlm=False, with_nsp=True)

    def head(self, out, mask, deterministic):
        return FlaxNextSentencePredictorOutput(logits=self.cls(None, None, out.pooler_output)[1],
                                               hidden_states=out.hidden_states)


class FlaxBiGSForSequenceClassificationModule(_HeadModule):
    """Pooled output -> dropout -> classifier [H, num_labels] (num_labels=1: regression)."""

    def setup_head(self):
        self.dropout = nn.Dropout(_dropout_rate(self.config))
        self.classifier = _dense(self.config, self.config.num_labels, self.dtype, "classifier")

    def head(self, out, mask, deterministic):
        logits = self.classifier(self.dropout(out.pooler_output, deterministic=deterministic))
        return FlaxSequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states)


class FlaxBiGSForTokenClassificationModule(_HeadModule):
    add_pooling_layer = False

    def setup_head(self):
        self.dropout = nn.Dropout(_dropout_rate(self.config))
        self.classifier = _dense(self.config, self.config.num_labels, self.dtype, "classifier")

    def head(self, out, mask, deterministic):
        logits = self.classifier(self.dropout(out.last_hidden_state, deterministic=deterministic))
        return FlaxTokenClassifierOutput(logits=logits, hidden_states=out.hidden_states)


class FlaxBiGSForQuestionAnsweringModule(_HeadModule):
    """Per-token start and end logits from `qa_outputs` [H, 2]."""

    add_pooling_layer = False

    def setup_head(self):
        self.qa_outputs = _dense(self.config, self.config.num_labels, self.dtype, "qa_outputs")

    def head(self, out, mask, deterministic):
        start, end = jnp.split(self.qa_outputs(out.last_hidden_state), 2, axis=-1)
        return FlaxQuestionAnsweringModelOutput(start_logits=start[..., 0], end_logits=end[..., 0],
                                                hidden_states=out.hidden_states)


class FlaxBiGSForMultipleChoiceModule(_HeadModule):
    """Inputs [B, choices, L] are run as [B*choices, L]; one score per choice -> [B, choices]."""

    def setup_head(self):
        self.dropout = nn.Dropout(_dropout_rate(self.config))
        self.classifier = _dense(self.config, 1, self.dtype, "classifier")

    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, *,
                 deterministic=True, output_hidden_states=False, padding=None, conv_backend=None):
        num_choices = input_ids.shape[1] if input_ids.ndim == 3 else 1
        flat = [x.reshape(-1, x.shape[-1]) for x in (input_ids, attention_mask, token_type_ids, position_ids)]
        out = self.backbone(*flat, deterministic, output_hidden_states, padding, conv_backend)
        logits = self.classifier(self.dropout(out.pooler_output, deterministic=deterministic))
        return FlaxMultipleChoiceModelOutput(logits=logits.reshape(-1, num_choices),
                                             hidden_states=out.hidden_states)


# ------------------------------------------------------------------ user-facing API
def _is_concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def validate_inputs(config: BiGSConfig, input_ids, attention_mask, token_type_ids, position_ids,
                    multiple_choice: bool = False) -> None:
    """Raise InputError naming the problem: wrong rank, shapes that disagree, a sequence longer
    than max_position_embeddings, ids out of range, an all-zero attention-mask row.
    Value checks run only on concrete arrays (not inside jit)."""
    ranks = (2, 3) if multiple_choice else (2,)
    if getattr(input_ids, "ndim", None) not in ranks:
        want = "[batch, num_choices, length] or [batch, length]" if multiple_choice else "[batch, length]"
        raise InputError(f"input_ids must have shape {want}, got shape {np.shape(input_ids)}")
    if not jnp.issubdtype(input_ids.dtype, jnp.integer):
        raise InputError(f"input_ids must be integers, got dtype {input_ids.dtype}")
    length = input_ids.shape[-1]
    if length < 1:
        raise InputError("input_ids has length 0")
    if length > config.max_position_embeddings:
        raise InputError(f"sequence length {length} is longer than max_position_embeddings="
                         f"{config.max_position_embeddings}; truncate or split the input")
    named = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids}
    for name, value in named.items():
        if value is not None and tuple(np.shape(value)) != tuple(input_ids.shape):
            raise InputError(f"{name} has shape {tuple(np.shape(value))} but input_ids has shape "
                             f"{tuple(input_ids.shape)}; they must be equal")
    limits = {"input_ids": (input_ids, config.vocab_size, "vocab_size"),
              "token_type_ids": (token_type_ids, config.type_vocab_size, "type_vocab_size"),
              "position_ids": (position_ids, config.max_position_embeddings, "max_position_embeddings")}
    for name, (value, limit, what) in limits.items():
        if not _is_concrete(value):
            continue
        value = np.asarray(value)
        low, high = int(value.min()), int(value.max())
        if low < 0 or high >= limit:
            bad = low if low < 0 else high
            where = tuple(int(i) for i in np.argwhere(value == bad)[0])
            raise InputError(f"{name} holds {bad} at index {where}, outside [0, {limit}) ({what}={limit})")
    if _is_concrete(attention_mask):
        mask = np.asarray(attention_mask)
        if not np.isin(mask, (0, 1)).all():
            raise InputError("attention_mask must hold only 0 (pad) and 1 (token)")
        empty = np.argwhere(mask.reshape(-1, length).sum(-1) == 0)
        if empty.size:
            raise InputError(f"attention_mask row {int(empty[0, 0])} is all zeros: every sequence needs at "
                             "least one real token (the original returns NaN here)")


def _init_params_traced(module: nn.Module, rng) -> dict:
    ids = jnp.zeros((1, min(8, module.config.max_position_embeddings)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    return module.init({"params": rng, "dropout": rng}, ids, jnp.ones_like(ids), jnp.zeros_like(ids), positions)["params"]


@lru_cache(maxsize=64)  # per distinct module (modules built from equal configs are equal)
def _param_shapes(module: nn.Module) -> dict:
    return jax.eval_shape(partial(_init_params_traced, module), jax.random.PRNGKey(0))


@partial(jax.jit, static_argnames=("module", "train", "output_hidden_states", "padding", "conv_backend"))
def _forward(module, params, input_ids, attention_mask, token_type_ids, position_ids, dropout_rng, *,
             train, output_hidden_states, padding, conv_backend):
    return module.apply({"params": params}, input_ids, attention_mask, token_type_ids, position_ids,
                        deterministic=not train, output_hidden_states=output_hidden_states,
                        padding=padding, conv_backend=conv_backend,
                        rngs={"dropout": dropout_rng} if train else {})


@partial(jax.jit, static_argnames=("module", "max_predictions", "train", "padding", "conv_backend"))
def _mlm_loss(module, params, input_ids, attention_mask, token_type_ids, position_ids, labels, dropout_rng, *,
              max_predictions, train, padding, conv_backend):
    return module.apply({"params": params}, input_ids, attention_mask, token_type_ids, position_ids, labels,
                        max_predictions=max_predictions, deterministic=not train, padding=padding,
                        conv_backend=conv_backend, rngs={"dropout": dropout_rng} if train else {},
                        method=FlaxBiGSForMaskedLMModule.mlm_loss)


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
    def init_weights(self, rng) -> dict:
        """Fresh params (their shapes do not depend on the input length), drawn from the
        distributions of `module.init` by the faster `initializers.init_params`."""
        return init_params(self.module, self.init_shapes(), rng)

    def init_shapes(self) -> dict:
        """The param tree as jax.ShapeDtypeStruct leaves, allocating nothing."""
        return jax.tree.map(lambda leaf: leaf, _param_shapes(self.module))  # new dicts: the cached tree stays intact

    @property
    def num_parameters(self) -> int:
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
                 padding: str | None = None, conv_backend: str | None = None):
        """Run the model. `padding` ("reference" or "exact") and `conv_backend` ("auto", "fft",
        "toeplitz", "scan") override the config for this call. BiGS has no attention, so
        output_attentions is accepted and ignored."""
        inputs = self.prepare_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        if train and dropout_rng is None:
            raise InputError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")
        if padding is not None and padding not in ("reference", "exact"):
            raise InputError(f"padding must be 'reference' or 'exact', got {padding!r}")
        if conv_backend is not None and conv_backend not in ("auto",) + ssm.BACKENDS:
            raise InputError(f"conv_backend must be one of {('auto',) + ssm.BACKENDS}, got {conv_backend!r}")
        out = _forward(self.module, self.params if params is None else params, *inputs, dropout_rng,
                       train=train, output_hidden_states=bool(output_hidden_states),
                       padding=padding, conv_backend=conv_backend)
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
        `padding="exact"`. Returns the model, plus a LoadReport if output_loading_info."""
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
    module_class = FlaxBiGSModule
    architecture = "BiGSModel"


class _MLMMixin:
    def mlm_loss(self, input_ids, labels, attention_mask=None, token_type_ids=None, position_ids=None,
                 params=None, dropout_rng=None, train: bool = False, max_predictions: int | None = None,
                 padding=None, conv_backend=None) -> MaskedLMLoss:
        """Mean MLM cross-entropy over labels != -100, with vocabulary logits computed only
        at (up to max_predictions, default all) labelled positions per sequence."""
        inputs = self.prepare_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        labels = jnp.asarray(labels, jnp.int32)
        if labels.shape != inputs[0].shape:
            raise InputError(f"labels has shape {labels.shape} but input_ids has shape {inputs[0].shape}")
        if max_predictions is None:
            max_predictions = int(np.max(np.sum(np.asarray(labels) != losses.IGNORE_INDEX, axis=1))) if _is_concrete(labels) else labels.shape[1]
        return _mlm_loss(self.module, self.params if params is None else params, *inputs, labels, dropout_rng,
                         max_predictions=max(1, max_predictions), train=train, padding=padding,
                         conv_backend=conv_backend)


class FlaxBiGSForMaskedLM(_MLMMixin, FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForMaskedLMModule
    architecture = "BiGSForMaskedLM"


class FlaxBiGSForPreTraining(_MLMMixin, FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForPreTrainingModule
    architecture = "BiGSForPreTraining"


class FlaxBiGSForNextSentencePrediction(FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForNextSentencePredictionModule
    architecture = "BiGSForNextSentencePrediction"


class FlaxBiGSForSequenceClassification(FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForSequenceClassificationModule
    architecture = "BiGSForSequenceClassification"


class FlaxBiGSForTokenClassification(FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForTokenClassificationModule
    architecture = "BiGSForTokenClassification"


class FlaxBiGSForQuestionAnswering(FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForQuestionAnsweringModule
    architecture = "BiGSForQuestionAnswering"


class FlaxBiGSForMultipleChoice(FlaxBiGSPreTrainedModel):
    module_class = FlaxBiGSForMultipleChoiceModule
    architecture = "BiGSForMultipleChoice"


MODEL_CLASSES = {cls.__name__: cls for cls in (
    FlaxBiGSModel, FlaxBiGSForMaskedLM, FlaxBiGSForPreTraining, FlaxBiGSForNextSentencePrediction,
    FlaxBiGSForSequenceClassification, FlaxBiGSForTokenClassification, FlaxBiGSForQuestionAnswering,
    FlaxBiGSForMultipleChoice)}
