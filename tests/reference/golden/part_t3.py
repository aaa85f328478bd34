"""Golden part "t3": upstream T3 (chatterbox-tts 0.1.7) with random, scaled weights.

build(): upstream T3 with the "llama" / "t3" / "perceiver" groups of ctx.cfg (a small LlamaConfig
registered in upstream's LLAMA_CONFIGS under its own name; the Perceiver that T3CondEnc builds at
full size is replaced by one built with the configured sizes), weights re-drawn with a scaled
random initialisation (see _init_weights) so that logits are peaked and the model ends utterances
by EOS on its own, written to t3_cfg.safetensors with upstream's key names.

cases(): stage "t3": upstream's ChatterboxTTS.generate (S3Gen and the watermark stubbed out) and,
for the cfg-weight-0 reference, T3.inference, recording the conditioning, prefill, per-step
logits, the logits processors' outputs in upstream's order, the sampling draws and the attention
rows the alignment guard reads; stage "t3_guard": upstream's AlignmentStreamAnalyzer.step() driven
with synthetic attention sequences that trigger each heuristic, and with one model run's rows.
See README-t3.md for every tensor."""
import copy
import logging
import math
import re
import zlib

import torch
import torch.nn.functional as F

from .common import REPO

EOS, BOS = 6562, 6561
TOPK = 32                                        # sparse per-step storage width
FULL_PREFILL_ATTN_MAX_L = 128                     # full (L, L) prefill attention stored up to this L


def _seed(ctx, *salt):
    """A deterministic 31-bit seed from the run seed and a salt (Python's hash() of strings is
    randomised per process, so it is not used)."""
    return zlib.crc32("/".join(map(str, (ctx.seed,) + salt)).encode()) & 0x7FFFFFFF


# ----------------------------------------------------------------------------------------------
# build


def _llama_dict(ctx):
    from chatterbox.models.t3 import llama_configs
    d = dict(llama_configs.LLAMA_520M_CONFIG_DICT)
    for k, v in ctx.cfg["llama"].items():
        if k not in d:
            raise KeyError(f"llama.{k} is not a key of upstream's LLAMA_520M_CONFIG_DICT")
        d[k] = copy.deepcopy(v)
    return d


def _make_t3(ctx):
    from chatterbox.models.t3 import llama_configs
    from chatterbox.models.t3.modules.perceiver import Perceiver
    from chatterbox.models.t3.modules.t3_config import T3Config
    from chatterbox.models.t3.t3 import T3

    llama = _llama_dict(ctx)
    if llama == llama_configs.LLAMA_520M_CONFIG_DICT:
        name = "Llama_520M"
    else:
        # T3 and T3Config.n_channels look the backbone up by name in this (shared) dict.
        name = "Golden_small"
        llama_configs.LLAMA_CONFIGS[name] = llama
    t3c = ctx.cfg["t3"]
    hp = T3Config(text_tokens_dict_size=t3c["text_tokens_dict_size"])
    for k, v in t3c.items():
        if not hasattr(hp, k):
            raise KeyError(f"t3.{k} is not a T3Config attribute")
        setattr(hp, k, v)
    hp.llama_config_name = name

    pc = ctx.cfg["perceiver"]
    # Upstream's constructors draw from the global torch RNG: seed it for them, then give the
    # other parts their RNG state back.
    with torch.random.fork_rng():
        torch.manual_seed(_seed(ctx, "t3", "construct"))
        t3 = T3(hp)
        # T3CondEnc builds Perceiver() with its hard-coded full sizes: replace it by one built
        # with the configured sizes (same class, same key names).
        t3.cond_enc.perceiver = Perceiver(pre_attention_query_token=pc["pre_attention_query_token"],
                                          pre_attention_query_size=pc["pre_attention_query_size"],
                                          embedding_dim=pc["embedding_dim"], num_attn_heads=pc["num_attn_heads"])
    t3.cond_enc.perceiver.attn.norm.eps = pc["layer_norm_eps"]
    return t3, hp, name


# Scaled random initialisation (the numbers are recorded in the golden files' metadata).
INIT = dict(
    linear_gain=1.0,        # backbone/perceiver/spkr Linear: N(0, gain^2 / fan_in)
    qk_gain=1.5,            # q_proj/k_proj: sharper attention than gain 1
    norm_weight_std=0.1,    # RMSNorm / LayerNorm weights N(1, 0.1^2); LayerNorm and Linear biases N(0, 0.1^2)
    emb_std=1.0,            # text_emb, speech_emb, tfmr.embed_tokens (unused), emotion_adv_fc
    pos_emb_std=0.5,        # text_pos_emb, speech_pos_emb
    head_gain=4.0,          # speech_head/text_head rows N(0, gain^2 / hidden): logits std ~4 -> peaked
    eos_ramp=1.0,           # speech_pos_emb[k] += eos_ramp * (min(k, cap) / 100) * sqrt(hidden) * d  (unit d)
    eos_ramp_cap=120,       # the ramp stops growing here, so long sequences are not swamped by it
    eos_gain=5.0,           # speech_head.weight[6562] = eos_gain * d: the EOS logit grows with position
    sos_head_gain=0.5,      # speech_head.weight[6561] ~ N(0, 0.5^2 / hidden): logit ~ +-0.5, never sampled
)                           # (upstream's drop_invalid_tokens raises when 6561 occurs twice)


