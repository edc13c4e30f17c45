"""The book: configuration, table of contents, bibliography, staleness, warning-free build.

Nothing here executes a chapter (see ``test_notebooks.py``) or needs the data: the build renders
the committed executed chapters. The report helpers the chapters call are tested at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from covid_lib import book, provenance
from covid_lib.report import common as report
from covid_lib.report import sources as rs
from covid_lib.paths import REPO_ROOT
from covid_lib.profiles import PROFILES, Profile, get_profile

CONFIG = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text())
CHAPTERS = book.list_chapters()


def _toc_files(entries) -> list[str]:
    files = []
    for entry in entries or []:
        if "file" in entry:
            files.append(entry["file"])
        files += _toc_files(entry.get("sections"))
        for part in entry.get("parts", []):
            files += _toc_files(part.get("chapters"))
    return files


def toc_files() -> list[str]:
    return [TOC["root"], *_toc_files(TOC.get("chapters")), *_toc_files(
        [c for p in TOC.get("parts", []) for c in p.get("chapters", [])])]


def _page_path(entry: str) -> Path | None:
    for suffix in (".md", ".ipynb"):
        if (REPO_ROOT / f"{entry}{suffix}").is_file():
            return REPO_ROOT / f"{entry}{suffix}"
    return None


# --------------------------------------------------------------------------- configuration and toc


def test_config_renders_committed_outputs_only():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["only_build_toc_files"] is True
    for pattern in ("notebooks", "tests", ".cache", ".venv", "README.md"):
        assert pattern in CONFIG["exclude_patterns"]
    for bib in CONFIG["bibtex_bibfiles"]:
        assert (REPO_ROOT / bib).is_file()


def test_toc_lists_only_existing_pages():
    assert TOC["format"] == "jb-book"
    missing = [f for f in toc_files() if _page_path(f) is None]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"
    assert len(set(toc_files())) == len(toc_files()), "a page is listed twice"


def test_every_chapter_has_an_executed_notebook_in_the_toc():
    assert CHAPTERS, "no chapters in notebooks/"
    listed = set(toc_files())
    for chapter in CHAPTERS:
        entry = f"book/chapters/{chapter.stem}"
        assert entry in listed, f"{chapter.stem} is not in _toc.yml"
        assert _page_path(entry) == REPO_ROOT / f"{entry}.ipynb", f"{entry}.ipynb is not committed"


def test_no_placeholder_pages():
    for entry in toc_files():
        path = _page_path(entry)
        if path.suffix == ".md":
            text = path.read_text()
            assert len(text.split()) > 25, f"{path.name} looks like a placeholder"
            assert not re.search(r"\b(TODO|TBD|lorem ipsum|coming soon)\b", text, re.I), path.name


def test_intro_states_the_status_of_every_chapter_and_no_other():
    intro = (REPO_ROOT / "book" / "intro.md").read_text()
    status = intro.split("## Status of the chapters", 1)[1]
    named = set(re.findall(r"\{doc\}`chapters/([^`]+)`", status))
    assert named == {c.stem for c in CHAPTERS}


# --------------------------------------------------------------------------- publishing


WORKFLOW = REPO_ROOT / ".github" / "workflows" / "book.yml"


def readme_build_command() -> str:
    """The build command of the README's "Published book" section (its one `jupyter-book build` line)."""
    section = (REPO_ROOT / "README.md").read_text().split("## Published book", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("jupyter-book build")]
    assert len(lines) == 1, f"the Published book section needs one `jupyter-book build` line: {lines}"
    return lines[0]


def test_publishing_workflow_builds_with_the_readme_command_and_deploys_to_pages():
    flow = yaml.safe_load(WORKFLOW.read_text())
    on = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert on["push"]["branches"] == ["main"]
    steps = [step for job in flow["jobs"].values() for step in job["steps"]]
    runs = [step["run"].strip() for step in steps if "run" in step]
    builds = [run for run in runs if "jupyter-book build" in run]
    assert builds == [readme_build_command()], (builds, readme_build_command())
    for flag in ("-W", "-n", "--keep-going"):
        assert flag in builds[0].split()
    assert any("pip install -r requirements.txt" in run for run in runs)
    uses = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"].rstrip("/") == "_build/html"
    deploy = next(job for job in flow["jobs"].values()
                  if any(s.get("uses", "").startswith("actions/deploy-pages") for s in job["steps"]))
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages" and deploy["needs"] == "build"


def test_readme_keeps_the_two_commands_of_a_fresh_machine():
    readme = (REPO_ROOT / "README.md").read_text()
    fresh = readme.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", fresh, re.S)
    assert [b.strip() for b in blocks] == [
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt -e . && .venv/bin/jupyter-book build .",
        ". .venv/bin/activate && python -m pytest -q"]
    assert "GitHub Pages" in readme.split("## Published book", 1)[1].split("\n## ", 1)[0]


# --------------------------------------------------------------------------- summary for clinicians


def test_summary_follows_the_intro_and_its_claims_are_generated():
    from covid_lib.book import pages
    from covid_lib.analysis.verdicts import CLAIMS

    assert TOC["root"] == "book/intro" and TOC["chapters"][0]["file"] == "book/summary"
    text = pages.SUMMARY_PAGE.read_text()
    assert pages.render_page(text, pages.PAGE_BLOCKS[pages.SUMMARY_PAGE]) == text, \
        "run: python -m covid_lib book sync"
    block = re.search(r"<!-- BEGIN generated:claims .*?-->\n(.*?)<!-- END generated:claims -->", text, re.S)[1]
    assert re.findall(r"^- \*\*(C\d)\.\*\*", block, re.M) == list(CLAIMS)
    plain = re.search(r"<!-- BEGIN generated:plain-verdicts .*?-->\n(.*?)<!-- END generated:plain-verdicts -->",
                      text, re.S)[1]
    assert re.findall(r"^\| \*\*(C\d)\.\*\*", plain, re.M) == list(CLAIMS), "one plain-words row per claim"
    assert text.index("generated:plain-verdicts") < text.index("## What to ask"), "the answers come first"
    typed = text.replace(block, "").replace(plain, "")
    assert "{doc}`verdicts`" in typed and "{doc}`chapters/14_checklist`" in typed
    assert not re.search(r"\d\.\d|\d\s*%", typed), "no number typed by hand: verdicts.md holds them"
    for verdict in ("**reproduced**", "**not reproduced**", "**inconclusive**"):
        assert verdict not in typed, "verdicts are generated on the verdicts page, never typed here"
    questions = re.findall(r"^\d+\. \*\*(.+?)\*\*", typed, re.M)
    assert 6 <= len(questions) <= 10 and all(q.endswith("?") for q in questions), questions
    linked = set(re.findall(r"\{doc\}`chapters/([^`]+)`", typed))
    assert linked <= {c.stem for c in CHAPTERS} and len(linked) >= 6


