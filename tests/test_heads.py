"""DINOHead: shapes, weight norm fixed to 1, and loading released-style state dicts."""

import pytest
import torch
from safetensors.torch import save_file

from raddino_lib.models.heads import DINOHead, load_dino_head


def _tiny(**kw):
    torch.manual_seed(0)
    return DINOHead(16, out_dim=32, hidden_dim=24, bottleneck_dim=8, **kw)


def test_shapes_and_cosine_logits():
    head = _tiny()
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 32)
    assert out.abs().max() <= 1.0 + 1e-5  # unit prototypes x unit embeddings
    assert head(torch.randn(2, 3, 16)).shape == (2, 3, 32)  # patch tokens (B, N, D)
    assert _tiny(use_bn=True)(torch.randn(2, 3, 16)).shape == (2, 3, 32)
    assert len([m for m in _tiny(nlayers=1).mlp.modules() if isinstance(m, torch.nn.Linear)]) == 1


def test_last_layer_rows_are_unit_and_norm_is_frozen():
    head = _tiny()
    w = head.last_layer.weight  # (out_dim, bottleneck_dim)
    assert torch.allclose(w.norm(dim=1), torch.ones(32), atol=1e-5)
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    head(torch.randn(4, 16)).sum().backward()
    assert head.last_layer.parametrizations.weight.original1.grad is not None
    assert g.grad is None


def test_load_parametrized_roundtrip(tmp_path):
    head = _tiny()
    path = tmp_path / "head.safetensors"
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    loaded = load_dino_head(path, in_dim=16)
    assert (loaded.out_dim, loaded.hidden_dim, loaded.bottleneck_dim, loaded.nlayers) == (32, 24, 8, 3)
    x = torch.randn(3, 16)
    assert torch.allclose(loaded(x), head(x), atol=1e-6)
    with pytest.raises(ValueError, match="out_dim=32"):
        load_dino_head(path, out_dim=65536)


def test_load_release_style_keys(tmp_path):
    """Keys as in DINOv2 / RAD-DINO ``dino_head.safetensors``: mlp.0/2/4 and last_layer.weight_g/_v."""
    g = torch.Generator().manual_seed(0)
    state = {
        "mlp.0.weight": torch.randn(24, 16, generator=g), "mlp.0.bias": torch.randn(24, generator=g),
        "mlp.2.weight": torch.randn(24, 24, generator=g), "mlp.2.bias": torch.randn(24, generator=g),
        "mlp.4.weight": torch.randn(8, 24, generator=g), "mlp.4.bias": torch.randn(8, generator=g),
        "last_layer.weight_g": torch.ones(32, 1), "last_layer.weight_v": torch.randn(32, 8, generator=g),
    }
    path = tmp_path / "dino_head.safetensors"
    save_file(state, str(path))
    head = load_dino_head(path)
    x = torch.randn(2, 16, generator=g)
    h = torch.nn.functional.gelu(x @ state["mlp.0.weight"].T + state["mlp.0.bias"])
    h = torch.nn.functional.gelu(h @ state["mlp.2.weight"].T + state["mlp.2.bias"])
    h = torch.nn.functional.normalize(h @ state["mlp.4.weight"].T + state["mlp.4.bias"], dim=-1)
    v = state["last_layer.weight_v"]
    expected = h @ (v / v.norm(dim=1, keepdim=True)).T
    assert torch.allclose(head(x), expected, atol=1e-5)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dino_head"):
        load_dino_head(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("kw", [{"nlayers": 1}, {"use_bn": True}, {"mlp_bias": False}])
def test_roundtrip_variants_and_prefix(tmp_path, kw):
    head = _tiny(**kw).eval()
    path = tmp_path / "ckpt.safetensors"
    state = {f"teacher.dino_head.{k}": v.contiguous() for k, v in head.state_dict().items()}
    state["student.other.weight"] = torch.zeros(2, 2)
    save_file(state, str(path))
    loaded = load_dino_head(path, prefix="teacher.dino_head.").eval()
    assert (loaded.nlayers, loaded.use_bn) == (head.nlayers, head.use_bn)
    x = torch.randn(3, 16)
    assert torch.allclose(loaded(x), head(x), atol=1e-6)
    with pytest.raises(ValueError, match="prefix"):
        load_dino_head(path, prefix="nothing.")
