"""One typed parameter declaration per notebook: names and types, said once.

The values (smoke-sized defaults) live in each notebook's ``parameters`` cell, where papermill replaces them;
the profiles in ``raddino_lib.config`` hold the values of the other machine sizes. A test checks that each
notebook's ``parameters`` cell declares exactly the fields of its class here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from raddino_lib.params import NotebookParams

__all__ = [
    "AttentionParams",
    "COLIPRIParams",
    "CTPhantomsParams",
    "ClassificationParams",
    "LanguageParams",
    "MetadataParams",
    "PARAMS_BY_NOTEBOOK",
    "PhantomsParams",
    "PretrainParams",
    "ProbeParams",
    "ReportGenerationParams",
    "SSLRunParams",
    "ScalingParams",
    "SegmentationParams",
]


@dataclass(frozen=True)
class PhantomsParams(NotebookParams):  # 00_phantoms_tour
    output_dir: str
    data_dir: str
    n_images: int
    image_size: int
    probe_image_size: int
    seed: int
    balanced: bool
    difficulty_epochs: int
    device: str


@dataclass(frozen=True)
class SSLRunParams(NotebookParams):
    """What every notebook that pretrains with the DINOv2 recipe takes: data, backbone, crops, batch, length, K."""

    output_dir: str
    manifest: str
    arch: str
    patch_size: int
    depth: int
    global_crop_size: int
    local_crop_size: int
    n_local_crops: int
    batch_size: int
    max_steps: int
    out_dim: int
    seed: int
    device: str


@dataclass(frozen=True)
class PretrainParams(SSLRunParams):  # 01_pretrain_rad_dino
    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ("manifest", "init_weights")
    head_hidden_dim: int
    head_bottleneck_dim: int
    centering: str
    momentum_teacher: float
    teacher_temp: float
    layer_scale_init: float
    head_use_bn: bool
    head_center_bottleneck: bool
    photometric: str
    eval_every: int
    init_weights: str
    preset: str


@dataclass(frozen=True)
class LanguageParams(NotebookParams):  # 02_language_supervised
    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ("manifest", "text_init", "image_init")
    output_dir: str
    manifest: str
    arch: str
    patch_size: int
    depth: int
    image_size: int
    batch_size: int
    max_steps: int
    image_init: str
    text_init: str
    seed: int
    device: str


@dataclass(frozen=True)
class ProbeParams(NotebookParams):
    """What every probing notebook (03-06) takes: the data, the encoders to compare, the supervised ceiling,
    the evaluation crop."""

    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ("manifest", "ssl_encoder", "random_encoder", "language_encoder",
                                                 "supervised_encoder")
    output_dir: str
    manifest: str
    ssl_encoder: str
    random_encoder: str
    language_encoder: str
    extra_encoders: str
    supervised_encoder: str
    supervised_steps: int
    feature_cache_dir: str
    image_size: int
    n_boot: int
    seed: int
    device: str


@dataclass(frozen=True)
class ClassificationParams(ProbeParams):  # 03_classification_probe
    pass


@dataclass(frozen=True)
class SegmentationParams(ProbeParams):  # 04_segmentation_probe
    epochs: int
    upernet_epochs: int


@dataclass(frozen=True)
class AttentionParams(ProbeParams):  # 05_attention_maps
    n_images: int
    interactive: bool
    layer: int


@dataclass(frozen=True)
class MetadataParams(ProbeParams):  # 06_metadata_correlation
    embedding: str


@dataclass(frozen=True)
class ReportGenerationParams(ProbeParams):  # 07_report_generation
    EXISTING_PATHS: ClassVar[tuple[str, ...]] = (*ProbeParams.EXISTING_PATHS, "lm_path")
    pool: int
    lm_path: str
    freeze_lm: bool
    vocab_size: int
    max_len: int
    n_embd: int
    n_layer: int
    decoder_steps: int
    oracle_steps: int
    lr: float
    num_beams: int
    max_new_tokens: int


@dataclass(frozen=True)
class ScalingParams(SSLRunParams):  # 08_scaling_and_ablations
    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ("manifest", "supervised_encoder")
    supervised_encoder: str
    feature_cache_dir: str
    recipe: str
    sizes: str
    step_counts: str
    small_crop: int
    groups: str
    arms: str
    seg_epochs: int
    n_boot: int


@dataclass(frozen=True)
class CTPhantomsParams(NotebookParams):  # 09_ct_phantoms_tour
    output_dir: str
    data_dir: str
    n_volumes: int
    size: int
    seed: int
    balanced: bool
    difficulty_epochs: int
    n_boot: int
    device: str


@dataclass(frozen=True)
class COLIPRIParams(NotebookParams):  # 10_colipri_3d
    EXISTING_PATHS: ClassVar[tuple[str, ...]] = ("manifest", "text_init")
    output_dir: str
    manifest: str
    data_dir: str
    n_volumes: int
    phantom_size: int
    balanced: bool
    preset: str
    input_size: int
    patch_size: int
    steps: int
    batch_size: int
    lr: float
    paired_fractions: str
    objective_sets: str
    generation_weight: float
    mim_weight: float
    mask_ratio: float
    batch_paired: float
    text_init: str
    max_new_tokens: int
    n_boot: int
    cnn_epochs: int
    seg_epochs: int
    seed: int
    device: str


PARAMS_BY_NOTEBOOK: dict[str, type[NotebookParams]] = {
    "00_phantoms_tour": PhantomsParams,
    "01_pretrain_rad_dino": PretrainParams,
    "02_language_supervised": LanguageParams,
    "03_classification_probe": ClassificationParams,
    "04_segmentation_probe": SegmentationParams,
    "05_attention_maps": AttentionParams,
    "06_metadata_correlation": MetadataParams,
    "07_report_generation": ReportGenerationParams,
    "08_scaling_and_ablations": ScalingParams,
    "09_ct_phantoms_tour": CTPhantomsParams,
    "10_colipri_3d": COLIPRIParams,
}
