"""``book/verdicts.json``, the file :mod:`covid_lib.report.judge` writes: where it lies, reading it,
the digest of what it says of a claim (``book check`` compares it with the one an executed chapter
recorded), the log of the claims a chapter reads, and when the rules it is judged by were
committed (from git)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from covid_lib.analysis import protocol as P
from covid_lib.paths import REPO_ROOT
from covid_lib.provenance import commit_times

VERDICTS_JSON = REPO_ROOT / "book" / "verdicts.json"
#: When set (the book runner sets it while a chapter executes), the file to which every claim a
#: chapter reads from ``book/verdicts.json`` is appended, one id a line (:func:`note_read`).
READ_LOG_ENV = "COVID_LIB_VERDICTS_READ_LOG"


def note_read(claim: str) -> None:
    """Note that ``claim``'s verdict was read from ``book/verdicts.json``: appended to the file
    :data:`READ_LOG_ENV` names, if set, so that the executed chapter's provenance record lists the
    verdicts it shows and ``book check`` can tell when one of them was re-judged."""
    log = os.environ.get(READ_LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(claim + "\n")


def claim_digest(claim: str, data: dict | None) -> str | None:
    """A short SHA-256 of what ``book/verdicts.json`` (``data``) says of ``claim``: the protocol
    hash and its entry at every scale (a claim C1-C6) or its one entry (a finding F1-F5); None when
    ``data`` is None. Equal digests: a chapter showing ``claim`` shows what the file says now."""
    import hashlib

    if data is None:
        return None
    entry = {"protocol_hash": data.get("protocol_hash"),
             "scales": {name: s.get("claims", {}).get(claim) for name, s in sorted(data.get("scales", {}).items())},
             "finding": data.get("findings", {}).get(claim)}
    return hashlib.sha256(json.dumps(entry, sort_keys=True, default=float).encode()).hexdigest()[:16]


def read_verdicts(path: str | os.PathLike | None = None) -> dict | None:
    """``book/verdicts.json`` (or ``path``), None when it does not exist."""
    p = Path(path) if path is not None else VERDICTS_JSON
    return json.loads(p.read_text()) if p.is_file() else None


def protocol_commit_time(protocol_hash: str | None = None) -> str | None:
    """ISO time of the first commit whose ``book/protocol.md`` carries ``protocol_hash`` (the current
    protocol's by default): when these rules were committed, whatever later moves or edits the file
    that holds them without changing a rule (None outside git or before the page is committed).
    Asked of git once per hash and process (:func:`_commit_time`)."""
    return _commit_time(protocol_hash or P.protocol_hash())


@functools.lru_cache(maxsize=None)
def _commit_time(protocol_hash: str) -> str | None:
    times = commit_times(f"-S{protocol_hash}", "--", "book/protocol.md")
    return times[-1] if times else None


def rule_commit_time(claim: str) -> str | None:
    """When ``claim``'s rule was committed: the commit of the protocol version that fixed it
    (:func:`covid_lib.analysis.protocol.rule_version_hash`), so a later version that adds rules
    does not re-date the rules it keeps."""
    return protocol_commit_time(P.rule_version_hash(P.rule(claim)))
