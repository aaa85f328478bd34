#!/usr/bin/env python3
"""Golden-parity harness: builds upstream Chatterbox modules (chatterbox-tts 0.1.7) with random
weights in small configurations, writes a model directory in the exact upstream file and key
layout, runs upstream's own code on several cases per stage and saves inputs and outputs as golden
safetensors files, with statistics proving each case is not degenerate.

  tests/reference/setup_venv.sh                       # once: the pinned venv in tests/reference/.venv
  tests/reference/.venv/bin/python tests/reference/make_golden.py            # regenerate tests/data/golden
  ... make_golden.py --seed 7 --config my-sizes.json --texts my.txt --out /tmp/g   # new cases
  ... make_golden.py --full-size /tmp/cbx-full        # full-size random model dir (real shapes), no cases

See tests/reference/README.md for what each golden file holds."""
import argparse
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden.common import Ctx, REPO, load_config, seed_everything  # noqa: E402

# Order matters: part_voice builds the speech tokenizer, CAMPPlus and the voice encoder that
# conds.pt is made with; part_s3gen and part_t3 use that voice.
PARTS = ["part_text", "part_voice", "part_s3gen", "part_t3"]
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "small-config.json")
DEFAULT_TEXTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "texts.txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="sizes (chatterbox-config.json format)")
    ap.add_argument("--texts", default=DEFAULT_TEXTS, help="one input sentence per line")
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "golden"))
    ap.add_argument("--full-size", metavar="DIR", help="write a full-size random model dir to DIR and stop")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of parts (debugging)")
    args = ap.parse_args()

    full = args.full_size is not None
    cfg, override = load_config(None if full else args.config)
    with open(args.texts, encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line in f if not line.startswith("#")]
    ctx = Ctx(cfg=cfg, override=override, seed=args.seed, out=args.full_size if full else args.out,
              texts=texts, full_size=full)
    seed_everything(args.seed)
    parts = [importlib.import_module("golden." + p) for p in args.parts.split(",")]
    t0 = time.time()
    for p in parts:
        p.build(ctx)
    ctx.write_model_dir()
    if not full:
        for p in parts:
            p.cases(ctx)
        with open(os.path.join(ctx.out, "stats.json"), "w") as f:
            json.dump({"seed": args.seed, "config": override, "upstream": "chatterbox-tts 0.1.7",
                       "stats": ctx.stats, "degenerate": ctx.failures}, f, indent=1, sort_keys=True)
    print(f"wrote {ctx.out} in {time.time() - t0:.1f} s")
    if ctx.failures:
        print(f"{len(ctx.failures)} degeneracy rule(s) violated:", *ctx.failures, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
