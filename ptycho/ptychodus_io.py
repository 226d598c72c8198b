"""Ptychodus' own files: read a ``diffraction.h5`` + ``product.h5`` pair, write a product.

Reading and writing go through Ptychodus' own functions (``ptychodus.api.io``), so what we
read is what the Ptychodus GUI would load and what we write opens in it. Ptychodus is an
optional dependency: without it these functions raise :class:`PtychodusMissingError`
(a ``ValueError``) with the install command.

Geometry (the conventions themselves are :mod:`ptycho.ptychodus_convert`'s, shared with
the plugin). A stitched reconstruction is a canvas whose pixel (0, 0) is the object
coordinate ``origin_xy`` (object pixels of the *reference frame*). For Ptychodus input the
reference frame is the input product's object; for NPZ input (no physical units) it is the
NPZ's pixel grid with ``x_m = pixel_size * x_px`` and a placeholder pixel size, recorded in
the product's comments.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ptycho.atomic import atomic_path
from ptycho.ptychodus_convert import (
    Frame, inpaint, object_guess, patch_centres_px, probe_stack, replace_object,
)

logger = logging.getLogger(__name__)

DIFFRACTION_NAME = 'diffraction.h5'
PRODUCT_NAME = 'product.h5'
H5_SUFFIXES = ('.h5', '.hdf5')

# Placeholder physics for products made from NPZ input, which records no geometry:
# 10 keV photons, 1 m to a 75 um-pixel detector. Only the GUI's axis labels depend on it.
PLACEHOLDER_ENERGY_EV = 10_000.0
PLACEHOLDER_DETECTOR_DISTANCE_M = 1.0
PLACEHOLDER_DETECTOR_PIXEL_M = 75e-6
_HC_EV_M = 1.239841984e-6


class PtychodusMissingError(ValueError):
    """Ptychodus files were given but the ``ptychodus`` package is not installed."""


def placeholder_frame(N: int) -> Frame:
    """The frame used for NPZ input: object pixels scaled by the far-field pixel size."""
    wavelength = _HC_EV_M / PLACEHOLDER_ENERGY_EV
    pixel = wavelength * PLACEHOLDER_DETECTOR_DISTANCE_M / (N * PLACEHOLDER_DETECTOR_PIXEL_M)
    return Frame(pixel_size_m=pixel)


@dataclass
class PtychodusScan:
    """A scan read from Ptychodus files: the contract data plus the product it came from."""

    raw: Any  # ptycho.raw_data.RawData
    product: Any  # ptychodus.api.product.Product
    diffraction_path: Path
    product_path: Path

    @property
    def frame(self) -> Frame:
        return Frame.of_object(self.product.object_)


def require_ptychodus(what: str) -> None:
    """Fail with one clear line when Ptychodus is needed but absent."""
    try:
        import ptychodus.api.io  # noqa: F401
    except ImportError as exc:
        raise PtychodusMissingError(
            f'{what} needs the ptychodus package, which is not installed ({exc}); '
            f"install it with: pip install 'ptychopinn[ptychodus]'") from exc


def is_ptychodus_input(path: str | os.PathLike[str]) -> bool:
    """A directory, an HDF5 file, or a ``diffraction.h5,product.h5`` pair."""
    text = os.fspath(path)
    if ',' in text:
        return True
    p = Path(text)
    return p.is_dir() or p.suffix.lower() in H5_SUFFIXES


def find_pair(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Resolve a directory, either file of the pair, or ``DIFF,PRODUCT`` to both paths."""
    text = os.fspath(path)
    if ',' in text:
        first, _, second = text.partition(',')
        diffraction, product = Path(first.strip()), Path(second.strip())
    else:
        p = Path(text)
        if p.is_dir():
            diffraction, product = p / DIFFRACTION_NAME, p / PRODUCT_NAME
        elif p.name == PRODUCT_NAME:
            diffraction, product = p.with_name(DIFFRACTION_NAME), p
        else:
            diffraction, product = p, p.with_name(PRODUCT_NAME)
    for role, file in (('diffraction', diffraction), ('product', product)):
        if not file.is_file():
            raise FileNotFoundError(
                f'{file}: Ptychodus {role} file not found (Ptychodus input is a directory '
                f'holding {DIFFRACTION_NAME} and {PRODUCT_NAME}, one of those files with the '
                f'other beside it, or "DIFFRACTION.h5,PRODUCT.h5")')
    return diffraction, product


TRAIN_NPZ = 'train_data.npz'
TEST_NPZ = 'test_data.npz'


