"""Legacy flat parameter dictionary (compatibility mirror, read at legacy boundaries).

New code passes configs explicitly. ``cfg`` is filled by
:func:`ptycho.config.config.update_legacy_dict` and by bundle loading (which records the
trained ``intensity_scale``), because Ptychodus 1.7.0's built-in integration reads it.
"""

from __future__ import annotations

from typing import Any

cfg: dict[str, Any] = {}


def get(key: str) -> Any:
    """Value of ``key``; ``KeyError`` naming the key when it was never set."""
    try:
        return cfg[key]
    except KeyError:
        raise KeyError(
            f'ptycho.params: key {key!r} is not set (call update_legacy_dict(params.cfg, config) '
            f'or load a model bundle first); known keys: {sorted(cfg)}'
        ) from None


def set(key: str, value: Any) -> None:  # noqa: A001 - legacy public name
    cfg[key] = value


def params() -> dict[str, Any]:
    """A copy of the whole dictionary."""
    return dict(cfg)
