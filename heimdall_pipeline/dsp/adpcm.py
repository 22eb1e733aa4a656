"""IMA ADPCM as OpenWebRX streams audio: 4 bits a sample, low nibble first, with sync blocks.

Pure Python and numpy. Facts from the sources (jketterl/csdr `src/lib/adpcm.cpp`, the encoder the
server runs; luarvique/openwebrx `htdocs/lib/AudioEngine.js`, the browser's decoder):

- The codec is the IMA/DVI one: 89-entry step table, index adjustments -1 (codes 0-3) and
  +2/+4/+6/+8 (codes 4-7), sign in bit 3, difference = step/8 + step/4·b0 + step/2·b1 + step·b2,
  predictor clamped to int16, index clamped to 0..88.
- Two samples per byte, the first in the low nibble.
- With sync (the audio stream), the encoder writes `"SYNC"` + int16 LE step index + int16 LE
  predictor (its state before the next byte) before the first byte and then before every 1001st
  data byte. The decoder searches for the word, loads the index and predictor, decodes 1001 bytes,
  and searches again. The browser keeps its *step* (the table value of its own last index) across
  a sync: only the index and predictor are reset. The first code after the stream's first sync is
  therefore decoded with step 0 (its sample repeats the predictor), which offsets the rest of that
  first block by that one difference (at most 11 LSB at the stream's start); from the second sync
  on, decoder and encoder agree exactly while the stream is intact. After bytes are lost, the
  block at the next sync found is off by a constant (the stale step) and the one after is exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np

STEP_TABLE = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60, 66, 73, 80, 88, 97,
    107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371, 408, 449, 494, 544, 598, 658, 724, 796,
    876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878, 2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428,
    4871, 5358, 5894, 6484, 7132, 7845, 8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350,
    22385, 24623, 27086, 29794, 32767,
)
INDEX_ADJUST = (-1, -1, -1, -1, 2, 4, 6, 8, -1, -1, -1, -1, 2, 4, 6, 8)
SYNC_WORD = b"SYNC"
SYNC_PERIOD_BYTES = 1001  # data bytes between two sync blocks
SYNC_BLOCK_BYTES = 8


def _difference(step: int, code: int) -> int:
    diff = step >> 3
    if code & 1:
        diff += step >> 2
    if code & 2:
        diff += step >> 1
    if code & 4:
        diff += step
    return -diff if code & 8 else diff


@dataclasses.dataclass
class ImaState:
    """The codec state: step index (0..88) and predictor (int16)."""

    index: int = 0
    predictor: int = 0

    def decode_code(self, code: int, step: int | None = None) -> int:
        """Applies one 4-bit code; step defaults to the table value of the current index."""
        step = STEP_TABLE[self.index] if step is None else step
        self.predictor = max(-32768, min(32767, self.predictor + _difference(step, code)))
        self.index = max(0, min(88, self.index + INDEX_ADJUST[code]))
        return self.predictor

    def encode_sample(self, sample: int) -> int:
        """The 4-bit code of one int16 sample (IMA reference rounding), updating the state."""
        diff = int(sample) - self.predictor
        step = STEP_TABLE[self.index]
        code = 0
        if diff < 0:
            code = 8
            diff = -diff
        for bit in (4, 2, 1):
            if diff >= step:
                code |= bit
                diff -= step
            step >>= 1
        self.decode_code(code)
        return code


def encode(samples: np.ndarray, state: ImaState | None = None) -> bytes:
    """int16 samples -> IMA ADPCM bytes, low nibble first (an odd last sample is dropped)."""
    state = state or ImaState()
    values = np.asarray(samples, dtype=np.int16).tolist()
    out = bytearray(len(values) // 2)
    for i in range(len(out)):
        out[i] = state.encode_sample(values[2 * i]) | (state.encode_sample(values[2 * i + 1]) << 4)
    return bytes(out)


def decode(data: bytes, state: ImaState | None = None) -> np.ndarray:
    """IMA ADPCM bytes (no sync blocks) -> int16 samples."""
    state = state or ImaState()
    out = np.empty(2 * len(data), dtype=np.int16)
    for i, byte in enumerate(data):
        out[2 * i] = state.decode_code(byte & 0x0F)
        out[2 * i + 1] = state.decode_code(byte >> 4)
    return out


class SyncEncoder:
    """The server's audio encoder: a sync block before the first data byte and every 1001 after."""

    def __init__(self) -> None:
        self.state = ImaState()
        self.until_sync = 0
        self.pending: list[int] = []  # an odd sample waits for its pair

    def encode(self, samples: np.ndarray) -> bytes:
        values = self.pending + np.asarray(samples, dtype=np.int16).tolist()
        self.pending = values[len(values) // 2 * 2:]
        out = bytearray()
        for i in range(len(values) // 2):
            if self.until_sync == 0:
                out += SYNC_WORD + int(self.state.index).to_bytes(2, "little", signed=True) \
                    + int(self.state.predictor).to_bytes(2, "little", signed=True)
                self.until_sync = SYNC_PERIOD_BYTES
            out.append(self.state.encode_sample(values[2 * i]) | (self.state.encode_sample(values[2 * i + 1]) << 4))
            self.until_sync -= 1
        return bytes(out)


class SyncDecoder:
    """The browser's streaming decoder (see module docstring); feed it the payload of each audio
    frame in order. Counts the sync blocks found and the bytes skipped while searching."""

    def __init__(self) -> None:
        self.state = ImaState()
        self.step = 0  # kept across a sync, as the browser does
        self.phase = 0  # 0: searching the sync word, 1: reading index and predictor, 2: data
        self.matched = 0
        self.header = bytearray()
        self.remaining = 0
        self.syncs = 0
        self.skipped_bytes = 0

    def decode(self, data: bytes) -> np.ndarray:
        out: list[int] = []
        state = self.state
        for byte in data:
            if self.phase == 0:
                if byte == SYNC_WORD[self.matched]:
                    self.matched += 1
                else:
                    self.skipped_bytes += self.matched + 1
                    self.matched = 0
                if self.matched == len(SYNC_WORD):
                    self.header.clear()
                    self.phase = 1
            elif self.phase == 1:
                self.header.append(byte)
                if len(self.header) == 4:
                    state.index = max(0, min(88, int.from_bytes(self.header[:2], "little", signed=True)))
                    state.predictor = int.from_bytes(self.header[2:], "little", signed=True)
                    self.remaining = SYNC_PERIOD_BYTES
                    self.syncs += 1
                    self.phase = 2
            else:
                for code in (byte & 0x0F, byte >> 4):
                    step = self.step
                    state.decode_code(code, step)
                    self.step = STEP_TABLE[state.index]
                    out.append(state.predictor)
                self.remaining -= 1
                if self.remaining == 0:
                    self.matched = 0
                    self.phase = 0
        return np.asarray(out, dtype=np.int16)
