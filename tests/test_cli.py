"""The command line's surface: help for every group, a help text for every option, one default
for ``--device``, and a top-level ``--help`` that imports none of the heavy libraries.

Walks the argparse tree that :func:`covid_lib.cli.build_parser` builds; nothing here runs a command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from covid_lib.cli import COMMAND_MODULES, build_parser
from covid_lib.paths import REPO_ROOT
from covid_lib.profiles import PROFILES

GROUPS = [name.rsplit(".", 1)[1] for name in COMMAND_MODULES]
#: Libraries that take seconds to import: the command line imports them inside its commands only.
HEAVY = ("torch", "torchvision", "timm", "pandas", "numpy", "sklearn", "scipy", "matplotlib", "skimage",
         "PIL", "papermill", "nbformat", "jupytext")


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) in the tree, the top one first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.fixture(scope="module")
def tree():
    return list(_walk(build_parser()))


def test_every_group_is_registered(tree):
    top = dict(tree)[()]
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert set(GROUPS) <= set(sub.choices)


def test_top_level_help_exits_0():
    proc = _python("-m", "covid_lib", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for group in GROUPS:
        assert group in proc.stdout
    assert "``" not in proc.stdout


@pytest.mark.parametrize("group", GROUPS)
def test_group_help_exits_0(group):
    proc = _python("-m", "covid_lib", group, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: python -m covid_lib {group}")
    assert "``" not in proc.stdout


def test_no_rst_double_backticks_in_any_help(tree):
    bad = [" ".join(path) or "(top)" for path, parser in tree if "``" in parser.format_help()]
    assert not bad, f"RST double backticks in the help of: {bad}"


def test_every_option_and_argument_has_a_help_text(tree):
    missing = [f"{' '.join(path)}: {a.option_strings[0] if a.option_strings else a.dest}"
               for path, parser in tree for a in _options(parser)
               if a.help is not argparse.SUPPRESS and not (a.help or "").strip()]
    assert not missing, f"options without help: {missing}"


def test_every_command_has_a_help_line(tree):
    missing = []
    for path, parser in tree:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [f"{' '.join(path)} {name}".strip() for name in action.choices if not helps.get(name)]
    assert not missing, f"commands without help: {missing}"


def test_device_defaults_to_auto_wherever_present(tree):
    devices = [(path, a) for path, parser in tree for a in _options(parser) if "--device" in a.option_strings]
    assert devices, "no --device option at all"
    wrong = [f"{' '.join(path)}: {a.default!r}" for path, a in devices if a.default != "auto"]
    assert not wrong, f"--device must default to 'auto': {wrong}"


def test_book_run_help_names_every_profile(tree):
    profile = next(a for a in _options(dict(tree)[("book", "run")]) if "--profile" in a.option_strings)
    assert all(name in profile.help for name in PROFILES)
    assert profile.default in PROFILES


def test_building_the_parser_imports_no_heavy_library():
    code = ("import sys; from covid_lib.cli import build_parser; build_parser(); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    proc = _python("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"--help imports {proc.stdout.strip()}"
