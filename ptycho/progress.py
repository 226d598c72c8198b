"""Progress bars for the long steps a user waits for (tqdm, on standard error).

Shown only on a terminal (tqdm's ``disable=None``), so logs, CI and pipes stay clean, and
hidden everywhere when :data:`ENV` is ``off`` (``ptychopinn --quiet`` sets it). Library code
calls :func:`bar`; it never prints.
"""

from __future__ import annotations

import os
from typing import Any

ENV = 'PTYCHOPINN_PROGRESS'
"""``off`` (or ``0``, ``false``, ``no``) hides every bar; unset: bars on a terminal only."""


def enabled() -> bool | None:
    """tqdm's ``disable`` argument, inverted: False when switched off, None = terminal only."""
    return False if os.environ.get(ENV, '').strip().lower() in ('off', '0', 'false', 'no') \
        else None


def bar(total: int, desc: str, unit: str = 'pattern') -> Any:
    """A context-managed tqdm bar of ``total`` steps; ``update(n)`` advances it."""
    from tqdm.auto import tqdm

    shown = enabled()
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                disable=True if shown is False else None)
