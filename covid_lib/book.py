"""The book's chapters: run them with papermill, record how, and tell fresh from stale.

A chapter is a jupytext ``py:percent`` file ``notebooks/NN_name.py`` with a cell tagged
``parameters``. :func:`run_chapter` converts it with jupytext into a paired ``.ipynb``, executes
that with papermill and writes ``book/chapters/NN_name.ipynb``, whose ``metadata["hurdles"]``
records what produced it: parameters, profile (and its settings), git commit (and whether the tree
was dirty), data version, the SHA-256 of the ``.py`` source, wall time, python/torch versions and
device. :func:`chapter_status` compares that record with the current source and says whether the
executed chapter is ``fresh``, ``stale`` (and why) or ``not executed``.

Command line::

    python -m covid_lib book list
    python -m covid_lib book run 01_data --profile cpu [-p NAME VALUE ...] [--output-dir DIR]
    python -m covid_lib book check          # exit 1 when a chapter is stale or not executed
    python -m covid_lib book sync           # regenerate the generated tables in book/reproduce.md

The Jupyter Book itself never executes anything (``execute_notebooks: "off"``): it renders the
committed executed chapters, so the HTML builds without data or a GPU.
"""

from __future__ import annotations

import ast
import datetime as _dt
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from covid_lib.paths import REPO_ROOT, cache_dir
from covid_lib.profiles import PROFILES, get_profile
from covid_lib.provenance import data_version, environment
from covid_lib.provenance import git_state as _git_state

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
CHAPTERS_DIR = REPO_ROOT / "book" / "chapters"
REPRODUCE_PAGE = REPO_ROOT / "book" / "reproduce.md"
METADATA_KEY = "hurdles"
KERNEL_NAME = "python3"
_CHAPTER_RE = re.compile(r"^(?P<number>\d{2})_(?P<name>[a-z0-9][a-z0-9_]*)$")
#: Parameters every chapter's ``parameters`` cell must define.
REQUIRED_PARAMETERS = ("data_root", "device", "profile", "seed")


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


@dataclass
class ChapterStatus:
    """Whether an executed chapter matches its source: ``fresh``, ``stale`` or ``not executed``."""

    chapter: str
    state: str
    reasons: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"


# --------------------------------------------------------------------------- chapters


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


# --------------------------------------------------------------------------- provenance


#: What the runner itself writes: a chapter executed earlier in the same run does not make the
#: tree "dirty" for the next one.
RUNNER_OUTPUTS = ("book/chapters", "book/reproduce.md")


def git_state(source: str | os.PathLike | None = None) -> dict[str, Any]:
    """:func:`covid_lib.provenance.git_state` with the runner's own outputs not counted as dirty."""
    return _git_state(source, exclude=RUNNER_OUTPUTS)


# --------------------------------------------------------------------------- running


def _effective_parameters(chapter: Chapter, profile: str, parameters: dict | None) -> tuple[dict, dict]:
    defaults = parameter_defaults(chapter.source)
    passed = dict(parameters or {})
    if "profile" in passed and passed["profile"] != profile:
        raise ValueError(f"profile given twice ({profile!r} and {passed['profile']!r}); use profile=...")
    passed["profile"] = get_profile(profile).name
    unknown = sorted(set(passed) - set(defaults))
    if unknown:
        raise ValueError(f"{chapter.stem} has no parameter {', '.join(unknown)}; "
                         f"its parameters: {', '.join(defaults)}")
    return passed, {**defaults, **passed}


