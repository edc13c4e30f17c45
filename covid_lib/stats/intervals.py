"""Normal critical values, the Wilson interval of a proportion and the odds-ratio interval.

Plain numbers in, plain numbers out:

* :func:`z_critical` -- the two-sided standard-normal critical value every interval of
  :mod:`covid_lib.stats` uses.
* :func:`wilson_interval` -- Wilson (1927) score interval for a binomial proportion (used for
  sensitivity, specificity and accuracy); identical to statsmodels'
  ``proportion_confint(method="wilson")``.
* :func:`log_odds_ratio_interval` -- odds ratio with a log-scale (Woolf) interval and the
  Haldane (1940) / Anscombe (1956) correction: 0.5 added to *every* cell when any cell is zero.

References
----------
Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
    JASA 22:209-212.
Haldane JBS (1940). The mean and variance of chi^2, when used as a test of homogeneity, when
    expectations are small. Biometrika 31:346-355.
Anscombe FJ (1956). On estimating binomial response relations. Biometrika 43:461-464.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


def z_critical(alpha: float) -> float:
    """Two-sided standard-normal critical value ``z_{1 - alpha/2}`` (1.95996... for 0.05)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(norm.isf(alpha / 2.0))


# --------------------------------------------------------------------------- Wilson


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for the proportion ``successes / n``.

    Parameters
    ----------
    successes, n
        Number of successes and of trials, ``0 <= successes <= n``.
    alpha
        One minus the coverage (0.05 gives a 95% interval).

    Returns
    -------
    (low, high)
        The interval, clipped to [0, 1]; ``(nan, nan)`` when ``n == 0``. With 0 or ``n``
        successes one end is exactly 0 or 1, as in statsmodels.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (float("nan"), float("nan"))
    z = z_critical(alpha)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    if successes == 0:
        return (0.0, float(min(center + half, 1.0)))
    if successes == n:
        return (float(max(center - half, 0.0)), 1.0)
    return (float(max(center - half, 0.0)), float(min(center + half, 1.0)))


# --------------------------------------------------------------------------- odds ratio


@dataclass(frozen=True)
class OddsRatio:
    """Odds ratio ``(a d) / (b c)`` with its log-scale interval.

    ``corrected`` says whether 0.5 was added to every cell (Haldane-Anscombe); ``table`` is the
    table actually used, as ``(a, b, c, d)``.
    """

    value: float
    low: float
    high: float
    corrected: bool
    table: tuple[float, float, float, float]


def log_odds_ratio_interval(a: float, b: float, c: float, d: float,
                            alpha: float = 0.05, *, correction: str = "auto") -> OddsRatio:
    """Odds ratio of the 2x2 table ``[[a, b], [c, d]]`` with a Woolf (log-scale) interval.

    ``exp(log OR +- z * sqrt(1/a + 1/b + 1/c + 1/d))``. For the diagnostic odds ratio pass
    ``(tp, fn, fp, tn)``. Agrees with statsmodels ``Table2x2(table).oddsratio`` and
    ``.oddsratio_confint(alpha)`` on the same table (note that ``Table2x2(shift_zeros=True)``
    replaces only the zero cells by 0.5, which is *not* the Haldane-Anscombe correction).

    Parameters
    ----------
    a, b, c, d
        Cell counts, all >= 0.
    alpha
        One minus the coverage.
    correction
        ``"auto"``: add 0.5 to every cell when any cell is 0 (Haldane 1940, Anscombe 1956);
        ``"always"``; ``"never"`` (a zero cell then gives 0, inf or nan bounds).
    """
    cells = np.array([a, b, c, d], dtype=float)
    if (cells < 0).any() or not np.isfinite(cells).all():
        raise ValueError(f"cell counts must be finite and >= 0, got {cells.tolist()}")
    if correction not in ("auto", "always", "never"):
        raise ValueError(f"correction must be 'auto', 'always' or 'never', got {correction!r}")
    corrected = correction == "always" or (correction == "auto" and (cells == 0).any())
    if corrected:
        cells = cells + 0.5
    a, b, c, d = cells
    with np.errstate(divide="ignore", invalid="ignore"):
        log_or = np.log(a) + np.log(d) - np.log(b) - np.log(c)
        se = np.sqrt((1.0 / cells).sum())
    half = z_critical(alpha) * se
    return OddsRatio(float(np.exp(log_or)), float(np.exp(log_or - half)),
                     float(np.exp(log_or + half)), bool(corrected), tuple(float(x) for x in cells))
