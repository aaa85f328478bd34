"""bench_t3_upstream.py — upstream's T3.inference (PyTorch, CPU) on the same weights and sizes as
bench-t3, for a tokens/s comparison.

    python tests/bench/bench_t3_upstream.py MODEL_DIR [threads] [decode_tokens] [reps]

Needs the chatterbox-tts package (0.1.7) and torch. Loads MODEL_DIR/t3_cfg.safetensors into
upstream's T3 (English config: the sizes bench-t3 uses without a chatterbox-config.json), builds a
random voice (speaker embedding, 150 prompt tokens, exaggeration 0.5) and a 100-id text, and times
T3.inference with cfg_weight 0.5 (two rows, as bench-t3) and max_new_tokens = 1 + N, with hooks
on the backbone: prefill = its first call, decode ms/token = time between the ends of its later
calls (each one iteration of upstream's loop: sampling and one forward step).
EOS is masked out of the logits (a hook on speech_head) so that every run makes all its tokens.
Medians over `reps` runs. Defaults: 2 threads, 32 tokens, 3 reps.
"""
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from chatterbox.models.t3 import T3
from chatterbox.models.t3.modules.cond_enc import T3Cond

TEXT_LEN = 100


def main():
    model_dir = Path(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    t3 = T3()
    t3.load_state_dict(load_file(model_dir / "t3_cfg.safetensors"))
    t3.eval()
    load_s = time.perf_counter() - t0
    hp = t3.hp
    stop = hp.stop_speech_token

    def no_eos(_module, _inputs, out):
        out[..., stop] = -1e4  # finite: CFG subtracts the rows (−inf − −inf is NaN)
        return out

    t3.speech_head.register_forward_hook(no_eos)

    gen = torch.Generator().manual_seed(7)
    cond = T3Cond(
        speaker_emb=torch.rand(1, hp.speaker_embed_size, generator=gen) * 0.2 - 0.1,
        cond_prompt_speech_tokens=torch.randint(0, hp.start_speech_token,
                                                (1, hp.speech_cond_prompt_len), generator=gen),
        emotion_adv=0.5 * torch.ones(1, 1, 1),
    )
    text = torch.randint(1, hp.text_tokens_dict_size, (1, TEXT_LEN), generator=gen)
    text[0, 0] = hp.start_text_token
    text[0, -1] = hp.stop_text_token
    text = torch.cat([text, text])  # CFG: tts.py doubles the text; T3 zeroes row 1's embeddings

    # timestamps around every backbone call: the first is the prefill, each later one ends one
    # iteration of upstream's loop (sampling + one forward step)
    marks = []
    t3.tfmr.register_forward_pre_hook(lambda *_: marks.append(("pre", time.perf_counter())))
    t3.tfmr.register_forward_hook(lambda *_: marks.append(("post", time.perf_counter())))

    def run(max_new):
        marks.clear()
        with torch.inference_mode():
            out = t3.inference(t3_cond=cond, text_tokens=text, max_new_tokens=max_new,
                               temperature=0.8, cfg_weight=0.5, repetition_penalty=1.2,
                               min_p=0.05, top_p=1.0)
        assert out.shape[-1] == max_new, f"{out.shape[-1]} tokens, expected {max_new}"
        ends = [t for kind, t in marks if kind == "post"]
        prefill = ends[0] - marks[0][1]
        return prefill, (ends[-1] - ends[0]) / (len(ends) - 1)

    run(2)  # warm-up (first touch of the weights, the backend's one-time set-up)
    results = [run(1 + steps) for _ in range(reps)]
    prefill = statistics.median(r[0] for r in results) * 1000
    ms_token = statistics.median(r[1] for r in results) * 1000
    print(f"upstream T3.inference (torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{TEXT_LEN}-id text, cfg_weight 0.5, {steps} tokens, {reps} reps): load {load_s:.1f} s"
          f" | prefill {prefill:.0f} ms | decode {ms_token:.1f} ms/token "
          f"({1000 / ms_token:.2f} tokens/s)")

if __name__ == "__main__":
    main()
