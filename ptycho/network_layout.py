"""The network's layer plan (specs/architecture.md section 5), shared by both backends.

Pure Python: the TensorFlow and torch builders read their widths, decoder steps, skip
connections and input channels from here, so the two networks cannot drift apart.
"""

from __future__ import annotations

import math


def level_widths(N: int, n_filters_scale: int) -> list[int]:
    """``w_k = 16 * n_filters_scale * 2**k`` for k = 0..L-1, L = log2(N) - 3."""
    levels = int(round(math.log2(N))) - 3 if N > 0 else 0
    if levels < 1 or 2 ** (levels + 3) != N:
        raise ValueError(f'model N: expected a power of two >= 16 (64, 128, 256), found {N}')
    return [16 * n_filters_scale * 2 ** k for k in range(levels)]


def decoder_steps(widths: list[int], pad_object: bool) -> list[int]:
    """Decoder step widths: ``[w_{L-2}, ..., w_0]`` (+ ``w_0`` for a full-size output)."""
    steps = widths[-2::-1]
    return steps if pad_object else steps + [widths[0]]


def skip_plan(N: int, widths: list[int], steps: list[int], pad_object: bool
              ) -> list[tuple[int, int] | None]:
    """For each decoder step: ``(encoder level, crop size)`` of its skip input, or None.

    A decoder map of S cells covers the output window (N/2 with pad_object, else N), i.e.
    ``window / S`` pixels per cell; encoder level k has ``2**k`` pixels per cell, so the
    matching skip is the central S x S crop of level ``log2(window / S)``.
    """
    window = N // 2 if pad_object else N
    plan: list[tuple[int, int] | None] = []
    size = 8
    for _ in steps:
        size *= 2
        ratio = window // size
        level = int(round(math.log2(ratio))) if ratio >= 1 and window % size == 0 else -1
        plan.append((level, size) if 0 <= level < len(widths) and 2 ** level == ratio else None)
    return plan


def input_channels(C: int, input_features: str) -> int:
    """Network input channels: C amplitudes, plus 2C back-projection channels (real, imag)."""
    return C * (3 if input_features == 'backprojection' else 1)
