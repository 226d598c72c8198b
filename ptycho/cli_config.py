"""Command-line flags generated from the config dataclasses, and config resolution.

Every field of :class:`ModelConfig` and of the run config (training or inference) becomes a
flag, typed, described and (for closed vocabularies) restricted by the field's own metadata
(:func:`ptycho.config.config.describe`), so the command line can never fall behind the
dataclasses. Flags default to "not given" (``argparse.SUPPRESS``): a YAML file is the base
and only the flags a user actually typed are laid on top. Values are checked by the
dataclasses themselves, so the rules live in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from ptycho.config.config import (
    FieldInfo,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    describe,
    from_dict,
    to_dict,
)

logger = logging.getLogger(__name__)

_C = TypeVar('_C', TrainingConfig, InferenceConfig)

TRUE_WORDS = ('true', 'yes', 'y', 'on', '1')
FALSE_WORDS = ('false', 'no', 'n', 'off', '0')
NONE_WORDS = ('none', 'null', '')

# Friendlier spellings for the fields people type most.
_ALIASES: dict[str, tuple[str, ...]] = {
    'train_data_file': ('--train-data',),
    'test_data_file': ('--test-data',),
    'output_dir': ('--output-dir', '-o'),
    'model_path': ('--model',),
}

# Prefix on the argparse ``dest`` of model fields, so run and model fields never collide.
_MODEL_PREFIX = 'model.'


def parse_bool(text: str | bool) -> bool:
    """``true/false/yes/no/on/off/1/0`` (any case) -> bool; anything else is an error."""
    if isinstance(text, bool):
        return text
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(
        f'expected a boolean ({"/".join(TRUE_WORDS[:3])} or {"/".join(FALSE_WORDS[:3])}), '
        f'found {text!r}')


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_optional(text: str) -> Any:
        return None if text.strip().lower() in NONE_WORDS else parse(text)
    parse_optional.__name__ = getattr(parse, '__name__', 'value')
    return parse_optional


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, found {text!r}') from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, found {text!r}') from None


_PARSERS: dict[type, Callable[[str], Any]] = {int: _int, float: _float, str: str, Path: Path}
_METAVARS: dict[type, str] = {int: 'INT', float: 'FLOAT', str: 'TEXT', Path: 'PATH'}


def _field_parser(info: FieldInfo) -> tuple[Callable[[str], Any], str]:
    """(parse function, metavar) for a field; booleans are handled by the caller."""
    parse = _PARSERS.get(info.type)
    if parse is None:
        raise TypeError(f'no command-line parser for config field {info.name!r} of type '
                        f'{info.type!r}')
    if info.optional:
        return _optional(parse), f'{_METAVARS[info.type]}|none'
    return parse, _METAVARS[info.type]


def _flag_names(name: str) -> list[str]:
    """Friendly alias first (usage shows it), then ``--field_name`` and ``--field-name``."""
    names = list(_ALIASES.get(name, ()))
    for spelling in (f'--{name}', f'--{name.replace("_", "-")}'):
        if spelling not in names:
            names.append(spelling)
    return names


def _add_fields(group: argparse._ArgumentGroup, cls: type, dest_prefix: str,
                skip: Sequence[str]) -> None:
    for info in describe(cls):
        if info.name in skip:
            continue
        help_text = (f'{info.help} (default: {info.default})' if info.help
                     else f'(default: {info.default})')
        help_text = help_text.replace('%', '%%')  # argparse formats help with %
        kwargs: dict[str, Any] = dict(dest=dest_prefix + info.name, default=argparse.SUPPRESS,
                                      help=help_text)
        if info.type is bool:
            # "--flag" alone means true; "--flag false" and friends say it explicitly.
            kwargs.update(type=parse_bool, nargs='?', const=True, metavar='BOOL')
        else:
            parse, metavar = _field_parser(info)
            kwargs.update(type=parse, metavar=metavar)
            if info.choices:
                kwargs.update(choices=info.choices,
                              metavar='{' + ','.join(map(str, info.choices)) + '}')
        group.add_argument(*_flag_names(info.name), **kwargs)


def add_config_flags(parser: argparse.ArgumentParser, cls: type[_C],
                     skip: Sequence[str] = (), include_model: bool = True) -> None:
    """Add one flag per field of ``cls`` (and of :class:`ModelConfig` unless excluded)."""
    _add_fields(parser.add_argument_group(f'{cls.__name__} fields'), cls, '', skip)
    if include_model:
        _add_fields(parser.add_argument_group('ModelConfig fields'), ModelConfig,
                    _MODEL_PREFIX, ())


def given_overrides(namespace: argparse.Namespace, cls: type[_C]) -> dict[str, Any]:
    """The config values the user typed, nested like :func:`to_dict` output."""
    run_fields = {f.name for f in dataclasses.fields(cls)} - {'model'}
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    out: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for dest, value in vars(namespace).items():
        if dest.startswith(_MODEL_PREFIX) and dest[len(_MODEL_PREFIX):] in model_fields:
            model[dest[len(_MODEL_PREFIX):]] = value
        elif dest in run_fields:
            out[dest] = value
    if model:
        out['model'] = model
    return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top; the nested model mapping is merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if key == 'model' and isinstance(merged.get('model'), Mapping):
            merged['model'] = {**merged['model'], **value}
        else:
            merged[key] = value
    return merged


def resolve_config(cls: type[_C], yaml_data: Mapping[str, Any] | None,
                   overrides: Mapping[str, Any], yaml_source: str = '<yaml>') -> _C:
    """Defaults, then the YAML mapping (already read), then the flags; validated by the
    dataclass."""
    base = (to_dict(from_dict(cls, dict(yaml_data), source=yaml_source))
            if yaml_data is not None else to_dict(cls()))
    return from_dict(cls, merge(base, overrides), source='command line')


# --------------------------------------------------------------------------- data conventions
def add_convention_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for the conventions of NPZ files that differ from the contract
    (:class:`ptycho.conventions.DataConventions`, specs/data_contracts.md section 8)."""
    from ptycho.conventions import DC_CHOICES, POSITION_CHOICES, UNITS_CHOICES

    group = parser.add_argument_group('data conventions (NPZ files that differ from the '
                                      'contract; specs/data_contracts.md section 8)')
    group.add_argument('--dc', choices=DC_CHOICES, default='auto',
                       help="where the patterns' DC (zero frequency) is: 'auto' detects a DC at "
                            "the array corner and applies fftshift with a warning; 'centre' "
                            "keeps the patterns as stored; 'corner' always applies fftshift")
    group.add_argument('--positions', choices=POSITION_CHOICES, default='centre',
                       help="what the file's positions name: the patch 'centre' (the contract) "
                            "or the top-left 'corner' of the N x N probe window (centre = "
                            "corner + N/2)")
    group.add_argument('--swap-xy', action='store_true',
                       help="the file's xcoords are rows and ycoords columns: exchange them")
    group.add_argument('--diffraction-units', choices=UNITS_CHOICES, default='auto',
                       help="'amplitude' (sqrt(counts)), 'counts' (converted to sqrt), or "
                            "'auto': integer-valued patterns are counts (overrides the file's "
                            "diffraction_units key)")


def conventions_from_args(args: argparse.Namespace) -> Any:
    """The :class:`ptycho.conventions.DataConventions` the flags of
    :func:`add_convention_flags` ask for."""
    from ptycho.conventions import DataConventions

    return DataConventions(dc=args.dc, positions=args.positions, swap_xy=args.swap_xy,
                           units=args.diffraction_units)
