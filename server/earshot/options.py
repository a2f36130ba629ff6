"""Command-line options made from the settings they set, so no default is written twice.

A setting's default lives once, on its configuration field beside the code that uses it
(``EngineConfig.beam_size``, ``StreamLimits.idle_timeout_s``, ...). ``config_option``
turns such a field into an argparse option with that default and type; ``add_option``
makes any option. Either reads ``EARSHOT_<OPTION>`` (``--partial-interval`` →
``EARSHOT_PARTIAL_INTERVAL``) when the option is not given, so containers are configured
without a command line; the command line wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV_PREFIX = "EARSHOT_"
TRUE = frozenset({"1", "true", "yes", "on"})
"""Values of a flag's variable that turn it on (case-insensitive); anything else: off."""


def env_name(flag: str) -> str:
    """``--max-batch`` → ``EARSHOT_MAX_BATCH``."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def field_default(config: type, name: str) -> Any:
    """The default of dataclass field ``config.name`` (a ``default_factory`` is called)."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{config.__name__}.{name} has no default")
    raise AttributeError(f"{config.__name__} has no field {name!r}")


def param_default(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s parameter ``name``."""
    default = inspect.signature(function).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{function.__qualname__}({name}) has no default")
    return default


def shown(value: Any) -> str:
    """A default as help text shows it (``100`` for 100.0, ``a,b`` for a tuple), with
    ``%`` escaped for argparse."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, tuple | list):
        value = ",".join(str(item) for item in value)
    return str(value).replace("%", "%%")


def _with_default(help: str | None, default: Any) -> str | None:
    # A help text that ends in its own bracketed note ("[1 on CPU]") explains a default
    # that means "decide at startup"; others get the default appended.
    if help is None or help.rstrip().endswith("]") or default is None or default == "":
        return help
    return f"{help} [{shown(default)}]"


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    default: Any = None,
    help: str | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """``parser.add_argument(flag, ...)`` with ``EARSHOT_<FLAG>`` as the default when set.

    A ``store_true`` flag is on when the variable is 1/true/yes/on. Otherwise the
    variable's text is the default, which argparse converts with ``type`` like a value
    given on the command line (a bad one is reported as such)."""
    raw = os.environ.get(env_name(flag))
    if kwargs.get("action") == "store_true":
        on = raw.strip().lower() in TRUE if raw is not None else bool(default)
        return parser.add_argument(flag, default=on, help=help, **kwargs)
    return parser.add_argument(
        flag, default=default if raw is None else raw, help=_with_default(help, default), **kwargs
    )


def config_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    config: type,
    name: str,
    *,
    scale: float = 1,
    help: str | None = None,
    **kwargs: Any,
) -> argparse.Action:
    """An option for the field ``config.name``: its default and type, ``EARSHOT_<FLAG>``,
    the default appended to ``help``. ``scale``: the field counts in units of this many
    of the option's (bytes for an option in MiB: ``scale=MIB``); the option's value is
    the field's ÷ ``scale``. A bool field becomes a ``store_true`` flag."""
    default = field_default(config, name)
    if isinstance(default, bool):
        return add_option(parser, flag, default=default, help=help, action="store_true", **kwargs)
    if scale != 1 and default is not None:
        default = default / scale
    if "type" not in kwargs and default is not None:
        kwargs["type"] = Path if isinstance(default, Path) else type(default)
    return add_option(parser, flag, default=default, help=help, **kwargs)
