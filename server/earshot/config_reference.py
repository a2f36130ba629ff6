"""docs/configuration.md, generated from the ``earshot`` command's argparse parser.

    python -m earshot.config_reference > docs/configuration.md
    python -m earshot.config_reference --write        # the same, into docs/configuration.md

The page is built from ``earshot.cli.build_parser()`` so that it cannot drift from the
code; ``tests/test_docs.py`` fails when the committed page differs from this output.
The parser is built under a neutral environment (no ``EARSHOT_*`` variable set, a
placeholder ``HOME`` written as ``~``), so the page shows the built-in defaults rather
than this machine's. An option's environment variable is found by recording which
``EARSHOT_*`` names are read while that option is added (its default is computed from
the variable right before ``add_argument``), or from a ``[$EARSHOT_...]`` note in its
help text.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

ENV_PREFIX = "EARSHOT_"
PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
"""Where ``--write`` puts the page: docs/ of the checkout this module sits in."""
REGENERATE = "python -m earshot.config_reference --write"
HOME_MARKER = "/__home__"
"""``HOME`` while the parser is built; written as ``~`` on the page."""

OTHER_VARIABLES: tuple[tuple[str, str], ...] = (
    (
        "EARSHOT_API_KEYS",
        "API key entries, comma-separated, in the keys-file syntax (`serve`; added to"
        " `--api-keys-file`). Raw keys are never taken from the command line.",
    ),
    (
        "EARSHOT_CACHE_DIR",
        "Earshot's cache folder; the bundled model is assembled under `models/` in it"
        " [`$XDG_CACHE_HOME/earshot`, else `~/.cache/earshot`]",
    ),
    (
        "EARSHOT_FAULT_INJECT",
        "test hook only: makes the engine fail on purpose (see `server/earshot/faults.py`)",
    ),
    ("EARSHOT_PORT", "port the container `HEALTHCHECK` probes [8000]"),
    (
        "EARSHOT_REDIS_PASSWORD",
        "Redis password for `--jobs redis://...` (`serve` and `worker`), used when the URL"
        " carries none; never on the command line",
    ),
    (
        "EARSHOT_REDIS_PASSWORD_FILE",
        "a file holding that password (a mounted Secret), read when"
        " `EARSHOT_REDIS_PASSWORD` is unset",
    ),
)
"""Variables read outside the parser, so the parser cannot list them."""


class _RecordingEnviron(MutableMapping[str, str]):
    """Stand-in for ``os.environ`` while the parser is built: neutral values, and a
    record of the ``EARSHOT_*`` names looked up (in order, since the last ``take``)."""

    def __init__(self) -> None:
        self._values = {"HOME": HOME_MARKER}
        self._reads: list[str] = []

    def __getitem__(self, key: str) -> str:
        if key.startswith(ENV_PREFIX) and key not in self._reads:
            self._reads.append(key)
        return self._values[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def take(self) -> list[str]:
        reads, self._reads = self._reads, []
        return reads


def traced_parser(
    build: Callable[[], argparse.ArgumentParser] | None = None,
) -> tuple[argparse.ArgumentParser, dict[argparse.Action, list[str]]]:
    """Build the parser under a neutral environment; return it with the ``EARSHOT_*``
    variables each option read while it was added."""
    if build is None:
        from earshot.cli import build_parser

        build = build_parser
    environ = _RecordingEnviron()
    variables: dict[argparse.Action, list[str]] = {}
    add_argument = argparse._ActionsContainer.add_argument

    def recording_add_argument(
        container: argparse._ActionsContainer, *args: Any, **kwargs: Any
    ) -> argparse.Action:
        action = add_argument(container, *args, **kwargs)
        variables[action] = environ.take()
        return action

    with (
        mock.patch.object(os, "environ", environ),
        mock.patch.object(argparse._ActionsContainer, "add_argument", recording_add_argument),
    ):
        parser = build()
    return parser, variables


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                yield name, helps.get(name, ""), subparser


def _format_default(action: argparse.Action) -> str:
    default = action.default
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return "on" if default else "off"
    if default is None or default == "" or default == []:
        return "–"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    if isinstance(default, list | tuple):
        default = ",".join(str(item) for item in default)
    return f"`{default}`"


def _cell(text: str) -> str:
    """One table cell: one line, no column breaks, no stray HTML tags (``<hex>``)."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    if action.choices is not None and not isinstance(action.choices, Mapping):
        choices = ", ".join(f"`{choice}`" for choice in action.choices)
        text = f"{text} (one of {choices})" if text else f"one of {choices}"
    return _cell(text)