# --------------------------------------------------------------------------- bibliography


def _bib_keys() -> set[str]:
    text = (REPO_ROOT / "book" / "references.bib").read_text()
    return set(re.findall(r"^@\w+\{([^,\s]+),", text, re.M))


def _cited_keys() -> set[str]:
    texts = [(REPO_ROOT / f"{e}.md").read_text() for e in toc_files() if _page_path(e).suffix == ".md"]
    for e in toc_files():
        if _page_path(e).suffix == ".ipynb":
            nb = nbformat.read(_page_path(e), as_version=4)
            texts += [c.source for c in nb.cells if c.cell_type == "markdown"]
    keys = set()
    for text in texts:
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
            keys.update(k.strip() for k in group.split(","))
    return keys


def test_every_reference_is_cited_and_every_citation_exists():
    bib, cited = _bib_keys(), _cited_keys()
    assert not cited - bib, f"cited but not in references.bib: {sorted(cited - bib)}"
    assert not bib - cited, f"in references.bib but never cited: {sorted(bib - cited)}"


def test_bibliography_has_the_papers_data_and_methods():
    bib = _bib_keys()
    for key in ("tartaglione2020unveiling", "benahmed2021deep", "panagiotakopoulos2020transfer",
                "cohen2020covid", "winther2020covid", "kermany2018identifying", "wang2017chestxray8",
                "shih2019augmenting", "jaeger2014two", "stirenko2018chest", "v7labs2020covid",
                "ronneberger2015unet", "he2016deep", "delong1988comparing", "wilson1927probable",
                "vandermaaten2008visualizing", "policar2024opentsne", "kohonen1990self",
                "selvaraju2017gradcam"):
        assert key in bib


# --------------------------------------------------------------------------- executed chapters


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.stem)
def test_committed_chapter_is_fresh(chapter):
    """Fails when a chapter's source, parameters or profile changed since it was executed."""
    status = book.chapter_status(chapter)
    assert status.fresh, (f"{chapter.stem} is {status.state}: {'; '.join(status.reasons)}. "
                          f"Re-run: python -m covid_lib book run {chapter.stem} --profile cpu")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.stem)
def test_committed_chapter_carries_outputs(chapter):
    nb = nbformat.read(chapter.output(), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "every code cell must have been executed"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], "warnings in the book"
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1, "a chapter shows at least one figure"
    assert any("parameters" in c.metadata.get("tags", []) for c in code)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in code), "executed by papermill"
    record = nb.metadata[book.METADATA_KEY]
    assert record["profile"] in ("cpu", "paper"), "the committed book is executed with cpu or paper"
    assert record["wall_time_s"] > 0 and record["environment"]["python"]
    assert record["source"] == f"notebooks/{chapter.stem}.py"
    assert "/tmp" not in json.dumps(nb.metadata.get("papermill", {})), "machine-specific paths leaked"


def test_generated_tables_of_the_reproduce_page_are_in_sync():
    page = book.REPRODUCE_PAGE.read_text()
    for name in book.GENERATED_BLOCKS:
        assert f"<!-- BEGIN generated:{name}" in page
    assert book.render_page(page) == page, "run: python -m covid_lib book sync"
    for name in PROFILES:
        assert f"`{name}`" in page


# --------------------------------------------------------------------------- staleness detector


@pytest.fixture
def chapter_copy(tmp_path):
    """A copy of the first chapter's source and executed notebook, to tamper with."""
    chapter = CHAPTERS[0]
    src = tmp_path / chapter.source.name
    out = tmp_path / f"{chapter.stem}.ipynb"
    shutil.copyfile(chapter.source, src)
    shutil.copyfile(chapter.output(), out)
    return src, out


def _edit_notebook(path: Path, edit) -> None:
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)


def test_staleness_detector_fresh_copy(chapter_copy):
    src, out = chapter_copy
    status = book.check_executed(src, out, check_data=False)
    assert status.fresh, status.reasons


def test_staleness_detector_flags_a_modified_source(chapter_copy):
    src, out = chapter_copy
    src.write_text(src.read_text() + "\n# %%\nprint('a new cell')\n")
    status = book.check_executed(src, out, check_data=False)
    assert status.state == "stale"
    assert any("source changed" in r for r in status.reasons)


def test_staleness_detector_ignores_line_endings(chapter_copy):
    src, out = chapter_copy
    src.write_bytes(src.read_bytes().replace(b"\n", b"\r\n"))
    assert book.check_executed(src, out, check_data=False).fresh


def test_staleness_detector_flags_changed_parameters(chapter_copy):
    src, out = chapter_copy

    def tamper(nb):
        nb.metadata["hurdles"]["parameters"]["seed"] = 12345

    _edit_notebook(out, tamper)
    status = book.check_executed(src, out, check_data=False)
    assert status.state == "stale"
    assert any("papermill injected" in r or "parameters" in r for r in status.reasons)


def _judged(c1=0.4, c2=-0.05, finding=0.2) -> dict:
    """A small ``verdicts.json``: C1 and C2 at two scales and one finding."""
    claim = lambda est: {"outcome": "inconclusive", "estimate": est, "low": est - 0.1, "high": est + 0.1}
    return {"protocol_hash": "abc", "scales": {s: {"label": s, "claims": {"C1": claim(c1), "C2": claim(c2)}}
                                               for s in ("563", "full")},
            "findings": {"F1": claim(finding)}}


def test_claim_digest_changes_with_the_claims_own_entry_only():
    from covid_lib.report.judge import claim_digest

    base = claim_digest("C1", _judged())
    assert base == claim_digest("C1", _judged(c2=0.3, finding=0.0))  # others re-judged: C1 unchanged
    assert base != claim_digest("C1", _judged(c1=0.41))
    assert claim_digest("F1", _judged()) != claim_digest("F1", _judged(finding=0.3))
    assert claim_digest("C1", {**_judged(), "protocol_hash": "def"}) != base  # another protocol
    assert claim_digest("C1", None) is None


def test_note_read_appends_to_the_log_the_runner_names(tmp_path, monkeypatch):
    from covid_lib.report import judge

    assert book.runner.READ_LOG_ENV == judge.READ_LOG_ENV
    monkeypatch.delenv(judge.READ_LOG_ENV, raising=False)
    judge.note_read("C1")  # no log named: nothing written, no error
    log = tmp_path / "read.txt"
    monkeypatch.setenv(judge.READ_LOG_ENV, str(log))
    judge.note_read("C1")
    judge.note_read("F4")
    assert log.read_text().split() == ["C1", "F4"]
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps(_judged()))
    assert book.runner.verdicts_shown(["F1", "C1", "C1"], path) == {
        "C1": judge.claim_digest("C1", _judged()), "F1": judge.claim_digest("F1", _judged())}
    assert book.runner.verdicts_shown([], path) == {}


