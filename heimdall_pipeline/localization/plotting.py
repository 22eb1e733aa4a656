"""The localization picture: receivers, estimate, confidence ellipse and (when known) the truth.

matplotlib is imported when a picture is drawn, not when the code location loads.
"""

from __future__ import annotations

import io
import math
from typing import Iterable

import numpy as np

from heimdall_pipeline.localization.rss import LocalizationResult, PowerObservation


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
