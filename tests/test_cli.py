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


# -------------------------------------------------------------------------------- devices and pipes
@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_check_device_accepts_the_devices(value):
    from covid_lib.profiles import check_device

    assert check_device(value) == value


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "mps", ""])
def test_check_device_refuses_anything_else(value):
    from covid_lib.profiles import check_device, resolve_device

    for check in (check_device, resolve_device):
        with pytest.raises(ValueError, match="unknown device .*; choose auto"):
            check(value)


@pytest.mark.parametrize("argv", [
    ["train", "--composition", "CORDA", "--profile", "smoke", "--device", "gpu"],
    ["grid", "run", "table4", "--profile", "smoke", "--device", "gpu"],
    ["grid", "run", "table4", "--profile", "smoke", "--executor", "ray", "--device", "gpu"],
    ["segment", "train", "--device", "gpu"],
    ["segment", "eval", "--device", "gpu"],
    ["book", "run", "01", "--device", "gpu"],
    ["book", "run", "01", "-p", "device", "gpu"],
])
def test_an_unknown_device_is_one_line_before_anything_runs(argv, capsys):
    from covid_lib.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["error: unknown device 'gpu'; choose auto (CUDA when present), cpu, cuda "
                                         "or cuda:N"] and not captured.out


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_cuda_without_a_gpu_is_one_line_before_the_grid_runs(executor, capsys, monkeypatch):
    import torch

    from covid_lib import grid
    from covid_lib.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setattr(grid, "grid_specs", lambda *a, **k: pytest.fail("the grid started"))
    assert main(["grid", "run", "table4", "--profile", "smoke", "--executor", executor, "--device", "cuda"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: device 'cuda' asked for, but torch sees no CUDA device; use device='auto' or 'cpu'"]


@pytest.mark.parametrize("command", [
    ("grid", "list"), ("book", "list", "--no-data-check"),
    pytest.param(("data", "summary"), marks=pytest.mark.data)])
def test_a_reader_that_stops_early_gets_no_traceback(command, request):
    """``python -m covid_lib grid list | head -1``: the reader closes the pipe; the command ends quietly."""
    if "data" in command:
        request.getfixturevalue("data_root")
    proc = subprocess.Popen([sys.executable, "-m", "covid_lib", *command], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # closed before the first line arrives: every write meets a broken pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err[-2000:]
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-2000:]


def test_head_one_prints_one_line_and_no_traceback():
    proc = subprocess.run(f"{sys.executable} -m covid_lib grid list --profile smoke | head -1", shell=True,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1 and proc.stdout.startswith("table2")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
