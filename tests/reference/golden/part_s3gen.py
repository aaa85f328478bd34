"""Golden part: S3Gen flow (speech tokens -> mel) and the HiFT vocoder (mel -> waveform).

build(): upstream's CausalMaskedDiffWithXvec (UpsampleConformerEncoder + CausalConditionalCFM with a
ConditionalDecoder estimator) and HiFTGenerator + ConvRNNF0Predictor at the sizes of ctx.cfg, with
seeded random weights, assembled into one upstream S3Token2Wav (its own __init__ runs, with the
sub-module constructors it hard-codes handed our small modules) that also holds part_voice's speech
tokenizer and CAMPPlus. Writes flow.* and mel2wav.* into s3gen.safetensors.

cases(): stage "s3gen" (flow only, through S3Token2Wav.flow_inference, CFM noise captured) and stage
"hift" (HiFTGenerator.inference, SineGen phases and noise captured; S3Token2Wav.inference end to end
with trim_fade; cache_source over two chunks). Every capture is checked by replaying the call with
the captured randomness injected and requiring a bit-identical result.
See README-s3gen.md for the file contents.
"""
import math
from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn as nn
from torch.distributions.uniform import Uniform
from torch.nn.utils import parametrize

import chatterbox.models.s3gen.s3gen as s3gen_mod
from chatterbox.models.s3gen.configs import CFM_PARAMS
from chatterbox.models.s3gen.decoder import ConditionalDecoder
from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
from chatterbox.models.s3gen.hifigan import HiFTGenerator
from chatterbox.models.s3gen.transformer.upsample_encoder import (
    PreLookaheadLayer, Upsample1D, UpsampleConformerEncoder)
from chatterbox.models.s3gen.utils.mel import mel_spectrogram
from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE

SHORT_PROMPT_TOKENS = 25      # prompt kept for the detailed flow cases (tokens_0001, tokens_0050)
STAGE_FLOW = "s3gen"
STAGE_HIFT = "hift"
SR = 24000


# ----------------------------------------------------------------------------------------------
# build


def _check_fixed(cfg, group, key, expected):
    """Constants upstream hard-codes (or reads from a shared dict) that our build cannot vary."""
    if cfg[group][key] != expected:
        raise ValueError(f"{group}.{key} = {cfg[group][key]!r}: upstream hard-codes {expected!r}")


def _make_encoder(cfg):
    f, e = cfg["s3gen_flow"], cfg["s3gen_flow_encoder"]
    if e["input_size"] != e["output_size"]:
        raise ValueError("s3gen_flow_encoder: up_embed maps input_size -> output_size on output_size "
                         "channels, so upstream needs input_size == output_size")
    if f["input_size"] != e["input_size"]:
        raise ValueError("s3gen_flow.input_size must equal s3gen_flow_encoder.input_size")
    for key, val in (("key_bias", True), ("input_layer", "linear"), ("pos_enc_layer_type", "rel_pos_espnet"),
                     ("selfattention_layer_type", "rel_selfattn"), ("activation_type", "swish"),
                     ("layer_norm_eps", 1e-12), ("embed_norm_eps", 1e-5)):
        _check_fixed(cfg, "s3gen_flow_encoder", key, val)
    enc = UpsampleConformerEncoder(
        output_size=e["output_size"], attention_heads=e["attention_heads"], linear_units=e["linear_units"],
        num_blocks=e["num_blocks"], dropout_rate=0.1, positional_dropout_rate=0.1,
        attention_dropout_rate=0.1, normalize_before=True, input_layer=e["input_layer"],
        pos_enc_layer_type=e["pos_enc_layer_type"], selfattention_layer_type=e["selfattention_layer_type"],
        input_size=e["input_size"], use_cnn_module=False, macaron_style=False,
        activation_type=e["activation_type"], key_bias=e["key_bias"])
    # UpsampleConformerEncoder hard-codes 512 channels for these two, a look-ahead of 3, stride 2
    # and 4 up-blocks: replace them with upstream's own classes at our sizes.
    c = e["output_size"]
    if c != 512 or e["pre_lookahead_len"] != 3:
        enc.pre_lookahead_layer = PreLookaheadLayer(channels=c, pre_lookahead_len=e["pre_lookahead_len"])
    if c != 512 or e["upsample_stride"] != 2:
        enc.up_layer = Upsample1D(channels=c, out_channels=c, stride=e["upsample_stride"])
    n_up = e["num_up_blocks"]
    if n_up > len(enc.up_encoders):
        raise ValueError(f"s3gen_flow_encoder.num_up_blocks = {n_up}: upstream builds 4")
    enc.up_encoders = nn.ModuleList(list(enc.up_encoders)[:n_up])
    return enc


