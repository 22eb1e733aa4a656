"""Receivers that check each other: what the redundancy of a TDoA fit says about the timing.

* Closure: around a triangle of receivers (i, j, k) the measured lags must add up,
  ``lag_ij + lag_jk - lag_ik = 0``, whatever each receiver's timing offset (offsets cancel): a
  misfit beyond the lags' measurement errors means a correlation peak was picked wrongly. This
  is the test hcab14/TDoA's tdoa_verify_lags applies to its lag clusters.
* Residuals: N receivers give N - 1 independent lags for 2 unknowns, so N - 3 of them check the
  receivers' timing. With 3 receivers nothing does: any offsets move the position and leave no
  trace. With 4 or more, the fit's chi-square (full lag covariance, tdoa/solve.py) is tested
  against its degrees of freedom; each receiver's offset is estimated from the residuals (best
  linear unbiased prediction under the allowance model) with its uncertainty; when the chi-square
  is improbable (p < CONSISTENCY_P) the region is widened by the reduced chi-square (solve.py)
  and, with 5 or more receivers, the receiver whose removal makes the rest consistent is named.
  With exactly 4, one redundant lag cannot say which receiver is off (every receiver's test
  statistic is the same), and the report says so.

Pure numpy / scipy.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Mapping

import numpy as np
import scipy.stats

from heimdall_pipeline.tdoa.solve import PairGeometry, Solution, incidence_matrix, lag_covariance

CONSISTENCY_P = 0.01
CLOSURE_SIGMAS = 5.0
MIN_CLOSURE_S = 1e-6  # closures below this are consistent whatever their errors claim


def closures(pairs: list[PairGeometry]) -> list[dict[str, Any]]:
    """Every triangle's closure misfit (s) and its size in measurement sigmas."""
    by_ids = {p.ids: p for p in pairs}
    ids = sorted({i for p in pairs for i in p.ids})
    out = []

    def lag(i: str, j: str) -> tuple[float, float] | None:
        if (i, j) in by_ids:
            return by_ids[(i, j)].lag_s, by_ids[(i, j)].sigma_s
        if (j, i) in by_ids:
            return -by_ids[(j, i)].lag_s, by_ids[(j, i)].sigma_s
        return None

    for i, j, k in itertools.combinations(ids, 3):
        legs = [lag(i, j), lag(j, k), lag(k, i)]
        if any(leg is None for leg in legs):
            continue
        misfit = sum(leg[0] for leg in legs)
        sigma = math.sqrt(sum(leg[1] ** 2 for leg in legs))
        out.append({"receivers": [i, j, k], "misfit_s": misfit, "sigmas": abs(misfit) / sigma if sigma else math.inf})
    return out


def cross_check(pairs: list[PairGeometry], solution: Solution, receiver_sigmas_s: Mapping[str, float],
                refit: Callable[[list[PairGeometry]], Solution]) -> dict[str, Any]:
    """The cross-check report of one fit: ``status`` (unchecked / consistent / inconsistent),
    ``text`` for a person, the closures, the chi-square test, each receiver's estimated offset
    and, when one can be singled out, ``inconsistent_receiver``. refit: solves a subset of pairs
    (the leave-one-out test)."""
    ids = sorted({i for p in pairs for i in p.ids})
    triangles = closures(pairs)
    bad_closures = [t for t in triangles if t["sigmas"] > CLOSURE_SIGMAS and abs(t["misfit_s"]) > MIN_CLOSURE_S]
    report: dict[str, Any] = {"receivers": len(ids), "closures": triangles,
                              "worst_closure_us": max((abs(t["misfit_s"]) * 1e6 for t in triangles), default=None)}
    closure_text = ""
    if bad_closures:
        closure_text = " Lags that do not close: " + "; ".join(
            f"{'-'.join(t['receivers'])} {t['misfit_s'] * 1e6:+.1f} µs ({t['sigmas']:.0f} σ)" for t in bad_closures) + "."
    if len(ids) < 4:
        report.update(status="unchecked", text=f"{len(ids)} timed receivers: the position fits their lags exactly "
                      "whatever their timing offsets, so nothing cross-checks them." + closure_text)
        return report

    residual = np.array(solution.residuals_s)
    covariance = lag_covariance(pairs, receiver_sigmas_s, len(ids))
    incidence = incidence_matrix(pairs, ids)
    prior = np.diag([receiver_sigmas_s.get(i, 0.0) ** 2 for i in ids])
    gain = prior @ incidence.T @ np.linalg.inv(covariance)
    offsets = gain @ residual
    offsets_sd = np.sqrt(np.clip(np.diag(prior - gain @ incidence @ prior), 0.0, None))
    p_value = float(scipy.stats.chi2.sf(solution.chi2, solution.degrees_of_freedom)) if solution.degrees_of_freedom else 1.0
    report.update(chi2=solution.chi2, degrees_of_freedom=solution.degrees_of_freedom, p_value=p_value,
                  widened_by=solution.widened_by,
                  receiver_offsets_us={i: {"estimate": float(o) * 1e6, "sd": float(s) * 1e6}
                                       for i, o, s in zip(ids, offsets, offsets_sd)})
    if p_value >= CONSISTENCY_P and not bad_closures:
        report.update(status="consistent", text=(
            f"{len(ids)} timed receivers agree with one position within the timing model "
            f"(chi-square {solution.chi2:.1f} for {solution.degrees_of_freedom} degrees of freedom, p = {p_value:.2f})."))
        return report
    named = _single_out(pairs, ids, refit) if len(ids) >= 5 else None
    text = (f"The {len(ids)} receivers' lags disagree with one position beyond the timing model (chi-square "
            f"{solution.chi2:.1f} for {solution.degrees_of_freedom} degrees of freedom, p = {p_value:.3g}); the 95 % "
            f"region is widened {solution.widened_by:.2f}×.")
    if named is not None:
        text += (f" {named}'s lags are inconsistent with the others (estimated offset "
                 f"{report['receiver_offsets_us'][named]['estimate']:+.1f} µs); without it the rest agree.")
        report["inconsistent_receiver"] = named
    elif len(ids) == 4:
        text += " With 4 receivers one redundant lag cannot tell which receiver is off."
    else:
        text += " No single receiver explains the disagreement."
    report.update(status="inconsistent", text=text + closure_text)
    return report


def _single_out(pairs: list[PairGeometry], ids: list[str], refit) -> str | None:
    """The receiver whose removal leaves a consistent fit with the largest drop in chi-square."""
    best, best_p = None, CONSISTENCY_P
    for rid in ids:
        rest = [p for p in pairs if rid not in p.ids]
        fit = refit(rest)
        p = float(scipy.stats.chi2.sf(fit.chi2, fit.degrees_of_freedom)) if fit.degrees_of_freedom else 1.0
        if p > best_p:
            best, best_p = rid, p
    return best
