"""Throughput of frozen-feature extraction versus the bare model forward.

``extract_features`` adds image decoding, the eval transform, batching,
host copies and chunk writes around the model. This measures images/s of a
full extraction (no cache hit) and of the bare ``forward_features`` + token
split on the same images pre-loaded as batches on the device; the ratio is the
pipeline's efficiency (target >= 0.9: the model, not the loading, is the
bottleneck). Writes ``benchmarks/results/extract.json``.

    python benchmarks/extract.py                       # CPU, tiny ViT on phantoms
    python benchmarks/extract.py --device cuda --arch vit_base --patch-size 14 --image-size 518 --num-workers 8
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from raddino_lib.atomic import write_json
from raddino_lib.data.datasets import ManifestDataset
from raddino_lib.data.manifest import read_manifest
from raddino_lib.data.phantoms.generate import generate
from raddino_lib.data.transforms import eval_transform_for
from raddino_lib.models.backbone import create_backbone
from raddino_lib.models.weights import load_backbone, save_backbone
from raddino_lib.probe.features import encode, extract_features

RESULTS = Path(__file__).resolve().parent / "results" / "extract.json"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bare_forward(backbone: Path, manifest: Path, args: argparse.Namespace) -> float:
    """Images/s of encode() on pre-loaded device batches (the same transform, one warm-up pass)."""
    model = load_backbone(backbone, img_size=args.image_size).to(args.device).eval()
    ds = ManifestDataset(read_manifest(manifest), transform=eval_transform_for(backbone, args.image_size))
    images = torch.stack([ds[i]["image"] for i in range(len(ds))])  # (N, 3, S, S)
    batches = [b.to(args.device) for b in images.split(args.batch_size)]
    encode(model, batches[0])
    _sync(args.device)
    start = time.perf_counter()
    for b in batches:
        cls, mean, _ = encode(model, b)
        cls.cpu(), mean.cpu()  # the extraction copies these to the host too
    _sync(args.device)
    return len(images) / (time.perf_counter() - start)


def pipeline(backbone: Path, manifest: Path, args: argparse.Namespace) -> float:
    """Images/s of extract_features without a cache (model loading and all)."""
    start = time.perf_counter()
    fs = extract_features(backbone, manifest, None, args.image_size, args.batch_size, args.device,
                          num_workers=args.num_workers, progress=False)
    _sync(args.device)
    return len(fs) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="vit_tiny")
    p.add_argument("--patch-size", type=int, default=8)
    p.add_argument("--depth", type=int, default=6, help="0 = the arch's default depth")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--n", type=int, default=512, help="phantom images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-workers", type=int, default=-1,
                   help="DataLoader workers; -1 = 0 on CPU (workers would take cores from the model), 4 on CUDA")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of each; medians are reported")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    if args.num_workers < 0:
        args.num_workers = 4 if args.device.startswith("cuda") else 0

    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate(Path(tmp) / "phantoms", args.n, args.image_size, seed=0, workers=2)
        torch.manual_seed(0)
        backbone = save_backbone(create_backbone(args.arch, patch_size=args.patch_size, img_size=args.image_size,
                                                 depth=args.depth), Path(tmp) / "backbone.safetensors")
        bare, full = [], []
        for _ in range(args.repeats):  # alternate, so a busy machine slows both alike
            bare.append(bare_forward(backbone, manifest, args))
            full.append(pipeline(backbone, manifest, args))
    result = {
        "extract_images_per_s": statistics.median(full),
        "bare_forward_images_per_s": statistics.median(bare),
        "ratio": statistics.median(full) / statistics.median(bare),
        "target_ratio": 0.9,
        "runs": {"extract": full, "bare_forward": bare},
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
    }
    write_json(args.out, result)
    print(f"extract {result['extract_images_per_s']:.1f} img/s, bare forward {result['bare_forward_images_per_s']:.1f}"
          f" img/s, ratio {result['ratio']:.2f} (target >= 0.9) -> {args.out}")


if __name__ == "__main__":
    main()