def _make_flow(cfg):
    f, d, c = cfg["s3gen_flow"], cfg["s3gen_flow_decoder"], cfg["s3gen_cfm"]
    for key in ("solver", "t_scheduler", "inference_cfg_rate"):
        _check_fixed(cfg, "s3gen_cfm", key, CFM_PARAMS[key])
    _check_fixed(cfg, "s3gen_cfm", "temperature", 1.0)       # CausalConditionalCFM ignores it
    _check_fixed(cfg, "s3gen_flow_decoder", "meanflow", False)
    _check_fixed(cfg, "s3gen_flow_decoder", "ff_mult", 4)
    _check_fixed(cfg, "s3gen_flow_decoder", "layer_norm_eps", 1e-5)
    _check_fixed(cfg, "s3gen_flow", "output_size", 80)       # solve_euler hard-codes 80 channels
    if len(d["channels"]) != 1:
        raise ValueError("s3gen_flow_decoder.channels: one level only")
    estimator = ConditionalDecoder(
        in_channels=d["in_channels"], out_channels=d["out_channels"], causal=True, channels=list(d["channels"]),
        dropout=0.0, attention_head_dim=d["attention_head_dim"], n_blocks=d["n_blocks"],
        num_mid_blocks=d["num_mid_blocks"], num_heads=d["num_heads"], act_fn=d["act_fn"], meanflow=False)
    decoder = CausalConditionalCFM(spk_emb_dim=c["spk_emb_dim"], cfm_params=CFM_PARAMS, estimator=estimator)
    return CausalMaskedDiffWithXvec(
        input_size=f["input_size"], output_size=f["output_size"], spk_embed_dim=f["spk_embed_dim"],
        output_type=f["output_type"], vocab_size=f["vocab_size"], input_frame_rate=f["input_frame_rate"],
        token_mel_ratio=f["token_mel_ratio"], pre_lookahead_len=f["pre_lookahead_len"],
        encoder=_make_encoder(cfg), decoder=decoder)


def _make_hift(cfg):
    h, p = cfg["s3gen_hift"], cfg["s3gen_f0_predictor"]
    _check_fixed(cfg, "s3gen_f0_predictor", "num_layers", 5)
    f0 = ConvRNNF0Predictor(num_class=p["num_class"], in_channels=p["in_channels"],
                            cond_channels=p["cond_channels"])
    return HiFTGenerator(
        in_channels=h["in_channels"], base_channels=h["base_channels"], nb_harmonics=h["nb_harmonics"],
        sampling_rate=h["sampling_rate"], nsf_alpha=h["nsf_alpha"], nsf_sigma=h["nsf_sigma"],
        nsf_voiced_threshold=h["nsf_voiced_threshold"], upsample_rates=list(h["upsample_rates"]),
        upsample_kernel_sizes=list(h["upsample_kernel_sizes"]), istft_params=dict(h["istft_params"]),
        resblock_kernel_sizes=list(h["resblock_kernel_sizes"]),
        resblock_dilation_sizes=[list(x) for x in h["resblock_dilation_sizes"]],
        source_resblock_kernel_sizes=list(h["source_resblock_kernel_sizes"]),
        source_resblock_dilation_sizes=[list(x) for x in h["source_resblock_dilation_sizes"]],
        lrelu_slope=h["lrelu_slope"], audio_limit=h["audio_limit"], f0_predictor=f0)


def _fallback_voice_modules(cfg):
    """Small speech tokenizer and CAMPPlus when part_voice did not run (developing this part alone).
    Only S3Gen's device property and embed_ref use them here; their weights are not written."""
    from s3tokenizer.model_v2 import ModelConfig
    from chatterbox.models.s3tokenizer import S3Tokenizer
    from chatterbox.models.s3gen.xvector import CAMPPlus
    t = cfg["s3tokenizer"]
    tok = S3Tokenizer("speech_tokenizer_v2_25hz", config=ModelConfig(
        n_mels=t["n_mels"], n_audio_state=t["n_audio_state"], n_audio_head=t["n_audio_head"],
        n_audio_layer=t["n_audio_layer"]))
    c = cfg["campplus"]
    spk = CAMPPlus(feat_dim=c["feat_dim"], embedding_size=c["embedding_size"], growth_rate=c["growth_rate"],
                   bn_size=c["bn_size"], init_channels=c["init_channels"], memory_efficient=False)
    return tok, spk


def _assemble_s3gen(tokenizer, speaker_encoder, flow, hift):
    """One upstream S3Token2Wav: its own __init__ runs (mel extractor, trim_fade, resamplers,
    estimator_dtype), with every sub-module constructor it calls returning our prebuilt module."""
    const = lambda m: (lambda *a, **k: m)  # noqa: E731
    with mock.patch.multiple(
            s3gen_mod, S3Tokenizer=const(tokenizer), CAMPPlus=const(speaker_encoder),
            UpsampleConformerEncoder=const(flow.encoder), ConditionalDecoder=const(flow.decoder.estimator),
            CausalConditionalCFM=const(flow.decoder), CausalMaskedDiffWithXvec=const(flow),
            ConvRNNF0Predictor=const(hift.f0_predictor), HiFTGenerator=const(hift)):
        s3 = s3gen_mod.S3Token2Wav(meanflow=False)
    assert s3.flow is flow and s3.mel2wav is hift and s3.tokenizer is tokenizer
    return s3.eval()


def _fan_in(mod, shape):
    if isinstance(mod, nn.ConvTranspose1d):
        return shape[0] * shape[2] / mod.stride[0]
    if isinstance(mod, nn.Conv1d):
        return shape[1] * shape[2]
    return shape[1]


