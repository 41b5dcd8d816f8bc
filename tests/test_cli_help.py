"""Every command, flag and argument of ``modelport`` says what it is in ``--help``."""

from __future__ import annotations

import argparse
from typing import Iterator

from modelport.cli import build_parser


def undescribed(parser: argparse.ArgumentParser, path: str) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from undescribed(subparser, f"{path} {name}")
        elif not action.help:
            yield f"{path} {'/'.join(action.option_strings) or action.dest}"


def test_every_flag_and_argument_has_help() -> None:
    assert list(undescribed(build_parser(), "modelport")) == []
