"""Backend-neutral model bundle: ``{output_dir}/wts.h5.zip`` with a JSON manifest.

Both backends write their weights through :func:`write_bundle`, which builds the zip in a
temporary file beside the target, fsyncs it and renames it into place, so a crash never
leaves a half-written bundle (a temporary left by a ``kill -9`` is removed at the next
save). :func:`read_bundle` checks the archive and the manifest before any backend code
touches the weights, and names the file, the problem and both backends.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ptycho import __version__
from ptycho.atomic import atomic_path, remove_stale_temporaries
from ptycho.config.config import TrainingConfig, as_recorded, from_dict

logger = logging.getLogger(__name__)

BUNDLE_NAME = 'wts.h5.zip'
MANIFEST_NAME = 'manifest.json'
FORMAT_NAME = 'ptychopinn-bundle'
FORMAT_VERSION = 1
BACKENDS = ('tensorflow', 'pytorch')


class BundleError(ValueError):
    """A model bundle is missing, corrupt, or belongs to another backend."""


@dataclass
class Bundle:
    """A bundle read back: its manifest and the raw bytes of its member files."""

    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]

    @property
    def backend(self) -> str:
        return str(self.manifest['backend'])

    @property
    def intensity_scale(self) -> float:
        return float(self.manifest['intensity_scale'])

    @property
    def config(self) -> dict[str, Any]:
        """The run config in today's terms (:func:`ptycho.config.config.as_recorded`: model
        settings newer than the bundle at their old values, settings that had no effect at
        their one implemented value)."""
        return as_recorded(self.manifest.get('config', {}), f'{self.path}:manifest.json')


def bundle_path(location: str | os.PathLike[str]) -> Path:
    """Resolve a bundle directory or the ``wts.h5.zip`` file itself to the zip path; a
    folder holding an unpacked bundle (no zip, a ``manifest.json``) to that manifest."""
    location = Path(location)
    if not location.is_dir():
        return location
    zipped, manifest = location / BUNDLE_NAME, location / MANIFEST_NAME
    return manifest if not zipped.exists() and manifest.is_file() else zipped


def write_bundle(output_dir: str | os.PathLike[str], backend: str, files: Mapping[str, bytes],
                 *, config: Mapping[str, Any], intensity_scale: float,
                 model_names: list[str], extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``output_dir/wts.h5.zip`` atomically and return its path."""
    if backend not in BACKENDS:
        raise BundleError(f'write_bundle: backend must be one of {list(BACKENDS)}, found {backend!r}')
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_cfg = config.get('model', {}) if isinstance(config.get('model'), Mapping) else {}
    manifest: dict[str, Any] = {
        'format': FORMAT_NAME,
        'format_version': FORMAT_VERSION,
        'backend': backend,
        'model_names': list(model_names),
        'config': dict(config),
        'intensity_scale': float(intensity_scale),
        'N': model_cfg.get('N'),
        'gridsize': model_cfg.get('gridsize'),
        'created': _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'),
        'ptychopinn_version': __version__,
    }
    manifest.update(extra or {})
    target = output_dir / BUNDLE_NAME
    remove_stale_temporaries(target)  # what a killed earlier save left beside it
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, default=str))
        for name, data in files.items():
            archive.writestr(name, data)
    logger.info('Saved %s model bundle to %s', backend, target)
    return target


def read_bundle(location: str | os.PathLike[str], expected_backend: str | None = None) -> Bundle:
    """Open and check a bundle; ``expected_backend`` rejects the other backend's bundles."""
    path = bundle_path(location)
    if path.name == MANIFEST_NAME and path.is_file():
        # Ptychodus' built-in PtychoPINN library unpacks IN/model.zip (a bundle) into a
        # folder and hands over the folder: read the members from there.
        files = {member.name: member.read_bytes() for member in sorted(path.parent.iterdir())
                 if member.is_file()}
        return _checked(path, files, expected_backend)
    if not path.exists():
        raise BundleError(f'{path}: model bundle not found (expected {BUNDLE_NAME} written by '
                          f'training with the tensorflow or pytorch backend, or a folder '
                          f'holding an unpacked bundle with its {MANIFEST_NAME}; Ptychodus '
                          f'batch mode wants that {BUNDLE_NAME} copied as IN/model.zip)')
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise BundleError(f'{path}: corrupt model bundle (member {bad!r} fails its CRC)')
            names = archive.namelist()
            if MANIFEST_NAME not in names:
                raise BundleError(
                    f'{path}: not a PtychoPINN model bundle: no {MANIFEST_NAME} inside '
                    f'(found {names[:5]}); bundles are written by the tensorflow and pytorch '
                    f'backends of this package')
            files = {name: archive.read(name) for name in names}
    except zipfile.BadZipFile as exc:
        raise BundleError(f'{path}: corrupt or truncated model bundle ({exc}); retrain or copy '
                          f'the file again (tensorflow and pytorch bundles are both zip files)'
                          ) from exc
    return _checked(path, files, expected_backend)