def _randomize(root, g, gains, bias_std=0.02):
    """Seeded random weights for every parameter of `root`. Weight matrices get an elementwise std
    of gain/sqrt(fan_in) (gain looked up by module-name substring in `gains`, last match wins);
    weight-normed layers get a random direction v and a norm g that is NOT ||v|| (so a port must
    apply g*v/||v||), near the same effective std. Raises if a parameter is left untouched."""
    done = set()

    def rn(*shape):
        return torch.randn(*shape, generator=g)

    def gain_of(name):
        out = 1.0
        for k, v in gains.items():
            if k in name:
                out = v
        return out

    for name, mod in root.named_modules():
        pre = name + "." if name else ""
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
            gain = gain_of(name)
            if parametrize.is_parametrized(mod, "weight"):
                p0 = mod.parametrizations.weight.original0
                p1 = mod.parametrizations.weight.original1
                shape = p1.shape
                sigma = gain / math.sqrt(_fan_in(mod, shape))
                with torch.no_grad():
                    p1.copy_(rn(*shape))
                    per_row = sigma * math.sqrt(p1[0].numel())
                    p0.copy_(per_row * (0.7 + 0.6 * torch.rand(p0.shape, generator=g)))
                done |= {pre + "parametrizations.weight.original0", pre + "parametrizations.weight.original1"}
            else:
                with torch.no_grad():
                    mod.weight.copy_(rn(*mod.weight.shape) * (gain / math.sqrt(_fan_in(mod, mod.weight.shape))))
                done.add(pre + "weight")
            if mod.bias is not None:
                with torch.no_grad():
                    mod.bias.copy_(rn(*mod.bias.shape) * bias_std)
                done.add(pre + "bias")
        elif isinstance(mod, nn.LayerNorm):
            with torch.no_grad():
                mod.weight.copy_(1 + 0.1 * rn(*mod.weight.shape))
                mod.bias.copy_(0.05 * rn(*mod.bias.shape))
            done |= {pre + "weight", pre + "bias"}
        elif isinstance(mod, nn.Embedding):
            with torch.no_grad():
                mod.weight.copy_(rn(*mod.weight.shape))
            done.add(pre + "weight")
    for name, p in root.named_parameters():
        if name in done:
            continue
        leaf = name.rsplit(".", 1)[-1]
        with torch.no_grad():
            if leaf in ("pos_bias_u", "pos_bias_v"):
                p.copy_(0.1 * rn(*p.shape))
            elif leaf == "alpha":                      # Snake, linear scale
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                raise RuntimeError(f"part_s3gen: no random init rule for parameter {name}")
        done.add(name)


# Gains tuned so the small random model gives non-degenerate outputs (see cases(): statistics).
FLOW_GAINS = {"decoder.estimator.final_proj": 1.0}
HIFT_GAINS = {"resblocks": 0.4, "f0_predictor.classifier": 1.0, "m_source.l_linear": 3.0}
MEL_LEVEL = (-3.0, -8.0)  # estimator final_proj bias ramp over the 80 bins: flow mels near real log-mel levels
F0_BIAS_HZ = 120.0      # classifier bias: F0 = |bias + w.h| lands in a speech-like range
F0_SPREAD_HZ = 80.0     # target std of w.h over frames
LOGMAG_BIAS = -3.2      # conv_post bias on the 9 log-magnitude channels
LOGMAG_STD = 0.9        # conv_post's per-row output std (weight-norm g calibrated) on the log-magnitude rows
PHASE_STD = 2.5         # ... and on the phase rows: sin() well beyond its linear range


def build(ctx):
    with torch.random.fork_rng():           # constructors' default inits: leave the global RNG alone
        _build(ctx)


def _build(ctx):
    cfg = ctx.cfg
    g = ctx.generator("s3gen", "weights")
    flow = _make_flow(cfg)
    hift = _make_hift(cfg)
    _randomize(flow, g, FLOW_GAINS)
    _randomize(hift, g, HIFT_GAINS)
    n_mag = cfg["s3gen_hift"]["istft_params"]["n_fft"] // 2 + 1
    with torch.no_grad():
        fp = flow.decoder.estimator.final_proj.bias
        fp += torch.linspace(MEL_LEVEL[0], MEL_LEVEL[1], fp.numel())
        hift.conv_post.bias[:n_mag] += LOGMAG_BIAS
    flow.eval()
    hift.eval()

    tok = ctx.modules.get("s3_tokenizer")
    spk = ctx.modules.get("campplus")
    own_voice = tok is None or spk is None
    if own_voice:
        tok, spk = _fallback_voice_modules(cfg)
    s3 = _assemble_s3gen(tok, spk, flow, hift)
    if not ctx.full_size:
        _calibrate_f0(ctx, s3)
        _calibrate_conv_post(ctx, s3)
    ctx.modules["s3gen"] = s3
    ctx.modules["s3gen_own_voice_modules"] = own_voice
    ctx.add_state_dict("s3gen.safetensors", "flow.", flow)
    ctx.add_state_dict("s3gen.safetensors", "mel2wav.", hift)
    _check_keys(ctx, flow, hift)


