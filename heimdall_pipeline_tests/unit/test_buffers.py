"""BufferStream: an upload body read where the data lies."""

import hashlib
import io

import numpy as np
import pytest

from heimdall_pipeline.storage.buffers import MAX_READ_BYTES, BufferStream


def parts():
    header = b"\x93NUMPY header" + b" " * 50
    samples = (np.arange(1000) * (1 + 2j)).astype(np.complex64)
    return header, samples, header + samples.tobytes()


@pytest.mark.parametrize("chunk", [1, 7, 64, 8192, 100_000, 1 << 20])
def test_reads_the_buffers_in_a_row(chunk):
    header, samples, whole = parts()
    stream = BufferStream(header, samples)
    assert stream.size == len(whole)
    got = bytearray()
    while block := stream.read(chunk):
        got += block
    assert bytes(got) == whole and stream.tell() == len(whole)
    assert stream.read(10) == b""


def test_seek_tell_and_read_all_again_for_a_retry():
    header, samples, whole = parts()
    stream = BufferStream(header, samples)
    assert stream.seek(0, io.SEEK_END) == len(whole)
    assert stream.seek(len(header) - 3) == len(header) - 3
    assert stream.read(6) == whole[len(header) - 3:len(header) + 3]
    assert stream.seek(-2, io.SEEK_CUR) == len(header) + 1
    stream.seek(0)
    assert stream.read() == whole
    with pytest.raises(ValueError, match="negative seek"):
        stream.seek(-1)


def test_sha256_and_no_copy_of_the_samples():
    header, samples, whole = parts()
    stream = BufferStream(header, samples)
    assert stream.sha256() == hashlib.sha256(whole).digest()
    samples[0] = 99  # the stream reads the array's own memory
    stream.seek(len(header))
    assert np.frombuffer(stream.read(8), np.complex64)[0] == 99


def test_reads_are_short_and_a_buffered_reader_makes_them_full():
    header = b"h" * 100
    samples = np.zeros(3 * MAX_READ_BYTES // 8, np.complex64)
    whole = header + samples.tobytes()
    assert len(BufferStream(header, samples).read(1 << 20)) == MAX_READ_BYTES  # bounded per read
    buffered = io.BufferedReader(BufferStream(header, samples))
    assert buffered.read(2 * MAX_READ_BYTES + 5) == whole[:2 * MAX_READ_BYTES + 5]
    buffered.seek(0)
    assert buffered.read() == whole
