"""Pictures beside the data, for people in the UI: stored in the bucket and shown as Markdown
metadata with a time-limited link. Drawn by plots/ (matplotlib loads when the first is drawn)."""

from __future__ import annotations

import threading

from dagster import MetadataValue

from heimdall_pipeline.capture import Capture
from heimdall_pipeline.resources.iq_store import IQStore
from heimdall_pipeline.storage.layout import spectrum_object_key

_PNG_SLOTS = threading.BoundedSemaphore(1)  # spectrum pictures rendered at once: CPU-bound, so one


def shown_picture(iq_store: IQStore, key: str, png: bytes, user_metadata: dict[str, str], *, alt: str,
                  link: str) -> MetadataValue:
    """Stores the PNG under `key` and returns the metadata that shows it, with a link to it."""
    iq_store.put(key, png, "image/png", user_metadata)
    url = iq_store.presigned_url(key)
    return MetadataValue.md(f"![{alt}]({url})\n\n[{link}]({url})")


def spectrum_metadata(iq_store: IQStore, capture: Capture) -> dict[str, MetadataValue]:
    """The PSD/waterfall picture beside the capture; metadata showing it in the UI."""
    from heimdall_pipeline.plots.spectrum import spectrum_png  # matplotlib: loaded when first drawn

    samples, rate, unit = capture.samples, capture.sample_rate_hz, capture.power_unit
    if capture.is_audio:  # drawn as the RF band the audio came from, around the session frequency
        from heimdall_pipeline.dsp.audio import usb_baseband

        samples, rate = usb_baseband(samples, rate, tuple(capture.audio["passband_hz"]))
        unit = "audio dBFS"
    with _PNG_SLOTS:  # CPU-bound (GIL): more at once only adds memory (~3 MB each), not speed
        png = spectrum_png(samples, rate, capture.center_frequency_hz,
                           f"{capture.session_key} / {capture.receiver_id}", power_unit=unit)
    key = spectrum_object_key(capture.session_key, capture.receiver_id)
    return {"spectrum": shown_picture(iq_store, key, png, {"session": capture.session_key,
                                                             "receiver": capture.receiver_id},
                                          alt="spectrum", link="spectrum PNG")}
