"""An executed notebook as one self-contained HTML page (nbconvert is not a dependency).

Markdown cells through ``markdown-it`` (a dependency of the book's toolchain); outputs as the
notebook holds them: HTML tables, PNG figures (inline, base64), plain text and streams. Code
cells tagged ``hide-input`` show their output only; cells tagged ``remove-cell`` (papermill's
injected parameters, as in the book) are left out.
"""

from __future__ import annotations

import copy
import html
import os
from pathlib import Path

from markdown_it import MarkdownIt

from covid_lib.book.sphinx_ext import REMOVE_TAG, hide_injected_parameters

_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .45rem}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem}img{max-width:100%}
details{margin:.3rem 0;color:#555}"""


def _output(out: dict) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(''.join(out.get('text', '')))}</pre>"
    if kind == "error":
        return f"<pre style='color:#a00'>{html.escape(out.get('ename', ''))}: {html.escape(out.get('evalue', ''))}</pre>"
    data = out.get("data", {})
    if "image/png" in data:
        png = "".join(data["image/png"]).replace("\n", "")
        return f"<img src='data:image/png;base64,{png}'>"
    if "text/html" in data:
        return "".join(data["text/html"])
    if "text/markdown" in data:
        return MarkdownIt("commonmark").enable("table").render("".join(data["text/markdown"]))
    if "text/plain" in data:
        return f"<pre>{html.escape(''.join(data['text/plain']))}</pre>"
    return ""


def _parameters(cell, used: dict) -> str:
    """The notebook's ``parameters`` cell, folded, with the values this run used (papermill's)."""
    run = "".join(f"\n{k} = {v!r}" for k, v in used.items())
    return (f"<details><summary>parameters</summary><pre>{html.escape(cell.source)}</pre>"
            + (f"<p>This run:</p><pre>{html.escape(run.strip())}</pre>" if run else "") + "</details>")


def notebook_html(nb, *, title: str = "Shortcut audit") -> str:
    """The page's HTML for an ``nbformat`` notebook. Papermill's ``injected-parameters`` cell is
    left out as the book leaves it out (:func:`covid_lib.book.sphinx_ext.hide_injected_parameters`
    tags it ``remove-cell``); the values it set are shown once, under the ``parameters`` cell."""
    md = MarkdownIt("commonmark").enable("table")
    nb = hide_injected_parameters(copy.deepcopy(nb))
    used = nb.metadata.get("papermill", {}).get("parameters", {}) or {}
    parts = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if REMOVE_TAG in tags:
            continue
        if cell.cell_type == "markdown":
            parts.append(md.render(cell.source))
        elif cell.cell_type == "code":
            if "parameters" in tags:
                parts.append(_parameters(cell, used))
                continue
            if "hide-input" not in tags:
                parts.append(f"<pre>{html.escape(cell.source)}</pre>")
            parts.extend(_output(o) for o in cell.get("outputs", []))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")


def write_html(notebook: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the HTML page of the notebook file ``notebook`` to ``out``."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    out = Path(out)
    out.write_text(notebook_html(nb), encoding="utf-8")
    return out