def test_staleness_detector_flags_a_verdict_rejudged_since_execution(chapter_copy, tmp_path):
    from covid_lib.report.judge import claim_digest

    src, out = chapter_copy
    verdicts = tmp_path / "verdicts.json"
    verdicts.write_text(json.dumps(_judged()))
    _edit_notebook(out, lambda nb: nb.metadata["hurdles"].update(verdicts_read={"C1": claim_digest("C1", _judged())}))
    assert book.check_executed(src, out, check_data=False, verdicts_path=verdicts).fresh
    verdicts.write_text(json.dumps(_judged(c2=0.9, finding=0.9)))  # claims it does not show
    assert book.check_executed(src, out, check_data=False, verdicts_path=verdicts).fresh
    verdicts.write_text(json.dumps(_judged(c1=0.35)))
    status = book.check_executed(src, out, check_data=False, verdicts_path=verdicts)
    assert status.state == "stale"
    assert any("verdict C1 re-judged since the chapter was executed" in r for r in status.reasons), status.reasons


def test_rejudged_chapters_names_those_showing_a_changed_verdict(tmp_path):
    """What ``book judge`` tells to re-execute: the chapters whose recorded verdicts differ now."""
    from covid_lib.report.judge import claim_digest

    folder = _synthetic_book(tmp_path / "book")
    shows = {CHAPTERS[0].stem: "C1", CHAPTERS[1].stem: "C2"}
    for chapter in CHAPTERS:
        read = {shows[chapter.stem]: claim_digest(shows[chapter.stem], _judged())} if chapter.stem in shows else {}
        _edit_notebook(chapter.output(folder), lambda nb: nb.metadata["hurdles"].update(verdicts_read=read))
    verdicts = tmp_path / "verdicts.json"
    verdicts.write_text(json.dumps(_judged()))
    assert book.staleness.rejudged_chapters(folder, verdicts) == []
    verdicts.write_text(json.dumps(_judged(c2=0.5)))
    assert book.staleness.rejudged_chapters(folder, verdicts) == [CHAPTERS[1].stem]


def test_staleness_detector_compares_an_older_records_shown_claims_at_its_commit(chapter_copy, tmp_path,
                                                                                 monkeypatch):
    """A record from before ``verdicts_read``: the claims its source shows, against verdicts.json at
    the recorded commit; a commit that is not here decides nothing."""
    src, out = chapter_copy
    src.write_text(src.read_text() + '\n# %%\njudge.show_claim("C2")\n')

    def older(nb):  # a record written before the runner kept ``verdicts_read`` (the copy may be newer)
        nb.metadata["hurdles"].pop("verdicts_read", None)
        nb.metadata["hurdles"].update(source_sha256=book.source_hash(src))

    _edit_notebook(out, older)
    verdicts = tmp_path / "verdicts.json"
    verdicts.write_text(json.dumps(_judged()))
    monkeypatch.setattr(book.staleness, "_verdicts_at", lambda commit: _judged(c1=0.0))  # C1 differs: not shown
    assert book.check_executed(src, out, check_data=False, verdicts_path=verdicts).fresh
    monkeypatch.setattr(book.staleness, "_verdicts_at", lambda commit: _judged(c2=0.0))
    status = book.check_executed(src, out, check_data=False, verdicts_path=verdicts)
    assert status.state == "stale" and any("verdict C2 re-judged" in r for r in status.reasons), status.reasons

    def unknown(commit):
        raise LookupError(commit)

    monkeypatch.setattr(book.staleness, "_verdicts_at", unknown)
    assert book.check_executed(src, out, check_data=False, verdicts_path=verdicts).fresh


def test_staleness_detector_flags_a_new_parameter_in_the_source(chapter_copy):
    src, out = chapter_copy
    text = src.read_text().replace('seed = 0', 'seed = 0\nnew_knob = 3', 1)
    src.write_text(text)
    status = book.check_executed(src, out, check_data=False)
    assert any("are not those of the source" in r for r in status.reasons)


def test_staleness_detector_flags_a_changed_profile(chapter_copy, monkeypatch):
    src, out = chapter_copy
    name = book.read_record(out)["profile"]
    changed = dict(PROFILES)
    changed[name] = Profile(**{**PROFILES[name].__dict__, "epochs": PROFILES[name].epochs + 1})
    monkeypatch.setattr(book.staleness, "PROFILES", changed)
    status = book.check_executed(src, out, check_data=False)
    assert any("profile" in r for r in status.reasons)


def test_staleness_detector_flags_errors_and_missing_records(chapter_copy, tmp_path):
    src, out = chapter_copy

    def add_error(nb):
        cell = next(c for c in nb.cells if c.cell_type == "code")
        cell.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[]))

    _edit_notebook(out, add_error)
    assert any("error" in r for r in book.check_executed(src, out, check_data=False).reasons)
    _edit_notebook(out, lambda nb: nb.metadata.pop("hurdles"))
    assert book.check_executed(src, out, check_data=False).state == "stale"
    assert book.check_executed(src, tmp_path / "absent.ipynb").state == "not executed"


def test_staleness_detector_flags_changed_data(chapter_copy, monkeypatch):
    src, out = chapter_copy
    monkeypatch.setattr(book.staleness, "data_version", lambda root=None: "another-version")
    status = book.check_executed(src, out)
    assert any("data version changed" in r for r in status.reasons)
    monkeypatch.setattr(book.staleness, "data_version", lambda root=None: None)  # no data here: not checked
    assert book.check_executed(src, out).fresh


# --------------------------------------------------------------------------- runner without execution


def test_resolve_chapter_by_stem_name_number_and_path():
    chapter = CHAPTERS[0]
    for query in (chapter.stem, chapter.name, chapter.number, str(int(chapter.number)), f"notebooks/{chapter.stem}.py"):
        assert book.resolve_chapter(query) == chapter
    with pytest.raises(ValueError, match="chapters: "):
        book.resolve_chapter("no_such_chapter")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.stem)
def test_chapter_parameters_cell(chapter):
    defaults = book.parameter_defaults(chapter.source)
    assert defaults["data_root"] is None
    assert defaults["device"] == "auto"
    assert defaults["profile"] == "cpu"
    assert isinstance(defaults["seed"], int)


def test_parameters_cell_must_hold_literals(tmp_path):
    bad = tmp_path / "99_bad.py"
    bad.write_text('# %% tags=["parameters"]\ndata_root = None\ndevice = "auto"\nprofile = "cpu"\nseed = f(0)\n')
    with pytest.raises(ValueError, match="literal"):
        book.parameter_defaults(bad)
    bad.write_text('# %%\nx = 1\n')
    with pytest.raises(ValueError, match="tagged 'parameters'"):
        book.parameter_defaults(bad)


