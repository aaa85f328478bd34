#!/usr/bin/env python3
"""Write the conds.pt fixtures under tests/data/conds/ with upstream's own save code.

Run by hand (not by CI) from the repository root, with torch 2.6 and the chatterbox-tts 0.1.7 wheel
installed without its dependencies (`pip install --no-deps chatterbox_tts-0.1.7-py3-none-any.whl`):
    /work/refenv/venv/bin/python tests/reference/make_conds_fixtures.py

Upstream's `Conditionals` (src/chatterbox/tts.py) and `T3Cond` (models/t3/modules/cond_enc.py) are
taken from the installed package's source files: their class definitions are parsed with `ast` and
executed, so `Conditionals.save` is upstream's code, without importing the rest of the package
(librosa, perth, transformers ...), which the saved structure does not depend on.

The tensors are built the way `ChatterboxTTS.prepare_conditionals` / `S3Gen.embed_ref` build them,
including their memory layouts, which torch.save preserves:
  * gen.prompt_feat is `mel(1, M, Tm).transpose(1, 2)`: a non-contiguous view (strides (M·Tm, 1, Tm));
  * gen.prompt_token is `tokens[:, :Tm // 2]`: a view into a longer storage;
  * t3.emotion_adv is `exaggeration * torch.ones(1, 1, 1)`, or T3Cond's plain-float default.

For each good fixture <name>.pt the expected values are written, independently of any reader, to
<name>.expect.json (sizes, emotion_adv) and <name>.expect.bin: little-endian, concatenated in this
order: speaker_emb f32[S], cond_prompt_tokens i32[N], prompt_tokens i32[Tp],
prompt_feat f32[Tm·M] (row-major (Tm, M)), embedding f32[X].
"""
import ast
import importlib.util
import io
import json
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

OUT = Path(__file__).resolve().parent.parent / "data" / "conds"


def upstream_class(module_file, class_name, namespace):
    """Execute upstream's definition of `class_name` from `module_file` in `namespace`."""
    tree = ast.parse(Path(module_file).read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(module_file), "exec"), namespace)
    return namespace[class_name]


def load_upstream():
    pkg = Path(importlib.util.find_spec("chatterbox").submodule_search_locations[0])
    ns = {"dataclass": dataclass, "Optional": Optional, "Tensor": Tensor, "torch": torch, "Path": Path}
    t3cond = upstream_class(pkg / "models/t3/modules/cond_enc.py", "T3Cond", ns)
    conditionals = upstream_class(pkg / "tts.py", "Conditionals", ns)
    return t3cond, conditionals


def make(T3Cond, Conditionals, seed, S, N, Tp, Tm, M, X, vocab, emotion):
    """Random conditionals of the given sizes, laid out as upstream makes them."""
    g = torch.Generator().manual_seed(seed)
    ve = torch.randn(1, S, generator=g)
    ve = ve / ve.norm(dim=1, keepdim=True)
    speaker_emb = torch.from_numpy(ve.numpy()).mean(axis=0, keepdim=True)  # prepare_conditionals
    t3_tokens = torch.atleast_2d(torch.randint(0, vocab, (1, N), generator=g))
    kw = dict(speaker_emb=speaker_emb, cond_prompt_speech_tokens=t3_tokens)
    if emotion is not None:
        kw["emotion_adv"] = emotion * torch.ones(1, 1, 1)
    t3 = T3Cond(**kw)

    mel = torch.randn(1, M, Tm, generator=g) * 3.0 - 5.0       # mel_extractor output (B, M, T)
    prompt_feat = mel.transpose(1, 2)                          # embed_ref: .transpose(1, 2)
    all_tokens = torch.randint(0, vocab, (1, Tp + 3), generator=g)
    prompt_token = all_tokens[:, :Tp]                          # embed_ref: [:, :Tm // 2]
    gen = dict(
        prompt_token=prompt_token,
        prompt_token_len=torch.tensor([Tp]),                   # .long() of the tokenizer's lengths
        prompt_feat=prompt_feat,
        prompt_feat_len=None,
        embedding=torch.randn(1, X, generator=g),
    )
    return Conditionals(t3, gen)