def _synthetic_wav(g, seconds, f0_lo=90.0, f0_hi=260.0):
    """A speech-like test signal at 24 kHz: a gliding harmonic tone with a syllable envelope, gaps and
    a little noise (only its upstream mel is used: a realistic log-mel with voiced/unvoiced parts)."""
    n = int(seconds * SR)
    t = torch.arange(n, dtype=torch.float64) / SR
    f0 = f0_lo + (f0_hi - f0_lo) * 0.5 * (1 + torch.sin(2 * math.pi * 0.7 * t + float(torch.rand(1, generator=g)) * 6))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
    x = sum((0.5 / k) * torch.sin(k * phase) for k in range(1, 12))
    env = (0.5 * (1 + torch.sin(2 * math.pi * 3.1 * t))).clamp(min=0) ** 1.5
    x = x * env + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)
    return (0.4 * x / x.abs().max()).to(torch.float32)


def _realistic_mel(g, frames):
    """(1, 80, frames) log-mel of a synthetic signal via upstream's mel_spectrogram."""
    wav = _synthetic_wav(g, frames * 480 / SR + 0.05)
    mel = mel_spectrogram(wav[None])
    return mel[:, :, :frames].contiguous()


def _calibrate_f0(ctx, s3):
    """Set the F0 classifier so |bias + w.h| spreads ~F0_SPREAD_HZ around F0_BIAS_HZ over realistic mels
    (random weights otherwise give |F0| of a few Hz: all unvoiced)."""
    f0p = s3.mel2wav.f0_predictor
    mel = _realistic_mel(ctx.generator("s3gen", "f0-calibration"), 200)
    with torch.no_grad():
        h = f0p.condnet(mel).transpose(1, 2)[0]                  # (T, C)
        w = f0p.classifier.weight                                 # (1, C)
        proj = h @ w[0]
        scale = F0_SPREAD_HZ / float(proj.std().clamp(min=1e-6))
        w.mul_(scale)
        f0p.classifier.bias.fill_(F0_BIAS_HZ - float(proj.mean()) * scale)


def _calibrate_conv_post(ctx, s3):
    """Scale conv_post's weight-norm g per output row so its output std is LOGMAG_STD (magnitude
    rows) / PHASE_STD (phase rows) on a realistic mel followed by a flow output of this model (random
    deep residual stacks otherwise grow the activations ~10x and saturate the iSTFT at the clamp)."""
    hift = s3.mel2wav
    seen = []
    with torch.random.fork_rng():
        torch.manual_seed(_case_seed(ctx, "hift-calibration"))
        gen, _ = _voice(ctx, s3, fallback_only=True)
        tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (1, 32), generator=ctx.generator("s3gen", "hift-calibration"))
        mel = torch.cat([_realistic_mel(ctx.generator("s3gen", "hift-calibration"), 64),
                         s3.flow_inference(tokens, ref_dict=gen, finalize=True)], dim=2)
        handle = hift.conv_post.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
        s3.hift_inference(mel)
        handle.remove()
    std = seen[0][0].std(dim=1)                                     # (18,)
    n_mag = hift.istft_params["n_fft"] // 2 + 1
    target = torch.full_like(std, PHASE_STD)
    target[:n_mag] = LOGMAG_STD
    with torch.no_grad():
        hift.conv_post.parametrizations.weight.original0.mul_((target / std.clamp(min=1e-6)).view(-1, 1, 1))


def _check_keys(ctx, flow, hift):
    """The key families of spec §1.4 (flow 1121 / mel2wav 328 at full size). Deviations are raised."""
    fk = list(flow.state_dict().keys())
    hk = list(hift.state_dict().keys())
    e, d = ctx.cfg["s3gen_flow_encoder"], ctx.cfg["s3gen_flow_decoder"]
    h = ctx.cfg["s3gen_hift"]
    n_tr = d["n_blocks"]
    n_res = 2 + d["num_mid_blocks"]
    per_res = 2 + 2 + 2 + 2 + 2 + 2             # mlp.1, block1 conv+LN, block2 conv+LN, res_conv
    per_tr = 2 + 3 + 2 + 2 + 2 + 2              # norm1, to_q/k/v, to_out.0, norm3, ff.net.0.proj, ff.net.2
    est = 4 + n_res * (per_res + n_tr * per_tr) + 2 + 2 + 4 + 2
    per_conf = 4 * 2 + 1 + 2 + 4 + 4            # q,k,v,out; pos; u,v; ff w1,w2; 2 LN
    enc = 4 + 4 + (e["num_blocks"] + e["num_up_blocks"]) * per_conf + 2 + 4 + 2
    want_flow = 1 + 2 + 2 + enc + est
    n_stage = len(h["upsample_rates"])
    nk = len(h["resblock_kernel_sizes"])
    nd = len(h["resblock_dilation_sizes"][0])
    per_rb = 2 * nd * 3 + 2 * nd
    want_hift = 3 + 3 * n_stage + 2 * n_stage + n_stage * per_rb + n_stage * nk * per_rb + 3 + 2 + 5 * 3 + 2
    stats = {"flow_keys": len(fk), "mel2wav_keys": len(hk), "flow_keys_expected": want_flow,
             "mel2wav_keys_expected": want_hift}
    bad = [k for k in hk if k.endswith(("weight_g", "weight_v"))]
    if bad:
        raise RuntimeError(f"old-style weight norm keys in mel2wav: {bad[:3]}")
    wn = [k for k in hk if ".parametrizations.weight.original" in k]
    stats["mel2wav_weightnorm_tensors"] = len(wn)
    if ctx.full_size:
        if (len(fk), len(hk)) != (1121, 328):
            raise RuntimeError(f"full-size key counts flow {len(fk)} mel2wav {len(hk)}: spec §1.4 says 1121/328")
    if (len(fk), len(hk)) != (want_flow, want_hift):
        raise RuntimeError(f"key counts {stats}")
    ctx.stat(STAGE_FLOW, "_model", **stats)
    print("part_s3gen: keys", stats)


