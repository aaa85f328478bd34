"""Golden part "text": upstream punc_norm and EnTokenizer on the harness texts.

build(): copies the committed BPE tokenizer (tests/data/text/tokenizer.json, 704 ids, the real
file's format, made by tests/reference/make_text_golden.py) into the model directory, in both the
small and the full-size mode, and keeps an upstream EnTokenizer on it in ctx.modules["tokenizer"].

cases(): stage "text", one file per input (every line of the texts file plus an empty and a
whitespace-only input): the raw input, upstream's punc_norm output, EnTokenizer ids of that output,
and the ids as ChatterboxTTS.generate hands them to T3 (255 prepended, 0 appended).
See README-text.md."""
import os
import shutil

import torch
import torch.nn.functional as F

from .common import REPO

TOKENIZER_SRC = os.path.join(REPO, "tests", "data", "text", "tokenizer.json")
START_TEXT, STOP_TEXT = 255, 0


def _utf8(s):
    return torch.tensor(list(s.encode("utf-8")), dtype=torch.uint8)


def build(ctx):
    from chatterbox.models.tokenizers import EnTokenizer

    os.makedirs(ctx.model_dir, exist_ok=True)
    dst = os.path.join(ctx.model_dir, "tokenizer.json")
    shutil.copyfile(TOKENIZER_SRC, dst)
    ctx.modules["tokenizer"] = EnTokenizer(dst)


def text_inputs(ctx):
    """(case name, raw text) for every text case; part_t3 uses the same names."""
    out = [(f"text{i:02d}", t) for i, t in enumerate(ctx.texts)]
    out += [("empty", ""), ("whitespace", " \t\n  ")]
    return out


def cases(ctx):
    from chatterbox.tts import punc_norm

    tok = ctx.modules["tokenizer"]
    hp = ctx.cfg["t3"]
    sot, eot = hp["start_text_token"], hp["stop_text_token"]
    for name, raw in text_inputs(ctx):
        norm = punc_norm(raw)
        raw_ids = tok.text_to_tokens(norm)                     # (1, n) int32, as upstream returns it
        # generate(): F.pad with start_text_token before and stop_text_token after
        ids = F.pad(F.pad(raw_ids, (1, 0), value=sot), (0, 1), value=eot)
        unk = int((raw_ids == 1).sum())
        ctx.save_golden("text", name, {
            "input_utf8": _utf8(raw),
            "normalized_utf8": _utf8(norm),
            "tokenizer_ids": raw_ids[0].to(torch.int64),
            "ids": ids[0].to(torch.int64),
        }, meta={"input": raw, "normalized": norm, "start_text_token": sot, "stop_text_token": eot,
                 "upstream": "chatterbox.tts.punc_norm, chatterbox.models.tokenizers.EnTokenizer.text_to_tokens"})
        ctx.stat("text", name, n_chars=len(raw), n_ids=int(ids.shape[1]), n_unk=unk)
        if name.startswith("text"):
            ctx.require(unk <= max(1, raw_ids.shape[1] // 10),
                        f"text/{name}: {unk} of {raw_ids.shape[1]} ids are [UNK]")
