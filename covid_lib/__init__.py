"""Hurdles: a tested library behind the critical-reading guide to COVID-19 detection on chest X-rays.

Reproduces Tartaglione et al. 2020, "Unveiling COVID-19 from chest X-ray with deep learning:
a hurdles race with small data", on public data.

Layers, lowest first; a module imports only from its own layer or lower ones, never inside a
function either (``tests/test_layers.py`` checks it on the source):

core (``paths``, ``profiles``, ``stats``, ``metrics``) -> ``data`` -> ``provenance`` (git state,
environment, the data layer's one data version) -> ``models`` (architectures, committed weights)
-> ``preprocess`` (the chain; it loads the lung U-Net, hence above ``models``) -> ``train`` and
``segment`` -> ``evaluate`` -> ``runs`` -> ``grid`` -> ``analysis`` -> ``report`` -> ``book`` -> ``audit``
-> ``cli``.

``covid_lib`` imports stand at the top of the module. The few inside functions are lazy on
purpose, each with a ``# lazy``/``# optional`` comment: the command line's groups (``--help``
stays light), the book's generated page blocks and :func:`covid_lib.provenance.data_version`
(``covid_lib.book`` stays light), and the Ray executor (Ray is optional).
"""

__version__ = "0.1.0"