# ----------------------------------------------------------------------------------------------
# capture / injection of upstream's random draws


@contextmanager
def _draws(inject_randn=None, inject_uniform=None):
    """Record every torch.randn_like and Uniform.sample draw made inside the block (the tensors
    themselves, so in-place edits upstream makes afterwards, e.g. SineGen zeroing phase 0, show), or
    return the given tensors instead of drawing (replay)."""
    rec = {"randn_like": [], "uniform": []}
    orig_randn_like = torch.randn_like
    orig_sample = Uniform.sample

    def randn_like(t, *a, **k):
        i = len(rec["randn_like"])
        out = orig_randn_like(t, *a, **k) if inject_randn is None else inject_randn[i].clone()
        assert out.shape == t.shape, (out.shape, t.shape)
        rec["randn_like"].append(out)
        return out

    def sample(self, sample_shape=torch.Size()):
        i = len(rec["uniform"])
        out = orig_sample(self, sample_shape) if inject_uniform is None else inject_uniform[i].clone()
        rec["uniform"].append(out)
        return out

    with mock.patch.object(torch, "randn_like", randn_like), mock.patch.object(Uniform, "sample", sample):
        yield rec


class _Taps:
    """Forward hooks (first call's output) plus wrappers of the CFM estimator's forward (solve_euler
    calls estimator.forward directly, so hooks would not fire), of HiFT's _stft and of
    HiFTGenerator.inference (its input mel and its output before S3Token2Wav applies trim_fade)."""

    def __init__(self, s3):
        self.s3 = s3
        self.out = {}
        self.handles = []
        self.est_calls = []
        self.stft = []
        self.hift_io = []

    def hook(self, name, module):
        def fn(_m, _inp, output):
            if name not in self.out:
                o = output[0] if isinstance(output, tuple) else output
                self.out[name] = o.detach().clone()
        self.handles.append(module.register_forward_hook(fn))

    def __enter__(self):
        est, hift = self.s3.flow.decoder.estimator, self.s3.mel2wav
        est_fwd, hift_stft, hift_inf = est.forward, hift._stft, hift.inference

        def fwd(**kw):
            y = est_fwd(**kw)
            self.est_calls.append(({k: v.detach().clone() for k, v in kw.items() if torch.is_tensor(v)},
                                   y.detach().clone()))
            return y

        def stft(x):
            re, im = hift_stft(x)
            self.stft.append((re.detach().clone(), im.detach().clone()))
            return re, im

        def inference(speech_feat, cache_source=torch.zeros(1, 1, 0)):
            wav, s = hift_inf(speech_feat=speech_feat, cache_source=cache_source)
            self.hift_io.append((speech_feat.detach().clone(), wav.detach().clone()))
            return wav, s
        est.forward, hift._stft, hift.inference = fwd, stft, inference
        return self

    def __exit__(self, *exc):
        del self.s3.flow.decoder.estimator.forward
        del self.s3.mel2wav._stft
        del self.s3.mel2wav.inference
        for h in self.handles:
            h.remove()


def _same(a, b):
    return a.shape == b.shape and bool(torch.equal(a, b))


def _case_seed(ctx, *salt):
    return int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator("s3gen", *salt)))


# ----------------------------------------------------------------------------------------------
# s3gen stage: the flow


def _voice(ctx, s3, fallback_only=False):
    """conds.gen of part_voice's built-in voice (a copy: S3Token2Mel.forward casts ref_dict entries
    in place), or a fallback of the same shapes: random prompt tokens, upstream's mel of a synthetic
    24 kHz clip, a random x-vector."""
    conds = None if fallback_only else ctx.modules.get("conds")
    if conds is not None:
        return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in conds.gen.items()}, "part_voice conds"
    g = ctx.generator("s3gen", "fallback-voice")
    tp = 40
    wav = _synthetic_wav(g, tp * 0.04)
    prompt_feat = s3.mel_extractor(wav[None]).transpose(1, 2)[:, :2 * tp].contiguous()
    emb = torch.randn(1, ctx.cfg["s3gen_flow"]["spk_embed_dim"], generator=g)
    return dict(prompt_token=torch.randint(0, SPEECH_VOCAB_SIZE, (1, tp), generator=g),
                prompt_token_len=torch.tensor([tp]), prompt_feat=prompt_feat, prompt_feat_len=None,
                embedding=emb), "fallback (part_voice absent)"


