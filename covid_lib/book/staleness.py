"""Tell a fresh executed chapter from a stale one, and a publishable one, by its provenance record.

:func:`check_executed` compares the record that :mod:`covid_lib.book.runner` wrote into an executed
notebook with the chapter's current source, parameters, profile definitions and data (``fresh`` or
``stale``; also stale once ``book judge`` has changed a verdict the chapter shows), and reads the
git state it recorded (:func:`provenance_problems`): a chapter executed
from a dirty work tree or an uncommitted source may be fresh, but it is not publishable, since no
commit holds the code that produced it. ``book check`` refuses both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_lib.book.chapters import METADATA_KEY, Chapter, parameter_defaults, resolve_chapter, source_hash
from covid_lib.paths import REPO_ROOT
from covid_lib.profiles import PROFILES
from covid_lib.provenance import data_version


@dataclass
class ChapterStatus:
    """Whether an executed chapter matches its source: ``fresh``, ``stale`` or ``not executed``."""

    chapter: str
    state: str
    reasons: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)
    #: Why the recorded git state forbids publishing it (:func:`provenance_problems`), fresh or not.
    unpublishable: list[str] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"

    @property
    def publishable(self) -> bool:
        """Fresh, and executed from a clean work tree with its source committed."""
        return self.fresh and not self.unpublishable


def provenance_problems(record: dict) -> list[str]:
    """Why an executed chapter's recorded git state forbids publishing it ([] when it allows it).

    Refused: a work tree that was dirty (uncommitted changes to tracked files, the runner's own
    outputs aside: see :data:`covid_lib.provenance.BOOK_OUTPUTS`), a chapter source that differed
    from the commit, or no git state at all (git was unavailable, or the record predates it).
    """
    git = record.get("git") or {}
    commit = str(git.get("commit") or "")[:7] or "unknown commit"
    problems = []
    if git.get("dirty") is None:
        problems.append("no git state recorded; re-execute it from a clean checkout")
    elif git["dirty"]:
        problems.append(f"executed from a dirty work tree (at {commit}); commit, then re-execute it")
    if git.get("source_committed") is False:
        problems.append(f"executed from an uncommitted source (at {commit})")
    return problems


#: A chapter source's calls that show a claim's verdict (for chapters executed before their
#: provenance record listed the verdicts they read).
_SHOWN_CLAIM_RE = re.compile(r"""(?:protocol_verdict|show_claim)\(\s*["']([CF]\d+)["']""")


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def _verdicts_at(commit: str) -> dict | None:
    """``book/verdicts.json`` as committed at ``commit`` (None: it was not there yet).

    Raises:
        LookupError: no such commit here (no git, a shallow clone, a record from elsewhere).
    """
    text = _git("show", f"{commit}:book/verdicts.json")
    if text is not None:
        return json.loads(text)
    if _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}") is None:
        raise LookupError(commit)
    return None


def rejudged_verdicts(source: Path, rec: dict, verdicts_path: str | os.PathLike | None = None) -> list[str]:
    """Why the verdicts an executed chapter shows are no longer those of ``book/verdicts.json``.

    The record lists each claim the chapter read with the digest of its entry then
    (``verdicts_read``, written by :func:`covid_lib.book.runner.run_chapter`); a chapter executed
    before records listed them is compared on the claims its source shows, against the file as
    committed at the recorded commit (a clean work tree read exactly that file).
    """
    # lazy: the judge's imports are heavy, and only chapters that show verdicts need them
    from covid_lib.report.judge import claim_digest, read_verdicts

    now = read_verdicts(verdicts_path)
    if "verdicts_read" in rec:
        then = {claim: digest for claim, digest in (rec["verdicts_read"] or {}).items()}
        when = "since the chapter was executed"
    else:
        claims = sorted(set(_SHOWN_CLAIM_RE.findall(source.read_text())))
        commit = str((rec.get("git") or {}).get("commit") or "")
        if not claims or not commit:
            return []
        try:
            old = _verdicts_at(commit)
        except LookupError:  # the commit is not here: nothing to compare with
            return []
        then = {claim: claim_digest(claim, old) for claim in claims}
        when = f"since the chapter was executed (at {commit[:7]})"
    changed = [claim for claim, digest in then.items() if claim_digest(claim, now) != digest]
    if not changed:
        return []
    return [f"verdict{'s' if len(changed) > 1 else ''} {', '.join(changed)} re-judged {when} "
            "(`book judge` changed book/verdicts.json); re-execute it"]


def rejudged_chapters(output_dir: str | os.PathLike | None = None,
                      verdicts_path: str | os.PathLike | None = None) -> list[str]:
    """The executed chapters (in ``output_dir``, default ``book/chapters``) that show a verdict
    re-judged since they were executed (:func:`rejudged_verdicts`): what ``book judge`` says to re-run."""
    from covid_lib.book.chapters import list_chapters, read_record

    behind = []
    for chapter in list_chapters():
        out = chapter.output(output_dir)
        if out.is_file() and rejudged_verdicts(chapter.source, read_record(out), verdicts_path):
            behind.append(chapter.stem)
    return behind


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_executed(
    source: str | os.PathLike,
    executed: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    check_data: bool = True,
    verdicts_path: str | os.PathLike | None = None,
) -> ChapterStatus:
    """Compare an executed notebook with the chapter source it claims to come from.

    Stale when: the source's SHA-256 differs from the recorded one; the recorded parameters are
    not those the ``parameters`` cell defines (names), or their values are not the cell's defaults
    overridden by what papermill injected; the recorded profile's settings differ from the current
    profile definition; the notebook holds an error output; or (``check_data`` and data present)
    the data version changed; or a verdict it shows was re-judged since (:func:`rejudged_verdicts`,
    against ``verdicts_path``, default ``book/verdicts.json``). Whatever the state, ``unpublishable`` lists what the recorded git
    state refuses (:func:`provenance_problems`).
    """
    import nbformat

    source, executed = Path(source), Path(executed)
    name = source.stem
    if not executed.is_file():
        return ChapterStatus(name, "not executed", [f"no executed notebook at {executed}"])
    nb = nbformat.read(executed, as_version=4)
    rec = dict(nb.metadata.get(METADATA_KEY, {}))
    if not rec:
        return ChapterStatus(name, "stale", ["no provenance record (metadata['hurdles']); run it with "
                                             "`book run` or add one with `book register`"])
    reasons = []
    current = source_hash(source)
    if rec.get("source_sha256") != current:
        reasons.append(f"source changed: {source.name} is {current[:12]}, "
                       f"executed from {str(rec.get('source_sha256'))[:12]}")
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
    reasons += rejudged_verdicts(source, rec, verdicts_path)
    return ChapterStatus(name, "stale" if reasons else "fresh", reasons, rec, provenance_problems(rec))


def chapter_status(chapter: str | Chapter, output_dir: str | os.PathLike | None = None,
                   **kwargs: Any) -> ChapterStatus:
    """:func:`check_executed` for a chapter and its executed notebook in ``output_dir`` (default ``book/chapters``)."""
    chapter = resolve_chapter(chapter)
    return check_executed(chapter.source, chapter.output(output_dir), **kwargs)
