"""The IMA ADPCM codec of OpenWebRX audio (dsp/adpcm.py) against implementations it was not
written from: Python's `audioop` (lin2adpcm / adpcm2lin; deprecated in 3.11 but present) and the
IMA ADPCM specification's step and index tables."""

import warnings

import numpy as np
import pytest

from heimdall_pipeline.dsp import adpcm

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 12_000


def swap_nibbles(data: bytes) -> bytes:
    """audioop puts the first sample in the high nibble; OpenWebRX in the low one."""
    return bytes(((b & 0x0F) << 4) | (b >> 4) for b in data)


def tone(freq_hz: float, amplitude: float, n: int, noise: float = 0.0, seed: int = 1) -> np.ndarray:
    t = np.arange(n) / RATE
    x = amplitude * np.sin(2 * np.pi * freq_hz * t) + np.random.default_rng(seed).normal(0, noise, n)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def tone_fit(x: np.ndarray) -> tuple[float, float]:
    """(frequency Hz, power dB) of the strongest line: zero-padded Hann FFT, parabolic peak."""
    w = np.hanning(len(x))
    n = 1 << 20
    spectrum = np.abs(np.fft.rfft(x * w, n)) ** 2
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1:k + 2])
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    amplitude = 2 * np.sqrt(spectrum[k]) / w.sum()
    return (k + delta) * RATE / n, 20 * np.log10(amplitude)


def test_the_spec_tables():
    # IMA ADPCM (IMA Digital Audio Focus and Technical Working Groups, 1992): 89 steps from 7 to
    # 32767 growing ~10 % each, index moves -1 for codes 0-3 and +2/+4/+6/+8 for 4-7, sign apart
    assert len(adpcm.STEP_TABLE) == 89 and adpcm.STEP_TABLE[0] == 7 and adpcm.STEP_TABLE[-1] == 32767
    assert adpcm.STEP_TABLE[:8] == (7, 8, 9, 10, 11, 12, 13, 14) and adpcm.STEP_TABLE[44] == 494
    ratios = np.diff(np.log(adpcm.STEP_TABLE[20:]))
    assert np.all(np.abs(np.exp(ratios) - 1.1) < 0.01)
    assert adpcm.INDEX_ADJUST == (-1, -1, -1, -1, 2, 4, 6, 8) * 2


def test_encode_and_decode_are_bit_exact_with_audioop():
    x = tone(1000.0, 9000, 24_000, noise=300.0)
    ours = adpcm.encode(x)
    reference, _ = audioop.lin2adpcm(x.tobytes(), 2, None)
    assert ours == swap_nibbles(reference)
    decoded, _ = audioop.adpcm2lin(reference, 2, None)
    np.testing.assert_array_equal(adpcm.decode(ours), np.frombuffer(decoded, "<i2"))


@pytest.mark.parametrize("freq_hz,amplitude", [(440.0, 12_000), (1234.5, 3000), (2700.0, 800)])
def test_a_tone_survives_encode_and_decode(freq_hz, amplitude):
    x = tone(freq_hz, amplitude, RATE)
    y = adpcm.decode(adpcm.encode(x))
    f_in, p_in = tone_fit(x.astype(float))
    f_out, p_out = tone_fit(y.astype(float))
    assert abs(f_out - f_in) < 1.0 and abs(f_in - freq_hz) < 1.0
    assert abs(p_out - p_in) < 0.5


def test_sync_blocks_every_1001_data_bytes_and_the_browser_decoder():
    x = tone(700.0, 10_000, 10_000, noise=100.0)
    encoder = adpcm.SyncEncoder()
    stream = encoder.encode(x[:3001]) + encoder.encode(x[3001:])  # state carries across calls
    data_bytes = len(x) // 2
    syncs = [i for i in range(len(stream)) if stream[i:i + 4] == b"SYNC"]
    assert syncs == [k * (adpcm.SYNC_PERIOD_BYTES + 8) for k in range(-(-data_bytes // adpcm.SYNC_PERIOD_BYTES))]
    # the sync block carries the state before the next byte: the independent codec agrees
    state = None
    for k, at in enumerate(syncs):
        index = int.from_bytes(stream[at + 4:at + 6], "little", signed=True)
        predictor = int.from_bytes(stream[at + 6:at + 8], "little", signed=True)
        if k:
            assert (predictor, index) == state
        _, state = audioop.lin2adpcm(x[2 * k * 1001:2 * (k + 1) * 1001].tobytes(), 2, (predictor, index))
    # fed in frames that cut sync blocks apart, the decoder gives audioop's samples; in the first
    # block only up to a constant: its first code is decoded with the browser's step 0
    reference, _ = audioop.adpcm2lin(swap_nibbles(adpcm.encode(x)), 2, None)
    reference = np.frombuffer(reference, "<i2")
    decoder = adpcm.SyncDecoder()
    out = np.concatenate([decoder.decode(stream[i:i + 333]) for i in range(0, len(stream), 333)])
    assert decoder.syncs == len(syncs) and decoder.skipped_bytes == 0
    assert len(out) == len(x)
    first_block = 2 * adpcm.SYNC_PERIOD_BYTES
    offset = out[:first_block].astype(int) - reference[:first_block]
    assert np.all(offset == offset[0]) and abs(offset[0]) <= 11  # the largest difference at step 7
    np.testing.assert_array_equal(out[first_block:], reference[first_block:])


def test_the_decoder_resynchronises_after_lost_bytes():
    x = tone(900.0, 8000, 8000)
    stream = adpcm.SyncEncoder().encode(x)  # syncs before data bytes 0, 1001, 2002, 3003
    lost = stream[:500] + stream[800:]  # 300 bytes lost inside the first block
    decoder = adpcm.SyncDecoder()
    out = decoder.decode(lost)
    reference = adpcm.decode(adpcm.encode(x))
    # the first block is decoded as it arrives (running 300 bytes past its end, over the second
    # sync); the decoder then searches and finds the third sync. As in the browser, the step is not
    # reset there: that block is off by a constant, and from the fourth sync on it is exact again.
    assert decoder.syncs == 3 and decoder.skipped_bytes > 0
    block = 2 * adpcm.SYNC_PERIOD_BYTES
    exact = len(x) - 3 * block
    np.testing.assert_array_equal(out[-exact:], reference[-exact:])
    offset = out[-exact - block:-exact].astype(int) - reference[-exact - block:-exact]
    assert np.all(offset == offset[0])