def write_expected(name, conds, vocab):
    t3, gen = conds.t3, conds.gen
    ea = t3.emotion_adv
    ea = float(ea.reshape(-1)[0]) if torch.is_tensor(ea) else float(ea)
    meta = dict(
        speaker_embed_size=t3.speaker_emb.shape[1],
        n_cond_prompt_tokens=t3.cond_prompt_speech_tokens.shape[1],
        n_prompt_tokens=gen["prompt_token"].shape[1],
        n_prompt_frames=gen["prompt_feat"].shape[1],
        mel_bins=gen["prompt_feat"].shape[2],
        xvector_size=gen["embedding"].shape[1],
        speech_vocab=vocab,
        emotion_adv_f32_bits=int(np.float32(ea).view(np.uint32)),
    )
    (OUT / f"{name}.expect.json").write_text(json.dumps(meta, indent=1) + "\n")
    parts = [
        t3.speaker_emb.numpy().astype("<f4"),
        t3.cond_prompt_speech_tokens.numpy().astype("<i4"),
        gen["prompt_token"].numpy().astype("<i4"),
        np.ascontiguousarray(gen["prompt_feat"].numpy()).astype("<f4"),
        gen["embedding"].numpy().astype("<f4"),
    ]
    (OUT / f"{name}.expect.bin").write_bytes(b"".join(p.tobytes() for p in parts))


def replace_entry(src, dst, suffix, data):
    """Copy zip `src` to `dst`, replacing the entry whose name ends with `suffix` by `data`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename.endswith(suffix) else zin.read(info))


def foreign_pickle():
    """{'t3': os.system('echo pwned')} written opcode by opcode (GLOBAL 'os system' + REDUCE): what a
    malicious checkpoint looks like. Checked with pickletools, never loaded."""
    def unicode(s):
        return pickle.BINUNICODE + struct.pack("<I", len(s)) + s.encode()
    data = (pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + unicode("t3") + pickle.GLOBAL + b"os\nsystem\n"
            + unicode("echo pwned") + pickle.TUPLE1 + pickle.REDUCE + pickle.SETITEM + pickle.STOP)
    pickletools.dis(data, out=io.StringIO())  # raises if it is not a well-formed pickle
    return data


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    T3Cond, Conditionals = load_upstream()

    # The real voice's sizes: 150 T3 prompt tokens, 10 s S3Gen prompt (Tp = 250, Tm = 500).
    full = make(T3Cond, Conditionals, 1, S=256, N=150, Tp=250, Tm=500, M=80, X=192, vocab=6561, emotion=0.5)
    full.save(OUT / "conds_full.pt")
    write_expected("conds_full", full, 6561)

    # A small model's voice; Tm = 2·Tp + 1 (a clip that is not a multiple of 40 ms).
    small = dict(S=16, N=5, Tp=6, Tm=13, M=8, X=12, vocab=100)
    conds = make(T3Cond, Conditionals, 2, emotion=0.75, **small)
    conds.save(OUT / "conds_small.pt")
    write_expected("conds_small", conds, 100)

    # emotion_adv left at T3Cond's default: a plain float 0.5 in the pickle.
    conds = make(T3Cond, Conditionals, 3, emotion=None, **small)
    conds.save(OUT / "conds_float_emotion.pt")
    write_expected("conds_float_emotion", conds, 100)

    # Bad files (small sizes).
    conds = make(T3Cond, Conditionals, 4, emotion=0.5, **dict(small, M=7))  # prompt_feat [1, 13, 7]
    conds.save(OUT / "bad_wrong_shape.pt")

    conds = make(T3Cond, Conditionals, 5, emotion=0.5, **small)
    del conds.gen["embedding"]
    conds.save(OUT / "bad_missing_key.pt")

    conds = make(T3Cond, Conditionals, 7, emotion=0.5, **dict(small, Tm=16))  # Tm = 2·Tp + 4
    conds.save(OUT / "bad_feat_frames.pt")

    conds = make(T3Cond, Conditionals, 8, emotion=0.5, **small)
    conds.gen["prompt_token_len"] = torch.tensor([5])  # Tp is 6
    conds.save(OUT / "bad_token_len.pt")

    conds = make(T3Cond, Conditionals, 6, emotion=0.5, **small)
    torch.save(dict(t3=conds.t3.__dict__, gen=conds.gen), OUT / "bad_legacy.pt",
               _use_new_zipfile_serialization=False)

    # The small voice with its data.pkl replaced by a pickle that would call os.system.
    replace_entry(OUT / "conds_small.pt", OUT / "bad_foreign_pickle.pt", "/data.pkl",
                  foreign_pickle())


if __name__ == "__main__":
    main()
