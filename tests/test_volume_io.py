"""CT volume IO: NIfTI and DICOM-series round trips against known arrays, orientation, the bad inputs, and the
COLIPRI-style preprocessing against hand-computed values."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from raddino_lib.data.volume_io import (
    VolumeReadError,
    canonical_to_ras,
    check_hu,
    load_volume,
    read_nifti,
    write_nifti,
)
from raddino_lib.data.volume_transforms import CTPreprocess, crop_or_pad, resample, scale_hu

SPACING = (2.5, 0.8, 0.7)  # (z, y, x) mm


def _volume(shape=(6, 5, 4)) -> np.ndarray:
    """(D, H, W) HU with a distinct even value per voxel (air to soft tissue), so any axis mix-up shows (even:
    exact through a RescaleSlope of 2)."""
    d, h, w = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (-1000 + 200 * d + 20 * h + 2 * w).astype(np.float32)


# ----------------------------------------------------------------------------- NIfTI


def test_nifti_round_trip_keeps_values_spacing_and_writes_ras(tmp_path):
    vol = _volume()
    path = write_nifti(tmp_path / "v.nii.gz", vol, SPACING)
    img = nib.load(str(path))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert np.allclose(img.header.get_zooms(), (0.7, 0.8, 2.5))
    # independent reading: nibabel's own array in RAS order equals our canonical array re-ordered by hand
    ras = np.asarray(img.dataobj)
    assert np.array_equal(ras, vol.transpose(2, 1, 0)[::-1, ::-1, :])
    loaded = load_volume(path)
    assert loaded.spacing == pytest.approx(SPACING)
    assert torch.equal(loaded.hu, torch.from_numpy(vol))
    assert write_nifti(tmp_path / "w.nii.gz", vol, SPACING).read_bytes() == path.read_bytes()  # deterministic


def test_nifti_in_another_orientation_reads_to_the_same_canonical_volume(tmp_path):
    vol = _volume()
    ras = canonical_to_ras(vol)  # (X=R, Y=A, Z=S)
    las = ras[::-1]  # first axis towards the patient's Left (radiological storage), affine says so
    affine = np.diag([-0.7, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(las.astype(np.int16), affine), tmp_path / "las.nii.gz")
    spa = np.transpose(ras, (2, 1, 0))[:, ::-1, :]  # axes (S, P, R) → affine with a permutation
    aff2 = np.zeros((4, 4))
    aff2[2, 0], aff2[1, 1], aff2[0, 2], aff2[3, 3] = 2.5, -0.8, 0.7, 1.0
    nib.save(nib.Nifti1Image(np.ascontiguousarray(spa).astype(np.int16), aff2), tmp_path / "spr.nii.gz")
    for name in ("las.nii.gz", "spr.nii.gz"):
        loaded = load_volume(tmp_path / name)
        assert loaded.spacing == pytest.approx(SPACING), name
        assert torch.equal(loaded.hu, torch.from_numpy(vol)), name


def test_nifti_scl_slope_and_intercept_are_applied(tmp_path):
    stored = (_volume() + 1024).astype(np.int16)  # raw values 24..; HU = stored - 1024
    img = nib.Nifti1Image(canonical_to_ras(stored), np.diag([0.7, 0.8, 2.5, 1.0]))
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    assert torch.equal(load_volume(tmp_path / "scaled.nii.gz").hu, torch.from_numpy(_volume()))


@pytest.mark.parametrize("case, match", [
    ("zero_spacing", "spacing .* missing or zero"),
    ("sheared", "not orthogonal"),
    ("oblique", "oblique"),
    ("flipped", "flipped"),
    ("truncated", "truncated"),
    ("not_hu", "without the rescale"),
    ("garbage", "not a CT in Hounsfield"),
])
def test_bad_nifti_files_fail_with_the_file_named(tmp_path, case, match):
    vol = _volume()
    path = tmp_path / f"{case}.nii.gz"
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    data = canonical_to_ras(vol).astype(np.int16)
    if case == "zero_spacing":
        img = nib.Nifti1Image(data, affine)
        img.header["pixdim"][1:4] = (0.7, 0.0, 2.5)
        nib.save(img, path)
    elif case == "sheared":
        affine[0, 2] = 0.5
        nib.save(nib.Nifti1Image(data, affine), path)
    elif case == "oblique":
        c, s = np.cos(0.2), np.sin(0.2)
        affine[:2, :2] = [[0.7 * c, -0.8 * s], [0.7 * s, 0.8 * c]]
        nib.save(nib.Nifti1Image(data, affine), path)
    elif case == "flipped":
        img = nib.Nifti1Image(data, affine)
        img.set_sform(affine, code=1)
        img.set_qform(np.diag([-0.7, 0.8, 2.5, 1.0]), code=1)
        nib.save(img, path)
    elif case == "truncated":
        write_nifti(path, vol, SPACING)
        full = path.read_bytes()
        path.write_bytes(full[: len(full) // 2])
    elif case == "not_hu":
        nib.save(nib.Nifti1Image((data + 1024).astype(np.int16), affine), path)
    else:
        nib.save(nib.Nifti1Image(data.astype(np.float32) * 1e4, affine), path)
    with pytest.raises(VolumeReadError, match=match) as err:
        load_volume(path)
    assert str(path) in str(err.value)


def test_check_hu_sets_padding_to_air_and_refuses_nan():
    out = check_hu(np.array([-3024.0, -1000.0, 40.0]), "x")
    assert out.tolist() == [-1024.0, -1000.0, 40.0]
    with pytest.raises(VolumeReadError, match="NaN"):
        check_hu(np.array([np.nan, -1000.0]), "x")


def test_label_maps_read_as_integers(tmp_path):
    labels = (np.arange(6 * 5 * 4).reshape(6, 5, 4) % 7).astype(np.uint8)
    path = write_nifti(tmp_path / "seg.nii.gz", labels, SPACING, dtype=np.uint8)
    array, spacing = read_nifti(path, labels=True)
    assert array.dtype == np.uint8 and np.array_equal(array, labels) and spacing == pytest.approx(SPACING)


# ----------------------------------------------------------------------------- DICOM series


def _write_series(folder, vol, spacing=SPACING, uid=None, positions=None, iop=(1, 0, 0, 0, 1, 0), names=None,
                  slope=2.0, intercept=-1024.0):
    """One CT slice file per axial slice, written in a shuffled order; stored = (HU - intercept) / slope."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    sz, sy, sx = spacing
    d = vol.shape[0]
    positions = positions if positions is not None else [(-10.0, -20.0, 30.0 + k * sz) for k in range(d)]
    order = np.random.default_rng(0).permutation(len(positions))
    for n, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = names[k] if names else f"IM{n:04d}.dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "CT", uid, int(n + 1)  # numbering is shuffled
        ds.ImagePositionPatient = [float(v) for v in positions[k]]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing = [sy, sx]
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        stored = np.rint((vol[min(k, d - 1)] - intercept) / slope).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(folder / name, enforce_file_format=True)
    return folder