@dataclass(frozen=True)
class TrainingFiles:
    """Where a training run's data are: an NPZ (+ optional validation NPZ) or a
    Ptychodus ``diffraction.h5`` + ``product.h5`` pair (``pair`` set, ``train`` is then the
    directory holding it)."""

    train: Path
    test: Path | None = None
    pair: bool = False


def find_training_files(input_path: str | os.PathLike[str]) -> TrainingFiles:
    """Resolve what Ptychodus' ``train(input_path, ...)`` points at, in this order: an
    ``.npz`` file; a directory holding ``train_data.npz`` (optional ``test_data.npz`` for
    validation) or exactly one other ``.npz`` ("Export Training Data..." writes one); a
    directory holding ``diffraction.h5`` + ``product.h5`` (batch mode's input directory)."""
    input_path = Path(input_path)
    if input_path.is_file():
        if input_path.suffix != '.npz':
            raise ValueError(f'{input_path}: expected a training-data .npz file (written by '
                             f'"Export Training Data..."), found a {input_path.suffix!r} file')
        return TrainingFiles(input_path)
    if not input_path.is_dir():
        raise FileNotFoundError(f'{input_path}: training data directory not found')
    train, test = input_path / TRAIN_NPZ, input_path / TEST_NPZ
    if train.is_file():
        return TrainingFiles(train, test if test.is_file() else None)
    npz = sorted(p for p in input_path.glob('*.npz') if p.name != TEST_NPZ)
    if len(npz) == 1:
        return TrainingFiles(npz[0], test if test.is_file() else None)
    if len(npz) > 1:
        raise ValueError(f'{input_path}: several .npz files {[p.name for p in npz]}; name the '
                         f'training file {TRAIN_NPZ} (and the validation file {TEST_NPZ})')
    if (input_path / DIFFRACTION_NAME).is_file() and (input_path / PRODUCT_NAME).is_file():
        return TrainingFiles(input_path, None, pair=True)
    raise FileNotFoundError(
        f'{input_path}: no training data: expected {TRAIN_NPZ} (from "Export Training '
        f'Data..."), one .npz file, or {DIFFRACTION_NAME} + {PRODUCT_NAME}')


# Datasets Ptychodus 1.7's readers take from each file, with their number of axes (None:
# the reader accepts several layouts).
_DIFFRACTION_DATASETS: dict[str, int | None] = {'patterns': 3, 'indexes': 1, 'bad_pixels': 2}
_PRODUCT_DATASETS: dict[str, int | None] = {
    'probe_position_indexes': 1, 'probe_position_x_m': 1, 'probe_position_y_m': 1,
    'probe': None, 'object': None}


def _dataset_shapes(path: Path, role: str, wanted: dict[str, int | None]
                    ) -> dict[str, tuple[int, ...]]:
    """Shapes of the datasets ``wanted`` in an HDF5 file (opened read-only), or a
    ``ValueError`` naming the file, the key, what was expected and what was found."""
    import h5py

    try:
        h5 = h5py.File(path, 'r')
    except OSError as exc:
        raise ValueError(f'{path}: expected a Ptychodus {role} file (HDF5), found a file '
                         f'HDF5 cannot open ({exc})') from exc
    with h5:
        shapes: dict[str, tuple[int, ...]] = {}
        for key, ndim in wanted.items():
            item = h5.get(key)
            if not isinstance(item, h5py.Dataset):
                found = 'no such dataset' if item is None else f'a {type(item).__name__}'
                raise ValueError(f'{path}: key {key!r}: expected the dataset of a Ptychodus '
                                 f'{role} file, found {found} (datasets present: '
                                 f'{sorted(h5)})')
            if ndim is not None and item.ndim != ndim:
                raise ValueError(f'{path}: key {key!r}: expected a {ndim}-D dataset, found '
                                 f'shape {item.shape}')
            shapes[key] = tuple(item.shape)
    return shapes