def test_effective_parameters_reject_unknown_names_and_profiles():
    chapter = CHAPTERS[0]
    injected, effective = book.runner._effective_parameters(chapter, "smoke", {"seed": 3})
    assert injected == {"seed": 3, "profile": "smoke"}
    assert effective["seed"] == 3 and set(effective) == set(book.parameter_defaults(chapter.source))
    with pytest.raises(ValueError, match="has no parameter nope"):
        book.runner._effective_parameters(chapter, "smoke", {"nope": 1})
    with pytest.raises(ValueError, match="valid profiles: smoke, cpu, paper"):
        book.runner._effective_parameters(chapter, "gpu", {})


def test_effective_parameters_take_the_profile_once_and_check_types():
    chapter = CHAPTERS[0]
    injected, _ = book.runner._effective_parameters(chapter, None, {"profile": "smoke"})
    assert injected["profile"] == "smoke"
    assert book.runner._effective_parameters(chapter, "smoke", {"profile": "smoke"})[0]["profile"] == "smoke"
    assert book.runner._effective_parameters(chapter, None, {})[0]["profile"] == "cpu"
    with pytest.raises(ValueError, match="profile given twice"):
        book.runner._effective_parameters(chapter, "cpu", {"profile": "smoke"})
    with pytest.raises(ValueError, match="parameter seed takes an integer"):
        book.runner._effective_parameters(chapter, None, {"seed": "abc"})


def test_parse_parameters_checks_names_and_types_against_the_parameters_cell():
    chapter = book.resolve_chapter("data")
    assert book.parse_parameters(chapter, [("seed", "3"), ("device", "cuda"), ("data_root", "/d")]) == {
        "seed": 3, "device": "cuda", "data_root": "/d"}
    with pytest.raises(ValueError) as info:
        book.parse_parameters(chapter, [("nope", "1")])
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{chapter.stem} has no parameter nope; its parameters: ")
    assert message.endswith(", ".join(book.parameter_defaults(chapter.source)))
    for name, text in (("seed", "abc"), ("seed", "1.5"), ("seed", "True"), ("grid_images", "[1]")):
        with pytest.raises(ValueError, match=rf"^{chapter.stem}: parameter {name} takes an integer "
                                             rf"\(its default is \d+\), not "):
            book.parse_parameters(chapter, [(name, text)])
    assert book.coerce_parameter("x", "headline", "3", "none") == "3"  # text stays text
    assert book.coerce_parameter("x", "alpha", "1", 0.05) == 1.0
    assert book.coerce_parameter("x", "alpha", "0.1", 0.05) == 0.1
    assert book.coerce_parameter("x", "flag", "false", True) is False
    assert book.coerce_parameter("x", "shown", "[1, 2]", [0]) == [1, 2]
    assert book.coerce_parameter("x", "results", "/r", None) == "/r"
    for text, default in (("yes", True), ("abc", 0.5), ("3", [0])):
        with pytest.raises(ValueError, match="parameter v takes"):
            book.coerce_parameter("x", "v", text, default)


