"""Every ``modelport`` command the README and docs show works as printed.

Shell blocks (```bash) are run in order against one fresh data directory, as a reader would paste them
(``export NAME=VALUE`` lines set the environment of the commands after them). Commands written inline
(`modelport keys create|list|revoke|rotate`) are abbreviations, not pasteable: each alternative must be a
command the CLI knows, with the flags it shows.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import modelport.store
from modelport.cli import build_parser
from modelport.store import open_sqlite_store

SRC = str(Path(modelport.store.__file__).resolve().parents[2])
ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands not run, and why. Anything else a shell block shows is run; a new entry needs a reason.
NOT_RUN = {
    # Starts a gateway that runs until stopped. The data directory it would create is made by the test
    # instead (open_sqlite_store, what serve's bootstrap opens), so the commands after it find their database.
    ("modelport", "serve"),
}

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`(modelport [^`]+)`(?!`)")
SEPARATORS = {"&&", "||", ";", "|"}


def shell_lines(document: Path) -> list[str]:
    """The command lines of every shell block: continuation lines (ending in a backslash) joined, and a
    quoted string that spans lines (a JSON body) kept in one command, as the shell reads it."""
    lines: list[str] = []
    for block in SHELL_BLOCK.findall(document.read_text()):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.strip() and _quotes_closed(pending):
                lines.append(pending)
                pending = ""
        assert not pending, f"{document.name}: a shell block ends inside a quoted string: {pending[:80]!r}"
    return lines


def _quotes_closed(line: str) -> bool:
    try:
        commands_of(line)
    except ValueError:  # "No closing quotation": the string goes on on the next line
        return False
    return True


def commands_of(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at &&, ||, ; and |), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    commands, current = [], []
    for token in lexer:
        if token in SEPARATORS:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [command for command in commands + [current] if command]


def documented_runs() -> list[tuple[Path, list[tuple[str, list[str]]]]]:
    """Per document: its shell commands in order, as ("export" | "modelport", words)."""
    found = []
    for document in DOCUMENTS:
        steps = []
        for line in shell_lines(document):
            for words in commands_of(line):
                if words[0] == "export":
                    steps.append(("export", words[1:]))
                elif words[0] == "modelport":
                    steps.append(("modelport", words))
        if any(kind == "modelport" for kind, _ in steps):
            found.append((document, steps))
    return found


def test_the_documents_show_commands_to_run() -> None:
    # The extraction itself must find the README walkthrough, or the test below would pass on nothing.
    runs = dict(documented_runs())
    shown = [words[:3] for kind, words in runs[ROOT / "README.md"] if kind == "modelport"]
    assert ["modelport", "keys", "create"] in shown and ["modelport", "providers", "add"] in shown


@pytest.mark.parametrize("document, steps", documented_runs(), ids=[doc.name for doc, _ in documented_runs()])
def test_every_documented_command_runs(tmp_path: Path, document: Path, steps) -> None:
    data_dir = tmp_path / "data"
    open_sqlite_store(data_dir).close()  # what `modelport serve` (or `make serve`), which the walkthrough starts with, leaves
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")},
           "PYTHONPATH": SRC, "MODELPORT_DATA_DIR": str(data_dir)}  # fmt: skip
    for kind, words in steps:
        if kind == "export":
            env.update(word.split("=", 1) for word in words if "=" in word)
            continue
        if tuple(words[:2]) in NOT_RUN:
            continue
        result = subprocess.run([sys.executable, "-m", *words], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, f"{document.name}: `{shlex.join(words)}` failed:\n{result.stderr}"


def inline_commands() -> list[tuple[str, list[str]]]:
    """Each alternative of each inline `modelport ...` span: `keys create|list` gives keys create, keys list."""
    found = []
    for document in DOCUMENTS:
        for span in INLINE.findall(document.read_text()):
            for alternative in span.split(" | "):
                words = alternative.split()
                if words[0] != "modelport":  # `modelport logs list | tail -f | show <id>`: later parts drop it
                    words = ["modelport", span.split()[1], *words]
                flags = [word for word in words if word.startswith("--")]
                path = list(itertools.takewhile(lambda word: re.fullmatch(r"[a-z|]+", word), words[1:]))
                for choice in expand(path):
                    found.append((f"{document.name}: `{span}`", [*choice, *flags]))
    return found


def expand(path: list[str]) -> list[list[str]]:
    if not path:
        return [[]]
    return [[head, *rest] for head in path[0].split("|") for rest in expand(path[1:])]


@pytest.mark.parametrize("where, words", inline_commands(), ids=[" ".join(words) for _, words in inline_commands()])
def test_every_command_named_inline_exists(where: str, words: list[str]) -> None:
    command = [word for word in words if not word.startswith("--")]
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0, f"{where}: `modelport {' '.join(command)}` is not a command"
    for flag in (word for word in words if word.startswith("--")):
        assert flag in help_text.getvalue(), f"{where}: `modelport {' '.join(command)}` has no {flag}"
