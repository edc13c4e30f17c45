"""The book's chapters: run them with papermill, record how, and tell fresh from stale.

- :mod:`~covid_lib.book.chapters`: the chapter sources, their ``parameters`` cells, the paths.
- :mod:`~covid_lib.book.runner`: :func:`run_chapter` (into the scratch folder ``_build/chapters``
  unless told to publish into ``book/chapters``) and :func:`register_executed` (a provenance record
  for a chapter plain papermill executed).
- :mod:`~covid_lib.book.staleness`: :func:`chapter_status`, ``fresh``, ``stale`` (and why) or
  ``not executed``, and whether its recorded git state lets it be published (no dirty work tree).
- :mod:`~covid_lib.book.pages`: the generated tables of ``book/reproduce.md``.
- :mod:`~covid_lib.book.checkpoints`: the chapters that read model checkpoints, refused for publishing
  from a machine that caches none.
- :mod:`~covid_lib.book.sphinx_ext`: the small Sphinx extension the build loads.

The command line (``python -m covid_lib book ...``) lives in :mod:`covid_lib.cli.book`. The Jupyter
Book itself never executes anything (``execute_notebooks: "off"``): it renders the committed
executed chapters, so the HTML builds without data or a GPU.
"""

from covid_lib.book.chapters import (
    CHAPTERS_DIR, KERNEL_NAME, METADATA_KEY, NOTEBOOKS_DIR, REQUIRED_PARAMETERS, SCRATCH_DIR, Chapter,
    check_parameter_type, coerce_parameter, iter_executed, list_chapters, parameter_defaults, parse_parameters,
    parse_value, read_record, read_source, resolve_chapter, source_hash,
)
from covid_lib.book.pages import (
    GENERATED_BLOCKS, REPRODUCE_PAGE, parameters_table, profiles_table, render_page, runtimes_table, sync_pages,
)
from covid_lib.book.runner import (
    RUNNER_OUTPUTS, ChapterFailed, git_state, register_executed, run_chapter, run_outputs, tracked_changes,
    write_notebook_atomic,
)
from covid_lib.book.staleness import ChapterStatus, chapter_status, check_executed, provenance_problems

__all__ = [
    "CHAPTERS_DIR", "KERNEL_NAME", "METADATA_KEY", "NOTEBOOKS_DIR", "REQUIRED_PARAMETERS", "SCRATCH_DIR",
    "Chapter", "check_parameter_type", "coerce_parameter", "iter_executed", "list_chapters", "parameter_defaults",
    "parse_parameters", "parse_value", "read_record", "read_source", "resolve_chapter", "source_hash",
    "GENERATED_BLOCKS", "REPRODUCE_PAGE", "parameters_table", "profiles_table", "render_page",
    "runtimes_table", "sync_pages",
    "RUNNER_OUTPUTS", "ChapterFailed", "git_state", "register_executed", "run_chapter", "run_outputs",
    "tracked_changes", "write_notebook_atomic",
    "ChapterStatus", "chapter_status", "check_executed", "provenance_problems",
]