def test_dicom_series_reads_sorted_by_position_with_rescale_and_spacing(tmp_path):
    vol = _volume()
    loaded = load_volume(_write_series(tmp_path / "s", vol))
    # DICOM rows run anterior → posterior and columns right → left (IOP 1,0,0,0,1,0): canonical already,
    # and positions increase towards the head, so the array equals the input slice for slice
    assert loaded.spacing == pytest.approx(SPACING)
    assert torch.equal(loaded.hu, torch.from_numpy(vol))


def test_dicom_series_and_nifti_of_the_same_volume_agree(tmp_path):
    vol = _volume((7, 6, 5))
    from_dicom = load_volume(_write_series(tmp_path / "s", vol))
    from_nifti = load_volume(write_nifti(tmp_path / "v.nii.gz", vol, SPACING))
    assert torch.equal(from_dicom.hu, from_nifti.hu) and from_dicom.spacing == pytest.approx(from_nifti.spacing)


def test_dicom_series_with_slices_running_feet_first_is_reordered(tmp_path):
    vol = _volume()
    positions = [(-10.0, -20.0, 30.0 - k * SPACING[0]) for k in range(vol.shape[0])]  # slice k lower and lower
    loaded = load_volume(_write_series(tmp_path / "s", vol, positions=positions))
    assert torch.equal(loaded.hu, torch.from_numpy(vol[::-1].copy()))


