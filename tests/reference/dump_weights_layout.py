#!/usr/bin/env python3
"""Writes tests/data/weights/upstream-layout.json: every state-dict key of upstream's T3(),
VoiceEncoder() and S3Gen() with its dtype and shape, for the default
(English) configuration. The modules are built on the meta device, so nothing is allocated.
engine/weights-layout.c must reproduce these lists exactly (tests/check/test-weights-layout.c).

  tests/reference/.venv/bin/python tests/reference/dump_weights_layout.py   # chatterbox-tts 0.1.7
"""
import json
import os
import sys

import torch
from chatterbox.models.s3gen import S3Gen
from chatterbox.models.t3 import T3
from chatterbox.models.voice_encoder import VoiceEncoder

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "weights",
                   "upstream-layout.json")


def layout(module):
    return {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in module.state_dict().items()}


def main():
    with torch.device("meta"):
        files = {
            "t3_cfg.safetensors": layout(T3()),
            "ve.safetensors": layout(VoiceEncoder()),
            "s3gen.safetensors": layout(S3Gen()),
        }
    with open(OUT, "w") as f:  # one tensor per line, so diffs stay readable
        f.write("{\n")
        for i, (name, keys) in enumerate(sorted(files.items())):
            f.write(f"{json.dumps(name)}: {{\n")
            rows = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(keys.items())]
            f.write(",\n".join(rows))
            f.write("\n}" + ("," if i + 1 < len(files) else "") + "\n")
        f.write("}\n")
    for name, keys in files.items():
        print(name, len(keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