def run_chapter(
    chapter: str | Chapter,
    *,
    profile: str = "cpu",
    parameters: dict | None = None,
    output_dir: str | os.PathLike | None = None,
    kernel_name: str = KERNEL_NAME,
    log_output: bool = False,
    progress_bar: bool = False,
    execution_timeout: int | None = None,
) -> Path:
    """Execute one chapter with papermill and write it, with its provenance, into ``output_dir``.

    Args:
        chapter: a :class:`Chapter` or anything :func:`resolve_chapter` accepts.
        profile: the compute profile (see :mod:`covid_lib.profiles`).
        parameters: other values for the chapter's ``parameters`` cell (``data_root``, ``device``...).
        output_dir: where the executed notebook goes (default ``book/chapters``).
        kernel_name: the Jupyter kernel to run it in.
        log_output: stream the cells' output to the log as they run.
        progress_bar: show papermill's progress bar.
        execution_timeout: seconds a single cell may run (None: no limit).

    Returns:
        The path of the executed notebook. On failure nothing in ``output_dir`` is replaced; the
        partial notebook is kept under the cache (``book/<stem>.failed.ipynb``) and the papermill
        error is raised.
    """
    import nbformat
    import papermill

    chapter = resolve_chapter(chapter)
    injected, effective = _effective_parameters(chapter, profile, parameters)
    out = chapter.output(output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    source_sha = source_hash(chapter.source)
    git = git_state(chapter.source)
    version = data_version(effective.get("data_root"))
    env = environment(str(effective.get("device", "auto")))

    with tempfile.TemporaryDirectory(prefix=f"hurdles-{chapter.stem}-") as tmp:
        paired = Path(tmp) / f"{chapter.stem}.ipynb"
        executed = Path(tmp) / f"{chapter.stem}.executed.ipynb"
        nbformat.write(read_source(chapter.source), paired)
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(paired), str(executed), parameters=injected, kernel_name=kernel_name,
                cwd=str(REPO_ROOT), log_output=log_output, progress_bar=progress_bar,
                execution_timeout=execution_timeout,
            )
        except Exception:
            if executed.exists():
                failed = cache_dir("book") / f"{chapter.stem}.failed.ipynb"
                shutil.copyfile(executed, failed)
                print(f"{chapter.stem} failed; the partial notebook is {failed}", file=sys.stderr)
            raise
        wall = time.perf_counter() - t0
        nb = nbformat.read(executed, as_version=4)

    rel_source = os.path.relpath(chapter.source.resolve(), REPO_ROOT)
    nb.metadata.get("jupytext", {}).pop("formats", None)  # the output is not paired with any text file
    if not nb.metadata.get("jupytext"):
        nb.metadata.pop("jupytext", None)
    pm = nb.metadata.get("papermill", {})
    pm["input_path"] = rel_source
    pm["output_path"] = os.path.relpath(out.resolve(), REPO_ROOT) if out.resolve().is_relative_to(REPO_ROOT) else out.name
    nb.metadata[METADATA_KEY] = {
        "chapter": chapter.stem,
        "source": rel_source,
        "source_sha256": source_sha,
        "profile": effective["profile"],
        "profile_settings": get_profile(effective["profile"]).to_dict(),
        "parameters": effective,
        "data_version": version,
        "git": git,
        "environment": env,
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_time_s": round(wall, 1),
    }
    nbformat.write(nb, out)
    return out


# --------------------------------------------------------------------------- staleness