def _short_voice(gen, n_tokens):
    """The first n_tokens prompt tokens and 2*n_tokens prompt frames of a voice (a valid, shorter
    reference for the cases that store per-step tensors over prompt + speech frames)."""
    n = min(n_tokens, int(gen["prompt_token"].shape[1]), int(gen["prompt_feat"].shape[1]) // 2)
    return dict(prompt_token=gen["prompt_token"][:, :n].clone(), prompt_token_len=torch.tensor([n]),
                prompt_feat=gen["prompt_feat"][:, :2 * n].clone(), prompt_feat_len=None,
                embedding=gen["embedding"].clone())


def _ref_copy(gen):
    return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in gen.items()}


def _ref_inputs(gen):
    return {"input.prompt_token": gen["prompt_token"].long(), "input.prompt_token_len": gen["prompt_token_len"].long(),
            "input.prompt_feat": gen["prompt_feat"], "input.embedding": gen["embedding"]}


def _run_flow(s3, tokens, gen, seed):
    """S3Token2Wav.flow_inference (finalize=True, 10 steps: what S3Token2Wav.inference runs) with the
    intermediates captured; a replay with the captured noise injected must give the same mel."""
    torch.manual_seed(seed)
    with _Taps(s3) as taps, _draws() as rec:
        taps.hook("xvec_proj", s3.flow.spk_embed_affine_layer)
        taps.hook("encoder_h", s3.flow.encoder)
        taps.hook("mu", s3.flow.encoder_proj)
        taps.hook("cfm_out", s3.flow.decoder)
        mel = s3.flow_inference(tokens, ref_dict=_ref_copy(gen), finalize=True).clone()
    z = [t.clone() for t in rec["randn_like"]]
    assert len(z) == 1 and not rec["uniform"], "flow: expected exactly one randn_like draw (the CFM noise)"
    assert _same(taps.est_calls[0][0]["x"][:1], z[0]), "CFM noise differs from the estimator's first x"
    torch.manual_seed(seed + 1)
    with _draws(inject_randn=z):
        mel2 = s3.flow_inference(tokens, ref_dict=_ref_copy(gen), finalize=True)
    return mel, z[0], taps, _same(mel, mel2)


def _flow_stats(ctx, case, mel, taps, replay_ok):
    v = torch.stack([o[:1] for _, o in taps.est_calls])          # conditional velocity rows
    st = dict(mel_mean=mel.mean(), mel_std=mel.std(), mel_min=mel.min(), mel_max=mel.max(),
              mu_std=taps.out["mu"].std(), est_out_std=v.std(), est_out_absmax=v.abs().max(),
              n_est_calls=len(taps.est_calls), frames=int(mel.shape[-1]), replay_bit_identical=replay_ok)
    ctx.stat(STAGE_FLOW, case, **st)
    ctx.require(replay_ok, f"{STAGE_FLOW}/{case}: replay with the captured CFM noise is not bit-identical")
    ctx.require(bool(torch.isfinite(mel).all()), f"{STAGE_FLOW}/{case}: non-finite mel")
    ctx.require(0.1 < float(mel.std()) and float(mel.abs().max()) < 100,
                f"{STAGE_FLOW}/{case}: mel std {float(mel.std()):.3g} / max {float(mel.abs().max()):.3g} degenerate")
    ctx.require(0.05 < float(v.std()) < 50, f"{STAGE_FLOW}/{case}: estimator output std {float(v.std()):.3g}")


def _flow_case(ctx, s3, gen, case, n_tokens, detail, voice_note):
    """detail 'all': every Euler state and two estimator evaluations; 'mid': states 0, 1, last and one
    evaluation; 'min': inputs, mu, noise and mel only."""
    g = ctx.generator("s3gen", "tokens", case)
    tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (1, n_tokens), generator=g)
    seed = _case_seed(ctx, "flow", case)
    mel, z, taps, ok = _run_flow(s3, tokens, gen, seed)
    calls = taps.est_calls
    t = {"input.tokens": tokens, **_ref_inputs(gen), "flow.xvec_proj": taps.out["xvec_proj"],
         "flow.mu": taps.out["mu"], "noise.z": z, "out.mel": mel,
         "cfm.t_span": torch.stack([c[0]["t"][0] for c in calls] + [torch.tensor(1.0)])}
    est_steps = []
    if detail != "min":
        t["flow.encoder_h"] = taps.out["encoder_h"]
        t["flow.cond"] = calls[0][0]["cond"][:1]
        states = [c[0]["x"][:1] for c in calls] + [taps.out["cfm_out"]]
        for k in (range(len(states)) if detail == "all" else (0, 1, len(states) - 1)):
            t[f"cfm.x.{k}"] = states[k]
        est_steps = [0, len(calls) // 2] if detail == "all" else [1]
        for k in est_steps:
            kw, out = calls[k]
            for name in ("x", "mask", "mu", "t", "spks", "cond"):
                t[f"est.{k}.in.{name}"] = kw[name]
            t[f"est.{k}.out"] = out
    meta = {"n_tokens": n_tokens, "prompt_tokens": int(gen["prompt_token"].shape[1]),
            "prompt_frames": int(gen["prompt_feat"].shape[1]), "finalize": True, "n_timesteps": len(calls),
            "inference_cfg_rate": float(s3.flow.decoder.inference_cfg_rate), "seed": seed, "detail": detail,
            "est_steps_saved": est_steps, "voice": voice_note,
            "upstream": "S3Token2Wav.flow_inference(tokens, ref_dict=conds.gen, finalize=True)"}
    ctx.save_golden(STAGE_FLOW, case, {k: v.clone() for k, v in t.items()}, meta)
    _flow_stats(ctx, case, mel, taps, ok)
    return tokens, mel


def _stream_cases(ctx, s3, gen, windows=(10, 30, 60, 150)):
    """Growing token prefixes of one utterance, each through the whole flow with finalize=True
    (0.1.7's finalize=False path crashes: see README), for the streaming tests."""
    g = ctx.generator("s3gen", "tokens", "stream")
    tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (1, windows[-1]), generator=g)
    for n in windows:
        case = f"stream_{n:04d}"
        seed = _case_seed(ctx, "flow", case)
        mel, z, taps, ok = _run_flow(s3, tokens[:, :n], gen, seed)
        ctx.save_golden(STAGE_FLOW, case, {"input.tokens": tokens[:, :n], "noise.z": z, "out.mel": mel},
                        {"n_tokens": n, "window": [0, n], "utterance_tokens": windows[-1], "finalize": True,
                         "seed": seed, "voice": "conds.gen in full, as input.* of tokens_0300",
                         "upstream": "S3Token2Wav.flow_inference(tokens[:, :n], ref_dict=conds.gen, finalize=True)"})
        _flow_stats(ctx, case, mel, taps, ok)


