import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from raddino_lib.data.manifest import write_manifest
from raddino_lib.models.backbone import create_backbone
from raddino_lib.models.weights import save_backbone
from raddino_lib.probe import cli
from raddino_lib.probe.encoders import parse_extra, resolve_encoders


def _parser():
    p = argparse.ArgumentParser(prog="raddino")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_encoder_names_and_missing_files(tmp_path):
    a = tmp_path / "a.safetensors"
    a.write_bytes(b"x")
    assert cli._encoders([f"ssl={a}", str(a)]) == {"ssl": str(a), "a": str(a)}
    with pytest.raises(FileNotFoundError, match="encoder 'language'.*nothing.safetensors"):
        resolve_encoders(ssl=str(a), language=str(tmp_path / "nothing.safetensors"))
    assert parse_extra(" rad-dino=/m/x , ,b=/y") == {"rad-dino": "/m/x", "b": "/y"}
    with pytest.raises(ValueError, match="not 'name=path'"):
        parse_extra("justapath")
    with pytest.raises(ValueError, match="used twice"):
        parse_extra("ssl=/x")


def test_extract_command_prints_shapes_and_fills_the_cache(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, size=(32, 32), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "path": f"im{i}.png", "patient_id": f"p{i}", "study_id": f"s{i}",
                     "split": "train", "age": 50, "sex": "M", "view": "PA", "site": "toy"})
    manifest = write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    torch.manual_seed(0)
    enc = save_backbone(create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1), tmp_path / "e.safetensors")
    args = _parser().parse_args(["extract", "--encoder", str(enc), "--manifest", str(manifest), "--cache",
                                 str(tmp_path / "cache"), "--image-size", "32", "--grid"])
    assert args.func(args) == 0
    assert "4 images: cls (4, 192), mean_patch (4, 192), grid (4, 4, 4, 192)" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