@pytest.mark.parametrize("argv, message", [
    (["-p", "nope", "1"], "has no parameter nope; its parameters: data_root, device, profile, seed"),
    (["-p", "seed", "abc"], "parameter seed takes an integer (its default is 0), not 'abc'"),
    (["--profile", "cpu", "-p", "profile", "smoke"], "profile given twice ('cpu' and 'smoke')"),
    (["-p", "profile", "fast"], "valid profiles: smoke, cpu, paper"),
])
def test_cli_book_run_rejects_bad_parameters_before_executing(argv, message, monkeypatch, capsys):
    from covid_lib.cli import main

    monkeypatch.setattr(book, "run_chapter", lambda *a, **k: pytest.fail("nothing may run"))
    assert main(["book", "run", "data", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_cli_book_run_takes_p_profile_as_the_profile(monkeypatch, capsys):
    from covid_lib.cli import main

    calls = []

    def fake_run(chapter, **kwargs):  # "writes" the committed chapter, which it leaves as it is
        calls.append(kwargs)
        return chapter.output()

    monkeypatch.setattr(book, "run_chapter", fake_run)
    for argv in (["-p", "profile", "smoke"], ["--profile", "smoke", "-p", "profile", "smoke"],
                 ["--profile", "smoke"]):
        assert main(["book", "run", "data", *argv, "-p", "seed", "2", "--quiet"]) == 0
        assert calls[-1]["profile"] == "smoke" and calls[-1]["parameters"] == {"seed": 2, "device": "auto"}
    assert "running 01_data with profile smoke" in capsys.readouterr().out


@pytest.mark.parametrize("text, value", [
    ("True", True), ("false", False), ("None", None), ("3", 3), ("0.5", 0.5), ("cuda", "cuda"),
    ("[0, 1, 2]", [0, 1, 2]), ("/data/x", "/data/x"), ("[not python", "[not python"),
])
def test_parse_value_follows_papermill(text, value):
    assert book.parse_value(text) == value


def test_cli_book_list_and_check(capsys):
    import argparse

    from covid_lib.cli.book import register_cli

    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="group"))
    args = parser.parse_args(["book", "list", "--no-data-check"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for chapter in CHAPTERS:
        assert re.search(rf"^{chapter.stem}\s+fresh", out, re.M), out
    args = parser.parse_args(["book", "run", "data", "--profile", "smoke", "-p", "seed", "2", "-p", "grid_images", "3"])
    assert args.chapters == ["data"] and args.parameters == [["seed", "2"], ["grid_images", "3"]]


def test_python_m_covid_lib_book_check_names_exactly_the_unpublishable_committed_chapters(capsys):
    """On the committed book: one line for each chapter whose record says it was executed from a dirty
    work tree or an uncommitted source (the chapters are fresh: see test_committed_chapter_is_fresh);
    exit 0 once every chapter has been re-executed from a clean checkout."""
    from covid_lib.cli import main

    def unclean(chapter) -> bool:
        git = book.read_record(chapter.output()).get("git") or {}
        return git.get("dirty") is not False or git.get("source_committed") is False

    expected = {c.stem for c in CHAPTERS if unclean(c)}
    assert main(["book", "check", "--no-data-check"]) == (1 if expected else 0)
    err = capsys.readouterr().err
    named = [line.split(":", 1)[0] for line in err.splitlines()]
    assert sorted(named) == sorted(expected), err
    assert all(": not publishable: " in line for line in err.splitlines()), err
    assert main(["book", "run", "no_such_chapter"]) == 2  # a clear error, no traceback


def _synthetic_book(folder: Path, *, dirty=(), stale=()) -> Path:
    """Copies of the committed chapters whose records say: clean work tree, except ``dirty``; the
    recorded source hash of those in ``stale`` is wrong (their source "changed")."""
    folder.mkdir(parents=True, exist_ok=True)
    for chapter in CHAPTERS:
        nb = json.loads(chapter.output().read_text())
        record = nb["metadata"][book.METADATA_KEY]
        record["git"] = {"commit": "0123456789abcdef", "dirty": chapter.stem in dirty, "source_committed": True}
        if chapter.stem in stale:
            record["source_sha256"] = "0" * 64
        (folder / chapter.output().name).write_text(json.dumps(nb))
    return folder


def test_book_check_refuses_a_chapter_executed_from_a_dirty_tree(tmp_path, capsys):
    from covid_lib.cli import main

    clean = _synthetic_book(tmp_path / "clean")
    assert main(["book", "check", "--no-data-check", "--chapters-dir", str(clean)]) == 0
    assert "executed from a clean work tree" in capsys.readouterr().out

    first, second = CHAPTERS[0].stem, CHAPTERS[1].stem
    mixed = _synthetic_book(tmp_path / "mixed", dirty=(first, second), stale=(second,))
    assert main(["book", "check", "--no-data-check", "--chapters-dir", str(mixed)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines  # one line per chapter, even one both stale and dirty
    assert lines[0].startswith(f"{first}: not publishable: executed from a dirty work tree (at 0123456)")
    assert lines[1].startswith(f"{second}: stale: source changed") and "dirty work tree" in lines[1]

    status = book.chapter_status(first, mixed, check_data=False)
    assert status.fresh and not status.publishable  # fresh: `book list` still says so, and why not published
    assert main(["book", "list", "--no-data-check", "--chapters-dir", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^{first}\s+fresh, not publishable", out, re.M), out


@pytest.mark.parametrize("git, problem", [
    ({"commit": "abc1234def", "dirty": False, "source_committed": True}, None),
    ({"commit": "abc1234def", "dirty": True, "source_committed": True}, "dirty work tree (at abc1234)"),
    ({"commit": "abc1234def", "dirty": False, "source_committed": False}, "uncommitted source"),
    ({"commit": None, "dirty": None}, "no git state recorded"),
    (None, "no git state recorded"),
])
def test_provenance_problems(git, problem):
    problems = book.provenance_problems({} if git is None else {"git": git})
    assert (problems == []) if problem is None else (len(problems) == 1 and problem in problems[0])


def test_profiles():
    assert list(PROFILES) == ["smoke", "cpu", "paper"]
    paper = get_profile("paper")
    assert (paper.resize_size, paper.input_size, paper.epochs, paper.batch_size) == (256, 224, 100, 4)
    assert (paper.schedule, get_profile("cpu").optimizer, get_profile("cpu").schedule) == ("plateau", "adamw", "onecycle")
    assert (paper.optimizer, paper.lr, paper.weight_decay, paper.loss, paper.focal_gamma) == ("sgd", 0.1, 1e-3, "focal", 2.0)
    assert paper.lr_patience == 15 and paper.max_images is None
    assert get_profile("smoke").max_images and get_profile("smoke").epochs == 1
    assert get_profile(paper) is paper
    with pytest.raises(ValueError, match="valid profiles: smoke, cpu, paper"):
        get_profile("fast")
    with pytest.raises(ValueError):
        Profile(name="x", description="", input_size=256, resize_size=224, epochs=1, batch_size=1)
    with pytest.raises(ValueError, match="optimizer"):
        Profile(name="x", description="", input_size=64, resize_size=72, epochs=1, batch_size=1, optimizer="adam")
    with pytest.raises(Exception):
        paper.epochs = 3  # frozen
    assert hash(paper) == hash(get_profile("paper"))


# --------------------------------------------------------------------------- the build


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """``jupyter-book build . -W`` into a temporary folder; returns (html dir, log, seconds).

    With ``BOOK_HTML_DIR`` set, that already built folder (e.g. ``_build/html``) is checked instead
    and the log is None (as in ``test_browser.py``).
    """
    if os.environ.get("BOOK_HTML_DIR"):
        html = Path(os.environ["BOOK_HTML_DIR"]).resolve()
        assert (html / "index.html").is_file(), f"no index.html in BOOK_HTML_DIR={html}"
        return html, None, None
    out = tmp_path_factory.mktemp("book")
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, "build", str(REPO_ROOT), "-W", "--path-output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"jupyter-book build -W failed:\n{log[-5000:]}"
    return out / "_build" / "html", log, seconds


def test_book_builds_without_warnings_in_under_a_minute(built_book):
    html, log, seconds = built_book
    if log is None:
        pytest.skip("BOOK_HTML_DIR: checking a book built elsewhere")
    assert "WARNING" not in log and "build succeeded" in log, log[-3000:]
    assert seconds < 60, f"the build took {seconds:.0f} s"
    assert (html / "index.html").is_file()


def test_built_pages_match_the_toc(built_book):
    html, _, _ = built_book
    for entry in toc_files():
        assert (html / f"{entry}.html").is_file(), entry
    chapter = (html / "book" / "chapters" / f"{CHAPTERS[0].stem}.html").read_text()
    assert "<img" in chapter and "tartaglione2020unveiling" not in chapter.split("</main>")[0][-50:]
    references = (html / "book" / "references.html").read_text()
    assert "Tartaglione" in references and "Kermany" in references


def test_built_chapters_show_the_parameters_cell_but_not_papermills_injected_one(built_book):
    html, _, _ = built_book
    for chapter in CHAPTERS:
        page = (html / "book" / "chapters" / f"{chapter.stem}.html").read_text()
        assert "tag_parameters" in page, chapter.stem  # myst-nb gives a cell a class per tag
        assert "tag_injected-parameters" not in page, chapter.stem


def test_the_notebook_reader_hides_only_the_injected_parameters_cell():
    from covid_lib.book import sphinx_ext

    assert CONFIG["sphinx"]["config"]["nb_custom_formats"] == {".ipynb": "covid_lib.book.sphinx_ext.read_notebook"}
    committed = CHAPTERS[0].output()
    nb = sphinx_ext.read_notebook(committed.read_text())
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    removed = [t for t in tags if "remove-cell" in t]
    assert removed and all("injected-parameters" in t for t in removed)
    assert all("remove-cell" in t for t in tags if "injected-parameters" in t)
    assert any("parameters" in t and "remove-cell" not in t for t in tags)
    assert [c.source for c in nb.cells] == [c.source for c in nbformat.read(committed, as_version=4).cells]


# --------------------------------------------------------------------------- report helpers


def _fake_manifest(n_patients=30, per_patient=3, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        covid = int(p % 3 != 0)
        for k in range(per_patient):
            rows.append({"source": "cohen" if p < 20 else "kermany", "image_id": f"{p}-{k}",
                         "patient_id": f"p{p}", "covid": covid, "view": "PA", "license": "x",
                         "orig_format": "PNG", "orig_mode": "L", "orig_width": 100 + p, "orig_height": 120,
                         "mask_path": None, "age": str(rng.integers(20, 80)), "sex": "MF"[p % 2]})
    return pd.DataFrame(rows)


def test_limit_per_source_caps_and_stratifies():
    m = _fake_manifest()
    assert report.limit_per_source(m, None) is m
    small = report.limit_per_source(m, 10, seed=1, stratify="covid")
    counts = small.groupby("source").size()
    assert (counts <= 10).all() and counts["cohen"] == 10
    assert small.loc[small["source"] == "cohen", "covid"].nunique() == 2
    assert small.index.is_monotonic_increasing


def test_image_level_split_leaks_patients_that_a_patient_split_does_not():
    m = _fake_manifest()
    leak = rs.image_level_split_leakage(m, seeds=range(3))
    assert (leak["patients_in_both"] > 0).all() and (leak["share_leaked"] > 0.5).all()
    single = _fake_manifest(per_patient=1)
    assert (rs.image_level_split_leakage(single, seeds=range(2))["patients_in_both"] == 0).all()


def test_data_cards_and_tables():
    m = _fake_manifest()
    cards = rs.data_cards(m)
    assert list(cards.columns) == ["cohen", "kermany"]
    assert cards.loc["patients", "cohen"] == 20 and cards.loc["images per patient (max)", "cohen"] == 3
    formats = rs.original_formats(m)
    assert formats.loc["cohen", "distinct sizes"] == 20
    demo = rs.demographics(m)
    assert demo.loc["cohen", "women"] == "50%"


def test_intensity_statistics_on_synthetic_images():
    m = pd.DataFrame({"source": ["a", "a", "b"], "image_id": ["1", "2", "3"], "image_path": ["0", "255", "128"]})

    def read(path):
        return np.full((40, 40), int(path), dtype=np.uint8)

    per_image, hists = rs.intensity_statistics(m, bins=4, read=read)
    assert list(hists.index) == ["a", "b"] and np.allclose(hists.sum(axis=1), 1)
    assert per_image.set_index("image_id").loc["2", "white"] == 1.0
    assert per_image.set_index("image_id").loc["1", "black"] == 1.0
    fig = rs.plot_intensity(per_image, hists)
    assert len(fig.axes) == 3


def _committed_repo(root: Path, files: tuple[str, ...], monkeypatch, **env: str) -> None:
    """A git repository at ``root`` with ``files`` ("v1") committed, made the library's repository."""
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("v1\n")
    for args in (("init", "-q"), ("add", "."), ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env={**os.environ, **env})
    monkeypatch.setattr(provenance, "REPO_ROOT", root)


def test_git_state_ignores_the_runners_own_outputs(tmp_path, monkeypatch):
    """A chapter executed earlier in the same `book run` must not mark the next one dirty."""
    _committed_repo(tmp_path, ("book/chapters/01_x.ipynb", "book/reproduce.md", "covid_lib/a.py", "notebooks/01_x.py"),
                    monkeypatch)
    source = tmp_path / "notebooks" / "01_x.py"
    assert book.git_state(source) == {"commit": provenance._git("rev-parse", "HEAD"), "dirty": False,
                                      "source_committed": True}
    (tmp_path / "book/chapters/01_x.ipynb").write_text("v2\n")
    (tmp_path / "book/reproduce.md").write_text("v2\n")
    assert book.git_state(source)["dirty"] is False
    (tmp_path / "covid_lib/a.py").write_text("v2\n")
    assert book.git_state(source)["dirty"] is True
    source.write_text("v2\n")
    assert book.git_state(source)["source_committed"] is False


def test_commit_times_are_utc_whatever_the_committers_zone(tmp_path, monkeypatch):
    """Rules and checks are dated by commit and compared, as strings, with records' UTC `created`
    times: a commit made at 03:00+02:00 must read 01:00 UTC."""
    when = "2026-12-04T03:00:00+02:00"
    _committed_repo(tmp_path, ("a.txt",), monkeypatch, GIT_COMMITTER_DATE=when, GIT_AUTHOR_DATE=when)
    assert provenance.commit_times("--", "a.txt") == ["2026-12-04T01:00:00+00:00"]
    assert provenance.commit_times("--", "missing.txt") == []


def test_files_an_earlier_chapter_of_the_run_wrote_are_not_dirty_and_are_named(tmp_path, monkeypatch):
    """`book run 12 14`: 12 rewrites its tracked audit CSV, which 14 reads; 14's record is clean and
    names the file, while a file changed outside the run still makes it dirty."""
    _committed_repo(tmp_path, ("book/audit/by_seen.csv", "covid_lib/a.py", "notebooks/14_x.py"), monkeypatch)
    source = tmp_path / "notebooks" / "14_x.py"
    before = book.tracked_changes()
    assert before == set()
    (tmp_path / "book/audit/by_seen.csv").write_text("v2\n")  # what chapter 12 writes
    wrote = book.run_outputs(before)
    assert wrote == {"book/audit/by_seen.csv"}
    assert book.git_state(source)["dirty"] is True
    state = book.git_state(source, written_in_run=sorted(wrote))
    assert state["dirty"] is False and state["written_in_run"] == ["book/audit/by_seen.csv"]
    (tmp_path / "covid_lib/a.py").write_text("v2\n")  # an edit outside the run
    assert book.git_state(source, written_in_run=sorted(wrote))["dirty"] is True
    assert book.run_outputs(book.tracked_changes()) == set()


# --------------------------------------------------------------------------- runner: scratch, failures, register

_TINY_CHAPTER = '''# %% tags=["parameters"]
data_root = None
device = "auto"
profile = "cpu"
seed = 0

# %%
print("seed", seed + 1)
'''

_FAILING_CELL = '''
# %%
numerator = 1
denominator = 0
ratio = numerator / denominator
'''


@pytest.fixture
def tiny_chapter(tmp_path):
    """A two-cell chapter outside notebooks/, with no data (its data_root does not exist)."""
    src = tmp_path / "notebooks" / "98_tiny.py"
    src.parent.mkdir()
    src.write_text(_TINY_CHAPTER)
    return book.Chapter("98", "tiny", src), {"data_root": str(tmp_path / "no-data")}


@pytest.mark.notebook
def test_run_chapter_writes_to_scratch_by_default_and_silences_the_kernel_log(tiny_chapter, tmp_path,
                                                                               monkeypatch, capfd):
    chapter, params = tiny_chapter
    monkeypatch.setattr(book.runner, "SCRATCH_DIR", tmp_path / "scratch")
    out = book.run_chapter(chapter, parameters=params, execution_timeout=120)
    assert out == tmp_path / "scratch" / "98_tiny.ipynb"
    record = book.read_record(out)
    assert record["parameters"]["seed"] == 0 and record["profile"] == "cpu" and record["data_version"] is None
    assert book.check_executed(chapter.source, out).fresh
    assert record["verdicts_read"] == {}  # it shows no verdict
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err
    assert "IPKernelApp" not in captured.out + captured.err


@pytest.mark.notebook
def test_run_chapter_records_the_verdicts_the_chapter_read(tiny_chapter, tmp_path, monkeypatch):
    """The kernel inherits the runner's log: a claim read there lands in the provenance record."""
    from covid_lib.report import judge

    chapter, params = tiny_chapter
    chapter.source.write_text(_TINY_CHAPTER + '\n# %%\nfrom covid_lib.report import judge\njudge.note_read("C1")\n')
    monkeypatch.setattr(book.runner, "SCRATCH_DIR", tmp_path / "scratch")
    record = book.read_record(book.run_chapter(chapter, parameters=params, execution_timeout=120))
    assert record["verdicts_read"] == {"C1": judge.claim_digest("C1", judge.read_verdicts())}
    assert judge.READ_LOG_ENV not in os.environ  # the runner's log is not left behind


#: Run in a kernel: its next replies go out, then the kernel stays 3 s inside the message handler
#: (as a loaded machine may hold it there), where a SIGINT becomes a logged KeyboardInterrupt.
_SLOW_AFTER_REPLY = """
import time
_kernel = get_ipython().kernel
_send = _kernel.session.send
def _send_then_linger(stream, msg_or_type, *args, **kwargs):
    out = _send(stream, msg_or_type, *args, **kwargs)
    if msg_or_type == "execute_reply":
        time.sleep(3)
    return out
_kernel.session.send = _send_then_linger
"""


def _shut_down_inside_a_handler(manager_class, log: Path) -> str:
    """Start a kernel with the runner's arguments, have it linger in its handler after a reply,
    shut it down right after that reply, and return what the kernel wrote on its stderr."""
    import asyncio

    async def scenario():
        km = manager_class(kernel_name=book.KERNEL_NAME)
        with open(log, "w") as err:
            await km.start_kernel(extra_arguments=list(book.runner.KERNEL_ARGUMENTS), stdout=err, stderr=err)
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=300)
                for code in (_SLOW_AFTER_REPLY, "1 + 1"):  # the second reply is followed by 3 s in the handler
                    msg_id = kc.execute(code)
                    while (await kc.get_shell_msg(timeout=120))["parent_header"].get("msg_id") != msg_id:
                        pass
                await km.shutdown_kernel()
            finally:
                kc.stop_channels()

    asyncio.run(scenario())
    return log.read_text()


@pytest.mark.notebook
def test_the_runners_kernel_shutdown_does_not_interrupt_a_kernel_still_in_its_handler(tmp_path):
    """Why the kernel log once showed ``KeyboardInterrupt caught in kernel`` after a chapter that ran
    to its end: jupyter_client interrupts (SIGINT) a kernel before shutting it down. The runner's
    manager does not; jupyter_client's own shows the line in the same situation (the control)."""
    from jupyter_client.manager import AsyncKernelManager

    quiet = _shut_down_inside_a_handler(book.runner.quiet_shutdown_kernel_manager(), tmp_path / "quiet.log")
    assert "KeyboardInterrupt" not in quiet and "IPKernelApp" not in quiet, quiet
    plain = _shut_down_inside_a_handler(AsyncKernelManager, tmp_path / "plain.log")
    assert "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel" in plain, plain


@pytest.mark.notebook
def test_a_failing_chapter_replaces_nothing_and_says_where_in_a_few_lines(tiny_chapter, tmp_path, monkeypatch):
    chapter, params = tiny_chapter
    chapter.source.write_text(_TINY_CHAPTER + _FAILING_CELL)
    monkeypatch.setenv("COVID_LIB_CACHE", str(tmp_path / "cache"))
    committed = chapter.output(tmp_path / "published")
    committed.parent.mkdir()
    committed.write_bytes(b'{"the committed chapter": 1}\n')
    with pytest.raises(book.ChapterFailed) as info:
        book.run_chapter(chapter, parameters=params, output_dir=committed.parent, execution_timeout=120)
    assert committed.read_bytes() == b'{"the committed chapter": 1}\n'
    assert sorted(p.name for p in committed.parent.iterdir()) == [committed.name]
    message = str(info.value)
    lines = message.splitlines()
    assert len(lines) <= 8, message
    assert "98_tiny failed in cell" in lines[0]
    assert "numerator = 1" in message and "ZeroDivisionError: division by zero" in message
    assert "Traceback" not in message and "\x1b[" not in message


def test_an_interrupted_write_leaves_the_committed_chapter_byte_identical(tmp_path, monkeypatch):
    committed = CHAPTERS[0].output()
    target = tmp_path / committed.name
    shutil.copyfile(committed, target)
    before = target.read_bytes()
    nb = nbformat.read(committed, as_version=4)

    def interrupted(nb, path, *args, **kwargs):
        Path(path).write_text('{"cells": [')  # half a notebook, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(nbformat, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        book.write_notebook_atomic(nb, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name], "no temporary file left behind"


def test_register_gives_a_plain_papermill_output_its_record(tmp_path):
    """What `book register` does to a notebook papermill executed: the record makes it fresh."""
    chapter = CHAPTERS[0]
    plain = tmp_path / "plain" / f"{chapter.stem}.ipynb"
    plain.parent.mkdir()
    _strip = lambda nb: nb.metadata.pop(book.METADATA_KEY)  # noqa: E731
    shutil.copyfile(chapter.output(), plain)
    _edit_notebook(plain, _strip)
    assert book.check_executed(chapter.source, plain, check_data=False).state == "stale"
    out = book.register_executed(plain, output_dir=tmp_path / "registered")
    assert out == tmp_path / "registered" / f"{chapter.stem}.ipynb"
    status = book.check_executed(chapter.source, out, check_data=False)
    assert status.fresh, status.reasons
    assert status.record["registered"] is True and status.record["wall_time_s"] > 0

    other = tmp_path / f"{CHAPTERS[0].stem}.ipynb"
    shutil.copyfile(plain, other)
    _edit_notebook(other, lambda nb: nb.cells.append(nbformat.v4.new_code_cell("print('not in the source')")))
    with pytest.raises(ValueError, match="not executed from the current"):
        book.register_executed(other)
    _edit_notebook(other, lambda nb: nb.metadata.pop("papermill"))
    with pytest.raises(ValueError, match="not executed by papermill"):
        book.register_executed(other)


def test_cli_book_run_defaults_to_scratch_and_returns_1_on_a_failed_chapter(monkeypatch, capsys):
    from covid_lib.cli import main

    calls = []

    def fake_run(chapter, **kwargs):
        calls.append(kwargs)
        raise book.ChapterFailed(f"{chapter.stem} failed in cell In [3]:\n    x = 1 / 0\n  ZeroDivisionError: division by zero")

    monkeypatch.setattr(book, "run_chapter", fake_run)
    monkeypatch.setattr(book, "sync_pages", lambda *a: pytest.fail("a failed run must not touch reproduce.md"))
    assert main(["book", "run", CHAPTERS[0].stem, "--quiet"]) == 1
    assert calls[0]["output_dir"] is None and calls[0]["parameters"]["device"] == "auto"
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ZeroDivisionError" in err and len(err.splitlines()) <= 4
    assert main(["book", "run", CHAPTERS[0].stem, "-p", "device", "cuda", "--into", "book/chapters"]) == 1
    assert calls[1]["output_dir"] == "book/chapters" and calls[1]["parameters"]["device"] == "cuda"


#: Cell tags that collapse (hide-*) or drop (remove-*) a code cell's input in the rendered book.
_HIDING_TAGS = {"hide-input", "hide-cell", "remove-input", "remove-cell"}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.stem)
def test_chapter_reads_as_a_book(chapter):
    """The parameters cell stays visible; the setup cell after it (imports, loading) is collapsed."""
    code = [c for c in book.read_source(chapter.source).cells if c.cell_type == "code"]
    index = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    assert not _HIDING_TAGS & set(code[index].metadata.get("tags", [])), "the parameters cell must show"
    setup = code[index + 1]
    assert "import " in setup.source
    assert _HIDING_TAGS & set(setup.metadata.get("tags", [])), "collapse the setup cell (tags=[\"hide-input\"])"
    hidden = sum(bool(_HIDING_TAGS & set(c.metadata.get("tags", []))) for c in code)
    assert hidden < len(code) - 1, "some code stays visible: the chapters show which library calls compute what"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.stem)
def test_every_collapsed_output_says_what_it_holds(chapter):
    """A cell whose output the page collapses (``hide-output``, ``hide-cell``: detail tables and figures,
    issue 19) names what is behind its toggle (``mystnb.code_prompt_show``), not "Show code cell output"."""
    code = [c for c in book.read_source(chapter.source).cells if c.cell_type == "code"]
    unnamed = [c.source.splitlines()[0] for c in code if {"hide-output", "hide-cell"} & set(c.metadata.get("tags", []))
               and not c.metadata.get("mystnb", {}).get("code_prompt_show", "").strip()]
    assert not unnamed, f"name the toggle (mystnb={{\"code_prompt_show\": \"Show ...\"}}) of: {unnamed}"


def test_chapters_reading_checkpoints_are_not_published_from_a_machine_without_any(tmp_path, monkeypatch, capsys):
    """A fresh machine caches no checkpoint: publishing 08 (which reads the encoders' weights and
    retrains none) is refused before anything runs; the scratch folder, a chapter that reads no
    checkpoint, a cached checkpoint of the profile or --allow-missing-checkpoints let it run."""
    from covid_lib.book import checkpoints
    from covid_lib.cli import main

    calls = []

    def fake_run(chapter, **kwargs):  # "writes" the committed chapter, which it leaves as it is
        calls.append((chapter.stem, kwargs["output_dir"]))
        return chapter.output()

    monkeypatch.setattr(book, "run_chapter", fake_run)
    monkeypatch.setattr(book, "sync_pages", lambda *a: False)
    storage = tmp_path / "runs"
    monkeypatch.setattr(checkpoints, "checkpoint_dir", lambda storage_=None: storage)
    assert set(checkpoints.READS_CHECKPOINTS) <= {c.stem for c in CHAPTERS}
    publish = ["--into", "book/chapters", "--quiet"]
    assert main(["book", "run", "01", "08", *publish]) == 2 and calls == []  # nothing ran, not even 01
    err = capsys.readouterr().err
    assert "08_features read model checkpoints" in err and "holds none of profile 'cpu'" in err
    assert "--allow-missing-checkpoints" in err and "01_data" not in err
    assert main(["book", "run", "08", "--quiet"]) == 0  # into the scratch folder: allowed
    assert main(["book", "run", "01", *publish]) == 0  # reads no checkpoint
    assert main(["book", "run", "08", *publish, "--allow-missing-checkpoints"]) == 0
    (storage / "covid-CORDA-resnet18-scratch-smoke-s0-0000000000").mkdir(parents=True)
    (storage / "covid-CORDA-resnet18-scratch-smoke-s0-0000000000" / "model.pt").write_bytes(b"x")
    assert checkpoints.missing_checkpoints_problem(["08_features"], "cpu") is not None  # another profile's
    (storage / "covid-CORDA-resnet18-scratch-cpu-s0-0000000000").mkdir()
    (storage / "covid-CORDA-resnet18-scratch-cpu-s0-0000000000" / "model.pt").write_bytes(b"x")
    assert checkpoints.missing_checkpoints_problem(["08_features"], "cpu") is not None  # no record of it here
    record = tmp_path / "results" / "covid-CORDA-resnet18-scratch-cpu-s0-0000000000"
    record.mkdir(parents=True)
    (record / "spec.json").write_text('{"spec": {"precision": null}}')
    monkeypatch.setenv("COVID_LIB_RESULTS", str(tmp_path / "results"))
    assert main(["book", "run", "08", *publish]) == 0
    assert calls == [("08_features", None), ("01_data", "book/chapters"), ("08_features", "book/chapters"),
                     ("08_features", "book/chapters")]


def test_an_fp32_twins_checkpoint_does_not_let_a_chapter_publish(tmp_path, monkeypatch):
    """The precision control caches fp32 twins of the cpu profile's bf16 runs on a CPU without bf16;
    no chapter reads them (nor a checkpoint whose run has no record here), so they must not lift the
    guard that a fresh machine's empty cache sets."""
    import json

    from covid_lib.book import checkpoints
    from covid_lib.runs import RESULTS_ENV_VAR

    storage, results = tmp_path / "runs", tmp_path / "results"
    monkeypatch.setattr(checkpoints, "checkpoint_dir", lambda storage_=None: storage)
    monkeypatch.setenv(RESULTS_ENV_VAR, str(results))

    def cached(run_id: str, precision: str | None) -> None:
        (storage / run_id).mkdir(parents=True)
        (storage / run_id / "model.pt").write_bytes(b"x")
        (results / run_id).mkdir(parents=True)
        (results / run_id / "spec.json").write_text(json.dumps({"spec": {"precision": precision}}))

    (storage / "covid-CORDA-conv8-scratch-cpu-s0-2222222222").mkdir(parents=True)
    (storage / "covid-CORDA-conv8-scratch-cpu-s0-2222222222" / "model.pt").write_bytes(b"x")  # no record here
    cached("covid-CORDA-conv8-scratch-cpu-s0-0000000000", "fp32")
    assert not checkpoints.has_cached_checkpoints("cpu")
    assert checkpoints.missing_checkpoints_problem(["07_small_test"], "cpu") is not None
    cached("covid-CORDA-conv8-scratch-cpu-s0-1111111111", None)  # a run at the profile's own precision
    assert checkpoints.has_cached_checkpoints("cpu")
    assert checkpoints.missing_checkpoints_problem(["07_small_test"], "cpu") is None
