"""Where training writes beside a run, the same for both backends (framework-free).

Inside ``TrainingConfig.output_dir``:

* ``logs/version_<n>/`` — one folder per run for ``logger='csv'`` (``metrics.csv``, one
  row per epoch) or ``'tensorboard'`` (event files); ``n`` counts up like Lightning's.
* ``mlruns/`` — the MLflow file store for ``logger='mlflow'`` unless
  ``MLFLOW_TRACKING_URI`` names another.
* ``checkpoints/last.ckpt`` (pytorch, Lightning's format) or ``checkpoints/last.npz``
  (tensorflow): the whole training state after the last completed epoch, which
  ``resume`` continues from.

An ``output_dir`` of ``''`` or ``'.'`` means "unused" (Ptychodus' built-in library passes
``Path()`` and saves the model itself): TensorFlow training then writes none of these.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)

LOG_DIR = 'logs'
CHECKPOINT_DIR = 'checkpoints'
MLFLOW_DIR = 'mlruns'
MLFLOW_EXPERIMENT = 'ptychopinn'
#: The resumable checkpoint of each backend, inside ``{output_dir}/checkpoints``.
LAST_CHECKPOINT = {'pytorch': 'last.ckpt', 'tensorflow': 'last.npz'}
_CHECKPOINT_KIND = {'pytorch': 'a Lightning .ckpt', 'tensorflow': 'a TensorFlow training .npz'}
_VERSION = re.compile(r'version_(\d+)')


def uses_output_dir(output_dir: str | os.PathLike[str] | None) -> bool:
    """False for the "unused" output folders ``None``, ``''`` and ``'.'``."""
    return output_dir is not None and str(output_dir) not in ('', '.')


def checkpoint_path(output_dir: str | os.PathLike[str], backend: str) -> Path:
    """``{output_dir}/checkpoints/<the backend's last checkpoint>``."""
    if backend not in LAST_CHECKPOINT:
        raise ValueError(f"TrainingConfig.backend: expected one of {sorted(LAST_CHECKPOINT)}, "
                         f"found {backend!r}")
    return Path(output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT[backend]


def resume_path(resume: bool | str | os.PathLike[str] | None,
                output_dir: str | os.PathLike[str], backend: str) -> Path | None:
    """The checkpoint a ``resume`` argument points at, or None to train from scratch.

    ``True``: the backend's last checkpoint in ``output_dir``; when there is none yet the
    run starts from scratch with a warning. A path must exist (FileNotFoundError naming it).
    """
    if resume is False or resume is None:
        return None
    default = checkpoint_path(output_dir, backend)
    if resume is True:
        if not default.exists():
            logger.warning('resume=True but %s does not exist: training from scratch', default)
            return None
        return default
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f'resume: checkpoint {path} not found (expected '
                                f'{_CHECKPOINT_KIND[backend]} such as {default})')
    return path


def require_logger_package(kind: str, *modules: str) -> None:
    """Raise RuntimeError naming ``TrainingConfig.logger`` when ``kind`` ('tensorboard' or
    'mlflow') needs a package and none of ``modules`` (default: the logger's own) is
    installed."""
    needs = {'tensorboard': ('tensorboard', 'pip install tensorboard', "'csv', 'mlflow'"),
             'mlflow': ('mlflow', 'pip install mlflow-skinny', "'csv'")}
    if kind not in needs:
        return
    package, install, others = needs[kind]
    if any(importlib.util.find_spec(name) is not None for name in modules or (package,)):
        return
    raise RuntimeError(f"TrainingConfig.logger={kind!r} needs the {package!r} package, which "
                       f"is not installed ({install}), or choose logger={others} or 'none'")


def mlflow_tracking_uri(output_dir: str | os.PathLike[str]) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a file store at ``{output_dir}/mlruns``.

    MLflow 3 keeps the file store in maintenance mode and refuses it unless allowed
    (``MLFLOW_ALLOW_FILE_STORE``, set here when unset); its database store needs
    sqlalchemy, which mlflow-skinny lacks. Set ``MLFLOW_TRACKING_URI`` to use a server.
    """
    uri = os.environ.get('MLFLOW_TRACKING_URI')
    if uri:
        return uri
    os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')
    return (Path(output_dir) / MLFLOW_DIR).resolve().as_uri()


def next_version_dir(output_dir: str | os.PathLike[str]) -> Path:
    """``{output_dir}/logs/version_<n>`` with ``n`` one past the highest there (not created)."""
    root = Path(output_dir) / LOG_DIR
    versions = [int(m.group(1)) for entry in (root.iterdir() if root.is_dir() else ())
                if entry.is_dir() and (m := _VERSION.fullmatch(entry.name))]
    return root / f'version_{max(versions, default=-1) + 1}'
