"""bench_s3gen_upstream.py — upstream's S3Token2Wav.inference (PyTorch, CPU) on the same weights and
sizes as our S3Gen benchmark, for speed ratios measured in the same session.

    python tests/bench/bench_s3gen_upstream.py MODEL_DIR [threads] [n_tokens] [reps]

Needs the chatterbox-tts package (0.1.7) and torch. Builds upstream's full-size S3Gen
(S3Token2Wav()) and loads MODEL_DIR/s3gen.safetensors as upstream's tts.py does
(load_state_dict(..., strict=False), .eval()). The voice is the `gen` dict of MODEL_DIR/conds.pt
(upstream's Conditionals.load: prompt tokens, prompt mel, x-vector; the built-in 10 s prompt is 250
tokens / 500 mel frames). The speech tokens are N random ids in [0, 6561) (torch seed 0), N = 250 by
default = 10 s of audio (N * 0.04 s).

Timed, under torch.inference_mode(), with torch.set_num_threads(threads):
- total: one S3Token2Wav.inference(tokens, ref_dict=gen) call (what a user calls: flow with
  finalize=True, 10 CFM steps, HiFT, trim_fade);
- encoder: from the entry of flow.inference to the start of flow.decoder (x-vector projection, input
  embedding, flow.encoder = UpsampleConformerEncoder, encoder_proj, the conds tensor); the
  flow.encoder call alone is printed too (encoder_core);
- cfm: flow.decoder (CausalConditionalCFM.forward: noise, 10 Euler steps, each one estimator call
  on the CFG batch of 2 over T = 2 * (prompt_tokens + N) mel frames, prompt frames included);
- hift: mel2wav.inference (F0 predictor, source, HiFT decode; called by hift_inference);
- estimator_eval: one flow.decoder.estimator.forward call outside the pipeline, on the inputs
  captured from the first CFM step (batch 2, T frames); also reported as frame-evaluations per
  second = 2 * T / seconds. The mean in-pipeline estimator call is printed as well.
The first inference is a warm-up and is not counted; the figures are medians over `reps` runs.
Peak RSS is ru_maxrss of the process at the end (the model, weights file and activations).
cpu_util = process CPU time / (threads * wall time) of the timed inferences (median): near 1 on a
quiet machine; far lower when other processes compete for the cores (torch's OpenMP threads then
spin and wait, and the wall times swing several-fold: seen 2.3 to 21 s for one estimator call).
Prints human-readable lines and a final `RESULT {json}` line. Defaults: 2 threads, 250 tokens,
3 reps.
"""
import importlib.metadata
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from chatterbox.models.s3gen import S3Gen

SPEECH_VOCAB = 6561
TOKEN_S = 0.04


