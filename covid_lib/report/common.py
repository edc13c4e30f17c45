"""What several chapters share: source colours and figure helpers, the answer box at a chapter's
top, numbers glued into the prose, the table styler and the provenance table.

Figures are :class:`matplotlib.figure.Figure` objects built without pyplot, so that a notebook
displays each exactly once and no global figure state leaks between cells. The data chapter's own
tables and figures (data cards, image grids, acquisition statistics) are in
:mod:`covid_lib.report.sources`.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from covid_lib.data import limit_rows
from covid_lib.metrics import format_estimate
from covid_lib.provenance import BOOK_OUTPUTS, data_version, environment, git_state

#: One colour per source, the same in every figure of the book.
SOURCE_COLORS = {
    "cohen": "#d62728", "hannover": "#ff7f0e", "kermany": "#2ca02c", "nih": "#1f77b4",
    "montgomery": "#9467bd", "shenzhen": "#8c564b",
}


def as_jpeg(fig: Figure, *, dpi: int = 110, quality: int = 80):
    """``fig`` as an IPython JPEG image: radiograph contact sheets are noise to PNG's compressor,
    and a JPEG of them is about a tenth of the size at no visible loss (chapters stay small)."""
    import io

    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": quality, "optimize": True})
    return Image(data=buffer.getvalue(), format="jpeg")


def _color(source: str) -> str:
    return SOURCE_COLORS.get(source, "#7f7f7f")


def limit_per_source(manifest: pd.DataFrame, max_images: int | None, *, seed: int = 0,
                     stratify: str | None = None) -> pd.DataFrame:
    """At most ``max_images`` rows per source, drawn at random (per ``stratify`` label when given),
    in their original order: :func:`covid_lib.data.limit_rows` with ``strict=True``."""
    return limit_rows(manifest, max_images, seed=seed, by=("source",), label=stratify or None, strict=True)


def label_panels(axes: np.ndarray, columns: Iterable[str], rows: Iterable[str], *, fontsize: float = 8) -> None:
    """Label a grid of image panels (``axes``: rows x columns): no ticks anywhere, ``columns`` as
    the titles of the first row and ``rows`` as the labels of the first column."""
    axes = np.asarray(axes)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    for ax, title in zip(axes[0], columns):
        ax.set_title(title, fontsize=fontsize)
    for ax, label in zip(axes[:, 0], rows):
        ax.set_ylabel(label, fontsize=fontsize)


def provenance(*, profile: str, parameters: dict[str, Any], started: float | None = None,
               data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """A two-column table saying what produced a chapter: profile, parameters, commit, data, versions.

    ``started`` is a :func:`time.time` taken in the chapter's first cell; the table then shows
    the elapsed time. The runner records the same facts in the notebook's metadata.
    """
    git = git_state(exclude=BOOK_OUTPUTS)  # as in the runner's record: earlier chapters are not "dirt"
    env = environment(str(parameters.get("device", "auto")))
    rows = {
        "profile": profile,
        "parameters": ", ".join(f"{k}={v!r}" for k, v in parameters.items()),
        "git commit": f"{(git.get('commit') or '?')[:10]}" + (" (work tree dirty)" if git.get("dirty") else ""),
        "data version": data_version(data_root) or "no data",
        "device": env.get("gpu") or env.get("device"),
        "python / torch / numpy / pandas": f"{env['python']} / {env['torch']} / {env['numpy']} / {env['pandas']}",
        "CPUs": env.get("cpu_count"),
        "executed (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    if started is not None:
        rows["elapsed"] = f"{time.time() - started:.0f} s"
    return pd.DataFrame({"value": rows}).rename_axis("")


# ------------------------------------------------------------------------ the reader's summary
#: glue key of a chapter's answer box; the chapter's first Markdown cell pastes it with
#: ``{glue:md} chapter-answer`` (``:format: myst``), so that the box at the top shows values the
#: chapter computes further down (the book renders pre-executed notebooks, whose glue data myst-nb
#: reads in full before it renders the page).
ANSWER_KEY = "chapter-answer"

_ADMONITION = {"reproduced": "tip", "not reproduced": "warning", "no detectable effect": "note", "inconclusive": "note"}


def answer_box(question: str, answer: str, how_sure: str, *, kind: str = "important",
               title: str = "The answer, up front"):
    """A "question / answer / how sure" box (a MyST admonition) as IPython Markdown.

    Args:
        question: what the chapter asks, one sentence.
        answer: its answer, with the numbers that give it (formatted from the chapter's variables).
        how_sure: the interval, test or caveat that bounds the answer.
        kind: the admonition's class (``important``, ``tip``, ``note``, ``warning``, ...); a verdict name
            (``reproduced``, ``not reproduced``, ``inconclusive``) picks one.
        title: the box's title.

    Example:
        >>> print(answer_box("Q?", "A.", "Sure.").data.splitlines()[0])
        ````{admonition} The answer, up front
    """
    from IPython.display import Markdown

    kind = _ADMONITION.get(kind, kind)
    body = "\n".join(f"**{label}** {text.strip()}" + "\n"
                     for label, text in (("Question.", question), ("Answer.", answer), ("How sure.", how_sure)))
    return Markdown(f"````{{admonition}} {title}\n:class: {kind}\n\n{body.rstrip()}\n````\n")


def takeaway(answer: str, how_sure: str):
    """The chapter's closing takeaway as IPython Markdown: a plain blockquote, which reads the same in
    Jupyter and in the book (myst-nb renders a code cell's Markdown output as CommonMark)."""
    from IPython.display import Markdown

    text = f"**Takeaway.** {answer.strip()}\n\n**How sure.** {how_sure.strip()}"
    return Markdown("\n".join(f"> {line}".rstrip() for line in text.splitlines()) + "\n")


def show_answer(question: str, answer: str, how_sure: str, *, kind: str = "important"):
    """Glue the chapter's answer box under :data:`ANSWER_KEY` (pasted at the top of the page) and
    display the same answer here as the chapter's closing takeaway. Returns nothing, so that a
    notebook's last line shows the takeaway once (a returned box would render as a code block).
    """
    from IPython.display import display

    box = answer_box(question, answer, how_sure, kind=kind)
    try:
        from myst_nb import glue
    except ImportError:  # plain Jupyter without myst-nb: the takeaway still shows
        pass
    else:
        glue(ANSWER_KEY, box, display=False)
    display(takeaway(answer, how_sure))


def show_verdict_answer(question: str, verdict, *, answer: str = "", how_sure: str = "") -> None:
    """:func:`show_answer` for a chapter that decides a claim or a finding: the answer is the verdict
    (:class:`covid_lib.analysis.verdicts.Verdict`) and its statement (then ``answer``, if given),
    "how sure" the number that decides it and what differs from the paper (a finding: from the
    work it follows), then ``how_sure``, if given; the box's colour follows the verdict."""
    text = f"{verdict.claim} is **{verdict.verdict}**: {verdict.statement}" + (f" {answer}" if answer else "")
    work = "the paper" if verdict.claim.startswith("C") else "the work it follows"
    sure = f"What decides it: {verdict.deciding}. What differs from {work}: {verdict.differs}." + (
        f" {how_sure}" if how_sure else "")
    show_answer(question, text, sure, kind=verdict.verdict)



# ------------------------------------------------------------------------ numbers in the prose
def glue_text(value: Any, fmt: str | None = None) -> str:
    """``value`` as the prose shows it: ``fmt`` (a :meth:`str.format` pattern) when given, else an
    integer with a thousands separator and anything else as ``str``; None or NaN as "–".

    Example:
        >>> glue_text(3990), glue_text(0.5, "{:.2f}"), glue_text(None)
        ('3,990', '0.50', '–')
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if fmt is not None:
        return fmt.format(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


def glue_value(name: str, value: Any, fmt: str | None = None) -> None:
    """Glue ``value`` (as :func:`glue_text` writes it) under ``name``, for the chapter's Markdown to
    paste with ``{glue:text}`name```: a number in the prose is then computed by the chapter, never
    typed (a typed number goes stale silently when the data or a record changes).

    Nothing is shown (myst-nb's ``display=False``), so the call fits in any hidden cell; the book
    renders the pasted text in place of the role. Without myst-nb (plain Jupyter) nothing is glued.
    Returns nothing, so that a cell ending with it shows no output.

    Example:
        In a code cell, ``glue_value("pretrain-images", 3990)``; in the Markdown, "pre-trained on
        {glue:text}`pretrain-images` images" reads "pre-trained on 3,990 images".
    """
    text = glue_text(value, fmt)
    try:
        from myst_nb import glue
    except ImportError:  # plain Jupyter without myst-nb: nothing to paste into
        return
    glue(name, text, display=False)


def rounded_range(values: Iterable[float], step: int = 10) -> str:
    """An "about N" of the prose, computed: ``values`` rounded to ``step``, as one number when they
    round alike, else as a range; "–" when there are none.

    Example:
        >>> rounded_range([563, 564]), rounded_range([563, 583]), rounded_range([])
        ('560', '560 to 580', '–')
    """
    rounded = sorted({int(round(float(v) / step) * step) for v in values if pd.notna(v)})
    if not rounded:
        return "–"
    low, high = rounded[0], rounded[-1]
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"

#: A token (between spaces and after hyphens) longer than this many characters lets its column of a
#: :func:`styled` table break anywhere (URLs, run ids); shorter ones keep their words whole.
LONG_TOKEN = 24


def _longest_token(values: pd.Series) -> int:
    """The longest run of characters without a space or a hyphen (a line can break at either)."""
    return max((len(t) for v in values.dropna().astype(str) for t in re.split(r"[\s\-/]+", v)), default=0)


def styled(df: pd.DataFrame, *, digits: int = 2, intervals: dict[str, tuple[str, str, str]] | None = None,
           percent: Iterable[str] = (), wrap: int = 14, caption: str | None = None, index: bool = False,
           nowrap: Iterable[str] = ()):
    """A table for reading: no index column, floats to ``digits``, estimates with their interval.

    Args:
        df: the table; a named or non-trivial index becomes columns unless ``index``.
        digits: decimals of float columns (integers stay integers, NaN shows as "–").
        intervals: ``{"AUC": ("auc", "auc_low", "auc_high")}`` puts ``"0.81 [0.70, 0.93]"`` in a
            column ``AUC`` in place of the three (at the first one's position).
        percent: float columns (shares in [0, 1]) shown as per cent.
        wrap: headers longer than this many characters wrap (tables fit the page's column).
        caption: a caption above the table.
        index: keep the index (as row labels) instead of hiding it.
        nowrap: columns whose cells stay on one line (short labels such as ``"cohen (100%)"``, so
            that a row does not take two lines for them; the other columns wrap instead).

    Returns:
        a :class:`pandas.io.formats.style.Styler`.
    """
    table = df.copy()
    if not index and not (isinstance(table.index, pd.RangeIndex) and table.index.name is None):
        names = [n if n is not None else " " * i for i, n in enumerate(table.index.names)]  # unique, blank
        table = table.reset_index(names=names, allow_duplicates=True)
    for name, (value, low, high) in (intervals or {}).items():
        position = list(table.columns).index(value)
        text = [format_estimate(float(v), float(lo), float(hi), digits)
                if pd.notna(v) else "–" for v, lo, hi in zip(table[value], table[low], table[high])]
        table = table.drop(columns=[c for c in (value, low, high) if c != name and c in table.columns])
        if name in table.columns:
            table = table.drop(columns=[name])
        table.insert(min(position, len(table.columns)), name, text)
    formats = {}
    percent = set(percent)
    for column in table.columns:
        series = table[column]
        if column in percent:
            formats[column] = lambda x: "–" if pd.isna(x) else f"{x:.{max(digits - 2, 0)}%}"
        elif pd.api.types.is_float_dtype(series):
            formats[column] = (lambda x: "–" if pd.isna(x) else ("∞" if x == float("inf") else f"{x:.{digits}f}"))
    styler = table.style.format(formats, na_rep="–")
    if not index:
        styler = styler.hide(axis="index")
    styler = styler.set_table_styles([
        {"selector": "th", "props": [("white-space", "normal"), ("max-width", f"{wrap}ch"),
                                     ("vertical-align", "bottom"), ("text-align", "left")]},
        {"selector": "td", "props": [("white-space", "normal"), ("overflow-wrap", "break-word")]},
        {"selector": "", "props": [("max-width", "100%"), ("font-size", "0.85em")]},
    ], overwrite=False)
    # Words break between words and after hyphens, never inside ("montgomery", "resnet18"); a column
    # holding a longer unbreakable token (a URL, a hash) may break anywhere, so that the table fits.
    # Numbers ("100%", "0.93") and the cells of ``nowrap`` stay on one line. A per-column selector
    # ("td.col3") outranks the table's "td" rule.
    rules = {}
    for column in table.columns:
        if column in percent or pd.api.types.is_numeric_dtype(table[column]) or column in set(nowrap):
            rules[column] = [("white-space", "nowrap")]
        elif _longest_token(table[column]) > LONG_TOKEN:
            rules[column] = [("overflow-wrap", "anywhere")]
    if rules:
        styler = styler.set_table_styles({c: [{"selector": "td", "props": props}] for c, props in rules.items()},
                                         overwrite=False)
    if caption:
        styler = styler.set_caption(caption)
    return styler


def start_chapter(*, max_rows: int = 300, width: int = 250) -> float:
    """The common start of a chapter: silence tqdm's "IProgress not found" (progress bars are off),
    let pandas print whole cells and long tables, and return :func:`time.time` for
    :func:`provenance`'s elapsed time."""
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_rows", max_rows)
    pd.set_option("display.width", width)
    return time.time()
