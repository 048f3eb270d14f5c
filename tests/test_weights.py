"""Backbone files against an independent reference: Hugging Face ``Dinov2Model``.

A tiny random ``Dinov2Model`` is saved with ``save_pretrained``; ``load_backbone`` must reproduce its
``last_hidden_state`` (CLS and patch tokens after the final LayerNorm) from the folder, from the same
weights renamed to the original DINOv2 keys, and ``export_hf`` must round-trip through ``AutoModel``.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from raddino_lib.models import (
    BackboneFormatError,
    backbone_spec,
    create_backbone,
    export_hf,
    file_digest,
    load_backbone,
    read_backbone_meta,
    read_backbone_spec,
    save_backbone,
)

ATOL = 1e-4


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (HF inits layer scale to 1 and biases to 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (1.0 if "norm" in name and "weight" in name else 0.0))


@pytest.fixture(scope="module")
def hf_model() -> Dinov2Model:
    config = Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=8, image_size=32,
                          layerscale_value=0.5)
    model = Dinov2Model(config)
    _randomise(model)
    return model.eval()


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    return folder


def _hf_tokens(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).last_hidden_state


def _ours(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_features(x)


def _hf_to_dinov2_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Written out by hand from the DINOv2 repository's key names (independent of the library's converter)."""
    out = {
        "cls_token": sd["embeddings.cls_token"], "pos_embed": sd["embeddings.position_embeddings"],
        "mask_token": sd["embeddings.mask_token"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"],
    }
    for i in range(2):
        h, d = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[d + f"attn.qkv.{kind}"] = torch.cat(
                [sd[h + f"attention.attention.{n}.{kind}"] for n in ("query", "key", "value")])
            out[d + f"attn.proj.{kind}"] = sd[h + f"attention.output.dense.{kind}"]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[d + f"{n}.{kind}"] = sd[h + f"{n}.{kind}"]
        out[d + "ls1.gamma"] = sd[h + "layer_scale1.lambda1"]
        out[d + "ls2.gamma"] = sd[h + "layer_scale2.lambda1"]
    return out


@pytest.mark.parametrize("size", [32, 48, 24])
def test_hf_folder_matches_dinov2model(hf_model, hf_folder, size):
    model = load_backbone(hf_folder)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    ref, ours = _hf_tokens(hf_model, x), _ours(model, x)
    assert ours.shape == ref.shape
    assert torch.allclose(ours[:, 0], ref[:, 0], atol=ATOL), "CLS token differs"
    assert torch.allclose(ours[:, 1:], ref[:, 1:], atol=ATOL), "patch tokens differ"
    assert not model.training


def test_hf_folder_spec_reads_preprocessor(hf_folder):
    spec = read_backbone_spec(hf_folder)
    assert spec["image_mean"] == [0.5] * 3 and spec["image_std"] == [0.25] * 3
    assert (spec["embed_dim"], spec["num_heads"], spec["depth"], spec["patch_size"], spec["img_size"]) == (
        64, 4, 2, 8, 32)
    assert backbone_spec(load_backbone(hf_folder / "model.safetensors"))["embed_dim"] == 64


def test_dinov2_original_names_match(hf_model, hf_folder, tmp_path):
    path = tmp_path / "backbone_compatible.safetensors"
    save_file(_hf_to_dinov2_names(load_file(hf_folder / "model.safetensors")), path)
    model = load_backbone(path, num_heads=4)  # 64 wide / 4 heads cannot be read from shapes
    for size in (32, 40):
        x = torch.randn(1, 3, size, size)
        assert torch.allclose(_ours(model, x), _hf_tokens(hf_model, x), atol=ATOL)


def test_dinov2_names_infer_standard_heads(tmp_path):
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2, num_register_tokens=2).eval()
    sd = {("register_tokens" if k == "reg_token" else k): v for k, v in model.state_dict().items()}
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, 192), sd["pos_embed"]], dim=1)  # DINOv2: CLS position first
    path = tmp_path / "dinov2.safetensors"
    save_file(sd, path)
    loaded = load_backbone(path)
    spec = backbone_spec(loaded)
    assert (spec["arch"], spec["num_heads"], spec["num_register_tokens"]) == ("vit_tiny", 3, 2)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(_ours(loaded, x), _ours(model, x), atol=1e-5)


@pytest.mark.parametrize(("registers", "layer_scale"), [(0, 1e-5), (2, 1e-5), (0, None)])
def test_export_hf_round_trip(tmp_path, registers, layer_scale):
    torch.manual_seed(registers)
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2, num_register_tokens=registers,
                            layer_scale_init=layer_scale).eval()
    _randomise(model, seed=1)
    export_hf(model, tmp_path / "hf")
    hf = AutoModel.from_pretrained(tmp_path / "hf").eval()
    assert isinstance(hf, Dinov2WithRegistersModel if registers else Dinov2Model)
    for size in (32, 48):
        x = torch.randn(1, 3, size, size)
        assert torch.allclose(_hf_tokens(hf, x), _ours(model, x), atol=ATOL)
    processor = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == list(backbone_spec(model)["image_mean"])
    back = load_backbone(tmp_path / "hf")
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(_ours(back, x), _ours(model, x), atol=ATOL)