def read_record(executed: str | os.PathLike) -> dict:
    """The ``metadata["hurdles"]`` record of an executed chapter ({} when it has none)."""
    import nbformat

    nb = nbformat.read(Path(executed), as_version=4)
    return dict(nb.metadata.get(METADATA_KEY, {}))


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def check_executed(
    source: str | os.PathLike,
    executed: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    check_data: bool = True,
) -> ChapterStatus:
    """Compare an executed notebook with the chapter source it claims to come from.

    Stale when: the source's SHA-256 differs from the recorded one; the recorded parameters are
    not those the ``parameters`` cell defines (names), or their values are not the cell's defaults
    overridden by what papermill injected;
    the recorded profile's settings differ from the current profile definition; the notebook holds
    an error output; or (``check_data`` and data present) the data version changed.
    """
    import nbformat

    source, executed = Path(source), Path(executed)
    name = source.stem
    if not executed.is_file():
        return ChapterStatus(name, "not executed", [f"no executed notebook at {executed}"])
    nb = nbformat.read(executed, as_version=4)
    rec = dict(nb.metadata.get(METADATA_KEY, {}))
    if not rec:
        return ChapterStatus(name, "stale", ["no provenance record (metadata['hurdles']); re-run it with the runner"])
    reasons = []
    current = source_hash(source)
    if rec.get("source_sha256") != current:
        reasons.append(f"source changed: {source.name} is {current[:12]}, executed from {str(rec.get('source_sha256'))[:12]}")
    recorded = rec.get("parameters", {})
    try:
        defaults = parameter_defaults(source)
    except ValueError as err:
        reasons.append(str(err))
        defaults = dict(recorded)
    if set(recorded) != set(defaults):
        reasons.append(f"parameters recorded {sorted(recorded)} are not those of the source {sorted(defaults)}")
    injected = nb.metadata.get("papermill", {}).get("parameters", {})
    expected = _jsonable({**defaults, **injected})
    differ = sorted(k for k in set(expected) & set(recorded) if _jsonable(recorded[k]) != expected[k])
    if differ:
        reasons.append("recorded parameters differ from the source's defaults and those papermill "
                       f"injected: {', '.join(differ)}")
    profile = rec.get("profile")
    if profile not in PROFILES:
        reasons.append(f"unknown profile {profile!r}")
    elif rec.get("profile_settings") != PROFILES[profile].to_dict():
        reasons.append(f"profile {profile!r} has changed since the chapter was executed")
    if any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])):
        reasons.append("the executed notebook holds an error")
    if nb.metadata.get("papermill", {}).get("exception"):
        reasons.append("papermill recorded an exception")
    if check_data:
        now = data_version(data_root if data_root is not None else recorded.get("data_root"))
        if now is not None and rec.get("data_version") != now:
            reasons.append(f"data version changed: {now}, executed on {rec.get('data_version')}")
    return ChapterStatus(name, "stale" if reasons else "fresh", reasons, rec)


def chapter_status(chapter: str | Chapter, output_dir: str | os.PathLike | None = None,
                   **kwargs: Any) -> ChapterStatus:
    """:func:`check_executed` for a chapter and its executed notebook in ``output_dir``."""
    chapter = resolve_chapter(chapter)
    return check_executed(chapter.source, chapter.output(output_dir), **kwargs)


# --------------------------------------------------------------------------- generated page tables