# ----------------------------------------------------------------------------------------------
# hift stage: the vocoder


def _run_hift(s3, call, seed, n_flow_draws):
    """call() runs upstream (hift_inference or inference) once; F0, SineGen output, source STFT,
    conv_pre/conv_post and HiFT's input/output are captured, then the call is replayed with the draws
    injected (the unused SourceModuleHnNSF noise replaced by zeros) and must be bit-identical."""
    hift = s3.mel2wav
    torch.manual_seed(seed)
    with _Taps(s3) as taps, _draws() as rec:
        taps.hook("f0", hift.f0_predictor)
        taps.hook("sine", hift.m_source.l_sin_gen)
        taps.hook("conv_pre", hift.conv_pre)
        taps.hook("conv_post", hift.conv_post)
        wav, src = call()
        wav, src = wav.clone(), src.clone()
    randn = [r.clone() for r in rec["randn_like"]]
    unif = [u.clone() for u in rec["uniform"]]
    assert len(randn) == n_flow_draws + 2 and len(unif) == 1, (len(randn), len(unif))
    torch.manual_seed(seed + 1)
    with _draws(inject_randn=randn[:-1] + [torch.zeros_like(randn[-1])], inject_uniform=unif):
        wav2, src2 = call()
    return dict(wav=wav, source=src, randn=randn, uniform=unif, taps=taps,
                replay_ok=_same(wav, wav2) and _same(src, src2))