def _check_layouts(diffraction_path: Path, product_path: Path) -> None:
    """The pair's datasets exist and agree in length, before Ptychodus' readers run (they
    pair positions with ``zip``, so a short array silently drops scan positions)."""
    diffraction = _dataset_shapes(diffraction_path, 'diffraction', _DIFFRACTION_DATASETS)
    count, *pattern = diffraction['patterns']
    if pattern[0] != pattern[1]:
        raise ValueError(f'{diffraction_path}: key \'patterns\': expected square patterns, '
                         f'found {pattern[0]}x{pattern[1]}')
    if diffraction['indexes'][0] != count:
        raise ValueError(f'{diffraction_path}: key \'indexes\': expected one scan index per '
                         f'pattern ({count}), found {diffraction["indexes"][0]}')
    if list(diffraction['bad_pixels']) != pattern:
        raise ValueError(f'{diffraction_path}: key \'bad_pixels\': expected a mask of the '
                         f'pattern shape {tuple(pattern)}, found {diffraction["bad_pixels"]}')
    product = _dataset_shapes(product_path, 'product', _PRODUCT_DATASETS)
    positions = product['probe_position_indexes'][0]
    for key in ('probe_position_x_m', 'probe_position_y_m'):
        if product[key][0] != positions:
            raise ValueError(f'{product_path}: key {key!r}: expected one value per entry of '
                             f'\'probe_position_indexes\' ({positions}), found {product[key][0]}')
    if positions == 0:
        raise ValueError(f'{product_path}: key \'probe_position_indexes\': expected at least '
                         f'one scan position, found none')
    probe = product['probe']
    if len(probe) < 2 or list(probe[-2:]) != pattern:
        raise ValueError(f'{product_path}: key \'probe\': expected probes of the pattern size '
                         f'{pattern[0]}x{pattern[1]} (of {diffraction_path.name}) in the last '
                         f'two axes, found shape {probe}')


def read_pair(path: str | os.PathLike[str]) -> PtychodusScan:
    """Read a Ptychodus diffraction/product pair into the NPZ contract's ``RawData``.

    Patterns are matched to positions by scan index; bad pixels are inpainted the way
    Ptychodus does before it exports PtychoPINN training data; detector counts are
    converted to amplitudes by ``RawData`` (told they are counts, not guessing).
    """
    require_ptychodus('Reading Ptychodus files')
    from ptychodus.api.io import load_diffraction_data, load_product

    from ptycho.raw_data import RawData

    diffraction_path, product_path = find_pair(path)
    _check_layouts(diffraction_path, product_path)
    try:
        data = load_diffraction_data(diffraction_path)
    except (KeyError, OSError, ValueError) as exc:
        raise ValueError(f'{diffraction_path}: not a Ptychodus diffraction file ({exc})') from exc
    try:
        product = load_product(product_path)
    except (KeyError, OSError, ValueError) as exc:
        raise ValueError(f'{product_path}: not a Ptychodus product file ({exc})') from exc

    indexes = np.asarray(data.get_indexes())
    patterns = np.asarray(data.get_patterns())
    unique, counts_of = np.unique(indexes, return_counts=True)
    if len(unique) < len(indexes):
        raise ValueError(f'{diffraction_path}: key \'indexes\': expected one pattern per scan '
                         f'index, found repeated indexes {unique[counts_of > 1][:5].tolist()}')
    row_of = {int(index): row for row, index in enumerate(indexes)}
    positions = product.probe_positions
    wanted = np.asarray(positions.get_indexes())
    missing = [int(i) for i in wanted if int(i) not in row_of]
    if missing:
        raise ValueError(f'{diffraction_path}: key \'indexes\': expected a pattern for every '
                         f'scan index listed in {product_path}, found none for '
                         f'{missing[:5]} ({len(missing)} of {len(wanted)} missing)')
    rows = np.array([row_of[int(i)] for i in wanted], dtype=np.intp)
    if len(rows) < len(indexes):
        logger.info('%s: using %d of %d patterns (those with a position in %s)',
                    diffraction_path, len(rows), len(indexes), product_path.name)
    bad_pixels = np.asarray(data.get_bad_pixels(), dtype=bool)
    counts = inpaint(patterns[rows], bad_pixels, str(diffraction_path))

    for key, coords in (('probe_position_x_m', [p.x_m for p in positions]),
                        ('probe_position_y_m', [p.y_m for p in positions])):
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(coords, np.float64))))
        if bad:
            raise ValueError(f'{product_path}: key {key!r}: expected finite positions, found '
                             f'{bad} NaN/Inf value(s)')
    x_px, y_px = patch_centres_px(product)
    # Ptychodus stores detector counts, always: say so instead of letting a heuristic guess.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # RawData also logs the conversion
        raw = RawData(x_px, y_px, None, None, counts, probe_stack(product),
                      np.zeros(len(counts), dtype=np.int64), objectGuess=object_guess(product),
                      source=str(diffraction_path), diffraction_units='counts',
                      diffraction_key='patterns')
    return PtychodusScan(raw=raw, product=product, diffraction_path=diffraction_path,
                         product_path=product_path)


def _atomic_save_product(path: Path, product: Any) -> Path:
    from ptychodus.api.io import save_product

    with atomic_path(path) as tmp:
        save_product(tmp, product)
    return path


