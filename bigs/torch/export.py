"""ONNX export of a BiGS model (any head), for onnxruntime and other ONNX runtimes.

    from bigs.torch.export import export_onnx
    export_onnx(model, "model.onnx")            # or: bigs export-onnx --model_name_or_path M --output model.onnx

The graph takes `input_ids`, `attention_mask` and `token_type_ids` (int64 [batch, length];
batch and length are dynamic, length up to max_position_embeddings) and returns the model's
outputs in its output class's order, the head's first (e.g. `logits`; `last_hidden_state`
then `pooler_output` for BiGSModel). The SSM convolution is exported as the Toeplitz matmul:
the FFT exports, but onnxruntime 1.32 fails to run the exported inverse real DFT. The kernel
is computed in real arithmetic (ONNX has no complex numbers), so the graph needs no custom op.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..config import ConvBackend
from ..errors import ConfigError
from ..files import atomic_writer

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class _ExportView(nn.Module):
    """The model called with the exported backend and pad mode, returning a plain tuple."""

    def __init__(self, model: nn.Module, pad_mode: str | None, output_names: tuple[str, ...]):
        super().__init__()
        self.model, self.pad_mode, self.output_names = model, pad_mode, output_names

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         pad_mode=self.pad_mode, conv_backend=ConvBackend.TOEPLITZ.value, return_dict=True)
        return tuple(out[name] for name in self.output_names)


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The names of the outputs an exported `model` returns, in order (no loss, no hidden states)."""
    sample = _sample_inputs(model, length=2)
    with torch.no_grad():
        out = model(**sample, return_dict=True)
    return tuple(name for name in out.keys() if name not in ("loss", "hidden_states", "attentions"))


def _sample_inputs(model: nn.Module, length: int) -> dict[str, torch.Tensor]:
    choices = (2,) if type(model).__name__ == "BiGSForMultipleChoice" else ()
    ids = torch.ones((2, *choices, length), dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def export_onnx(model: nn.Module, path: str | os.PathLike, *, pad_mode: str | None = None,
                opset_version: int = 18) -> tuple[str, ...]:
    """Write `model` (a bigs.torch model, float32) to the ONNX file `path`, atomically.

    `pad_mode` ("reference" or "exact") is fixed in the graph; None takes the model's config.
    Returns the output names. Raises ConfigError for a model whose config cannot export
    (max_position_embeddings below 2) and whatever torch.onnx raises if the export fails.
    """
    config = model.config
    if config.max_position_embeddings < 2:
        raise ConfigError("ONNX export needs max_position_embeddings >= 2 (the length axis is dynamic)")
    model = model.eval().float()
    names = output_names(model)
    view = _ExportView(model, pad_mode, names).eval()
    sample = _sample_inputs(model, length=min(8, config.max_position_embeddings))
    axes = len(sample["input_ids"].shape)
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=config.max_position_embeddings)
    dims = {0: batch, axes - 1: length}
    program = torch.onnx.export(view, tuple(sample[name] for name in INPUT_NAMES), dynamo=True,
                                input_names=list(INPUT_NAMES), output_names=list(names),
                                dynamic_shapes={name: dims for name in INPUT_NAMES},
                                opset_version=opset_version, verbose=False)
    with atomic_writer(path) as tmp:
        program.save(str(tmp))
    return names