def _hift_case(ctx, s3, case, note, mel=None, cache_source=None, end_to_end=None, save_sine=False):
    """One vocoder case; end_to_end = (tokens, ref_dict) runs S3Token2Wav.inference instead."""
    seed = _case_seed(ctx, "hift", case)
    hift = s3.mel2wav
    if end_to_end is not None:
        tokens, gen = end_to_end
        r = _run_hift(s3, lambda: s3.inference(tokens, ref_dict=_ref_copy(gen)), seed, 1)
    else:
        r = _run_hift(s3, lambda: s3.hift_inference(mel, cache_source), seed, 0)
    taps = r["taps"]
    nf = 1 if end_to_end is not None else 0
    mel_in, wav_hift = taps.hift_io[0]
    re, im = taps.stft[0]
    conv_post = taps.out["conv_post"]
    t = {}
    if end_to_end is not None:
        t.update({"input.tokens": tokens, **_ref_inputs(gen), "noise.z": r["randn"][0],
                  "out.wav_before_fade": wav_hift, "s3gen.trim_fade": s3.trim_fade})
    t.update({"input.mel": mel_in, "hift.f0": taps.out["f0"], "rand.sine_phase": r["uniform"][0],
              "rand.sine_noise": r["randn"][nf], "hift.source": r["source"],
              "hift.source_stft_real": re, "hift.source_stft_imag": im,
              "hift.conv_pre": taps.out["conv_pre"], "hift.conv_post": conv_post, "out.wav": r["wav"]})
    if save_sine:
        t["hift.sine_waves"] = taps.out["sine"]
    if cache_source is not None:
        t["input.cache_source"] = cache_source
    n_mag = hift.istft_params["n_fft"] // 2 + 1
    f0 = taps.out["f0"]
    thr = float(hift.m_source.l_sin_gen.voiced_threshold)
    voiced = f0 > thr
    logmag = conv_post[:, :n_mag]
    fv = f0[voiced] if voiced.any() else torch.zeros(1)
    st = dict(frames=int(mel_in.shape[-1]), samples=int(r["wav"].shape[-1]), f0_voiced_frac=voiced.float().mean(),
              f0_voiced_min=fv.min(), f0_voiced_median=fv.median(), f0_voiced_max=fv.max(),
              frac_at_audio_limit=(wav_hift.abs() >= hift.audio_limit).float().mean(),
              frac_mag_at_clip=(logmag >= math.log(100.0)).float().mean(),
              logmag_mean=logmag.mean(), logmag_max=logmag.max(),
              wav_rms=r["wav"].pow(2).mean().sqrt(), wav_absmax=r["wav"].abs().max(),
              source_rms=r["source"].pow(2).mean().sqrt(), replay_bit_identical=r["replay_ok"])
    ctx.stat(STAGE_HIFT, case, **st)
    ctx.require(r["replay_ok"], f"{STAGE_HIFT}/{case}: replay with the captured draws is not bit-identical")
    ctx.require(float(st["frac_at_audio_limit"]) < 0.01,
                f"{STAGE_HIFT}/{case}: {float(st['frac_at_audio_limit']):.2%} of samples at the clamp")
    ctx.require(float(st["frac_mag_at_clip"]) < 0.01,
                f"{STAGE_HIFT}/{case}: {float(st['frac_mag_at_clip']):.2%} of magnitudes at the exp clip")
    ctx.require(float(st["wav_rms"]) > 1e-3, f"{STAGE_HIFT}/{case}: silent output")
    meta = {"seed": seed, "note": note, "frames": st["frames"], "samples": st["samples"],
            "nsf_voiced_threshold": thr, "audio_limit": float(hift.audio_limit),
            "draw_order": ("[flow: randn_like(mu) -> noise.z] Uniform(-pi, pi).sample((1, 9, 1)) -> rand.sine_phase "
                           "(upstream then sets phase 0 to 0; saved as used); randn_like(sine_waves) -> "
                           "rand.sine_noise; randn_like(uv) in SourceModuleHnNSF.forward: drawn, unused, not saved"),
            "upstream": ("S3Token2Wav.inference(tokens, ref_dict=conds.gen)" if end_to_end is not None else
                         "S3Token2Wav.hift_inference(mel, cache_source) -> HiFTGenerator.inference")}
    ctx.save_golden(STAGE_HIFT, case, {k: v.clone() for k, v in t.items()}, meta)
    return r, float(st["f0_voiced_frac"])


def _hift_cases(ctx, s3, gen):
    voiced = []
    g = ctx.generator("s3gen", "tokens", "e2e")
    tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (1, 8), generator=g)
    _, v = _hift_case(ctx, s3, "e2e_tokens_0008", "S3Token2Wav.inference end to end: flow + HiFT + trim_fade",
                      end_to_end=(tokens, gen))
    voiced.append(v)
    mel = _realistic_mel(ctx.generator("s3gen", "mel", "synthetic"), 24)
    _, v = _hift_case(ctx, s3, "synthetic_mel_0024", "upstream mel_spectrogram of a synthetic harmonic clip",
                      mel=mel)
    voiced.append(v)
    # cache_source over two consecutive chunks of one mel (CosyVoice-style streaming hook)
    mel2 = _realistic_mel(ctx.generator("s3gen", "mel", "chunks"), 24)
    a, b = mel2[:, :, :12].contiguous(), mel2[:, :, 12:].contiguous()
    ra, v = _hift_case(ctx, s3, "cache_chunk_0", "first chunk: mel frames 0..11 of a 24-frame mel, empty cache",
                       mel=a, cache_source=torch.zeros(1, 1, 0), save_sine=True)
    voiced.append(v)
    cache = ra["source"][:, :, -4 * 480:].contiguous()
    _, v = _hift_case(ctx, s3, "cache_chunk_1", "second chunk: frames 12..23; cache_source = the last 4 frames "
                      "(1920 samples) of chunk 0's source, which overwrite the start of this chunk's source",
                      mel=b, cache_source=cache)
    voiced.append(v)
    ctx.stat(STAGE_HIFT, "_summary", max_voiced_frac=max(voiced))
    ctx.require(max(voiced) > 0.3, f"{STAGE_HIFT}: no case has more than 30 % voiced F0 frames ({voiced})")


def cases(ctx):
    with torch.random.fork_rng():           # per-case torch.manual_seed: leave the global RNG alone
        _cases(ctx)


def _cases(ctx):
    s3 = ctx.modules["s3gen"]
    gen, voice_src = _voice(ctx, s3)
    ctx.stat(STAGE_FLOW, "_voice", source=voice_src, prompt_tokens=int(gen["prompt_token"].shape[1]),
             prompt_frames=int(gen["prompt_feat"].shape[1]))
    short = _short_voice(gen, SHORT_PROMPT_TOKENS)
    short_note = (f"{voice_src}: first {int(short['prompt_token'].shape[1])} prompt tokens / "
                  f"{int(short['prompt_feat'].shape[1])} prompt frames (size budget)")
    _flow_case(ctx, s3, short, "tokens_0001", 1, "all", short_note)
    _flow_case(ctx, s3, short, "tokens_0050", 50, "mid", short_note)
    _flow_case(ctx, s3, gen, "tokens_0300", 300, "min", voice_src)
    _stream_cases(ctx, s3, gen)
    _hift_cases(ctx, s3, gen)