def _init_weights(t3, seed):
    g = torch.Generator().manual_seed(seed)
    H = t3.cfg.hidden_size
    with torch.no_grad():
        for n, p in t3.named_parameters():
            if n in ("speech_head.weight", "text_head.weight"):
                p.normal_(0, INIT["head_gain"] / math.sqrt(H), generator=g)
            elif n.endswith("emb.weight") and "pos_emb" in n:
                p.normal_(0, INIT["pos_emb_std"], generator=g)
            elif n in ("text_emb.weight", "speech_emb.weight", "tfmr.embed_tokens.weight"):
                p.normal_(0, INIT["emb_std"], generator=g)
            elif n == "cond_enc.emotion_adv_fc.weight":
                p.normal_(0, INIT["emb_std"], generator=g)
            elif n == "cond_enc.perceiver.pre_attention_query":
                pass                                         # upstream's own uniform init
            elif "norm" in n and n.endswith(".weight"):       # RMSNorm, LayerNorm
                p.normal_(1.0, INIT["norm_weight_std"], generator=g)
            elif n.endswith(".bias"):
                p.normal_(0, INIT["norm_weight_std"], generator=g)
            elif p.dim() == 2:
                gain = INIT["qk_gain"] if ("q_proj" in n or "k_proj" in n) else INIT["linear_gain"]
                p.normal_(0, gain / math.sqrt(p.shape[1]), generator=g)
            else:
                raise RuntimeError(f"no init rule for {n} {tuple(p.shape)}")
        d = torch.randn(H, generator=g)
        d /= d.norm()
        K = t3.speech_pos_emb.emb.weight.shape[0]
        k = torch.arange(K, dtype=torch.float32).clamp(max=INIT["eos_ramp_cap"])
        ramp = INIT["eos_ramp"] * k[:, None] / 100.0 * math.sqrt(H)
        t3.speech_pos_emb.emb.weight += ramp * d[None]
        t3.speech_head.weight[t3.hp.stop_speech_token] = INIT["eos_gain"] * d
        t3.speech_head.weight[t3.hp.start_speech_token].normal_(0, INIT["sos_head_gain"] / math.sqrt(H), generator=g)


def build(ctx):
    t3, hp, name = _make_t3(ctx)
    _init_weights(t3, _seed(ctx, "t3", "init"))
    t3.eval()
    n_layers = t3.cfg.num_hidden_layers
    sd = t3.state_dict()
    expected = 9 * n_layers + 22                   # 292 for the real 30-layer model (spec §1.4)
    if len(sd) != expected:
        raise RuntimeError(f"t3 state dict has {len(sd)} tensors, expected 9*{n_layers}+22 = {expected}")
    ctx.add_state_dict("t3_cfg.safetensors", "", t3)
    ctx.modules["t3"] = t3
    ctx.modules["t3_llama_config_name"] = name
    print(f"part_t3: T3 {name}, {n_layers} layers, hidden {t3.cfg.hidden_size}, {len(sd)} tensors, "
          f"{sum(v.numel() for v in sd.values()) / 1e6:.1f} M parameters")


# ----------------------------------------------------------------------------------------------
# recording upstream's run