@pytest.mark.parametrize("case, match", [
    ("missing", "missing slice"),
    ("duplicate", "duplicate slice"),
    ("mixed", "mixes 2 series"),
    ("no_spacing", "PixelSpacing is missing"),
    ("bad_orientation", "not two orthogonal unit vectors"),
])
def test_bad_dicom_series_fail_with_the_folder_named(tmp_path, case, match):
    vol = _volume()
    folder = tmp_path / case
    sz = SPACING[0]
    if case == "missing":
        positions = [(-10.0, -20.0, 30.0 + k * sz) for k in (0, 1, 2, 4, 5)]
        _write_series(folder, vol, positions=positions)
    elif case == "duplicate":
        positions = [(-10.0, -20.0, 30.0 + k * sz) for k in (0, 1, 2, 2, 3, 4)]
        _write_series(folder, vol, positions=positions)
    elif case == "mixed":
        _write_series(folder, vol[:3], names=[f"a{k}.dcm" for k in range(3)])
        _write_series(folder, vol[:3], positions=[(-10.0, -20.0, 40.0 + k * sz) for k in range(3)],
                      names=[f"b{k}.dcm" for k in range(3)])
    elif case == "no_spacing":
        _write_series(folder, vol)
        import pydicom

        for path in folder.iterdir():
            ds = pydicom.dcmread(path)
            del ds.PixelSpacing
            ds.save_as(path)
    else:
        _write_series(folder, vol, iop=(1, 0, 0, 0.5, 1, 0))
    with pytest.raises(VolumeReadError, match=match) as err:
        load_volume(folder)
    assert case in str(err.value)


# ----------------------------------------------------------------------------- preprocessing


def test_resample_linear_reproduces_a_linear_ramp_and_keeps_the_field_of_view():
    z = torch.arange(10, dtype=torch.float32)  # values = index; voxel centres at (i + 0.5) * 1 mm
    vol = z.view(10, 1, 1).expand(10, 2, 2).contiguous()
    out = resample(vol, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0))
    # 5 output voxels of 2 mm centred on 1, 3, 5, 7, 9 mm → input index (c / 1) - 0.5
    assert out.shape == (5, 2, 2)
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.5, 2.5, 4.5, 6.5, 8.5]))
    labels = resample(vol.to(torch.uint8), (1.0, 1.0, 1.0), (2.0, 1.0, 1.0), mode="nearest")
    assert labels.dtype == torch.uint8 and labels.shape == (5, 2, 2)


def test_scale_crop_pad_match_the_release_recipe():
    hu = torch.tensor([-2000.0, -1000.0, 0.0, 500.0, 3000.0])
    assert torch.allclose(scale_hu(hu), torch.tensor([-1.0, -1.0, 0.0, 0.5, 1.0]))
    x = torch.arange(4 * 6 * 3, dtype=torch.float32).view(4, 6, 3)
    out = crop_or_pad(x, (2, 4, 5), value=-7.0)
    assert out.shape == (2, 4, 5)
    assert torch.equal(out[:, :, 1:4], x[1:3, 1:5, :])  # centre crop on D and H
    assert (out[:, :, 0] == -7).all() and (out[:, :, 4] == -7).all()  # one voxel of padding on each side of W
    pre = CTPreprocess(spacing=(2.0, 2.0, 2.0), size=(8, 8, 8))
    vol = torch.full((10, 20, 20), 40.0)
    vol[:, :2, :2] = -500.0  # a corner of fat-free air-ish tissue: the minimum after scaling is -0.5
    y = pre(vol, (1.0, 1.0, 1.0))
    # 10 mm along D → 5 voxels of 2 mm, padded to 8 with the minimum (-0.5); 20 mm along H, W → 10, cropped to 8
    assert y.shape == (8, 8, 8)
    assert float(y[4, 4, 4]) == pytest.approx(0.04, abs=1e-6)
    assert float(y[0, 4, 4]) == pytest.approx(-0.5, abs=1e-6) and float(y[7, 4, 4]) == pytest.approx(-0.5, abs=1e-6)


def test_truncated_gzip_is_detected_not_silently_zero_filled(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", _volume((16, 16, 16)), SPACING)
    raw = gzip.decompress(path.read_bytes())
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(raw[:-500]))  # a complete gzip stream of an incomplete NIfTI
    with pytest.raises(VolumeReadError, match="truncated"):
        load_volume(short)
    shutil.rmtree(tmp_path)