def _variables(action: argparse.Action, recorded: list[str]) -> list[str]:
    names = list(recorded)
    for name in re.findall(r"\$(EARSHOT_[A-Z0-9_]+)", action.help or ""):
        if name not in names:
            names.append(name)
    return names


def _option_rows(
    parser: argparse.ArgumentParser, variables: dict[argparse.Action, list[str]]
) -> Iterator[tuple[str | None, list[str]]]:
    """(group title, table rows): first the untitled arguments (positionals, then plain
    options) as one table, then each named argument group."""
    untitled = ("positional arguments", "options")
    groups = sorted(parser._action_groups, key=lambda group: group.title not in untitled)
    merged: list[str] = []
    for group in groups:
        rows = [
            _row(parser, action, variables.get(action, []))
            for action in group._group_actions
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
        ]
        if group.title in untitled:
            merged += rows
            continue
        if merged:
            yield None, merged
            merged = []
        if rows:
            yield group.title, rows
    if merged:
        yield None, merged


def _row(parser: argparse.ArgumentParser, action: argparse.Action, recorded: list[str]) -> str:
    name = ", ".join(f"`{flag}`" for flag in action.option_strings) or f"`{action.dest}`"
    env = ", ".join(f"`{n}`" for n in _variables(action, recorded)) or "–"
    default = _format_default(action) if action.option_strings else "(required)"
    return f"| {name} | {env} | {default} | {_help(parser, action)} |"


def render(build: Callable[[], argparse.ArgumentParser] | None = None) -> str:
    """The whole configuration page, as Markdown."""
    parser, variables = traced_parser(build)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from earshot.cli's parser. Do not edit: run",
        f"     {REGENERATE}  -->",
        "",
        "Every option of every `earshot` subcommand, generated from the command's own",
        f"argument parser (`{REGENERATE}`; `tests/test_docs.py` fails when",
        "this page is stale). The *environment* column names the variable an option reads",
        "when it is not given on the command line (the command line wins); containers are",
        "configured that way. Defaults are the built-in ones, with no `EARSHOT_*` variable",
        "set; `~` is the home directory. The bracketed note that ends a *meaning* is the",
        'help text\'s own: where the stored default means "decide at startup" (`0`, `–`),',
        "it gives the value actually used.",
        "",
        "Subcommands: "
        + ", ".join(f"[`{name}`](#earshot-{name})" for name, _, _ in _subcommands(parser))
        + ".",
    ]
    for name, summary, subparser in _subcommands(parser):
        lines += ["", f"## earshot {name}"]
        if summary:
            lines += ["", summary[0].upper() + summary[1:] + "."]
        for title, rows in _option_rows(subparser, variables):
            if title:
                lines += ["", f"### {title[0].upper() + title[1:]}"]
            lines += ["", "| option | environment | default | meaning |", "|---|---|---|---|"]
            lines += rows
    lines += [
        "",
        "## Other environment variables",
        "",
        "Read outside the argument parser, so listed here by hand:",
        "",
        "| variable | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in OTHER_VARIABLES]
    return ("\n".join(lines) + "\n").replace(HOME_MARKER, "~")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m earshot.config_reference",
        description="Print docs/configuration.md, generated from the earshot CLI parser.",
    )
    parser.add_argument(
        "--write",
        nargs="?",
        const=PAGE,
        type=Path,
        metavar="PATH",
        help=f"write the page instead of printing it [{PAGE.relative_to(PAGE.parents[1])}]",
    )
    args = parser.parse_args(argv)
    page = render()
    if args.write is None:
        sys.stdout.write(page)
    else:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
