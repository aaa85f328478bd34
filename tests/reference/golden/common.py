"""Shared machinery of the golden harness: the context every part receives, seeding, the model
configuration (the same keys as chatterbox-config.json), golden-file writing and the degeneracy
statistics.

Interface every part module (golden/part_*.py) implements:

    def build(ctx: Ctx) -> None
        Instantiate the upstream modules of this part with random weights (seeded from ctx.rng_seed),
        scaled where needed so cases are not degenerate, keep them in ctx.modules[...] for later
        parts, and put their state dicts, with upstream's exact key names, into
        ctx.files["<file>.safetensors"] (dict name -> tensor). Parts sharing a file
        (s3gen.safetensors: tokenizer., speaker_encoder. from part_voice; flow., mel2wav. from
        part_s3gen) each add their own prefixes.

    def cases(ctx: Ctx) -> None
        Run upstream's own code on the cases and write golden files with ctx.save_golden(); record
        per-case statistics with ctx.stat(); call ctx.require(cond, msg) for every degeneracy rule
        (the run fails when one is violated).

Parts run in the order of make_golden.PARTS; build() of every part runs before any cases().
"""
import copy
import json
import os
import random
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DEFAULTS_JSON = os.path.join(REPO, "tests", "data", "config", "defaults.json")


def load_config(override_path=None):
    """Upstream's hyperparameters (tests/data/config/defaults.json, which the C engine's tests prove
    equal to its defaults) with the groups/keys of an override file (chatterbox-config.json format)
    merged on top. Returns (full_config, override_dict)."""
    with open(DEFAULTS_JSON) as f:
        cfg = json.load(f)
    override = {}
    if override_path:
        with open(override_path) as f:
            override = json.load(f)
        for group, values in override.items():
            if group == "version":
                continue
            if group not in cfg:
                raise KeyError(f"{override_path}: unknown group {group!r}")
            for k, v in values.items():
                if k not in cfg[group]:
                    raise KeyError(f"{override_path}: unknown key {group}.{k}")
                cfg[group][k] = v
    return cfg, override


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class Ctx:
    cfg: dict                      # full configuration, groups as in chatterbox-config.json
    override: dict                 # what the config file changed (written as chatterbox-config.json)
    seed: int
    out: str                       # output root: <out>/model is the model dir, <out>/<stage>/ golden files
    texts: list                    # input sentences for the text and T3 cases
    full_size: bool = False        # True: only build() runs, and the model dir goes to `out`
    modules: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)      # "<file>.safetensors" -> {key: tensor}
    stats: dict = field(default_factory=dict)      # stage -> case -> {statistic: value}
    failures: list = field(default_factory=list)

    @property
    def model_dir(self):
        return self.out if self.full_size else os.path.join(self.out, "model")

    def generator(self, *salt):
        """A torch.Generator seeded from the run seed and a salt, so each stage's randomness is
        reproducible on its own."""
        # zlib.crc32, not hash(): Python randomises str hashes per process.
        key = repr((self.seed,) + tuple(salt)).encode()
        return torch.Generator().manual_seed(zlib.crc32(key))

    def add_state_dict(self, file, prefix, module_or_dict):
        sd = module_or_dict.state_dict() if hasattr(module_or_dict, "state_dict") else module_or_dict
        dst = self.files.setdefault(file, {})
        for k, v in sd.items():
            name = prefix + k
            if name in dst:
                raise KeyError(f"{file}: {name} added twice")
            dst[name] = v.detach().contiguous().clone()

    def save_golden(self, stage, case, tensors, meta=None):
        """<out>/<stage>/<case>.safetensors; tensors: name -> tensor (F32 for floats, I64/I32 for
        ids); meta: name -> str|int|float|list (stored JSON-encoded in the safetensors metadata)."""
        d = os.path.join(self.out, stage)
        os.makedirs(d, exist_ok=True)
        clean = {}
        for k, v in tensors.items():
            t = torch.as_tensor(v).detach().cpu().contiguous().clone()  # views may share storage
            if t.is_floating_point():
                t = t.to(torch.float32)
            clean[k] = t
        metadata = {k: json.dumps(v) for k, v in (meta or {}).items()}
        save_file(clean, os.path.join(d, case + ".safetensors"), metadata=metadata)

    def stat(self, stage, case, **values):
        self.stats.setdefault(stage, {}).setdefault(case, {}).update(
            {k: (float(v) if isinstance(v, (np.floating, torch.Tensor)) else v) for k, v in values.items()})

    def require(self, cond, msg):
        """A degeneracy rule: recorded, and the run fails at the end if any is violated."""
        if not cond:
            self.failures.append(msg)
            print("DEGENERATE:", msg)

    def write_model_dir(self):
        d = self.model_dir
        os.makedirs(d, exist_ok=True)
        for name, sd in self.files.items():
            save_file(sd, os.path.join(d, name))
        if self.override:
            with open(os.path.join(d, "chatterbox-config.json"), "w") as f:
                json.dump(self.override, f, indent=1, sort_keys=True)

    def deep_cfg(self):
        return copy.deepcopy(self.cfg)
