"""A tiny Sphinx extension that ``jupyter-book build`` loads (``_config.yml``, ``sphinx.local_extensions``)."""

from __future__ import annotations


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
