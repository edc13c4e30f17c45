"""Hurdles: a tested library behind the critical-reading guide to COVID-19 detection on chest X-rays.

Reproduces Tartaglione et al. 2020, "Unveiling COVID-19 from chest X-ray with deep learning:
a hurdles race with small data", on public data. Stages (see ``DESIGN``):
``data`` -> ``preprocess`` -> ``models`` -> ``train`` -> ``evaluate`` -> ``metrics`` -> ``report``.
"""

__version__ = "0.1.0"
