"""A tiny Sphinx extension that ``jupyter-book build`` loads (``_config.yml``, ``sphinx.local_extensions``).

It also holds :func:`read_notebook`, the notebook reader that ``_config.yml`` names in myst-nb's
``nb_custom_formats`` for ``.ipynb``: it hides papermill's ``injected-parameters`` cell at build time.
"""

from __future__ import annotations

#: The tag papermill gives the cell it inserts after the ``parameters`` cell.
INJECTED_TAG = "injected-parameters"
#: myst-nb's tag for a cell that the rendered page leaves out entirely.
REMOVE_TAG = "remove-cell"


def hide_injected_parameters(nb):
    """Tag papermill's ``injected-parameters`` cells ``remove-cell`` (in place); returns ``nb``.

    The chapters keep the cell (its values are in ``metadata["papermill"]`` and the provenance
    record too); the page shows only the chapter's own ``parameters`` cell.
    """
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if INJECTED_TAG in tags and REMOVE_TAG not in tags:
            cell.metadata["tags"] = [*tags, REMOVE_TAG]
    return nb


def read_notebook(text: str):
    """myst-nb's standard ``.ipynb`` reader followed by :func:`hide_injected_parameters`.

    Named in ``_config.yml`` as ``sphinx.config.nb_custom_formats[".ipynb"]`` (myst-nb's documented
    hook for reading a notebook format), so the committed chapters stay as papermill wrote them.
    """
    import nbformat

    return hide_injected_parameters(nbformat.reads(text, as_version=4))


def _dedupe_assets(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated inline scripts and stylesheets from a page.

    Sphinx 7.4 adds each inline script that an extension registers after the builder started
    (sphinx-thebe's and sphinx-togglebutton's) a second time in ``prepare_writing`` (once with
    filename None, once with ''), so every page declared ``const THEBE_JS_URL`` twice and the
    browser logged a SyntaxError. Loaded from ``_config.yml`` (``sphinx.local_extensions``).
    """
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if not isinstance(assets, list):
            continue
        seen, unique = set(), []
        for asset in assets:
            attrs = getattr(asset, "attributes", {}) or {}
            ident = (getattr(asset, "filename", str(asset)) or "", getattr(asset, "priority", None),
                     tuple(sorted((k, str(v)) for k, v in attrs.items())))
            if ident not in seen:
                seen.add(ident)
                unique.append(asset)
        assets[:] = unique


def setup(app) -> dict:
    """Sphinx extension hook: lets ``jupyter-book build`` load this module (see :func:`_dedupe_assets`)."""
    app.connect("html-page-context", _dedupe_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
