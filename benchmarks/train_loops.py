"""Model-FLOP utilisation (MFU) of the package's other training loops, each at the cpu profile's size.

Each loop runs the library's own step function on synthetic inputs already in memory (data loading excluded):

- ``clip``: ``train.language.train_step`` — ViT-tiny/8 (4 blocks) at 64 px and the BERT text tower (2 × 128) over
  64-token reports, symmetric InfoNCE, clipping, AdamW; batch 64.
- ``seg_linear`` / ``seg_upernet``: ``probe.segmentation.head_step`` — the linear 1×1 head on the last 8×8×192 grid
  and the UPerNet head on 4 layers, BCE + soft Dice against 13 structures at 32 px; batch 16.
- ``report_decoder``: ``probe.report_generation.decoder_step`` — projector + GPT-2 (2 × 128) by teacher forcing on 17
  image tokens and 96 report tokens; batch 32.
- ``extract``: the frozen backbone's forward as feature extraction runs it (no gradient), batch 64 at 64 px.
- ``colipri_3d``: ``train.colipri.losses`` + backward + AdamW — tiny Primus on 32³ volumes (64 tokens), all three
  objectives (contrastive with the BERT tower, report generation with the GPT-2 decoder on 160-token reports,
  masked modelling on the whole batch), as the cpu profile of notebook 10 trains its full arm; batch 16.

MFU = FLOPs per step (``FlopCounterMode``) × steps / wall time over the same run's fp32 matmul peak (``_mfu``).
Small heads and a 2-layer decoder are bound by memory and Python, not by matmuls: their MFU says how far from the
matmul roofline the loop runs, which is where a speed-up would come from. Writes
``benchmarks/results/train_loops_cpu.json``.

    python benchmarks/train_loops.py [--loops clip,report_decoder] [--steps 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch
from _mfu import time_step

from raddino_lib.atomic import write_json

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, GRID, SIZE = 192, 8, 64  # ViT-tiny/8 tokens of a 64 px image


def clip_loop():
    from raddino_lib.models import create_backbone
    from raddino_lib.models.clip import CLIPModel
    from raddino_lib.models.text import BertTextEncoder
    from raddino_lib.train.language import param_groups, train_step

    torch.manual_seed(0)
    model = CLIPModel(create_backbone("vit_tiny", patch_size=8, img_size=SIZE, depth=4),
                      BertTextEncoder.from_config(2000, 96, width=128, depth=2, heads=4), proj_dim=128).train()
    opt = torch.optim.AdamW(param_groups(model, 0.2), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    images = torch.randn(64, 3, SIZE, SIZE)
    ids = torch.randint(5, 2000, (64, 64))
    ids[:, 0] = 1
    return lambda: train_step(model, opt, images, ids, None, 1e-4, 1.0)


def seg_loop(head_kind: str):
    import numpy as np

    from raddino_lib.probe.segmentation import SegConfig, build_head, head_step

    torch.manual_seed(0)
    shape = (16, GRID, GRID, WIDTH) if head_kind == "linear" else (16, 4, GRID, GRID, WIDTH)
    tokens = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    head = build_head(SegConfig(head=head_kind), tokens, 13).train()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    x, target = torch.as_tensor(tokens), torch.rand(16, 13, 32, 32)
    return lambda: head_step(head, opt, x, target, (32, 32))


def report_decoder_loop():
    from raddino_lib.models.report_decoder import ReportDecoder, small_gpt2
    from raddino_lib.probe.report_generation import decoder_step

    lm = small_gpt2(512, 17 + 1 + 96 + 1, n_embd=128, n_layer=2, n_head=4)
    decoder = ReportDecoder(WIDTH, lm, bos_token_id=1, eos_token_id=2, pad_token_id=0).train()
    opt = torch.optim.AdamW(decoder.parameters(), lr=2e-3, weight_decay=0.01)
    tokens = torch.randn(32, 17, WIDTH)
    ids = torch.randint(3, 512, (32, 96))
    mask = torch.ones_like(ids)
    return lambda: decoder_step(decoder, opt, tokens, ids, mask)


def extract_loop():
    from raddino_lib.models import create_backbone

    model = create_backbone("vit_tiny", patch_size=8, img_size=SIZE, depth=4).eval()
    images = torch.randn(64, 3, SIZE, SIZE)

    def step():
        with torch.inference_mode():
            model.forward_features(images)

    return step


def colipri_loop():
    from raddino_lib.models.report_decoder import ReportDecoder, small_gpt2
    from raddino_lib.models.text import BertTextEncoder
    from raddino_lib.train.colipri import Batch, COLIPRIConfig, COLIPRIModel, losses
    from raddino_lib.train.language import param_groups

    torch.manual_seed(0)
    cfg = COLIPRIConfig(input_size=32, contrastive=1.0, generation=1.0, mim=1.0)
    lm = small_gpt2(1000, 8 + 1 + 160 + 1, n_embd=128, n_layer=2, n_head=4)
    model = COLIPRIModel(cfg, BertTextEncoder.from_config(2000, 160, width=128, depth=2, heads=4),
                         ReportDecoder(96, lm, bos_token_id=1, eos_token_id=2, pad_token_id=0)).train()
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=5e-4)
    ids = torch.randint(5, 2000, (8, 160))
    ids[:, 0] = 1
    report = torch.randint(3, 1000, (8, 160))
    batch = Batch(torch.randn(16, 1, 32, 32, 32), 8, ids, torch.arange(8), report, torch.ones_like(report))

    def step():
        loss = losses(model, cfg, batch)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


LOOPS = {"clip": clip_loop, "seg_linear": lambda: seg_loop("linear"), "seg_upernet": lambda: seg_loop("upernet"),
         "report_decoder": report_decoder_loop, "extract": extract_loop, "colipri_3d": colipri_loop}


def loop_names(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The loops named in a comma-separated ``--loops`` value; an unknown name is a usage error."""
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(LOOPS))
    if unknown:
        parser.error(f"unknown loops {unknown}; choose from {list(LOOPS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated, from {list(LOOPS)}")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    names = loop_names(parser, args.loops)
    device = torch.device("cpu")
    results = {}
    for name in names:
        results[name] = time_step(LOOPS[name](), device, args.steps, args.repeats)
        r = results[name]
        print(f"{name}: {r['step_s'] * 1e3:.1f} ms/step, {r['flops_per_step'] / 1e9:.2f} GFLOP/step, "
              f"MFU {r['mfu']:.2f} (cpu-time {r['mfu_cpu_time']:.2f})", flush=True)
    payload = {"device": "cpu", "loops": results, "steps": args.steps, "repeats": args.repeats,
               "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(),
                           "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]}}
    path = write_json(Path(args.out) / "train_loops_cpu.json", payload)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
