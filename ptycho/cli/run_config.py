"""The run config of ``train`` and ``infer``: a ``--config`` YAML as the base, flags on top."""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from ptycho.cli_config import given_overrides, resolve_config
from ptycho.config.config import read_yaml_mapping


def resolve(cls: type, args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(config, flag overrides, raw YAML mapping)."""
    overrides = given_overrides(args, cls)
    if args.config is not None and not args.config.exists():
        raise FileNotFoundError(f'{args.config}: config file not found')
    yaml_data = read_yaml_mapping(args.config) if args.config is not None else None
    config = resolve_config(cls, yaml_data, overrides, yaml_source=str(args.config))
    return config, overrides, yaml_data or {}


def explicit(key: str, overrides: Mapping[str, Any], yaml_data: Mapping[str, Any],
             model: bool = False) -> bool:
    """Whether the user set ``key`` (a ``ModelConfig`` field with ``model``) by flag or YAML,
    as opposed to leaving the default, which the data may then override."""
    if model:
        return key in (overrides.get('model') or {}) or key in (yaml_data.get('model') or {})
    return key in overrides or key in yaml_data
