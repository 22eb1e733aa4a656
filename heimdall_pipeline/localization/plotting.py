"""The localization pictures: receivers, estimate, confidence region and (when known) the truth;
for TDoA also each receiver pair's hyperbola.

matplotlib is imported when a picture is drawn, not when the code location loads.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Iterable

import numpy as np

from heimdall_pipeline.localization.rss import LocalizationResult, PowerObservation

if TYPE_CHECKING:
    from heimdall_pipeline.tdoa import TdoaResult


def plot_localization(result: LocalizationResult, observations: Iterable[PowerObservation],
                      truth: tuple[float, float] | None = None) -> bytes:
    """PNG of receivers (filled: detected, hollow: bounds), estimate, ellipse and truth (lat, lon)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    observations = list(observations)
    fig = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lats = [o.latitude for o in observations]
    lons = [o.longitude for o in observations]
    for o in observations:
        if o.detected:
            ax.plot(o.longitude, o.latitude, "^", color="tab:blue", markersize=9)
            label = f"{o.receiver_id}\n{o.signal_power_dbm:.1f} dBm"
        else:
            ax.plot(o.longitude, o.latitude, "^", markerfacecolor="none", color="tab:gray", markersize=9)
            label = f"{o.receiver_id}\n(not detected)"
        ax.annotate(label, (o.longitude, o.latitude), textcoords="offset points", xytext=(6, 4), fontsize=7)
    if result.localizable:
        elat, elon = result.ellipse_polygon()
        ax.fill(elon, elat, color="tab:red", alpha=0.15, label=f"{result.confidence:.0%} ellipse")
        ax.plot(elon, elat, color="tab:red", linewidth=1)
        ax.plot(result.longitude, result.latitude, "*", color="tab:red", markersize=14,
                label=f"estimate (n={result.path_loss_exponent:.2f}, EIRP={result.eirp_dbm:.1f} dBm)")
        lats += [result.latitude, float(np.min(elat)), float(np.max(elat))]
        lons += [result.longitude, float(np.min(elon)), float(np.max(elon))]
        title = (f"{result.latitude:.3f}, {result.longitude:.3f}  "
                 f"({result.ellipse_semi_major_km:.0f} x {result.ellipse_semi_minor_km:.0f} km)")
    else:
        title = f"not localizable: {result.reason}"
    if truth is not None:
        ax.plot(truth[1], truth[0], "x", color="black", markersize=11, markeredgewidth=2, label="truth")
        lats.append(truth[0])
        lons.append(truth[1])
    lat_mid = 0.5 * (min(lats) + max(lats))
    pad_lat = 0.08 * (max(lats) - min(lats)) + 0.2
    pad_lon = 0.08 * (max(lons) - min(lons)) + 0.2
    ax.set_xlim(min(lons) - pad_lon, max(lons) + pad_lon)
    ax.set_ylim(min(lats) - pad_lat, max(lats) + pad_lat)
    ax.set_aspect(1.0 / max(0.05, math.cos(math.radians(lat_mid))))
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_tdoa_localization(result: "TdoaResult", truth: tuple[float, float] | None = None,
                           grid_points: int = 400) -> bytes:
    """PNG of a TDoA result: the receivers (filled: used, hollow: not), each pair's hyperbola (the
    curve where the pair's lag equals the measured one), the estimate with its 95 % region, and
    (when known) the truth (lat, lon)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from heimdall_pipeline.tdoa.solve import PairGeometry, modelled_lags_s

    fig = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    where = {r["receiver_id"]: (r["latitude"], r["longitude"]) for r in result.receivers}
    lats = [p[0] for p in where.values()]
    lons = [p[1] for p in where.values()]
    for r in result.receivers:
        style = {"color": "tab:blue"} if r["used"] else {"color": "tab:gray", "markerfacecolor": "none"}
        ax.plot(r["longitude"], r["latitude"], "^", markersize=9, **style)
        ax.annotate(r["receiver_id"] + ("" if r["used"] else "\n(not used)"), (r["longitude"], r["latitude"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=7)
    polygon = None
    if result.localized:
        polygon = np.array(result.region.polygon((result.latitude, result.longitude)))
        lats += [result.latitude, *polygon[:, 0]]
        lons += [result.longitude, *polygon[:, 1]]
    if truth is not None:
        lats.append(truth[0])
        lons.append(truth[1])
    pad_lat = 0.15 * (max(lats) - min(lats)) + 0.3
    pad_lon = 0.15 * (max(lons) - min(lons)) + 0.3
    lat_range = (min(lats) - pad_lat, max(lats) + pad_lat)
    lon_range = (min(lons) - pad_lon, max(lons) + pad_lon)
    if result.pairs:
        glat, glon = np.meshgrid(np.linspace(*lat_range, grid_points), np.linspace(*lon_range, grid_points),
                                 indexing="ij")
        pairs = [PairGeometry(a=where[p["receiver_a"]], b=where[p["receiver_b"]], lag_s=p["lag_s"],
                              sigma_s=p.get("sigma_s", 1.0)) for p in result.pairs]
        mismatch = modelled_lags_s(pairs, glat, glon) - np.array([p.lag_s for p in pairs])
        colours = ["tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
        for k, p in enumerate(result.pairs):
            colour = colours[k % len(colours)]
            ax.contour(glon, glat, mismatch[..., k], levels=[0.0], colors=[colour], linewidths=1)
            ax.plot([], [], color=colour, linewidth=1,
                    label=f"{p['receiver_a']}-{p['receiver_b']}: {p['lag_s'] * 1e6:+.1f} us")
    if result.localized:
        ax.fill(polygon[:, 1], polygon[:, 0], color="tab:red", alpha=0.2, label="95 % region")
        ax.plot(result.longitude, result.latitude, "*", color="tab:red", markersize=14, label="estimate")
        title = (f"TDoA: {result.latitude:.3f}, {result.longitude:.3f}  (95 %: "
                 f"{result.region.semi_major_km:.1f} x {result.region.semi_minor_km:.1f} km)")
    else:
        title = result.reason
    if truth is not None:
        ax.plot(truth[1], truth[0], "x", color="black", markersize=11, markeredgewidth=2, label="truth")
    ax.set_xlim(*lon_range)
    ax.set_ylim(*lat_range)
    ax.set_aspect(1.0 / max(0.05, math.cos(math.radians(0.5 * sum(lat_range)))))
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