_PROFILE_ROWS = (
    ("image_size", "input (crop) side, px"), ("resize_size", "resize shorter side, px"),
    ("epochs", "max epochs"), ("batch_size", "batch size"), ("optimizer", "optimiser"),
    ("lr", "learning rate"), ("weight_decay", "weight decay"), ("lr_patience", "LR plateau patience"),
    ("early_stopping", "early stopping patience"), ("loss", "loss"), ("focal_gamma", "focal gamma"),
    ("seeds", "seeds"), ("max_images", "images per source"), ("segmentation_size", "U-Net input, px"),
    ("segmentation_epochs", "U-Net epochs"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def profiles_table() -> str:
    """A Markdown table of every profile's settings, generated from :data:`PROFILES`."""
    names = list(PROFILES)
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key, label in _PROFILE_ROWS:
        values = []
        for n in names:
            v = getattr(PROFILES[n], key)
            values.append("all" if key == "max_images" and v is None else
                          "none" if key == "early_stopping" and v is None else _cell(v))
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def runtimes_table(output_dir: str | os.PathLike | None = None) -> str:
    """A Markdown table of the committed chapters' recorded profile, device, wall time and commit."""
    lines = ["| chapter | profile | device | CPUs | wall time | torch | commit |", "|---|---|---|---|---|---|---|"]
    for chapter in list_chapters():
        path = chapter.output(output_dir)
        if not path.is_file():
            lines.append(f"| {chapter.stem} | not executed | | | | | |")
            continue
        rec = read_record(path)
        env = rec.get("environment", {})
        git = rec.get("git", {})
        commit = (git.get("commit") or "?")[:7] + (" (dirty)" if git.get("dirty") else "")
        device = env.get("gpu") or env.get("device", "?")
        wall = rec.get("wall_time_s")
        wall_s = "?" if wall is None else (f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.1f} min")
        lines.append(f"| {chapter.stem} | `{rec.get('profile', '?')}` | {device} | {env.get('cpu_count', '?')} "
                     f"| {wall_s} | {env.get('torch', '?')} | {commit} |")
    return "\n".join(lines)


def parameters_table() -> str:
    """A Markdown table of every chapter's parameters and their defaults, read from the sources."""
    lines = ["| chapter | parameter | default |", "|---|---|---|"]
    for chapter in list_chapters():
        for name, value in parameter_defaults(chapter.source).items():
            lines.append(f"| {chapter.stem} | `{name}` | `{value!r}` |")
    return "\n".join(lines)


GENERATED_BLOCKS = {"profiles": profiles_table, "parameters": parameters_table, "runtimes": runtimes_table}


def _block_re(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- BEGIN generated:{name} .*?-->\n)(.*?)(<!-- END generated:{name} -->)", re.S)


def render_page(text: str) -> str:
    """``text`` with every generated block (``<!-- BEGIN generated:NAME ... -->``) regenerated."""
    for name, make in GENERATED_BLOCKS.items():
        text = _block_re(name).sub(lambda m, make=make: m[1] + make() + "\n" + m[3], text)
    return text


def sync_pages(page: str | os.PathLike = REPRODUCE_PAGE) -> bool:
    """Regenerate the generated tables in ``page``; return whether it changed."""
    page = Path(page)
    old = page.read_text()
    new = render_page(old)
    if new != old:
        page.write_text(new)
    return new != old


# --------------------------------------------------------------------------- command line


def _cmd_list(args) -> int:
    for chapter in list_chapters():
        st = chapter_status(chapter, args.output_dir, check_data=not args.no_data_check)
        rec = st.record
        extra = f"  profile={rec.get('profile')}  {rec.get('wall_time_s')} s" if rec else ""
        print(f"{chapter.stem:<24} {st.state}{extra}")
        for reason in st.reasons:
            print(f"    - {reason}")
    return 0


def _cmd_check(args) -> int:
    bad = 0
    for chapter in list_chapters():
        st = chapter_status(chapter, args.output_dir, check_data=not args.no_data_check)
        if not st.fresh:
            bad += 1
            print(f"{chapter.stem}: {st.state}: " + "; ".join(st.reasons), file=sys.stderr)
    page = Path(REPRODUCE_PAGE)
    if page.is_file() and render_page(page.read_text()) != page.read_text():
        bad += 1
        print(f"{page.name}: generated tables out of date; run `python -m covid_lib book sync`", file=sys.stderr)
    if not bad:
        print(f"{len(list_chapters())} chapter(s) fresh")
    return 1 if bad else 0


def _cmd_run(args) -> int:
    chapters = [resolve_chapter(c) for c in args.chapters] or list_chapters()
    if not chapters:
        raise ValueError(f"no chapters in {NOTEBOOKS_DIR}")
    parameters = {name: parse_value(value) for name, value in args.parameters}
    if args.data_root is not None:
        parameters["data_root"] = args.data_root
    if args.device is not None:
        parameters["device"] = args.device
    for chapter in chapters:
        print(f"running {chapter.stem} with profile {args.profile} ...", flush=True)
        out = run_chapter(chapter, profile=args.profile, parameters=parameters, output_dir=args.output_dir,
                          kernel_name=args.kernel, log_output=args.log_output, progress_bar=not args.quiet)
        rec = read_record(out)
        print(f"wrote {out} in {rec['wall_time_s']} s")
    if args.output_dir is None or Path(args.output_dir).resolve() == CHAPTERS_DIR.resolve():
        if REPRODUCE_PAGE.is_file() and sync_pages():
            print(f"updated the generated tables in {REPRODUCE_PAGE.relative_to(REPO_ROOT)}")
    return 0


def _cmd_sync(args) -> int:
    changed = sync_pages()
    print(("updated " if changed else "up to date: ") + str(REPRODUCE_PAGE.relative_to(REPO_ROOT)))
    return 0


def register_cli(subparsers) -> None:
    """Add the ``book`` command group (list, run, check, sync)."""
    book = subparsers.add_parser("book", help="run the chapters and check the executed book")
    cmds = book.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--output-dir", default=None, help="executed notebooks' folder (default book/chapters)")
        return p

    p = common(cmds.add_parser("list", help="chapters and their status (fresh / stale / not executed)"))
    p.add_argument("--no-data-check", action="store_true", help="do not compare the data version")
    p.set_defaults(func=_cmd_list)

    p = common(cmds.add_parser("check", help="exit 1 when a chapter is stale or not executed"))
    p.add_argument("--no-data-check", action="store_true", help="do not compare the data version")
    p.set_defaults(func=_cmd_check)

    p = common(cmds.add_parser("run", help="execute chapters with papermill (all when none is named)"))
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="01_data, data or 01")
    p.add_argument("--profile", default="cpu", choices=list(PROFILES), help="compute profile (default cpu)")
    p.add_argument("-p", "--parameter", dest="parameters", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="set a chapter parameter (papermill's -p)")
    p.add_argument("--data-root", default=None, help="the data root (default: $COVID_LIB_DATA or ../shared/data)")
    p.add_argument("--device", default=None, help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--kernel", default=KERNEL_NAME, help="Jupyter kernel name (default python3)")
    p.add_argument("--log-output", action="store_true", help="print the cells' output as they run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = cmds.add_parser("sync", help="regenerate the profile and runtime tables in book/reproduce.md")
    p.set_defaults(func=_cmd_sync)


def iter_executed(output_dir: str | os.PathLike | None = None) -> Iterable[tuple[Chapter, Path]]:
    """Every chapter with the path of its executed notebook (which may not exist)."""
    for chapter in list_chapters():
        yield chapter, chapter.output(output_dir)


__all__ = [
    "Chapter", "ChapterStatus", "list_chapters", "resolve_chapter", "source_hash", "read_source",
    "parameter_defaults", "parse_value", "git_state", "data_version", "environment", "run_chapter",
    "read_record", "check_executed", "chapter_status", "profiles_table", "parameters_table", "runtimes_table", "render_page",
    "sync_pages", "register_cli", "iter_executed",
]


# --------------------------------------------------------------------------- Sphinx extension


def _dedupe_assets(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated inline scripts and stylesheets from a page.

    Sphinx 7.4 adds each inline script that an extension registers after the builder started
    (sphinx-thebe's and sphinx-togglebutton's) a second time in ``prepare_writing`` (once with
    filename None, once with ''), so every page declared ``const THEBE_JS_URL`` twice and the
    browser logged a SyntaxError. Loaded from ``_config.yml`` (``sphinx.local_extensions``).
    """
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if not isinstance(assets, list):
            continue
        seen, unique = set(), []
        for asset in assets:
            attrs = getattr(asset, "attributes", {}) or {}
            ident = (getattr(asset, "filename", str(asset)) or "", getattr(asset, "priority", None),
                     tuple(sorted((k, str(v)) for k, v in attrs.items())))
            if ident not in seen:
                seen.add(ident)
                unique.append(asset)
        assets[:] = unique


def setup(app) -> dict:
    """Sphinx extension hook: lets ``jupyter-book build`` load this module (see :func:`_dedupe_assets`)."""
    app.connect("html-page-context", _dedupe_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
