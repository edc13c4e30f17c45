"""The chapters: their sources in ``notebooks/``, their executed notebooks and their parameters.

A chapter is a jupytext ``py:percent`` file ``notebooks/NN_name.py`` with one cell tagged
``parameters`` (papermill's convention) that assigns literals, at least :data:`REQUIRED_PARAMETERS`.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from covid_lib.paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
#: The committed executed chapters, which the Jupyter Book renders.
CHAPTERS_DIR = REPO_ROOT / "book" / "chapters"
#: Where ``book run`` writes unless told to publish (git-ignored).
SCRATCH_DIR = REPO_ROOT / "_build" / "chapters"
#: The key of the provenance record in an executed notebook's metadata.
METADATA_KEY = "hurdles"
KERNEL_NAME = "python3"
#: Parameters every chapter's ``parameters`` cell must define.
REQUIRED_PARAMETERS = ("data_root", "device", "profile", "seed")
_CHAPTER_RE = re.compile(r"^(?P<number>\d{2})_(?P<name>[a-z0-9][a-z0-9_]*)$")


@dataclass(frozen=True)
class Chapter:
    """One chapter: its jupytext source and where its executed notebook goes."""

    number: str
    name: str
    source: Path

    @property
    def stem(self) -> str:
        return f"{self.number}_{self.name}"

    def output(self, output_dir: str | os.PathLike | None = None) -> Path:
        """The executed notebook's path in ``output_dir`` (default ``book/chapters``)."""
        return Path(output_dir or CHAPTERS_DIR) / f"{self.stem}.ipynb"


def list_chapters(notebooks_dir: str | os.PathLike | None = None) -> list[Chapter]:
    """Every ``NN_name.py`` chapter source in ``notebooks_dir`` (default ``notebooks/``), in order."""
    folder = Path(notebooks_dir or NOTEBOOKS_DIR)
    chapters = []
    for path in sorted(folder.glob("*.py")):
        m = _CHAPTER_RE.match(path.stem)
        if m:
            chapters.append(Chapter(m["number"], m["name"], path))
    return chapters


def resolve_chapter(query: str | Chapter, notebooks_dir: str | os.PathLike | None = None) -> Chapter:
    """Find a chapter by stem (``01_data``), name (``data``), number (``01`` or ``1``) or path.

    Raises:
        ValueError: no chapter, or more than one, matches; the message lists the chapters.
    """
    if isinstance(query, Chapter):
        return query
    chapters = list_chapters(notebooks_dir)
    q = Path(str(query)).stem if str(query).endswith((".py", ".ipynb")) else str(query)
    matches = [c for c in chapters
               if q in (c.stem, c.name, c.number) or (q.isdigit() and int(q) == int(c.number))]
    if len(matches) != 1:
        known = ", ".join(c.stem for c in chapters) or "none"
        what = "no chapter" if not matches else "several chapters"
        raise ValueError(f"{what} matches {query!r}; chapters: {known}")
    return matches[0]


def iter_executed(output_dir: str | os.PathLike | None = None) -> Iterable[tuple[Chapter, Path]]:
    """Every chapter with the path of its executed notebook (which may not exist)."""
    for chapter in list_chapters():
        yield chapter, chapter.output(output_dir)


def source_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a chapter source, with line endings normalised (the staleness key)."""
    text = Path(path).read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(text).hexdigest()


def read_source(path: str | os.PathLike):
    """The chapter source as an nbformat v4 notebook, with a python3 kernelspec so papermill can run it."""
    import jupytext

    nb = jupytext.read(Path(path), fmt="py:percent")
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": KERNEL_NAME})
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    return nb


def read_record(executed: str | os.PathLike) -> dict:
    """The ``metadata["hurdles"]`` provenance record of an executed chapter ({} when it has none)."""
    import nbformat

    nb = nbformat.read(Path(executed), as_version=4)
    return dict(nb.metadata.get(METADATA_KEY, {}))


def parameter_defaults(path: str | os.PathLike) -> dict[str, Any]:
    """The names and default values assigned in the chapter's cell tagged ``parameters``.

    Raises:
        ValueError: there is no such cell, or it holds something other than ``name = literal``.
    """
    nb = read_source(path)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    defaults: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # a docstring
            continue
        else:
            raise ValueError(f"{path}: the parameters cell may only hold `name = literal` lines")
        try:
            defaults[name] = ast.literal_eval(value)
        except ValueError:
            raise ValueError(f"{path}: parameter {name!r} must default to a literal") from None
    missing = [p for p in REQUIRED_PARAMETERS if p not in defaults]
    if missing:
        raise ValueError(f"{path}: the parameters cell lacks {', '.join(missing)}")
    return defaults


def parse_value(text: str) -> Any:
    """A command-line parameter value: papermill's rules (True/False/None/int/float/str) plus lists."""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text in ("None", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text[:1] in "[({":
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return text


def _kind(default: Any) -> str:
    """What a parameter with this default takes, in words."""
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, (list, tuple)):
        return "a list"
    kinds = {int: "an integer", float: "a number", str: "text", dict: "a dict"}
    return kinds.get(type(default), type(default).__name__)


def check_parameter_type(chapter: str, name: str, value: Any, default: Any) -> None:
    """Raise when ``value`` does not have the type of the parameter's default (None takes anything).

    An int is a valid float, and a list and a tuple are interchangeable (papermill stores both as a
    JSON list). Raises:
        ValueError: one line naming the chapter, the parameter, what it takes and the value.
    """
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{chapter}: parameter {name} takes {_kind(default)} (its default is {default!r}), "
                         f"not {value!r}")


def coerce_parameter(chapter: str, name: str, text: str, default: Any) -> Any:
    """The value of ``-p NAME TEXT`` for a parameter whose default is ``default``.

    Text parameters keep the text as given (``-p headline 3`` is ``"3"``); a parameter defaulting to
    None takes :func:`parse_value`'s reading; any other is read by :func:`parse_value` and must then
    have its default's type (:func:`check_parameter_type`).
    """
    if isinstance(default, str):
        return text
    value = parse_value(text)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    check_parameter_type(chapter, name, value, default)
    return value


def parse_parameters(chapter: Chapter, pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Check ``-p NAME VALUE`` pairs against the chapter's ``parameters`` cell and read their values.

    Raises:
        ValueError: one line: a name the cell does not define (listing the chapter's parameters),
            or a value that does not read as the type of the parameter's default.
    """
    defaults = parameter_defaults(chapter.source)
    values: dict[str, Any] = {}
    for name, text in pairs:
        if name not in defaults:
            raise ValueError(f"{chapter.stem} has no parameter {name}; its parameters: {', '.join(defaults)}")
        values[name] = coerce_parameter(chapter.stem, name, text, defaults[name])
    return values