class _Recorder:
    """Hooks on upstream's modules and on the names upstream's T3.inference calls, for one run."""

    def __init__(self, t3, gen, no_eos=False):
        self.t3, self.gen, self.no_eos = t3, gen, no_eos
        self.cond_emb = None
        self.tfmr_in = []        # inputs_embeds of every backbone call
        self.tfmr_hidden = []    # hidden_states tuple, last position, of every backbone call
        self.attn = []           # per backbone call: (3 guard heads, q, k) of batch row 0
        self.logits = []         # speech_head output, last position, (2, V), per call
        self.rep_in, self.rep_out, self.hist = [], [], []
        self.minp_in, self.minp_out, self.topp_in, self.topp_out = [], [], [], []
        self.probs, self.tokens, self.redrawn = [], [], []
        self.s3gen_tokens = None
        self.handles = []

    def __enter__(self):
        import chatterbox.models.t3.t3 as t3mod
        from chatterbox.models.t3.inference.alignment_stream_analyzer import LLAMA_ALIGNED_HEADS
        rec = self
        t3 = self.t3
        self.t3mod = t3mod
        self.saved = {k: getattr(t3mod, k) for k in
                      ("RepetitionPenaltyLogitsProcessor", "MinPLogitsWarper", "TopPLogitsWarper")}
        R, M, P = (self.saved[k] for k in ("RepetitionPenaltyLogitsProcessor", "MinPLogitsWarper",
                                           "TopPLogitsWarper"))

        class RecRep(R):
            def __call__(self, input_ids, scores):
                rec.hist.append(input_ids[0].clone())
                rec.rep_in.append(scores[0].clone())
                out = super().__call__(input_ids, scores)
                rec.rep_out.append(out[0].clone())
                return out

        class RecMinP(M):
            def __call__(self, input_ids, scores):
                rec.minp_in.append(scores[0].clone())
                out = super().__call__(input_ids, scores)
                rec.minp_out.append(out[0].clone())
                return out

        class RecTopP(P):
            def __call__(self, input_ids, scores):
                rec.topp_in.append(scores[0].clone())
                out = super().__call__(input_ids, scores)
                rec.topp_out.append(out[0].clone())
                return out

        t3mod.RepetitionPenaltyLogitsProcessor = RecRep
        t3mod.MinPLogitsWarper = RecMinP
        t3mod.TopPLogitsWarper = RecTopP

        self.orig_multinomial = torch.multinomial

        def multinomial(probs, num_samples, *a, **k):
            tok = rec.orig_multinomial(probs, num_samples, generator=rec.gen)
            redrawn = False
            if rec.no_eos and int(tok.view(-1)[0]) == EOS:
                # teacher forcing for the long case: EOS drawn -> draw again without EOS
                p2 = probs.clone()
                p2[..., EOS] = 0
                tok = rec.orig_multinomial(p2, num_samples, generator=rec.gen)
                redrawn = True
            rec.probs.append(probs[0].clone())
            rec.tokens.append(int(tok.view(-1)[0]))
            rec.redrawn.append(redrawn)
            return tok

        torch.multinomial = multinomial

        self.heads = list(LLAMA_ALIGNED_HEADS)

        def cond_hook(m, i, o):
            rec.cond_emb = o.clone()

        def tfmr_pre(m, args, kwargs):
            rec.tfmr_in.append(kwargs["inputs_embeds"].clone())

        def tfmr_hook(m, args, kwargs, o):
            rec.tfmr_hidden.append(torch.stack([h[:, -1] for h in o.hidden_states]).clone())
            rec.attn.append(torch.stack([o.attentions[l][0, h] for l, h in rec.heads]).clone())

        def head_hook(m, i, o):
            rec.logits.append(o[:, -1].clone())

        self.handles = [
            t3.cond_enc.register_forward_hook(cond_hook),
            t3.tfmr.register_forward_pre_hook(tfmr_pre, with_kwargs=True),
            t3.tfmr.register_forward_hook(tfmr_hook, with_kwargs=True),
            t3.speech_head.register_forward_hook(head_hook),
        ]
        # Attention probabilities are only returned by eager attention (what 0.1.7's
        # AlignmentStreamAnalyzer switches the backbone to as well).
        self.saved_impl = t3.tfmr.config._attn_implementation
        t3.tfmr.config._attn_implementation = "eager"
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.t3mod, k, v)
        torch.multinomial = self.orig_multinomial
        for h in self.handles:
            h.remove()
        self.t3.tfmr.config._attn_implementation = self.saved_impl
        return False


class _StubS3Gen:
    def __init__(self, rec):
        self.rec = rec

    def inference(self, speech_tokens, ref_dict):
        self.rec.s3gen_tokens = speech_tokens.clone()
        return torch.zeros(1, 960), None


class _StubWatermarker:
    def apply_watermark(self, wav, sample_rate):
        return wav


