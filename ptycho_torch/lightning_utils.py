"""Lightning helpers that Ptychodus 1.7.0's PtychoPINN-Torch library imports."""

from __future__ import annotations

import logging
from pathlib import Path

from ptycho_torch.workflows.training import CHECKPOINT_DIR, LAST_CHECKPOINT

logger = logging.getLogger(__name__)


def find_best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a training run in ``run_dir`` left for later use, or None.

    That is ``run_dir/checkpoints/last.ckpt``: the weights training ended with (with
    early stopping, where it stopped). Without it, the newest ``*.ckpt`` under ``run_dir``.
    """
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if last.is_file():
        return last
    found = sorted(run_dir.rglob('*.ckpt'), key=lambda p: p.stat().st_mtime)
    if found:
        logger.info('%s not found; using the newest checkpoint %s', last, found[-1])
        return found[-1]
    return None
