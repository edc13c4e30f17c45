"""Execute a chapter with papermill and write it with its provenance record.

:func:`run_chapter` converts the chapter's ``py:percent`` source with jupytext, executes it with
papermill and writes ``<output_dir>/NN_name.ipynb`` whose ``metadata["hurdles"]`` records what
produced it: parameters, profile (and its settings), git commit (and whether the tree was dirty),
data version, the SHA-256 of the source, wall time and the environment. :func:`register_executed`
adds the same record to a notebook that plain papermill executed.

The default output folder is the git-ignored scratch folder ``_build/chapters``; the committed
chapters in ``book/chapters`` are replaced only when asked for, and only once a run succeeded
(written to a temporary file, then renamed), so a failed or interrupted run leaves them as they were.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from covid_lib.book.chapters import (
    KERNEL_NAME, METADATA_KEY, SCRATCH_DIR, Chapter, check_parameter_type, parameter_defaults, read_source,
    resolve_chapter, source_hash,
)
from covid_lib.paths import REPO_ROOT, cache_dir
from covid_lib.profiles import get_profile
from covid_lib.provenance import BOOK_OUTPUTS, changed_paths, data_version, environment
from covid_lib.provenance import git_state as _git_state

#: :data:`covid_lib.report.judge.READ_LOG_ENV` (not imported: the judge's imports are heavy).
READ_LOG_ENV = "COVID_LIB_VERDICTS_READ_LOG"

#: What the runner itself writes: a chapter executed earlier in the same run does not make the
#: tree "dirty" for the next one.
RUNNER_OUTPUTS = BOOK_OUTPUTS
#: Passed to the kernel: its INFO/WARNING log lines (e.g. "Kernel is running over TCP without
#: encryption") go to the terminal, not to the notebook, and say nothing about the chapter.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=ERROR",)
#: How many lines of the failing cell a failure message shows.
FAILED_CELL_LINES = 6


def quiet_shutdown_kernel_manager() -> type:
    """The kernel manager class papermill uses here: jupyter_client's, except that shutting the
    kernel down does not interrupt it first.

    jupyter_client's ``shutdown_kernel`` sends the kernel a SIGINT before the shutdown request.
    While the kernel is idle it ignores SIGINT; but when the signal lands while it is still inside
    a message handler (it has sent the last cell's reply but not yet returned, which a loaded
    machine stretches), ipykernel catches a KeyboardInterrupt and logs
    ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel`` on the terminal, at the one level
    :data:`KERNEL_ARGUMENTS` still lets through, though the chapter ran to its end. The runner shuts
    the kernel down only once papermill has finished the notebook (or stopped at a failed cell), so
    there is nothing to interrupt: the shutdown request alone ends the kernel, and a kernel that does
    not stop is still sent SIGTERM, then SIGKILL, by ``finish_shutdown``. Interrupting a running
    cell (a cell timeout) still works: only the interrupt made on the way to a shutdown is skipped.
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # set by shutdown_kernel before it interrupts
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def verdicts_shown(claims: list[str], path: str | os.PathLike | None = None) -> dict[str, str | None]:
    """For each claim a chapter read from ``book/verdicts.json`` (or ``path``), the digest of what
    the file says of it (:func:`covid_lib.report.judge.claim_digest`): recorded with the executed
    chapter, so that ``book check`` finds it stale once ``book judge`` changes one of them."""
    # lazy: the judge reads records (pandas, the grids); only a chapter that shows verdicts needs it
    from covid_lib.report.judge import claim_digest, read_verdicts

    if not claims:
        return {}
    data = read_verdicts(path)
    return {claim: claim_digest(claim, data) for claim in sorted(set(claims))}


class ChapterFailed(RuntimeError):
    """A chapter raised in one of its cells; the message names the cell and the error in a few lines."""


