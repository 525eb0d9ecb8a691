"""AdamW with BiGS's parameter groups, and the learning-rate schedules.

Parameter groups, decided by each leaf's path in the param tree:
  decayed    dense kernels, embeddings, C, D, ...           lr, weight decay
  no_decay   every `bias` and every LayerNorm `scale`       lr, no weight decay (as pretrain.py)
  ssm        A_re, A_im, log_step of fs4/bs4, only when an  lr * ssm_lr_factor, no weight decay
             ssm_lr_factor is given (the original declared
             this and never applied it)
  frozen     with freeze_kernel: the SSM kernel parameters   not updated
             (A_re, A_im, C, log_step) and token-type
             embeddings, as the original's freeze variant
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax
from flax import traverse_util

SSM_RATE_PARAMS = ("A_re", "A_im", "log_step")
SSM_KERNEL_PARAMS = ("A_re", "A_im", "C", "log_step")


def _is_ssm(path: tuple[str, ...]) -> bool:
    return len(path) >= 2 and path[-2] in ("fs4", "bs4")


def param_group(path: tuple[str, ...], ssm_lr_factor: float | None = None, freeze_kernel: bool = False) -> str:
    """The group ("decayed", "no_decay", "ssm", "frozen") of the leaf at `path`."""
    name = path[-1]
    if freeze_kernel and ((_is_ssm(path) and name in SSM_KERNEL_PARAMS) or "token_type_embeddings" in path):
        return "frozen"
    if ssm_lr_factor is not None and _is_ssm(path) and name in SSM_RATE_PARAMS:
        return "ssm"
    if name == "bias" or (name == "scale" and "LayerNorm" in path[-2]):
        return "no_decay"
    return "decayed"


def param_groups(params: Any, ssm_lr_factor: float | None = None, freeze_kernel: bool = False) -> Any:
    """A tree like params whose leaves are group names."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: param_group(k, ssm_lr_factor, freeze_kernel) for k in flat})


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: everything but biases and LayerNorm scales."""
    return jax.tree.map(lambda g: g == "decayed", param_groups(params))


def make_schedule(kind: str, learning_rate: float, warmup_steps: int, total_steps: int,
                  cosine_alpha: float = 0.0) -> optax.Schedule:
    """Linear warm-up to learning_rate over warmup_steps, then "linear" decay to 0 at
    total_steps, "cosine" decay to cosine_alpha * learning_rate, or "constant"."""
    warmup_steps = max(0, min(warmup_steps, total_steps))
    decay_steps = max(1, total_steps - warmup_steps)
    if kind == "linear":
        after = optax.linear_schedule(learning_rate, 0.0, decay_steps)
    elif kind == "cosine":
        after = optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=cosine_alpha)
    elif kind == "constant":
        after = optax.constant_schedule(learning_rate)
    else:
        raise ValueError(f"unknown schedule {kind!r}; expected 'linear', 'cosine' or 'constant'")
    if warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps), after], [warmup_steps])


def make_optimizer(schedule: optax.Schedule | float, params: Any, *, weight_decay: float = 0.01,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, max_grad_norm: float | None = 1.0,
                   ssm_lr_factor: float | None = None, freeze_kernel: bool = False,
                   accumulation_steps: int = 1) -> optax.GradientTransformation:
    """AdamW over BiGS's parameter groups, after global-norm gradient clipping.

    With accumulation_steps > 1 the gradients of that many calls are averaged before one
    update (optax.MultiSteps)."""
    def adamw(lr: Callable | float, decay: float):
        return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=decay)

    def ssm_lr(step):
        return (schedule(step) if callable(schedule) else schedule) * ssm_lr_factor

    transforms = {
        "decayed": adamw(schedule, weight_decay),
        "no_decay": adamw(schedule, 0.0),
        "ssm": adamw(ssm_lr if ssm_lr_factor is not None else schedule, 0.0),
        "frozen": optax.set_to_zero(),
    }
    chain = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm else []
    chain.append(optax.multi_transform(transforms, param_groups(params, ssm_lr_factor, freeze_kernel)))
    tx = optax.chain(*chain)
    if accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulation_steps)
    return tx
