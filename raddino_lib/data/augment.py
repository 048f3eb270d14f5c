"""X-ray multi-crop augmentation (DINOv2 recipe without colour) and the multi-crop + iBOT-mask collate.

Per image: 2 global crops and ``n_local_crops`` local crops, each a random resized crop (bicubic) of the
grayscale image, flipped horizontally with p = 0.5, then grayscale photometric changes — brightness and
contrast (p = 0.8, DINOv2's colour-jitter strengths 0.4 / 0.4 with hue and saturation dropped), gamma, Gaussian
blur, sharpness, a little Gaussian noise — then replicated to 3 channels and normalised.

DINOv2's asymmetric per-crop probabilities are kept: blur p = 1.0 on global crop 1, 0.1 on global crop 2 and
0.5 on local crops; global crop 2 gets sharpening (p = 0.2) where DINOv2 has solarisation (p = 0.2), which
has no radiographic meaning. Blur sigmas are given in pixels at 224 px (DINOv2: 0.1-2.0) and scaled with the
crop size. Gamma, sharpness and noise settings are this package's choices for radiographs, not published
RAD-DINO values.

Randomness comes from a ``torch.Generator`` (or ``seed``) when given, else from torch's global RNG, which the
DataLoader seeds differently in every worker: same generator state → same crops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

try:
    from raddino_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
except ImportError:  # pragma: no cover - transforms.py is optional for this module
    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["PHOTOMETRIC_LEVELS", "MultiCropAugmentation", "collate_multicrop", "rad_dino_augmentation"]

# Named strengths of the photometric changes (``MultiCropAugmentation(**PHOTOMETRIC_LEVELS[name])``):
# "full" is the recipe above; "lite" keeps blur and sharpening but jitters brightness and contrast by 0.1 and
# drops gamma and noise; "none" keeps only crops and flips. Short runs compare them (notebook 01's sweep).
PHOTOMETRIC_LEVELS: dict[str, dict] = {
    "full": {},
    "lite": {"brightness": 0.1, "contrast": 0.1, "gamma_prob": 0.0, "noise_prob": 0.0},
    "none": {"jitter_prob": 0.0, "gamma_prob": 0.0, "blur_sigma": (0.0, 0.0), "sharpness_prob": 0.0,
             "noise_prob": 0.0},
}

Gen = torch.Generator | None


def _uniform(low: float, high: float, g: Gen) -> float:
    return low + (high - low) * torch.rand((), generator=g).item()


def _coin(p: float, g: Gen) -> bool:
    return p > 0 and torch.rand((), generator=g).item() < p


def _crop_box(height: int, width: int, scale: tuple[float, float], g: Gen) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop parameters (top, left, h, w); aspect ratio log-uniform in [3/4, 4/3]."""
    area = height * width
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target_area = area * _uniform(*scale, g)
        ratio = math.exp(_uniform(*log_ratio, g))
        w = int(round(math.sqrt(target_area * ratio)))
        h = int(round(math.sqrt(target_area / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=g))
            left = int(torch.randint(0, width - w + 1, (), generator=g))
            return top, left, h, w
    h, w = min(height, width), min(height, width)  # fallback: central square
    return (height - h) // 2, (width - w) // 2, h, w


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, S, S), kernel 2*ceil(3 sigma)+1 (at most S), reflect padding."""
    size = x.shape[-1]
    k = min(2 * math.ceil(3 * sigma) + 1, size if size % 2 else size - 1)
    if k < 3 or sigma <= 0:
        return x
    t = torch.arange(k, dtype=x.dtype) - (k - 1) / 2
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (k,)
    pad = (k - 1) // 2
    y = F.pad(x.unsqueeze(0), (pad, pad, pad, pad), mode="reflect")[0]  # (1, S + 2p, S + 2p)
    weights = kernel.tolist()
    # shifted sums: several times faster than a single-channel conv2d on CPU
    y = sum(w * y[..., i : i + size] for i, w in enumerate(weights))  # along width: (1, S + 2p, S)
    return sum(w * y[..., i : i + x.shape[-2], :] for i, w in enumerate(weights))  # along height: (1, S, S)


class MultiCropAugmentation:
    """(1, H, W) float image in [0, 1] → {"global_crops": 2 × (3, G, G), "local_crops": N × (3, L, L)}.

    Args:
        global_crops_scale / local_crops_scale: area fraction ranges of the crops (DINOv2: 0.32-1 / 0.05-0.32).
        n_local_crops: local crops per image (8; 0 disables them).
        global_crop_size / local_crop_size: output sides G and L (224 / 98; multiples of the patch size).
        mean / std: normalisation of the 3 replicated channels (the backbone's pretraining values).
        hflip_prob: horizontal flip probability (0.5; set 0 to keep laterality, e.g. heart on the right).
        brightness / contrast: multiplicative jitter strengths (0.4 each), applied together with jitter_prob.
        gamma_range / gamma_prob: gamma drawn log-uniformly in the range (mimics exposure / windowing).
        blur_sigma: Gaussian blur sigma range in pixels at 224 px (scaled with the crop size); (0, 0) = no blur.
        sharpness_range / sharpness_prob: sharpness factor (> 1 sharpens) for global crop 2.
        noise_std / noise_prob: additive Gaussian noise with std uniform in [0, noise_std].
    """

    def __init__(
        self,
        global_crops_scale: tuple[float, float] = (0.32, 1.0),
        local_crops_scale: tuple[float, float] = (0.05, 0.32),
        n_local_crops: int = 8,
        global_crop_size: int = 224,
        local_crop_size: int = 98,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        hflip_prob: float = 0.5,
        brightness: float = 0.4,
        contrast: float = 0.4,
        jitter_prob: float = 0.8,
        gamma_range: tuple[float, float] = (0.7, 1.4),
        gamma_prob: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        sharpness_range: tuple[float, float] = (1.5, 3.0),
        sharpness_prob: float = 0.2,
        noise_std: float = 0.02,
        noise_prob: float = 0.2,
    ) -> None:
        for name, (low, high) in (("global_crops_scale", global_crops_scale), ("local_crops_scale", local_crops_scale)):
            if not 0 < low <= high <= 1:
                raise ValueError(f"MultiCropAugmentation: {name} must be (low, high), 0 < low <= high <= 1")
        if global_crop_size < 1 or local_crop_size < 1 or n_local_crops < 0:
            raise ValueError("MultiCropAugmentation: crop sizes must be >= 1 and n_local_crops >= 0")
        mean_t, std_t = torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
        if mean_t.numel() not in (1, 3) or std_t.numel() not in (1, 3) or (std_t <= 0).any():
            raise ValueError(f"MultiCropAugmentation: mean/std need 1 or 3 values, std > 0; got {mean}, {std}")
        self.global_crops_scale, self.local_crops_scale = tuple(global_crops_scale), tuple(local_crops_scale)
        self.n_local_crops = n_local_crops
        self.global_crop_size, self.local_crop_size = global_crop_size, local_crop_size
        self.mean = mean_t.expand(3).reshape(3, 1, 1).clone()
        self.std = std_t.expand(3).reshape(3, 1, 1).clone()
        self.hflip_prob, self.jitter_prob = hflip_prob, jitter_prob
        self.brightness, self.contrast = brightness, contrast
        self.gamma_range, self.gamma_prob = gamma_range, gamma_prob
        self.blur_sigma = blur_sigma
        self.sharpness_range, self.sharpness_prob = sharpness_range, sharpness_prob
        self.noise_std, self.noise_prob = noise_std, noise_prob

    def __repr__(self) -> str:
        return (
            f"MultiCropAugmentation(global {self.global_crop_size}px {self.global_crops_scale}, "
            f"{self.n_local_crops} local {self.local_crop_size}px {self.local_crops_scale})"
        )

    # ----- one crop -----

    def _photometric(self, x: torch.Tensor, size: int, blur_p: float, sharp_p: float, g: Gen) -> torch.Tensor:
        """(1, S, S) in [0, 1] → (1, S, S) in [0, 1]: jitter, gamma, blur, sharpness, noise."""
        if _coin(self.jitter_prob, g):
            x = x * _uniform(1 - self.brightness, 1 + self.brightness, g)
            c = _uniform(1 - self.contrast, 1 + self.contrast, g)
            x = (x.mean() + (x - x.mean()) * c).clamp(0, 1)
        if _coin(self.gamma_prob, g):
            x = x.clamp(min=0).pow(math.exp(_uniform(*(math.log(v) for v in self.gamma_range), g)))
        if self.blur_sigma[1] > 0 and _coin(blur_p, g):
            x = _gaussian_blur(x, _uniform(*self.blur_sigma, g) * size / 224)
        if _coin(sharp_p, g):
            x = TF.adjust_sharpness(x.clamp(0, 1), _uniform(*self.sharpness_range, g))
        if _coin(self.noise_prob, g):
            noise = torch.randn(x.shape, generator=g) if g is not None else torch.randn(x.shape)
            x = x + noise * _uniform(0.0, self.noise_std, g)
        return x.clamp(0, 1)

    def _crop(self, image: torch.Tensor, size: int, scale: tuple[float, float], blur_p: float, sharp_p: float,
              g: Gen) -> torch.Tensor:
        """(1, H, W) → (3, size, size) normalised."""
        top, left, h, w = _crop_box(image.shape[-2], image.shape[-1], scale, g)
        patch = image[:, top : top + h, left : left + w].unsqueeze(0)  # (1, 1, h, w)
        x = F.interpolate(patch, size=(size, size), mode="bicubic", align_corners=False, antialias=True)[0]
        x = x.clamp(0, 1)  # bicubic overshoots; (1, size, size)
        if _coin(self.hflip_prob, g):
            x = x.flip(-1)
        x = self._photometric(x, size, blur_p, sharp_p, g)
        return (x.expand(3, -1, -1) - self.mean) / self.std  # (3, size, size)

    # ----- all crops -----

    def __call__(
        self, image: torch.Tensor, generator: torch.Generator | None = None, seed: int | None = None
    ) -> dict[str, list[torch.Tensor]]:
        """image: (1, H, W) or (H, W) float in [0, 1] (a (3, H, W) image is averaged to gray first).

        Each image is min-max scaled to [0, 1] first (as the evaluation transform does). Pass ``generator`` or
        ``seed`` for reproducible crops.
        """
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        if not torch.is_floating_point(image):
            raise TypeError(f"MultiCropAugmentation expects a float image in [0, 1], got dtype {image.dtype}")
        if image.ndim == 2:
            image = image.unsqueeze(0)
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"MultiCropAugmentation expects (1, H, W) grayscale, got shape {tuple(image.shape)}")
        image = image.float().mean(dim=0, keepdim=True)  # (1, H, W)
        lo, hi = image.min(), image.max()
        image = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
        g, gs, ls = generator, self.global_crop_size, self.local_crop_size
        global_crops = [
            self._crop(image, gs, self.global_crops_scale, blur_p=1.0, sharp_p=0.0, g=g),
            self._crop(image, gs, self.global_crops_scale, blur_p=0.1, sharp_p=self.sharpness_prob, g=g),
        ]
        local_crops = [
            self._crop(image, ls, self.local_crops_scale, blur_p=0.5, sharp_p=0.0, g=g)
            for _ in range(self.n_local_crops)
        ]
        return {"global_crops": global_crops, "local_crops": local_crops}


def rad_dino_augmentation(
    global_crop_size: int = 518,
    local_crop_size: int = 224,
    n_local_crops: int = 8,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> MultiCropAugmentation:
    """RAD-DINO-style preset: DINOv2's crop scales (0.32-1 / 0.05-0.32) and 8 local crops at RAD-DINO's 518 px.

    Published (PAPERS.md): RAD-DINO continues DINOv2-base pretraining at 518 px on chest X-rays. Chosen here, not
    published: 224 px local crops (scaled with the global ones), and the grayscale photometric set of
    ``MultiCropAugmentation`` (no hue/saturation/solarisation; gamma, sharpness, noise added). Normalisation
    defaults to ImageNet's values, which the RAD-DINO processor config also lists; pass the checkpoint's own.
    """
    return MultiCropAugmentation(
        global_crop_size=global_crop_size,
        local_crop_size=local_crop_size,
        n_local_crops=n_local_crops,
        mean=mean,
        std=std,
    )


# ===== collate =====


def collate_multicrop(
    samples: Sequence[dict | tuple],
    mask_generator: Callable[..., object],
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
    mask_probability: float = 0.5,
    patch_size: int | None = None,
    n_tokens: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor | int]:
    """Stack crops crop-major and draw iBOT masks for the global crops (DINOv2 ``collate_data_and_cast``).

    samples: B items, each the dict from ``MultiCropAugmentation`` (or a tuple whose first element is one).
    mask_generator: ``MaskingGenerator``-like callable ``(num_masking_patches) -> (h, w) bool`` (also given
    ``generator=`` when one is passed here, for reproducible masks).
    n_tokens: patches per global crop (default: from ``patch_size`` and the crop size, else the generator's grid).

    ``int(2B * mask_probability)`` global crops are masked; their ratios are drawn uniformly in consecutive
    slices of ``linspace(min, max, n_masked + 1)`` so the batch spans the whole range; the masks are shuffled.

    Returns collated_global_crops (2B, 3, G, G) [crop 0 of every image, then crop 1], collated_local_crops
    (NB, 3, L, L), collated_masks (2B, n_tokens) bool, mask_indices_list (M,) indices into the flattened masks,
    n_masked_patches (1,) long = M, masks_weight (M,) = 1 / masked patches of the patch's crop, upperbound int
    (>= M; an upper bound to pad gathered tokens to a fixed size).
    """
    if not samples:
        raise ValueError("collate_multicrop: empty batch")
    crops = [s[0] if isinstance(s, tuple | list) else s for s in samples]
    n_global, n_local = len(crops[0]["global_crops"]), len(crops[0]["local_crops"])
    global_crops = torch.stack([c["global_crops"][i] for i in range(n_global) for c in crops])  # (2B, 3, G, G)
    if n_local:
        local_crops = torch.stack([c["local_crops"][i] for i in range(n_local) for c in crops])  # (NB, 3, L, L)
    else:
        local_crops = global_crops.new_zeros((0, *global_crops.shape[1:]))
    b = global_crops.shape[0]
    if n_tokens is None:
        if patch_size is not None:
            n_tokens = (global_crops.shape[-2] // patch_size) * (global_crops.shape[-1] // patch_size)
        else:
            n_tokens = int(mask_generator.num_patches)  # type: ignore[attr-defined]
    n_masked_crops = int(b * mask_probability)
    probs = torch.linspace(*mask_ratio_min_max, n_masked_crops + 1)
    masks, upperbound = [], 0
    for i in range(n_masked_crops):
        ratio = _uniform(probs[i].item(), probs[i + 1].item(), generator)
        extra = {} if generator is None else {"generator": generator}  # MaskingGenerator accepts one
        mask = mask_generator(int(n_tokens * ratio), **extra)
        masks.append(torch.as_tensor(mask, dtype=torch.bool).flatten())
        upperbound += int(n_tokens * probs[i + 1].item())
    masks += [torch.zeros(n_tokens, dtype=torch.bool) for _ in range(b - n_masked_crops)]
    order = torch.randperm(b, generator=generator) if generator is not None else torch.randperm(b)
    collated_masks = torch.stack([masks[i] for i in order.tolist()])  # (2B, n_tokens)
    if collated_masks.shape[1] != n_tokens:
        raise ValueError(f"collate_multicrop: masks have {collated_masks.shape[1]} patches, expected {n_tokens}")
    mask_indices_list = collated_masks.flatten().nonzero().flatten()  # (M,)
    masks_weight = (1 / collated_masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(collated_masks)[collated_masks]
    return {
        "collated_global_crops": global_crops,
        "collated_local_crops": local_crops,
        "collated_masks": collated_masks,
        "mask_indices_list": mask_indices_list,
        "masks_weight": masks_weight,
        "upperbound": upperbound,
        "n_masked_patches": torch.full((1,), fill_value=mask_indices_list.shape[0], dtype=torch.long),
    }