def write_product(path: str | os.PathLike[str], obj: ArrayLike, origin_xy: Sequence[float], *,
                  positions_xy: ArrayLike, probe: ArrayLike, losses: Sequence[float] = (),
                  source: PtychodusScan | None = None, name: str = 'PtychoPINN',
                  nphotons: float = 0.0, refined_probe: ArrayLike | None = None,
                  refined_positions_xy: ArrayLike | None = None) -> Path:
    """Write a reconstruction as a Ptychodus product HDF5, atomically.

    With ``source`` (the input was Ptychodus files) its metadata, positions and probe are
    kept and only the object changes; otherwise a product is built from the contract
    data with placeholder geometry (see the module docstring). ``refined_probe`` (N, N), the
    probe refined with the object, replaces the product's probe in either case;
    ``refined_positions_xy`` (M, 2), patch centres refined with the object (object pixels),
    replace its positions (scan indexes and photon counts kept).
    """
    require_ptychodus('Writing a Ptychodus product file')
    array = np.asarray(obj)
    if array.ndim != 2 or not np.iscomplexobj(array):
        raise ValueError(f'write_product: expected a complex 2-D object, found '
                         f'{array.dtype} {array.shape}')
    if source is not None:
        frame, base = source.frame, source.product
    else:
        frame = placeholder_frame(int(np.asarray(probe).shape[-1]))
        base = _placeholder_product(frame, positions_xy, probe, name=name, nphotons=nphotons)
    product = replace_object(base, array.astype(np.complex64),
                             center_xy_m=frame.canvas_center_m(origin_xy, array.shape),
                             losses=losses, probe=refined_probe,
                             positions=None if refined_positions_xy is None else
                             frame.positions_m(refined_positions_xy, like=base.probe_positions))
    return _atomic_save_product(Path(path), product)


def _placeholder_product(frame: Frame, positions_xy: ArrayLike, probe: ArrayLike, *, name: str,
                         nphotons: float) -> Any:
    """A product for NPZ input: its positions and probe, placeholder physics, no object yet."""
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.product import Product, ProductMetadata

    metadata = ProductMetadata(
        name=name,
        comments=('PtychoPINN reconstruction from NPZ input; the geometry (pixel size, '
                  'energy, detector distance) is a placeholder: NPZ files record none'),
        detector_distance_m=PLACEHOLDER_DETECTOR_DISTANCE_M,
        photon_energy_eV=PLACEHOLDER_ENERGY_EV,
        probe_photon_count=float(nphotons),
        exposure_time_s=0.0,
        mass_attenuation_m2_per_kg=0.0,
        tomography_angle_deg=0.0,
    )
    pixel = PixelGeometry(width_m=frame.pixel_size_m, height_m=frame.pixel_size_m)
    probes = ProbeSequence(array=np.asarray(probe).astype(np.complex64), opr_weights=None,
                           pixel_geometry=pixel)
    empty = Object(array=None, pixel_geometry=pixel,
                   center=ObjectCenter(x_m=frame.center_x_m, y_m=frame.center_y_m))
    return Product(metadata=metadata, probe_positions=frame.positions_m(positions_xy),
                   probes=probes, object_=empty, losses=[])


@dataclass
class ProductObject:
    """The object of a product file, with its canvas origin in the NPZ pixel frame.

    ``origin_xy`` assumes the product was made from NPZ input (placeholder frame); the
    scan positions let a caller that knows them in object pixels place it exactly.
    """

    obj: NDArray[np.complexfloating]
    origin_xy: tuple[float, float]
    pixel_size_m: float
    positions_canvas_xy: NDArray[np.float64]  # scan positions in canvas pixels


def read_product_object(path: str | os.PathLike[str]) -> ProductObject:
    """Read the object (layer 0) of a Ptychodus product file with Ptychodus' reader."""
    require_ptychodus('Reading a Ptychodus product file')
    from ptychodus.api.io import load_product

    path = Path(path)
    try:
        product = load_product(path)
    except (KeyError, OSError, ValueError) as exc:
        raise ValueError(f'{path}: not a Ptychodus product file ({exc})') from exc
    geometry = product.object_.get_geometry()
    obj = object_guess(product)
    # A product of NPZ input: its frame is centred on the NPZ's pixel (0, 0) (placeholder).
    frame = Frame(pixel_size_m=float(geometry.pixel_width_m))
    origin = frame.canvas_origin_px((geometry.center_x_m, geometry.center_y_m), obj.shape)
    positions = np.stack(patch_centres_px(product), axis=1)
    return ProductObject(obj=obj, origin_xy=origin, pixel_size_m=frame.pixel_size_m,
                         positions_canvas_xy=positions)