def git_state(source: str | os.PathLike | None = None, *, written_in_run: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`covid_lib.provenance.git_state` with the runner's own outputs not counted as dirty.

    ``written_in_run``: tracked files that chapters executed earlier in the same ``book run`` wrote
    (e.g. chapter 12's ``book/audit/saliency_by_seen.csv``, which chapter 14 reads); they do not
    count as dirty either, and the record lists them (``written_in_run``) so a reader sees that the
    chapter read them as written by that run, not as committed."""
    written = sorted(set(written_in_run))
    state = _git_state(source, exclude=(*RUNNER_OUTPUTS, *written))
    if written:
        state["written_in_run"] = written
    return state


def tracked_changes() -> set[str] | None:
    """Tracked files that differ from the commit, the runner's own outputs aside (None without git)."""
    return changed_paths(exclude=RUNNER_OUTPUTS)


def run_outputs(before: set[str] | None) -> set[str]:
    """Tracked files changed since ``before`` (:func:`tracked_changes` taken before a chapter ran):
    what that chapter wrote."""
    after = tracked_changes()
    if before is None or after is None:
        return set()
    return after - before


def _effective_parameters(chapter: Chapter, profile: str | None, parameters: dict | None) -> tuple[dict, dict]:
    """The parameters papermill injects and the ones the chapter then runs with (defaults + injected).

    The profile is ``profile`` or, when that is None, ``parameters["profile"]`` (else the cell's); both
    given and different is an error. Names the ``parameters`` cell does not define, and values that
    do not have their default's type, are errors too (:func:`check_parameter_type`).
    """
    defaults = parameter_defaults(chapter.source)
    passed = dict(parameters or {})
    if profile is not None and passed.get("profile", profile) != profile:
        raise ValueError(f"profile given twice: {profile!r} and profile={passed['profile']!r}; give it once")
    passed["profile"] = get_profile(profile if profile is not None else passed.get("profile", defaults["profile"])).name
    unknown = sorted(set(passed) - set(defaults))
    if unknown:
        raise ValueError(f"{chapter.stem} has no parameter {', '.join(unknown)}; "
                         f"its parameters: {', '.join(defaults)}")
    for name, value in passed.items():
        check_parameter_type(chapter.stem, name, value, defaults[name])
    return passed, {**defaults, **passed}


def failure_message(stem: str, err: Any, partial: Path | None = None) -> str:
    """A few lines for a papermill ``PapermillExecutionError``: the cell's first lines and the error."""
    lines = str(getattr(err, "source", "") or "").splitlines()
    shown = [f"    {line}" for line in lines[:FAILED_CELL_LINES]]
    if len(lines) > FAILED_CELL_LINES:
        shown.append(f"    ... ({len(lines) - FAILED_CELL_LINES} more lines)")
    evalue = str(getattr(err, "evalue", "") or "").strip().splitlines()
    head = f"{stem} failed in cell In [{getattr(err, 'exec_count', '?')}]:"
    out = [head, *shown, f"  {getattr(err, 'ename', type(err).__name__)}: {evalue[0] if evalue else ''}".rstrip()]
    if partial is not None:
        out.append(f"  the partial notebook (with the full traceback) is {partial}")
    return "\n".join(out)


def write_notebook_atomic(nb, path: str | os.PathLike) -> Path:
    """Write ``nb`` to ``path`` through a temporary file in the same folder and a rename.

    An error or an interrupt while writing leaves any existing ``path`` byte-identical.
    """
    import nbformat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".ipynb.tmp", dir=path.parent)
    os.close(fd)
    try:
        nbformat.write(nb, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finish(nb, chapter: Chapter, out: Path, effective: dict, *, git: dict, version: str | None,
            env: dict, started: str | None, wall: float | None, **extra: Any) -> Path:
    """Add the provenance record to an executed notebook and write it (atomically) to ``out``."""
    rel_source = os.path.relpath(chapter.source.resolve(), REPO_ROOT)
    nb.metadata.get("jupytext", {}).pop("formats", None)  # the output is not paired with any text file
    if not nb.metadata.get("jupytext"):
        nb.metadata.pop("jupytext", None)
    pm = nb.metadata.get("papermill", {})
    pm["input_path"] = rel_source
    resolved = out.resolve()
    pm["output_path"] = os.path.relpath(resolved, REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else out.name
    nb.metadata[METADATA_KEY] = {
        "chapter": chapter.stem,
        "source": rel_source,
        "source_sha256": source_hash(chapter.source),
        "profile": effective["profile"],
        "profile_settings": get_profile(effective["profile"]).to_dict(),
        "parameters": effective,
        "data_version": version,
        "git": git,
        "environment": env,
        "started_utc": started,
        "wall_time_s": None if wall is None else round(float(wall), 1),
        **extra,
    }
    return write_notebook_atomic(nb, out)


def run_chapter(
    chapter: str | Chapter,
    *,
    profile: str | None = None,
    parameters: dict | None = None,
    output_dir: str | os.PathLike | None = None,
    kernel_name: str = KERNEL_NAME,
    log_output: bool = False,
    progress_bar: bool = False,
    execution_timeout: int | None = None,
    start_timeout: int = 600,
    version: str | None = None,
    failed_dir: str | os.PathLike | None = None,
    written_in_run: Sequence[str] = (),
) -> Path:
    """Execute one chapter with papermill and write it, with its provenance, into ``output_dir``.

    Args:
        chapter: a :class:`Chapter` or anything :func:`resolve_chapter` accepts.
        profile: the compute profile (see :mod:`covid_lib.profiles`); None: ``parameters["profile"]``,
            else the default of the chapter's ``parameters`` cell (``cpu``).
        parameters: other values for the chapter's ``parameters`` cell (``data_root``, ``device``...).
        output_dir: where the executed notebook goes (default: the scratch folder ``_build/chapters``;
            pass ``book/chapters`` to publish).
        kernel_name: the Jupyter kernel to run it in.
        log_output: stream the cells' output to the log as they run.
        progress_bar: show papermill's progress bar.
        execution_timeout: seconds a single cell may run (None: no limit).
        start_timeout: seconds the kernel may take to start (a loaded machine needs more than
            papermill's 60).
        version: the data version to record (default: that of the ``data_root`` parameter); the
            audit passes its manifest's.
        failed_dir: where a failed run's partial notebook goes (default: the cache's ``book/``).
        written_in_run: tracked files that chapters executed before it in the same run wrote
            (see :func:`git_state`).

    Returns:
        The path of the executed notebook.

    Raises:
        ChapterFailed: a cell raised. Nothing in ``output_dir`` is replaced; the partial notebook is
            kept under the cache (``book/<stem>.failed.ipynb``).
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    chapter = resolve_chapter(chapter)
    injected, effective = _effective_parameters(chapter, profile, parameters)
    out = chapter.output(output_dir or SCRATCH_DIR)
    git = git_state(chapter.source, written_in_run=written_in_run)
    version = version if version is not None else data_version(effective.get("data_root"))
    env = environment(str(effective.get("device", "auto")))

    with tempfile.TemporaryDirectory(prefix=f"hurdles-{chapter.stem}-") as tmp:
        paired = Path(tmp) / f"{chapter.stem}.ipynb"
        executed = Path(tmp) / f"{chapter.stem}.executed.ipynb"
        nbformat.write(read_source(chapter.source), paired)
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        read_log = Path(tmp) / "verdicts-read.txt"
        read_log.touch()
        before = os.environ.get(READ_LOG_ENV)
        os.environ[READ_LOG_ENV] = str(read_log)  # the kernel inherits it: the claims it reads land there
        try:
            papermill.execute_notebook(
                str(paired), str(executed), parameters=injected, kernel_name=kernel_name,
                cwd=str(REPO_ROOT), log_output=log_output, progress_bar=progress_bar,
                execution_timeout=execution_timeout, start_timeout=start_timeout,
                extra_arguments=list(KERNEL_ARGUMENTS), kernel_manager_class=quiet_shutdown_kernel_manager(),
            )
        except PapermillExecutionError as err:
            partial = None
            if executed.exists():
                partial = Path(failed_dir or cache_dir("book")) / f"{chapter.stem}.failed.ipynb"
                shutil.copyfile(executed, partial)
            raise ChapterFailed(failure_message(chapter.stem, err, partial)) from err
        finally:
            if before is None:
                os.environ.pop(READ_LOG_ENV, None)
            else:
                os.environ[READ_LOG_ENV] = before
        wall = time.perf_counter() - t0
        nb = nbformat.read(executed, as_version=4)
        shown = verdicts_shown(read_log.read_text().split())

    return _finish(nb, chapter, out, effective, git=git, version=version, env=env,
                   started=started.isoformat(timespec="seconds"), wall=wall, verdicts_read=shown)


def register_executed(
    executed: str | os.PathLike,
    *,
    chapter: str | Chapter | None = None,
    output_dir: str | os.PathLike | None = None,
) -> Path:
    """Add the provenance record to a chapter that plain papermill executed (the README's route).

    The notebook's code must be the chapter source's (plus papermill's injected cell), and it must
    hold no error. The parameters are the source's defaults overridden by those papermill recorded;
    git state, data version and environment are this machine's now.

    Args:
        executed: the notebook papermill wrote.
        chapter: the chapter it was executed from (default: found from the file name).
        output_dir: where the registered notebook goes (default: in place).

    Raises:
        ValueError: not a papermill output, from another source, or holding an error.
    """
    import nbformat

    executed = Path(executed)
    chapter = resolve_chapter(chapter if chapter is not None else executed.stem)
    nb = nbformat.read(executed, as_version=4)
    pm = nb.metadata.get("papermill")
    if not pm:
        raise ValueError(f"{executed} was not executed by papermill (no metadata['papermill'])")
    if pm.get("exception") or any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])):
        raise ValueError(f"{executed} holds an error; fix the chapter and execute it again")
    ran = [c.source for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if ran != [c.source for c in read_source(chapter.source).cells]:
        raise ValueError(f"{executed} was not executed from the current {chapter.source.name}; execute it again")
    injected = dict(pm.get("parameters") or {})
    profile = injected.get("profile") or parameter_defaults(chapter.source)["profile"]
    _, effective = _effective_parameters(chapter, profile, injected)
    out = chapter.output(output_dir) if output_dir is not None else executed
    return _finish(nb, chapter, out, effective, git=git_state(chapter.source),
                   version=data_version(effective.get("data_root")),
                   env=environment(str(effective.get("device", "auto"))),
                   started=pm.get("start_time"), wall=pm.get("duration"), registered=True)
