#!/usr/bin/env python3
"""wavinfo.py FILE — prints `rate channels bits frames seconds rms finalised` for a PCM WAV file
(16-bit integer or 32-bit float, as wavenc writes them). rms is over all samples on a -1..1 scale;
finalised is 1 when the RIFF and data sizes in the header match the file (wavenc got its EOS).
wavinfo.py --diff A B — prints the largest sample difference of two WAV files over their common
length, in 16-bit steps (1/32768)."""
import array
import os
import struct
import sys


def read(path):
    data = open(path, "rb").read()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        sys.exit("wavinfo: %s is not a RIFF/WAVE file" % path)
    riff_ok = struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    pos, fmt, pcm, data_ok = 12, None, None, False
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack_from("<HHI", body, 0)
            bits = struct.unpack_from("<H", body, 14)[0]
            if tag == 0xFFFE:
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            pcm, data_ok = body, len(body) == size
            break
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        sys.exit("wavinfo: %s has no fmt or data chunk" % path)
    tag, channels, rate, bits = fmt
    if (tag, bits) == (1, 16):
        samples, scale = array.array("h"), 32768.0
    elif (tag, bits) == (3, 32):
        samples, scale = array.array("f"), 1.0
    else:
        sys.exit("wavinfo: unsupported format tag %d, %d bits" % (tag, bits))
    samples.frombytes(pcm[:len(pcm) - len(pcm) % samples.itemsize])
    if sys.byteorder != "little":
        samples.byteswap()
    return rate, channels, bits, riff_ok and data_ok, [s / scale for s in samples]


def main(path):
    rate, channels, bits, finalised, samples = read(path)
    frames = len(samples) // channels
    rms = (sum(s * s for s in samples) / len(samples)) ** 0.5 if samples else 0.0
    print(rate, channels, bits, frames, "%.4f" % (frames / rate), "%.6f" % rms, int(finalised))


def diff(a, b):
    sa, sb = read(a)[4], read(b)[4]
    print("%.1f" % (max((abs(x - y) for x, y in zip(sa, sb)), default=0.0) * 32768))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--diff":
        sys.exit(diff(sys.argv[2], sys.argv[3]))
    if len(sys.argv) != 2 or not os.path.isfile(sys.argv[1]):
        sys.exit("usage: wavinfo.py FILE.wav")
    main(sys.argv[1])