def _voice(ctx, hp):
    """The built-in voice: part_voice's upstream Conditionals, or a random T3Cond of the right
    shapes when part_voice did not run."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.tts import Conditionals
    conds = ctx.modules.get("conds")
    if conds is not None:
        return conds, "part_voice"
    g = torch.Generator().manual_seed(_seed(ctx, "t3", "voice"))
    spk = F.normalize(torch.randn(1, hp.speaker_embed_size, generator=g), dim=-1)
    toks = torch.randint(0, 6561, (1, hp.speech_cond_prompt_len), generator=g)
    t3c = T3Cond(speaker_emb=spk, cond_prompt_speech_tokens=toks, emotion_adv=0.5 * torch.ones(1, 1, 1))
    return Conditionals(t3c, {}), "random (part_voice absent)"


def _tokenizer(ctx):
    tok = ctx.modules.get("tokenizer")
    if tok is None:
        import os
        from chatterbox.models.tokenizers import EnTokenizer
        tok = EnTokenizer(os.path.join(REPO, "tests", "data", "text", "tokenizer.json"))
    return tok


# ----------------------------------------------------------------------------------------------
# cases


def _case_list(ctx):
    """(name, text index, seed salt, settings, extra). Settings are generate()'s arguments."""
    n = len(ctx.texts)
    ti = lambda i: min(i, n - 1)  # noqa: E731
    d = dict(repetition_penalty=1.2, min_p=0.05, top_p=1.0, exaggeration=0.5, cfg_weight=0.5, temperature=0.8)
    S = lambda **k: {**d, **k}     # noqa: E731
    return [
        ("default", ti(1), S(), {"save_prompt_emb": True, "rich": True}),
        ("short", ti(0), S(), {}),
        ("punct_cfg1_rep2_topp", ti(2), S(cfg_weight=1.0, exaggeration=1.0, repetition_penalty=2.0, top_p=0.8),
         {"rich": True}),
        ("quotes_exag025_rep1_minp0", ti(3), S(exaggeration=0.25, repetition_penalty=1.0, min_p=0.0), {}),
        ("lower_cfg1_topp09_temp1", ti(4), S(cfg_weight=1.0, top_p=0.9, temperature=1.0), {}),
        ("longtext", ti(5), S(), {}),
        ("seed2", ti(1), S(exaggeration=1.0), {"seed": 2}),
        ("cfg0", ti(1), S(cfg_weight=0.0), {"direct": True}),
        # min_p 0: a non-EOS token always keeps a probability > 0 for the redraw without EOS
        ("long300", ti(1), S(min_p=0.0), {"max_new_tokens": 300, "no_eos": True, "rich": True}),
        ("one_token", ti(0), S(), {"max_new_tokens": 1}),
    ]


def _run_case(ctx, t3, tts, tok, voice, text, settings, extra, gen):
    from chatterbox.models.s3tokenizer import drop_invalid_tokens
    from chatterbox.models.t3.t3 import T3
    from chatterbox.tts import punc_norm

    tts.conds = copy.deepcopy(voice)           # prepare_conditioning caches into the T3Cond
    rec = _Recorder(t3, gen, no_eos=extra.get("no_eos", False))
    captured = {}
    max_new = extra.get("max_new_tokens")

    def inference(**kw):
        captured["text_tokens"] = kw["text_tokens"].clone()
        captured["t3_cond"] = kw["t3_cond"]
        if max_new is not None:
            kw["max_new_tokens"] = max_new
        captured["max_new_tokens"] = kw["max_new_tokens"]
        out = T3.inference(t3, **kw)
        captured["t3_out"] = out.clone()
        return out

    t3.inference = inference                    # instance attribute: generate() calls this
    try:
        with rec:
            tts.s3gen = _StubS3Gen(rec)
            if extra.get("direct"):
                # cfg_weight 0: generate() would crash (batch-1 text, batch-2 BOS). Call T3.inference
                # with the CFG layout (two identical text rows, double BOS): with cfg_weight 0
                # prepare_input_embeds leaves row 1's text in place, so both rows are conditional
                # and the combined logits are the conditional row's.
                norm = punc_norm(text)
                tt = tok.text_to_tokens(norm)
                tt = torch.cat([tt, tt], dim=0)
                tt = F.pad(tt, (1, 0), value=t3.hp.start_text_token)
                tt = F.pad(tt, (0, 1), value=t3.hp.stop_text_token)
                c = tts.conds.t3
                if settings["exaggeration"] != float(c.emotion_adv.view(-1)[0]):
                    raise RuntimeError("direct case expects the voice's exaggeration")
                with torch.inference_mode():
                    st = t3.inference(t3_cond=c, text_tokens=tt, max_new_tokens=1000,
                                      temperature=settings["temperature"], cfg_weight=0.0,
                                      repetition_penalty=settings["repetition_penalty"],
                                      min_p=settings["min_p"], top_p=settings["top_p"])
                    st = drop_invalid_tokens(st[0])
                    st = st[st < 6561]
                rec.s3gen_tokens = st.clone()
            else:
                tts.generate(text, **settings)
    finally:
        del t3.inference
    return rec, captured


def _sampling_u(probs, token):
    """A uniform u in [0, 1) for which inverse-CDF sampling over `probs` in id order (token = the
    first id whose cumulative probability exceeds u) gives `token`: the midpoint of its interval."""
    p = probs.double()
    c = torch.cumsum(p, 0) / p.sum()
    lo = float(c[token - 1]) if token > 0 else 0.0
    hi = float(c[token])
    return (lo + hi) / 2, lo, hi


def _guard_shadow(rec, i0, j0, stage_logits):
    """Runs upstream's AlignmentStreamAnalyzer.step() over this run's recorded attention rows (the
    English path does not call it; this shows what the guard would decide) and returns per-step
    decisions."""
    an = _new_analyzer(i0, j0)
    dec = []
    for s in range(len(stage_logits)):
        an.last_aligned_attns = [rec.attn[s][h] for h in range(3)]
        last = BOS if s == 0 else rec.tokens[s - 1]
        dec.append(_guard_step(an, stage_logits[s].clone()[None], last))
    return an, dec


