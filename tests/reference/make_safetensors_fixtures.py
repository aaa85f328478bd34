#!/usr/bin/env python3
"""Write tests/data/safetensors/valid.safetensors with the official `safetensors` library.

Run by hand (not by CI) from the repository root:
    /work/refenv/venv/bin/python tests/reference/make_safetensors_fixtures.py

tests/check/test-safetensors.c recomputes every value from the formulas below, so the two must
change together. All values are exactly representable in the stored dtype.

  f32   F32  (2, 3, 4)  v[i] = ((i * 7919) % 1000 - 500) / 64
  f16   F16  (5, 3)     v[i] = ((i * 37) % 29 - 14) / 4
  bf16  BF16 (4, 4)     v[i] = ((i * 53) % 31 - 15) / 8
  i64   I64  (3,)       v[i] = (i - 1) * 10**12 + 7 * i
  f64   F64  (2,)       v[i] = i + 0.5
  u8    U8   (3,)       v[i] = 250 + i
  scalar F32 ()         v    = -2.5
  empty F32  (0, 3)     no elements
  'quote"name.ü' F32 (1,)  v = 7.0   (a name the header must escape, and non-ASCII)
metadata: {"format": "pt", "purpose": "chatterboxsrc test fixture"}

i is the flat row-major index.
"""
import os

import numpy as np
import torch
from safetensors.torch import save_file


def flat(n, f):
    return [f(i) for i in range(n)]


def main():
    t = {
        "f32": torch.tensor(flat(24, lambda i: ((i * 7919) % 1000 - 500) / 64), dtype=torch.float32).reshape(2, 3, 4),
        "f16": torch.tensor(flat(15, lambda i: ((i * 37) % 29 - 14) / 4), dtype=torch.float16).reshape(5, 3),
        "bf16": torch.tensor(flat(16, lambda i: ((i * 53) % 31 - 15) / 8), dtype=torch.bfloat16).reshape(4, 4),
        "i64": torch.tensor(flat(3, lambda i: (i - 1) * 10**12 + 7 * i), dtype=torch.int64),
        "f64": torch.tensor(flat(2, lambda i: i + 0.5), dtype=torch.float64),
        "u8": torch.tensor(flat(3, lambda i: 250 + i), dtype=torch.uint8),
        "scalar": torch.tensor(-2.5, dtype=torch.float32),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        'quote"name.\u00fc': torch.tensor([7.0], dtype=torch.float32),
    }
    # Check exact representability so the C side can compare with ==.
    for name, x in t.items():
        if x.is_floating_point():
            assert torch.equal(x.double().to(x.dtype), x), name
    out = os.path.join(os.path.dirname(__file__), "..", "data", "safetensors", "valid.safetensors")
    save_file(t, out, metadata={"format": "pt", "purpose": "chatterboxsrc test fixture"})
    print("wrote", os.path.normpath(out), os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
