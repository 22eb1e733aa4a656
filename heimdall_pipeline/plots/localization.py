"""The localization pictures: receivers, estimate, confidence region and (when known) the truth;
for TDoA also each receiver pair's hyperbola.

matplotlib is imported when a picture is drawn, not when the code location loads.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Iterable

import numpy as np

from heimdall_pipeline.rss.estimator import LocalizationResult, PowerObservation

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


def _draw_tdoa(ax, result: "TdoaResult", lat_range, lon_range, truth, grid_points: int, labels: bool) -> None:
    """Hyperbolae, 95 % region, estimate and truth of a TDoA result on ax over the given ranges."""
    from matplotlib import colormaps

    from heimdall_pipeline.tdoa.solve import PairGeometry, modelled_lags_s

    pair_colours = colormaps["tab20"].colors  # 21 pairs of 7 receivers: one repeat at most
    where = {r["receiver_id"]: (r["latitude"], r["longitude"]) for r in result.receivers}
    if result.pairs:
        glat, glon = np.meshgrid(np.linspace(*lat_range, grid_points), np.linspace(*lon_range, grid_points),
                                 indexing="ij")
        pairs = [PairGeometry(a=where[p["receiver_a"]], b=where[p["receiver_b"]], lag_s=p["lag_s"], sigma_s=1.0)
                 for p in result.pairs]
        mismatch = modelled_lags_s(pairs, glat, glon) - np.array([p.lag_s for p in pairs])
        for k, p in enumerate(result.pairs):
            colour = pair_colours[k % len(pair_colours)]
            if np.nanmin(mismatch[..., k]) < 0 < np.nanmax(mismatch[..., k]):
                ax.contour(glon, glat, mismatch[..., k], levels=[0.0], colors=[colour], linewidths=1)
            if labels:
                ax.plot([], [], color=colour, linewidth=1,
                        label=f"{p['receiver_a']}-{p['receiver_b']}: {p['lag_s'] * 1e6:+.1f} us")
    if result.localized:
        polygon = np.array(result.region.polygon((result.latitude, result.longitude)))
        ax.fill(polygon[:, 1], polygon[:, 0], color="tab:red", alpha=0.25, label="95 % region" if labels else None)
        ax.plot(result.longitude, result.latitude, "*", color="tab:red", markersize=14,
                label="estimate" if labels else None)
    if truth is not None:
        ax.plot(truth[1], truth[0], "x", color="black", markersize=11, markeredgewidth=2,
                label="truth" if labels else None)
    ax.set_xlim(*lon_range)
    ax.set_ylim(*lat_range)
    ax.set_aspect(1.0 / max(0.05, math.cos(math.radians(0.5 * sum(lat_range)))))


def _emptiest_corner(ax, xs, ys, size: float) -> list[float]:
    """[x0, y0, w, h] (axes fraction) of the corner box holding the fewest of the points (data
    coordinates), so a close-up hides no receiver, estimate or truth if it can help it."""
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    fx = [(x - x_lo) / (x_hi - x_lo) for x in xs]
    fy = [(y - y_lo) / (y_hi - y_lo) for y in ys]
    corners = [(0.98 - size, 0.94 - size), (0.1, 0.94 - size), (0.98 - size, 0.06), (0.1, 0.06)]  # room for ticks

    def inside(corner) -> int:
        x0, y0 = corner
        # labels run up and to the right of their point: a wider margin on the left and below
        return sum(x0 - 0.12 <= x <= x0 + size + 0.03 and y0 - 0.06 <= y <= y0 + size + 0.03 for x, y in zip(fx, fy))

    x0, y0 = min(corners, key=inside)
    return [x0, y0, size, size]


def plot_tdoa_localization(result: "TdoaResult", truth: tuple[float, float] | None = None,
                           grid_points: int = 400) -> bytes:
    """PNG of a TDoA result: the receivers (filled: used, hollow: not), each pair's hyperbola (the
    curve where the pair's lag equals the measured one), the estimate with its 95 % region, and
    (when known) the truth (lat, lon). A region too small to see on the map gets a close-up."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from heimdall_pipeline.tdoa.solve import KM_PER_DEG

    fig = Figure(figsize=(9, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    lats = [r["latitude"] for r in result.receivers]
    lons = [r["longitude"] for r in result.receivers]
    for r in result.receivers:
        style = {"color": "tab:blue"} if r["used"] else {"color": "tab:gray", "markerfacecolor": "none"}
        ax.plot(r["longitude"], r["latitude"], "^", markersize=9, **style)
        ax.annotate(r["receiver_id"] + ("" if r["used"] else "\n(not used)"), (r["longitude"], r["latitude"]),
                    textcoords="offset points", xytext=(6, 4), fontsize=7)
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
    _draw_tdoa(ax, result, lat_range, (min(lons) - pad_lon, max(lons) + pad_lon), truth, grid_points, labels=True)
    if result.localized:
        title = (f"TDoA: {result.latitude:.4f}, {result.longitude:.4f}  (95 %: "
                 f"{result.region.semi_major_km:.2f} x {result.region.semi_minor_km:.2f} km)")
        if truth is not None:
            title += f", {result.error_km:.2f} km from the truth" if result.error_km is not None else ""
        half_km = max(3.0 * result.region.semi_major_km,
                      1.5 * (result.error_km or 0.0), 0.5)
        if half_km < 0.05 * (lat_range[1] - lat_range[0]) * KM_PER_DEG:
            inset = ax.inset_axes(_emptiest_corner(ax, lons, lats, size=0.34))
            half_lat = half_km / KM_PER_DEG
            half_lon = half_lat / max(0.05, math.cos(math.radians(result.latitude)))
            _draw_tdoa(inset, result, (result.latitude - half_lat, result.latitude + half_lat),
                       (result.longitude - half_lon, result.longitude + half_lon), truth, 200, labels=False)
            inset.set_title(f"close-up, {2 * half_km:.1f} km across", fontsize=7)
            inset.tick_params(labelsize=6)
    else:
        title = result.reason
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)  # beside the map: hides nothing
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")  # the legend beside the map included
    return buf.getvalue()