class _DummyLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = torch.nn.Identity()


class _DummyTfmr(torch.nn.Module):
    """Stands in for the backbone when the analyzer is fed recorded/synthetic attention: it only
    needs `layers[i].self_attn` to hang its (then unused) hooks on."""

    def __init__(self, n):
        super().__init__()
        self.layers = torch.nn.ModuleList([_DummyLayer() for _ in range(n)])


def _new_analyzer(i0, j0):
    from chatterbox.models.t3.inference.alignment_stream_analyzer import (AlignmentStreamAnalyzer,
                                                                         LLAMA_ALIGNED_HEADS)
    n = max(l for l, _ in LLAMA_ALIGNED_HEADS) + 1
    return AlignmentStreamAnalyzer(_DummyTfmr(n), None, text_tokens_slice=(i0, j0), alignment_layer_idx=9,
                                   eos_idx=EOS)


class _WarnCatcher(logging.Handler):
    def __init__(self):
        super().__init__()
        self.msgs = []

    def emit(self, record):
        self.msgs.append(record.getMessage())


def _guard_step(an, logits, last_token):
    """One upstream step(); returns the decisions. The three forcing flags are read from the
    warning upstream logs when it forces EOS ("forcing EOS token, long_tail=..., ...")."""
    lg = logging.getLogger("chatterbox.models.t3.inference.alignment_stream_analyzer")
    h = _WarnCatcher()
    lg.addHandler(h)
    propagate, lg.propagate = lg.propagate, False
    try:
        out = an.step(logits, next_token=last_token)
    finally:
        lg.removeHandler(h)
        lg.propagate = propagate
    flags = {"long_tail": False, "alignment_repetition": False, "token_repetition": False}
    for m in h.msgs:
        if m.startswith("forcing EOS"):
            for k in flags:
                mm = re.search(k + r"=(?:tensor\()?(True|False)", m)
                flags[k] = mm is not None and mm.group(1) == "True"
    forced = bool(out[0, EOS] == 2 ** 15)
    return dict(out_eos=float(out[0, EOS]), forced_eos=forced,
                eos_suppressed=(not forced) and bool(out[0, EOS] == -(2 ** 15)),
                text_position=int(an.text_position), started=bool(an.started), complete=bool(an.complete),
                started_at=-1 if an.started_at is None else int(an.started_at),
                completed_at=-1 if an.completed_at is None else int(an.completed_at),
                false_start=not an.started, **flags, out=out)


def _dec_tensors(dec, prefix):
    keys = ["text_position", "started", "false_start", "complete", "long_tail", "alignment_repetition",
            "token_repetition", "forced_eos", "eos_suppressed", "started_at", "completed_at"]
    t = {f"{prefix}.{k}": torch.tensor([int(d[k]) for d in dec], dtype=torch.int64) for k in keys}
    t[f"{prefix}.out_eos_logit"] = torch.tensor([d["out_eos"] for d in dec])
    return t


