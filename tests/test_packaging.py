"""The project is an installable package: scripts, benchmarks and Ray workers import ``covid_lib``
as any installed module, never by editing ``sys.path``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from covid_lib.paths import REPO_ROOT

#: Folders not searched: the chapters (they may set up their kernel as they like), environments,
#: caches and built output.
_NOT_SEARCHED = {"notebooks", ".venv", ".cache", "_build", "build", ".git", "results", "node_modules"}
#: ``sys.path.insert(...)``, ``sys.path.append(...)``, ``sys.path[:0] = ...``, ``sys.path += ...``
_PATH_EDIT = re.compile(r"sys\s*\.\s*path\s*(\.\s*(insert|append|extend)\s*\(|\[[^\]]*\]\s*=|\+=)")


def _sources() -> list[Path]:
    out = []
    for path in REPO_ROOT.rglob("*"):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in _NOT_SEARCHED or "__pycache__" in rel.parts or any(p.endswith(".egg-info") for p in rel.parts):
            continue
        if path.is_file() and path.suffix in {".py", ".sh", ".md", ".toml", ".ini", ".cfg", ".yml", ".yaml"}:
            out.append(path)
    return out


def test_no_sys_path_edit_outside_notebooks():
    sources = _sources()
    assert REPO_ROOT / "scripts" / "run_priority.py" in sources and REPO_ROOT / "bench" / "bench_train.py" in sources
    offenders = [f"{p.relative_to(REPO_ROOT)}:{n}: {line.strip()}"
                 for p in sources if p != Path(__file__).resolve()
                 for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if _PATH_EDIT.search(line)]
    assert offenders == [], "install the package instead (pip install -e .):\n" + "\n".join(offenders)
    assert _PATH_EDIT.search("sys.path.insert(0, str(ROOT))") and _PATH_EDIT.search("sys.path[:0] = [x]")
    assert not _PATH_EDIT.search("print(sys.path)")


def test_pyproject_declares_the_package_its_data_dependencies_and_command():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["requires-python"] == ">=3.11"
    assert set(project["dynamic"]) == {"version", "dependencies"}
    tool = meta["tool"]["setuptools"]
    assert tool["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert tool["dynamic"]["version"] == {"attr": "covid_lib.__version__"}
    assert tool["packages"]["find"]["include"] == ["covid_lib", "covid_lib.*"]
    assert tool["package-data"] == {"covid_lib.paper": ["*.csv"]}
    assert sorted(p.name for p in (REPO_ROOT / "covid_lib" / "paper").glob("*.csv")) == [
        "tartaglione2020_table1.csv", "tartaglione2020_tables.csv"]
    module, func = project["scripts"]["hurdles"].split(":")
    from covid_lib import cli

    assert module == "covid_lib.cli" and getattr(cli, func) is cli.main


def test_every_subpackage_is_a_package():
    """``packages.find`` only ships folders with an ``__init__.py``: a folder of modules without one
    would import from the checkout but be missing from a built wheel."""
    folders = {p.parent for p in (REPO_ROOT / "covid_lib").rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(f.relative_to(REPO_ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []


def test_the_install_commands_install_the_package():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "pip install -r requirements.txt -e ." in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "-r requirements.txt -e ." in ci and "install -q --no-deps -e ." in ci


def test_covid_lib_imports_from_any_folder(tmp_path):
    """The interpreter running the tests has the package installed (``pip install -e .``): from
    another folder, without the current folder on ``sys.path`` (``-P``), it imports this checkout."""
    proc = subprocess.run([sys.executable, "-P", "-c", "import covid_lib; print(covid_lib.__file__)"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, ("covid_lib is not installed in this environment: run "
                                  f"`pip install -e {REPO_ROOT}` (the README's install line)\n{proc.stderr[-500:]}")
    assert Path(proc.stdout.strip()).resolve() == REPO_ROOT / "covid_lib" / "__init__.py"
