"""Every chapter executes under papermill with the ``smoke`` profile on the real data.

Runs through the runner's Python API (:func:`covid_lib.book.run_chapter`) into a temporary folder,
so the committed chapters are never touched. Skips when the data are absent.
"""

from __future__ import annotations

import nbformat
import pytest

from covid_lib import book, provenance

pytestmark = [pytest.mark.notebook, pytest.mark.data]


@pytest.mark.parametrize("chapter", book.list_chapters(), ids=lambda c: c.stem)
def test_chapter_smoke_executes(chapter, data_root, tmp_path):
    out = book.run_chapter(chapter, profile="smoke", parameters={"data_root": str(data_root)},
                           output_dir=tmp_path, execution_timeout=300)
    assert out == tmp_path / f"{chapter.stem}.ipynb"
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    stderr = [o.text for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"the chapter wrote to stderr: {stderr}"

    record = nb.metadata[book.METADATA_KEY]
    assert record["profile"] == "smoke" and record["parameters"]["data_root"] == str(data_root)
    assert record["source_sha256"] == book.source_hash(chapter.source)
    assert record["data_version"] == provenance.data_version(data_root)
    assert record["git"]["commit"] and record["wall_time_s"] > 0
    status = book.check_executed(chapter.source, out, data_root=data_root)
    assert status.fresh, status.reasons
    assert not list(book.CHAPTERS_DIR.glob("*.failed.ipynb"))


def test_plain_jupytext_and_papermill_work_too(data_root, tmp_path):
    """The documented path without the runner: ``jupytext --to ipynb``, ``papermill -p``, ``book register``."""
    import subprocess
    import sys

    from covid_lib.paths import REPO_ROOT

    chapter = book.list_chapters()[0]
    paired = tmp_path / f"{chapter.stem}.ipynb"
    out = tmp_path / "out" / f"{chapter.stem}.ipynb"
    out.parent.mkdir()
    run = dict(cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", str(chapter.source),
                           "-o", str(paired)], **run)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "papermill", str(paired), str(out), "-p", "profile", "smoke",
                           "-p", "data_root", str(data_root), "--no-progress-bar"], **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    assert nb.metadata["papermill"]["parameters"] == {"profile": "smoke", "data_root": str(data_root)}
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    status = book.check_executed(chapter.source, out, check_data=False)
    assert status.state == "stale" and "no provenance record" in status.reasons[0]

    # ... until `book register` adds the record (the README's route), in place:
    assert book.register_executed(out) == out
    status = book.check_executed(chapter.source, out, data_root=data_root)
    assert status.fresh, status.reasons
    assert book.read_record(out)["parameters"]["profile"] == "smoke"