def _save_t3_case(ctx, name, t3, rec, cap, settings, extra, text, voice_src):
    from chatterbox.tts import punc_norm
    n = len(rec.tokens)
    V = t3.hp.speech_tokens_dict_size
    tt = cap["text_tokens"].to(torch.int64)
    Lt = tt.shape[1]
    len_cond = rec.cond_emb.shape[1]
    i0, j0 = len_cond, len_cond + Lt
    prefill = rec.tfmr_in[0]
    L = prefill.shape[1]
    assert L == len_cond + Lt + 2, (L, len_cond, Lt)
    ended_by_eos = rec.tokens[-1] == EOS
    t = {}
    c = cap["t3_cond"]
    t["input.text_ids"] = tt
    t["input.speaker_emb"] = c.speaker_emb
    t["input.cond_prompt_speech_tokens"] = c.cond_prompt_speech_tokens.to(torch.int64)
    t["input.emotion_adv"] = c.emotion_adv.reshape(1, 1, 1).float()
    t["input.text_utf8"] = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
    t["cond.embeds"] = rec.cond_emb[0]
    if extra.get("save_prompt_emb"):
        t["cond.prompt_speech_emb"] = c.cond_prompt_speech_emb[0]
    t["prefill.input_embeds"] = prefill
    t["prefill.hidden_last"] = rec.tfmr_hidden[0]
    t["prefill.logits"] = rec.logits[0]
    if L <= FULL_PREFILL_ATTN_MAX_L:
        t["attn.prefill"] = rec.attn[0]
    else:
        t["attn.prefill_rows"] = rec.attn[0][:, j0:, :]
    # decode forwards: one per fed-back token (n-1 when the run ended by EOS, else n)
    nd = len(rec.tfmr_in) - 1
    if nd > 0:
        t["decode.input_embeds"] = torch.stack([x[0, 0] for x in rec.tfmr_in[1:]])
        t["decode.input_embeds_rows_equal"] = torch.tensor(
            int(all(torch.equal(x[0], x[1]) for x in rec.tfmr_in[1:])), dtype=torch.int64)
        t["attn.decode_text"] = torch.stack([a[:, 0, i0:j0] for a in rec.attn[1:]], dim=1)
        full_d = sorted({0, 1, nd - 1} & set(range(nd)))
        width = L + nd
        rows = torch.zeros(3, len(full_d), width)
        for r, k in enumerate(full_d):
            a = rec.attn[1 + k][:, 0]
            rows[:, r, :a.shape[1]] = a
        t["attn.decode_full"] = rows
        t["attn.decode_full_index"] = torch.tensor(full_d, dtype=torch.int64)
    # per step
    logits = torch.stack(rec.logits[:n])                     # (n, 2, V)
    cfg = torch.stack(rec.rep_in)
    rep = torch.stack(rec.rep_out)
    minp = torch.stack(rec.minp_out)
    temp = torch.stack(rec.minp_in)
    topp = torch.stack(rec.topp_out)
    probs = torch.stack(rec.probs)
    assert cfg.shape[0] == n and probs.shape[0] == n
    toks = torch.tensor(rec.tokens, dtype=torch.int64)
    ids = cfg.topk(TOPK, dim=-1).indices
    g = lambda x: torch.gather(x, 1, ids)                     # noqa: E731
    gt = lambda x: x[torch.arange(n), toks]                   # noqa: E731
    t["step.tokens"] = toks
    t["step.redrawn_without_eos"] = torch.tensor(rec.redrawn, dtype=torch.int64)
    t["step.topk_ids"] = ids
    for nm, x in (("cond", logits[:, 0]), ("uncond", logits[:, 1]), ("cfg", cfg), ("rep", rep),
                  ("temp", temp), ("minp", minp), ("topp", topp), ("probs", probs)):
        t[f"step.{nm}_topk"] = g(x)
        t[f"step.{nm}_at_token"] = gt(x)
        t[f"step.{nm}_at_eos"] = x[:, EOS]
    t["step.n_kept"] = torch.isfinite(topp).sum(-1)
    # a step redrawn without EOS (long300) was drawn from the probabilities with EOS set to 0
    no_eos = lambda p: p.clone().index_fill_(0, torch.tensor([EOS]), 0.0)  # noqa: E731
    us = [_sampling_u(no_eos(probs[s]) if rec.redrawn[s] else probs[s], rec.tokens[s]) for s in range(n)]
    t["step.u"] = torch.tensor([u[0] for u in us])
    t["step.u_lo"] = torch.tensor([u[1] for u in us])
    t["step.u_hi"] = torch.tensor([u[2] for u in us])
    # full logit rows: step 0 is prefill.logits; then step 1 (rich cases) and the last step
    full = sorted(({1} if extra.get("rich") else set()) | {n - 1}) if n > 1 else []
    if full:
        t["full.steps"] = torch.tensor(full, dtype=torch.int64)
        t["full.logits"] = logits[full]                       # (F, 2, V): row 0 cond, row 1 uncond
    last = n - 1
    # the processors' full outputs at the last step (cfg = cond + w (cond - uncond) of the last
    # logits row, temperature = rep / T: both left out as derivable)
    for nm, x in (("rep", rep), ("minp", minp), ("topp", topp), ("probs", probs)):
        t[f"last.{nm}"] = x[last]
    t["last.history"] = rec.hist[last].to(torch.int64)
    # output and post-processing (tts.py: row 0, drop_invalid_tokens, < 6561)
    t["out.t3_tokens"] = cap["t3_out"][0].to(torch.int64) if "t3_out" in cap else toks
    t["out.speech_tokens"] = rec.s3gen_tokens.to(torch.int64)
    # the alignment guard as 0.1.7 would have run it on these rows (shadow: not applied)
    an, dec = _guard_shadow(rec, i0, j0, [cfg[s] for s in range(n)])
    t.update(_dec_tensors(dec, "guard"))
    t["guard.alignment"] = an.alignment
    if name == "cfg0":
        t["cfg0.rows_equal_at_prefill"] = torch.tensor(int(torch.equal(logits[0, 0], logits[0, 1])), dtype=torch.int64)

    margins = (lambda v: v[:, 0] - v[:, 1])(cfg.topk(2, dim=-1).values)
    pmax = probs.max(-1).values
    argmax_hits = float((cfg.argmax(-1) == toks).float().mean())
    meta = {**settings, **{k: v for k, v in extra.items() if k not in ("save_prompt_emb", "rich")},
            "max_new_tokens": cap["max_new_tokens"], "text": text, "normalized": punc_norm(text),
            "voice": voice_src, "len_cond": len_cond, "text_len": Lt, "prefill_len": L,
            "steps": n, "ended_by_eos": ended_by_eos, "guard_heads": [list(h) for h in rec.heads],
            "init": INIT, "llama_config_name": ctx.modules["t3_llama_config_name"],
            "attention": "eager (needed for attention probabilities)",
            "processor_order": "cfg -> repetition_penalty -> temperature -> min_p -> top_p -> softmax -> multinomial"}
    ctx.save_golden("t3", name, {k: torch.as_tensor(v).clone() for k, v in t.items()}, meta)
    st = dict(steps=n, ended_by_eos=ended_by_eos, margin_min=float(margins.min()),
              margin_median=float(margins.median()), logit_std=float(cfg.std(-1).mean()),
              p_top1_median=float(pmax.median()), sampled_argmax_fraction=argmax_hits,
              cond_uncond_rel_diff=float((logits[:, 0] - logits[:, 1]).abs().max() / logits[:, 0].abs().max()),
              n_speech_tokens_after_postproc=int(rec.s3gen_tokens.numel()),
              guard_would_force_at=next((s for s, d in enumerate(dec) if d["forced_eos"]), -1),
              min_u_interval=float(min(u[2] - u[1] for u in us)))
    ctx.stat("t3", name, **st)
    return st


