"""The generated tables of ``book/reproduce.md``: profiles, chapter parameters and recorded runtimes.

The page holds blocks ``<!-- BEGIN generated:NAME ... -->`` ... ``<!-- END generated:NAME -->``;
:func:`render_page` regenerates them from :data:`covid_lib.profiles.PROFILES`, the chapters'
``parameters`` cells and the committed chapters' provenance records.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from covid_lib.book.chapters import list_chapters, parameter_defaults, read_record
from covid_lib.paths import REPO_ROOT
from covid_lib.profiles import PROFILES

REPRODUCE_PAGE = REPO_ROOT / "book" / "reproduce.md"


_PROFILE_ROWS = (
    ("input_size", "input (crop) side, px"), ("resize_size", "resize side, px"),
    ("epochs", "max epochs"), ("batch_size", "batch size"), ("optimizer", "optimiser"),
    ("lr", "learning rate (peak for one-cycle)"), ("weight_decay", "weight decay"), ("schedule", "schedule"),
    ("warmup", "one-cycle warm-up share"), ("lr_patience", "LR plateau patience"),
    ("early_stopping", "early stopping patience"), ("loss", "loss"), ("focal_gamma", "focal gamma"),
    ("precision", "precision"), ("seeds", "seeds (seeds grid)"), ("max_images", "images per source and split"),
    ("threads", "CPU threads"), ("deterministic", "deterministic cuDNN"),
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
