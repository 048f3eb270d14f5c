"""``raddino backbone-info | convert-backbone | export-hf``: inspect and convert backbone weights.

    raddino backbone-info path/to/rad-dino                       # spec (JSON) + digest of any accepted format
    raddino convert-backbone rad-dino/ --out rad_dino.safetensors  # -> this package's own file
    raddino export-hf runs/gpu/01/backbone.safetensors --out hf/  # -> folder for transformers.AutoModel
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from raddino_lib.models.weights import ACCEPTED_FORMATS


def add_parser(subparsers: Any) -> None:
    info = subparsers.add_parser("backbone-info", help="print a backbone's spec and digest",
                                 description=f"Print the spec of a backbone. {ACCEPTED_FORMATS}.")
    info.add_argument("path", help="backbone file or folder")
    info.set_defaults(func=_info)

    convert = subparsers.add_parser("convert-backbone", help="convert a backbone to this package's safetensors file")
    convert.add_argument("path", help="backbone file or folder (any accepted format)")
    convert.add_argument("--out", required=True, help="output .safetensors file")
    convert.add_argument("--img-size", type=int, default=None, help="store the position embedding at this size")
    convert.set_defaults(func=_convert)

    export = subparsers.add_parser("export-hf", help="write a backbone as a Hugging Face Dinov2Model folder")
    export.add_argument("path", help="backbone file or folder (any accepted format)")
    export.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, ...)")
    export.set_defaults(func=_export)


def _info(args: argparse.Namespace) -> int:
    from raddino_lib.models.weights import file_digest, read_backbone_spec

    print(json.dumps({"path": args.path, "digest": file_digest(args.path), "spec": read_backbone_spec(args.path)},
                     indent=2))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from raddino_lib.models.weights import load_backbone, save_backbone

    model = load_backbone(args.path, img_size=args.img_size)
    print(save_backbone(model, args.out, meta={"converted_from": str(args.path)}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from raddino_lib.models.hf import export_hf
    from raddino_lib.models.weights import load_backbone

    print(export_hf(load_backbone(args.path), args.out))
    return 0
