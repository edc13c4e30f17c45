"""An executed notebook as one self-contained HTML page (nbconvert is not a dependency).

Markdown cells through ``markdown-it`` (a dependency of the book's toolchain); outputs as the
notebook holds them: HTML tables, PNG figures (inline, base64), plain text and streams. Code
cells tagged ``hide-input`` show their output only.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from markdown_it import MarkdownIt

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


def notebook_html(nb, *, title: str = "Shortcut audit") -> str:
    """The page's HTML for an ``nbformat`` notebook."""
    md = MarkdownIt("commonmark").enable("table")
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(md.render(cell.source))
        elif cell.cell_type == "code":
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags or "parameters" in tags:
                parts.append(f"<details><summary>parameters</summary><pre>{html.escape(cell.source)}</pre></details>")
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