def main():
    model_dir = Path(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    n_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 250
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    load_avg = os.getloadavg()[0]
    t0 = time.perf_counter()
    s3 = S3Gen()
    s3.load_state_dict(load_file(model_dir / "s3gen.safetensors"), strict=False)
    s3.eval()
    gen = torch.load(model_dir / "conds.pt", map_location="cpu", weights_only=True)["gen"]
    load_s = time.perf_counter() - t0
    prompt_tokens = int(gen["prompt_token"].shape[-1])
    prompt_frames = int(gen["prompt_feat"].shape[1])
    tokens = torch.randint(0, SPEECH_VOCAB, (1, n_tokens))
    audio_s = n_tokens * TOKEN_S

    flow, cfm, est, hift = s3.flow, s3.flow.decoder, s3.flow.decoder.estimator, s3.mel2wav
    marks = {}
    est_calls = []
    captured = {}

    def stamp(key):
        return lambda *_: marks.__setitem__(key, time.perf_counter())

    flow.encoder.register_forward_pre_hook(stamp("enc0"))
    flow.encoder.register_forward_hook(stamp("enc1"))
    cfm.register_forward_pre_hook(stamp("cfm0"))
    cfm.register_forward_hook(stamp("cfm1"))

    def wrap(obj, name, key):
        orig = getattr(obj, name)

        def timed(*a, **k):
            marks[key + "0"] = time.perf_counter()
            out = orig(*a, **k)
            marks[key + "1"] = time.perf_counter()
            return out
        setattr(obj, name, timed)  # instance attribute: shadows the bound method
        return orig

    wrap(flow, "inference", "flow")
    wrap(hift, "inference", "hift")
    est_forward = est.forward  # solve_euler calls estimator.forward directly: hooks would not fire

    def est_timed(*a, **k):
        if not captured:
            captured.update(k, _args=a)
        t = time.perf_counter()
        out = est_forward(*a, **k)
        est_calls.append(time.perf_counter() - t)
        return out
    est.forward = est_timed

    def run():
        marks.clear()
        est_calls.clear()
        with torch.inference_mode():
            t, c = time.perf_counter(), time.process_time()
            wav, _ = s3.inference(tokens, ref_dict=gen)
            total, cpu = time.perf_counter() - t, time.process_time() - c
        n_wav = wav.shape[-1]
        assert n_wav == n_tokens * 960, f"{n_wav} samples, expected {n_tokens * 960}"
        assert torch.isfinite(wav).all()
        return {"total": total, "cpu_util": cpu / (total * torch.get_num_threads()),
                "encoder": marks["cfm0"] - marks["flow0"],
                "encoder_core": marks["enc1"] - marks["enc0"], "cfm": marks["cfm1"] - marks["cfm0"],
                "hift": marks["hift1"] - marks["hift0"], "est_in_pipeline": statistics.mean(est_calls),
                "n_est": len(est_calls)}

    def progress(label, r):
        print(f"  [{label}] total {r['total'] * 1000:.0f} ms, cfm {r['cfm'] * 1000:.0f} ms, "
              f"CPU use {100 * r['cpu_util']:.0f}%", flush=True)

    t_warm = time.perf_counter()
    progress("warm-up", run())  # first touch of the weights, oneDNN/primitive set-up
    warm_s = time.perf_counter() - t_warm
    results = []
    for i in range(reps):
        results.append(run())
        progress(f"rep {i + 1}/{reps}", results[-1])

    def med(key):
        return statistics.median(r[key] for r in results) * 1000

    # one estimator evaluation alone, on the first CFM step's inputs (batch 2, T frames)
    x = captured["x"]
    T = int(x.shape[-1])
    kw = {k: v for k, v in captured.items() if k != "_args"}
    est_times = []
    with torch.inference_mode():
        est_forward(**kw)  # warm
        for _ in range(max(reps, 3)):
            t = time.perf_counter()
            est_forward(**kw)
            est_times.append(time.perf_counter() - t)
    est_ms = statistics.median(est_times) * 1000
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    total, enc, enc_core, cfm_ms, hift_ms = (med(k) for k in ("total", "encoder", "encoder_core",
                                                               "cfm", "hift"))
    est_pipe = med("est_in_pipeline")
    print(f"upstream S3Token2Wav.inference (torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {n_tokens} tokens = {audio_s:.2f} s audio, prompt {prompt_tokens} tokens / "
          f"{prompt_frames} frames, {results[0]['n_est']} CFM steps x CFG batch {int(x.shape[0])} "
          f"over T = {T} frames, {reps} reps + 1 warm-up [{warm_s:.1f} s]): load {load_s:.1f} s")
    for name, ms in (("total", total), ("encoder", enc), ("  flow.encoder only", enc_core),
                     ("cfm", cfm_ms), ("hift", hift_ms)):
        print(f"  {name:<20} {ms:9.1f} ms   {ms / audio_s:8.1f} ms per s of audio")
    print(f"  estimator eval       {est_ms:9.1f} ms   (in pipeline {est_pipe:.1f} ms/step)"
          f"   {2 * T / (est_ms / 1000):.0f} frame-evaluations/s")
    cpu_util = statistics.median(r["cpu_util"] for r in results)
    print(f"  peak RSS             {peak_rss_mb:9.0f} MB")
    print(f"  CPU use {100 * cpu_util:.0f}% of threads x wall time (load average at start "
          f"{load_avg:.1f}; well below 100% means other processes took the cores: rerun on a "
          f"quiet machine)")
    result = {
        "threads": torch.get_num_threads(), "n_tokens": n_tokens, "audio_s": audio_s,
        "prompt_frames": prompt_frames, "total_ms": round(total, 2), "encoder_ms": round(enc, 2),
        "cfm_ms": round(cfm_ms, 2), "hift_ms": round(hift_ms, 2),
        "estimator_eval_ms": round(est_ms, 2), "peak_rss_mb": round(peak_rss_mb, 1),
        "cpu_util": round(cpu_util, 3), "torch_version": torch.__version__,
        "upstream_version": importlib.metadata.version("chatterbox-tts"),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