def test_hf_with_registers_folder(tmp_path):
    config = Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=8,
                                       image_size=32, num_register_tokens=3)
    hf = Dinov2WithRegistersModel(config)
    _randomise(hf, seed=3)
    hf.eval().save_pretrained(tmp_path)
    model = load_backbone(tmp_path)
    for size in (32, 24):  # 24 shrinks the grid: antialiased like Dinov2WithRegistersModel
        x = torch.randn(1, 3, size, size)
        assert torch.allclose(_ours(model, x), _hf_tokens(hf, x), atol=ATOL)


def test_own_format_round_trip_with_meta(tmp_path):
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2, image_mean=(0.1, 0.2, 0.3)).eval()
    path = save_backbone(model, tmp_path / "b.safetensors", meta={"step": 7})
    loaded = load_backbone(path)
    assert backbone_spec(loaded) == backbone_spec(model) and read_backbone_meta(path) == {"step": 7}
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(_ours(loaded, x), _ours(model, x))
    resized = load_backbone(path, img_size=48)
    assert backbone_spec(resized)["img_size"] == 48
    x48 = torch.randn(1, 3, 48, 48)
    assert torch.allclose(_ours(resized, x48), _ours(model, x48), atol=1e-5)


def test_training_checkpoint(tmp_path):
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=2).eval()
    sd = {f"teacher.backbone._orig_mod.{k}": v for k, v in model.state_dict().items()}  # a compiled teacher
    sd["student.backbone.cls_token"] = torch.zeros(1, 1, 192)
    sd["teacher.dino_head.last_layer.weight"] = torch.zeros(4, 192)
    x = torch.randn(1, 3, 32, 32)
    for i, metadata in enumerate([{"raddino": json.dumps({"backbone": backbone_spec(model), "lr": 1})}, None]):
        (tmp_path / f"step_{i}").mkdir()
        save_file(sd, tmp_path / f"step_{i}" / "tensors.safetensors", metadata=metadata)
        assert torch.equal(_ours(load_backbone(tmp_path / f"step_{i}" / "tensors.safetensors"), x), _ours(model, x))
    assert torch.equal(_ours(load_backbone(tmp_path / "step_0"), x), _ours(model, x))  # checkpoint folder


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="accepted backbone formats"):
        load_backbone(tmp_path / "missing.safetensors")
    pt = tmp_path / "model.pt"
    torch.save({"cls_token": torch.zeros(1)}, pt)
    with pytest.raises(BackboneFormatError, match="pickle"):
        load_backbone(pt)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(BackboneFormatError, match="never loaded"):
        load_backbone(raw)
    (tmp_path / "notes.txt").write_text("hello world")
    with pytest.raises(BackboneFormatError, match="not a safetensors"):
        load_backbone(tmp_path / "notes.txt")
    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(BackboneFormatError, match="no ViT backbone weights"):
        load_backbone(tmp_path / "other.safetensors")
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1)
    wrong = dict(backbone_spec(model), embed_dim=384, num_heads=6)
    save_file(model.state_dict(), tmp_path / "wrong.safetensors", metadata={"raddino": json.dumps(wrong)})
    with pytest.raises(BackboneFormatError, match="do not fit the backbone spec"):
        load_backbone(tmp_path / "wrong.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneFormatError, match="Dinov2 config.json"):
        load_backbone(tmp_path / "empty")
    with pytest.raises(BackboneFormatError, match="single .safetensors"):
        load_backbone(tmp_path)  # several candidate files


def test_file_digest(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"abc")
    assert file_digest(a) == "ba7816bf8f01cfea"  # sha256("abc")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x").write_bytes(b"1")
    (folder / "y").write_bytes(b"2")
    before = file_digest(folder)
    (folder / ".tmp").write_bytes(b"ignored")
    assert file_digest(folder) == before and len(before) == 16
    (folder / "y").write_bytes(b"3")
    assert file_digest(folder) != before
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "nope")


def test_cli_info_convert_export(hf_folder, tmp_path, capsys):
    import argparse

    from raddino_lib.models import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    out_file, out_dir = tmp_path / "own.safetensors", tmp_path / "hf_again"
    for argv in (["backbone-info", str(hf_folder)], ["convert-backbone", str(hf_folder), "--out", str(out_file)],
                 ["export-hf", str(out_file), "--out", str(out_dir)]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    info = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "}")
    assert info["spec"]["embed_dim"] == 64 and info["digest"] == file_digest(hf_folder)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(_ours(load_backbone(out_dir), x), _ours(load_backbone(hf_folder), x), atol=ATOL)


def test_a_header_length_whose_low_byte_is_pickle_magic_still_loads(tmp_path):
    """The header length is the file's first 8 bytes; a low byte of 0x80 (pickle's magic) must not be refused."""
    model = create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "backbone.safetensors"
    for pad in range(0, 256 * 8, 8):
        save_file(sd, path, metadata={"raddino": json.dumps({"backbone": backbone_spec(model)}), "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(_ours(load_backbone(path), x), _ours(model, x))