def _checked(path: Path, files: dict[str, bytes], expected_backend: str | None) -> Bundle:
    """The bundle of these members (``manifest.json`` among them), every key checked."""
    try:
        manifest = json.loads(files.pop(MANIFEST_NAME))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f'{path}: {MANIFEST_NAME} is not valid JSON ({exc})') from exc
    if not isinstance(manifest, dict):
        raise BundleError(f'{path}: {MANIFEST_NAME}: expected a JSON object of bundle keys, '
                          f'found {type(manifest).__name__}')
    if manifest.get('format') != FORMAT_NAME:
        raise BundleError(f'{path}: {MANIFEST_NAME} key "format": expected {FORMAT_NAME!r}, '
                          f'found {manifest.get("format")!r}')
    if manifest.get('format_version') != FORMAT_VERSION:
        raise BundleError(f'{path}: {MANIFEST_NAME} key "format_version": expected '
                          f'{FORMAT_VERSION}, found {manifest.get("format_version")!r}')
    backend = manifest.get('backend')
    if backend not in BACKENDS:
        raise BundleError(f'{path}: {MANIFEST_NAME} key "backend": expected one of '
                          f'{list(BACKENDS)}, found {backend!r}')
    if expected_backend is not None and backend != expected_backend:
        raise BundleError(
            f'{path}: this model bundle was trained with the {backend} backend, but the '
            f'{expected_backend} backend was asked to load it; use backend={backend!r} '
            f'(bundles are not interchangeable between tensorflow and pytorch)')
    if 'intensity_scale' not in manifest:
        raise BundleError(f'{path}: {MANIFEST_NAME} has no "intensity_scale" key')
    scale = manifest['intensity_scale']
    if (isinstance(scale, bool) or not isinstance(scale, (int, float))
            or not math.isfinite(scale) or scale <= 0):
        raise BundleError(f'{path}: {MANIFEST_NAME} key "intensity_scale": expected a finite '
                          f'number > 0, found {scale!r}')
    bundle = Bundle(path=path, manifest=manifest, files=files)
    _check_config(bundle)
    return bundle


def _check_config(bundle: Bundle) -> None:
    """The manifest's run config is a valid ``TrainingConfig`` and agrees with the
    manifest's own ``N`` and ``gridsize``."""
    where = f'{bundle.path}: {MANIFEST_NAME} key "config"'
    config = bundle.manifest.get('config')
    if not isinstance(config, dict) or not isinstance(config.get('model'), dict):
        found = (f'model settings {config.get("model")!r}' if isinstance(config, dict)
                 else repr(config))
        raise BundleError(f'{where}: expected the run settings with a "model" mapping, '
                          f'found {found}')
    try:
        model = from_dict(TrainingConfig, bundle.config, source=where).model
    except ValueError as exc:
        raise BundleError(str(exc)) from exc
    for key in ('N', 'gridsize'):
        recorded = bundle.manifest.get(key)
        if recorded is not None and recorded != getattr(model, key):
            raise BundleError(f'{bundle.path}: {MANIFEST_NAME} key "{key}": expected '
                              f'{getattr(model, key)} (config.model.{key}), found {recorded!r}')


def peek_backend(location: str | os.PathLike[str]) -> str:
    """The backend recorded in a bundle (used by the dispatcher and the CLI)."""
    return read_bundle(location).backend
