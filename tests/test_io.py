"""Image IO, evaluation transform and ManifestDataset: formats, errors, geometry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from raddino_lib.data.datasets import ManifestDataset
from raddino_lib.data.io import ImageReadError, load_image, load_mask
from raddino_lib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    eval_transform_for,
    rad_dino_transform,
)


def _ramp(h: int = 8, w: int = 12) -> np.ndarray:
    return np.arange(h * w, dtype=np.float64).reshape(h, w) / (h * w - 1)  # [0, 1]


def _write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2", pixel_data: bool = True, **tags):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if pixel_data:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------- PNG / JPEG


def test_png_8bit_scaled_by_255(tmp_path):
    pixels = (_ramp() * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (1, 8, 12) and x.dtype == torch.float32
    np.testing.assert_allclose(x[0].numpy(), pixels / 255.0, atol=1e-6)


def test_png_16bit_keeps_full_precision(tmp_path):
    pixels = (_ramp() * 65535).round().astype(np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    x = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(x[0].numpy(), pixels / 65535.0, atol=1e-6)
    assert len(np.unique(x.numpy())) == 96  # not quantised to 8 bits
    dark = np.array([[0, 100], [200, 250]], dtype=np.uint16)  # a dark 16-bit image is not mistaken for 8-bit
    Image.fromarray(dark).save(tmp_path / "dark.png")
    np.testing.assert_allclose(load_image(tmp_path / "dark.png")[0].numpy(), dark / 65535.0, atol=1e-7)


def test_jpeg_and_rgb_become_grey(tmp_path):
    grey = (_ramp(16, 16) * 255).astype(np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "a.jpg", quality=95)
    x = load_image(tmp_path / "a.jpg")
    assert x.shape == (1, 16, 16)
    assert float((x[0].numpy() - grey / 255.0).__abs__().mean()) < 0.02


def test_missing_and_truncated_files_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png.*not found"):
        load_image(tmp_path / "nope.png")
    Image.fromarray((_ramp(64, 64) * 255).astype(np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png.*truncated"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.png"):
        load_image(tmp_path / "text.png")


def test_mask_is_binary(tmp_path):
    m = np.zeros((6, 7), np.uint8)
    m[2:4, 1:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.shape == (6, 7) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask.sum() == 8


# ----------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2_min_max(tmp_path):
    raw = (_ramp() * 4000).round()
    x = load_image(_write_dicom(tmp_path / "a.dcm", raw))
    np.testing.assert_allclose(x[0].numpy(), raw / 4000, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = (_ramp() * 4000).round()
    x = load_image(_write_dicom(tmp_path / "a.dcm", raw, photometric="MONOCHROME1"))
    np.testing.assert_allclose(x[0].numpy(), 1 - raw / 4000, atol=1e-6)


def test_dicom_rescale_and_window(tmp_path):
    raw = (_ramp() * 4000).round()
    # modality value = 2 * raw - 1000 in [-1000, 7000]; window [1000, 3000] → linear inside, clipped outside
    path = _write_dicom(tmp_path / "a.dcm", raw, RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=2000,
                        WindowWidth=2000)
    x = load_image(path)[0].numpy()
    value = 2 * raw - 1000
    expected = np.clip(((value - 1999.5) / 1999 + 0.5), 0, 1)  # DICOM linear window (C.11.2.1.2)
    np.testing.assert_allclose(x, expected, atol=1e-3)
    assert x.min() == 0 and x.max() == 1


def test_dicom_voi_lut_sequence(tmp_path):
    item = pydicom.Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first input value 0, 8-bit output
    item.add_new(0x00283006, "US", [0, 10, 200, 255])  # LUTData
    raw = np.array([[0, 1], [2, 3], [5, 1]], dtype=np.float64)  # 5 is past the table → its last entry
    x = load_image(_write_dicom(tmp_path / "a.dcm", raw, VOILUTSequence=[item]))[0].numpy()
    np.testing.assert_allclose(x, np.array([[0, 10], [200, 255], [255, 10]]) / 255, atol=1e-6)


def test_dicom_colour_becomes_grey(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0], rgb[1, 2] = 255, (30, 60, 90)
    path = _write_dicom(tmp_path / "rgb.dcm", np.zeros((2, 3)), SamplesPerPixel=3, PhotometricInterpretation="RGB",
                        PlanarConfiguration=0, BitsAllocated=8, BitsStored=8, HighBit=7, PixelData=rgb.tobytes())
    np.testing.assert_allclose(load_image(path)[0].numpy(), [[1, 0, 0], [0, 0, 60 / 255]], atol=1e-6)


def test_dicom_without_suffix_detected_by_preamble(tmp_path):
    raw = (_ramp() * 100).round()
    x = load_image(_write_dicom(tmp_path / "image_0001", raw))
    np.testing.assert_allclose(x[0].numpy(), raw / 100, atol=1e-6)


def test_dicom_without_pixels_or_truncated(tmp_path):
    path = _write_dicom(tmp_path / "sr.dcm", np.zeros((2, 2)), pixel_data=False)
    with pytest.raises(ImageReadError, match="sr.dcm.*no pixel data"):
        load_image(path)
    full = _write_dicom(tmp_path / "full.dcm", (_ramp(32, 32) * 100).round()).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(full[: len(full) - 1000])
    with pytest.raises(ImageReadError, match="cut.dcm"):
        load_image(tmp_path / "cut.dcm")
    assert pydicom.__version__  # pydicom is the reader under test


# ----------------------------------------------------------------------------- transforms


def test_eval_transform_shape_minmax_and_normalization():
    image = torch.rand(1, 40, 60) * 0.5 + 0.2
    out = EvalTransform(32)(image)
    assert out.shape == (3, 32, 32)
    unnorm = out * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert torch.allclose(unnorm.amin(dim=(1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(unnorm.amax(dim=(1, 2)), torch.ones(3), atol=1e-5)
    assert torch.allclose(unnorm[0], unnorm[2], atol=1e-6)


def test_mask_follows_the_image_geometry():
    # a bright square in a wide image: after resize + center crop, the mask must cover the same pixels
    image = torch.zeros(1, 64, 128)
    image[:, 16:48, 56:72] = 1.0
    t = EvalTransform(32, mean=(0.0,), std=(1.0,))
    out, mask = t(image)[0], t.mask(image[0])
    assert mask.shape == (32, 32)
    assert ((out > 0.5) == (mask > 0.5)).float().mean() > 0.98
    assert mask[8:24, 12:20].min() == 1 and mask.sum() == 16 * 8


def test_a_stack_of_masks_resizes_as_each_mask_alone():
    g = torch.Generator().manual_seed(0)
    stack = (torch.rand(5, 48, 80, generator=g) > 0.7).float()  # a wide image: resize and center crop
    t = EvalTransform(20, mean=(0.0,), std=(1.0,))
    assert torch.equal(t.masks(stack), torch.stack([t.mask(m) for m in stack]))
    assert t.masks(stack[:0]).shape == (0, 20, 20)  # no structure: an empty stack
    with pytest.raises(ValueError, match=r"\(K, H, W\) stack"):
        t.masks(stack[0])


@pytest.mark.parametrize("workers", [1, 2])
def test_load_masks_equals_the_datasets_items_in_manifest_order(tmp_path, workers):
    from raddino_lib.data.manifest import read_manifest
    from raddino_lib.data.masks import load_masks, mask_structures
    from raddino_lib.data.phantoms import generate

    df = read_manifest(generate(tmp_path / "p", n=20, size=48, seed=0, balanced=True))
    names = mask_structures(df)
    masks, images = load_masks(df, names, 32, num_workers=workers, rows_per_job=6)  # 4 blocks
    ds = ManifestDataset(df, transform=EvalTransform(32, mean=(0.0,), std=(1.0,)), masks=names)
    assert masks.shape == (20, len(names), 32, 32) and masks.dtype == np.uint8 and images.shape == (20, 32, 32)
    for i in range(len(df)):  # the per-structure route, one item at a time
        item = ds[i]
        assert np.array_equal(images[i], item["image"][0].numpy())
        assert np.array_equal(masks[i], np.stack([item[f"mask_{s}"].numpy() > 0.5 for s in names]))
    assert masks[:, names.index("left_lung")].any(axis=(1, 2)).all()  # every phantom has a left lung


def test_rad_dino_preset_is_518():
    assert rad_dino_transform().size == 518
    assert rad_dino_transform()(torch.rand(1, 600, 520)).shape == (3, 518, 518)


def test_eval_transform_for_reads_metadata(tmp_path):
    from safetensors.torch import save_file

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.53, 0.53, 0.53], "image_std": [0.26, 0.26, 0.26], "crop_size": {"height": 518}}))
    t = eval_transform_for(hf, 64)
    assert t.mean == (0.53, 0.53, 0.53) and t.std == (0.26, 0.26, 0.26) and t.size == 64
    assert eval_transform_for(hf).size == 518
    save_file({"w": torch.zeros(1)}, hf / "model.safetensors")  # the weights file of an HF folder
    assert eval_transform_for(hf / "model.safetensors", 64).mean == (0.53, 0.53, 0.53)
    st = tmp_path / "b.safetensors"
    save_file({"w": torch.zeros(1)}, st, metadata={"raddino": json.dumps({"image_mean": [0.4] * 3,
                                                                           "image_std": [0.2] * 3})})
    assert eval_transform_for(st, 32).mean == (0.4, 0.4, 0.4)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, plain)
    assert eval_transform_for(plain, 32).mean == IMAGENET_MEAN
    model = torch.nn.Linear(2, 2)
    model.pretrained_cfg = {"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5)}
    assert eval_transform_for(model, 32).mean == (0.1, 0.2, 0.3)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        eval_transform_for(tmp_path / "missing.safetensors", 32)


# ----------------------------------------------------------------------------- dataset


def test_manifest_dataset_items_and_split(tmp_path):
    rows = []
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((20, 24)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        m = np.zeros((20, 24), np.uint8)
        m[5:15, 6:18] = 255
        Image.fromarray(m).save(tmp_path / f"m{i}.png")
        rows.append({"image_id": f"im{i}", "abs_path": str(tmp_path / f"{i}.png"), "path": f"{i}.png",
                     "split": "train" if i % 2 else "test", "mask_heart": f"m{i}.png" if i < 3 else "",
                     "abs_mask_heart": str(tmp_path / f"m{i}.png") if i < 3 else ""})
    df = pd.DataFrame(rows)
    ds = ManifestDataset(df, split="train", transform=EvalTransform(16), masks=("heart",))
    assert len(ds) == 2 and [ds[j]["index"] for j in range(2)] == [1, 3]
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["image_id"] == "im1"
    assert item["mask_heart"].shape == (16, 16) and item["mask_heart"].sum() > 0
    assert ds[1]["mask_heart"].sum() == 0  # empty cell → absent
    raw = ManifestDataset(df)[0]
    assert raw["image"].shape == (1, 20, 24)
    with pytest.raises(KeyError, match="mask_left_lung"):
        ManifestDataset(df, masks=("left_lung",))


def test_eval_transform_for_package_backbones(tmp_path):
    backbone = pytest.importorskip("raddino_lib.models.backbone")
    weights = pytest.importorskip("raddino_lib.models.weights")
    model = backbone.create_backbone("vit_tiny", patch_size=8, img_size=32, depth=1, image_mean=(0.5,) * 3,
                                     image_std=(0.25,) * 3)
    assert eval_transform_for(model).mean == (0.5, 0.5, 0.5) and eval_transform_for(model).size == 32
    path = weights.save_backbone(model, tmp_path / "b.safetensors")
    t = eval_transform_for(path, 48)
    assert t.std == (0.25, 0.25, 0.25) and t.size == 48