def _save_postproc(ctx):
    from chatterbox.models.s3tokenizer import drop_invalid_tokens
    cases = {
        "postproc_sos_eos": [6561, 12, 7000, 6560, 0, 8193, 6563, 44, 6562, 5, 6561 + 1000],
        "postproc_no_sos": [3, 6600, 6560, 6562, 9, 9],
        "postproc_no_eos": [6561, 1, 2, 8000, 3],
    }
    for name, ids in cases.items():
        x = torch.tensor([ids], dtype=torch.int64)
        y = drop_invalid_tokens(x[0])          # generate(): speech_tokens[0] -> drop_invalid_tokens
        z = y[y < 6561]
        ctx.save_golden("t3", name, {"input.tokens": x[0].clone(), "out.after_drop_invalid": y.clone(),
                                     "out.speech_tokens": z.clone()},
                        {"upstream": "chatterbox.models.s3tokenizer.drop_invalid_tokens, then [x < 6561] (tts.py)"})


# ---- synthetic alignment-guard sequences ---------------------------------------------------------


def _synthetic(kind, S, i0, g):
    """Per-frame target alignment rows over the S text columns and the last-token sequence.
    Frame 0 is the prefill chunk (2 rows: the two BOS positions); every later frame one row."""
    frames = []
    toks = [BOS]

    def row(peak, mass=0.8, spread=None):
        r = torch.full((S,), (1 - mass) / S) if spread is None else spread.clone()
        r[peak] += mass
        return r

    if kind == "none":
        n = 3 * (S - 3) + 2
        for f in range(n):
            frames.append(row(min(f // 3, S - 1)))
    elif kind == "false_start":
        # the first frames spread their attention thinly (max over the first 4 columns < 0.5)
        for f in range(4):
            frames.append(torch.full((S,), 1.0 / S))
        for f in range(3 * (S - 3) + 2):
            frames.append(row(min(f // 3, S - 1)))
    elif kind == "long_tail":
        for f in range(3 * (S - 3)):
            frames.append(row(min(f // 3, S - 1)))
        for f in range(12):                  # stays on the last text token after completion
            frames.append(row(S - 1, mass=0.9))
    elif kind == "repetition":
        for f in range(3 * (S - 3)):
            frames.append(row(min(f // 3, S - 1)))
        frames.append(row(S - 1))            # completes
        for f in range(12):                  # then jumps back to the beginning of the text
            frames.append(row(f % 3, mass=0.9))
    elif kind == "token_repetition":
        n = 3 * (S - 3) + 2
        for f in range(n):
            frames.append(row(min(f // 3, S - 1)))
    elif kind == "discontinuity":
        n = 3 * (S - 3) + 2
        for f in range(n):
            p = min(f // 3, S - 1)
            if f in (16, 17):
                p = 0                           # a jump back of more than 3 columns (position 5 -> 0)
            frames.append(row(p))
    else:
        raise ValueError(kind)
    n = len(frames)
    for f in range(1, n):
        t = int(torch.randint(0, 6561, (1,), generator=g))
        if kind == "token_repetition" and f == 10:
            t = toks[-1]                         # the same token twice in a row
        toks.append(t)
    return frames, toks


def _save_guard_cases(ctx):
    g = torch.Generator().manual_seed(_seed(ctx, "t3", "guard"))
    S, i0 = 12, 34
    j0 = i0 + S
    L = j0 + 2
    V = 8194
    base = torch.randn(V, generator=g) * 4
    for kind in ("none", "false_start", "long_tail", "repetition", "token_repetition", "discontinuity"):
        frames, toks = _synthetic(kind, S, i0, g)
        an = _new_analyzer(i0, j0)
        n = len(frames)
        # three heads: the target row times (1 + delta_h), deltas summing to 0, so the mean is the target
        deltas = (0.3, -0.1, -0.2)
        step0 = torch.zeros(3, L, L)
        for r in range(L):
            step0[:, r, : r + 1] = 1.0 / (r + 1)      # any causal rows; only rows j0.. are read
        rows = torch.zeros(3, max(n - 1, 1), L + n)
        dec = []
        for f in range(n):
            if f == 0:
                for h in range(3):
                    step0[h, j0:, i0:j0] = frames[0][None] * (1 + deltas[h])
                an.last_aligned_attns = [step0[h] for h in range(3)]
            else:
                w = L + f                      # decode forward f sees the prefill and f new keys
                for h in range(3):
                    rows[h, f - 1, :w] = 0.0
                    rows[h, f - 1, i0:j0] = frames[f] * (1 + deltas[h])
                an.last_aligned_attns = [rows[h, f - 1: f, :w] for h in range(3)]
            d = _guard_step(an, base.clone()[None], toks[f])
            dec.append(d)
            if d["forced_eos"]:
                n = f + 1
                break
        t = {"input.attn_step0": step0, "input.attn_rows": rows[:, : max(n - 1, 1)],
             "input.last_tokens": torch.tensor(toks[:n], dtype=torch.int64), "input.logits": base}
        t.update(_dec_tensors(dec, "out"))
        t["out.alignment"] = an.alignment
        forced = [k for k in ("long_tail", "alignment_repetition", "token_repetition")
                  if any(d[k] for d in dec)]
        meta = {"kind": kind, "text_tokens_slice": [i0, j0], "prefill_len": L, "frames": n,
                "synthetic": True, "heads_are": "target * (1 + delta), deltas " + str(deltas),
                "triggered": forced + (["false_start"] if any(d["false_start"] for d in dec) else [])
                + (["discontinuity_seen"] if kind == "discontinuity" else [])}
        ctx.save_golden("t3_guard", kind, {k: torch.as_tensor(v).clone() for k, v in t.items()}, meta)
        ctx.stat("t3_guard", kind, frames=n, forced_at=next((s for s, d in enumerate(dec) if d["forced_eos"]), -1),
                 triggered=",".join(meta["triggered"]) or "none",
                 eos_suppressed_frames=sum(d["eos_suppressed"] for d in dec))
        want = {"none": [], "false_start": [], "long_tail": ["long_tail"], "repetition": ["alignment_repetition"],
                "token_repetition": ["token_repetition"], "discontinuity": []}[kind]
        ctx.require(forced == want, f"t3_guard/{kind}: forcing flags {forced}, expected {want}")
        if kind == "false_start":
            ctx.require(sum(d["false_start"] for d in dec) >= 3 and dec[-1]["started"],
                        "t3_guard/false_start: no false start followed by a start")
        if kind == "none":
            ctx.require(not any(d["false_start"] for d in dec[1:]) and dec[-1]["complete"],
                        "t3_guard/none: expected a clean start and completion")


def cases(ctx):
    from chatterbox.tts import ChatterboxTTS

    t3 = ctx.modules["t3"]
    tok = _tokenizer(ctx)
    voice, voice_src = _voice(ctx, t3.hp)
    tts = object.__new__(ChatterboxTTS)      # generate() with S3Gen and the watermark stubbed out
    tts.sr, tts.t3, tts.ve, tts.tokenizer, tts.device = 24000, t3, None, tok, "cpu"
    tts.watermarker = _StubWatermarker()
    results = {}
    for name, ti, settings, extra in _case_list(ctx):
        gen = torch.Generator().manual_seed(_seed(ctx, "t3", "sample", name, extra.get("seed", 1)))
        rec, cap = _run_case(ctx, t3, tts, tok, voice, ctx.texts[ti], settings, extra, gen)
        results[name] = _save_t3_case(ctx, name, t3, rec, cap, settings, extra, ctx.texts[ti], voice_src)
        print(f"part_t3: {name}: {results[name]['steps']} steps, eos={results[name]['ended_by_eos']}, "
              f"margin median {results[name]['margin_median']:.3f}")
    _save_postproc(ctx)
    _save_guard_cases(ctx)

    natural = [k for k, r in results.items() if r["ended_by_eos"] and k not in ("long300",)]
    ctx.require(len(natural) >= 1, "t3: no case ended by EOS on its own")
    for k, r in results.items():
        if r["steps"] >= 10:          # (a 1-step case's "median" is a single draw)
            ctx.require(r["margin_median"] > 0.2, f"t3/{k}: median top-1/top-2 margin {r['margin_median']:.3g} <= 0.2")
        ctx.require(r["logit_std"] > 1.0, f"t3/{k}: logits nearly flat (std {r['logit_std']:.3g})")
    ctx.require(results["long300"]["steps"] == 300, "t3/long300: not 300 steps")
    ctx.require(results["one_token"]["steps"] == 1, "t3/one_token: not 1 step")
