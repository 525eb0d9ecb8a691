"""Progress: a tqdm bar with loss, learning rate and throughput, plus TensorBoard logs.

    progress = Progress(total_steps, logdir, unit="ex")
    progress.update(step, n_items, {"loss": 0.41, "lr": 2e-5})   # after each train step
    progress.log_eval(step, {"accuracy": 0.86})                  # after each evaluation
    progress.close()
    read_scalars(logdir)   # [(tag, step, value)], e.g. to check a finished run's curves

Throughput (`ex/s` or `tok/s`, after `unit`) is measured between consecutive `update`
calls that carry scalars (the logging steps), and between `reset_clock` and the next.
"""

from __future__ import annotations

import glob
import os
import struct
import time
from typing import Mapping

from tqdm.auto import tqdm


def _scalar(value) -> float:
    return float(value)


class Progress:
    """A progress bar over `total_steps` and, when `logdir` is given, a TensorBoard writer."""

    def __init__(self, total_steps: int, logdir: str | os.PathLike | None = None, unit: str = "ex",
                 initial_step: int = 0, disable: bool = False, desc: str = "train"):
        self.unit = unit
        self.bar = tqdm(total=total_steps, initial=initial_step, desc=desc, dynamic_ncols=True,
                        disable=disable)
        self.writer = None
        if logdir is not None:
            from tensorboardX import SummaryWriter

            os.makedirs(logdir, exist_ok=True)
            self.writer = SummaryWriter(str(logdir))
        self._last_time = time.perf_counter()
        self._step = initial_step
        # items/second over the last logging interval
        self.rate: float | None = None
        self._postfix: dict[str, str] = {}
        self._items = 0

    def update(self, step: int, n_items: int, scalars: Mapping[str, float] | None = None) -> None:
        """Record that training reached `step` after processing `n_items` more items."""
        self._items += n_items
        # Steps are dispatched asynchronously; only a call with scalars (whose values had to
        # be fetched) marks a point where the device has caught up, so measure between those.
        if scalars or self.rate is None:
            now = time.perf_counter()
            self.rate = self._items / max(now - self._last_time, 1e-9)
            self._last_time, self._items = now, 0
        self.bar.update(max(0, step - self._step))
        self._step = step
        scalars = {k: _scalar(v) for k, v in (scalars or {}).items()}
        if scalars:
            self._postfix = {k: (f"{v:.2e}" if k in ("lr", "learning_rate") else f"{v:.4f}")
                             for k, v in scalars.items()}
        self.bar.set_postfix({**self._postfix, f"{self.unit}/s": f"{self.rate:.1f}"}, refresh=False)
        # TensorBoard gets a point only when there are scalars to log (the logging steps).
        if self.writer is not None and scalars:
            for name, value in scalars.items():
                self.writer.add_scalar(f"train/{name}", value, step)
            self.writer.add_scalar(f"train/{self.unit}_per_s", self.rate, step)

    def log_eval(self, step: int, metrics: Mapping[str, float], prefix: str = "eval") -> None:
        """Write evaluation metrics to TensorBoard and print them above the bar. Metrics of
        several evaluation sets ({"validation": {...}, ...}) go under each set's name."""
        for name, group in metrics.items():
            if isinstance(group, Mapping):
                self.log_eval(step, group, prefix=name)
        numbers = {k: _scalar(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, "item")}
        if self.writer is not None:
            for name, value in numbers.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
            self.writer.flush()
        if numbers:
            shown = ", ".join(f"{k}={int(v)}" if isinstance(metrics[k], int) else f"{k}={v:.4f}"
                              for k, v in numbers.items())
            self.bar.write(f"[{prefix} @ step {step}] {shown}")

    def reset_clock(self) -> None:
        """Restart the throughput clock (call after an evaluation or a checkpoint save)."""
        self._last_time, self._items = time.perf_counter(), 0

    def close(self) -> None:
        """Close the progress bar and the TensorBoard writer (if any)."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_scalars(logdir: str | os.PathLike) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the TensorBoard event files under logdir, in
    file order, without TensorBoard installed. Records are TFRecord-framed: an 8-byte length,
    its 4-byte CRC, the Event proto, its 4-byte CRC."""
    from tensorboardX.proto import event_pb2

    scalars = []
    for path in sorted(glob.glob(os.path.join(os.fspath(logdir), "**", "events.out.tfevents*"), recursive=True)):
        with open(path, "rb") as f:
            data = f.read()
        position = 0
        while position + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[position:position + 8])
            event = event_pb2.Event.FromString(data[position + 12:position + 12 + length])
            position += 12 + length + 4
            scalars += [(value.tag, event.step, value.simple_value) for value in event.summary.value]
    return scalars
