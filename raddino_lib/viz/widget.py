"""Interactive attention explorer for JupyterLab (ipywidgets).

Pick an image, an encoder, a layer, a head (or the mean over heads), a DINO
threshold and the overlay opacity; the panel redraws with the same library
functions the static figures use (:func:`cls_attention`, :func:`draw_overlay`).
Maps are computed once per (encoder, layer) for all loaded images and cached.
Only notebooks run with ``interactive=True`` build it: papermill has no
frontend to draw widgets.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from raddino_lib.viz.attention import cls_attention
from raddino_lib.viz.overlays import display_image, draw_overlay


class AttentionExplorer:
    """Holds the models, the inputs and a cache of maps; :meth:`widget` returns the ipywidgets UI.

    models: encoder -> model; inputs: encoder -> (n, 3, S, S) images normalized for that encoder;
    masks: optional (n, S, S) lesion masks drawn as a contour.
    """

    def __init__(self, models: Mapping[str, nn.Module], inputs: Mapping[str, torch.Tensor],
                 masks: np.ndarray | None = None, image_ids: list[str] | None = None) -> None:
        if set(models) != set(inputs):
            raise ValueError(f"AttentionExplorer: models {sorted(models)} and inputs {sorted(inputs)} differ")
        self.models, self.inputs, self.masks = dict(models), dict(inputs), masks
        self.n_images = len(next(iter(inputs.values())))
        self.image_ids = image_ids or [str(i) for i in range(self.n_images)]
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

    def shape(self, encoder: str) -> tuple[int, int]:
        """(number of blocks, heads per block) of one encoder."""
        blocks = self.models[encoder].blocks
        return len(blocks), blocks[0].attn.num_heads

    def maps(self, encoder: str, layer: int) -> torch.Tensor:
        """(n, heads, h, w) maps of every loaded image, computed once per (encoder, layer)."""
        key = (encoder, layer)
        if key not in self._cache:
            self._cache[key] = cls_attention(self.models[encoder].eval(), self.inputs[encoder], layer)
        return self._cache[key]

    def figure(self, index: int, encoder: str, layer: int, head: str = "mean", keep: float = 0.0,
               alpha: float = 0.5) -> plt.Figure:
        """The image and its overlay for one setting (``head`` "mean" or a head number; ``keep`` 0 = off)."""
        maps = self.maps(encoder, layer)[index]  # (heads, h, w)
        patch_map = maps.mean(0) if head == "mean" else maps[int(head)]
        image = display_image(self.inputs[encoder][index])
        mask = None if self.masks is None else self.masks[index]
        fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.3))
        draw_overlay(axes[0], image, np.zeros((1, 1)), alpha=0.0, mask=mask)
        draw_overlay(axes[1], image, patch_map, alpha=alpha, mask=mask, keep=keep or None)
        axes[0].set_title(self.image_ids[index], fontsize=9)
        axes[1].set_title(f"{encoder} · layer {layer} · head {head}" + (f" · keep {keep:.0%}" if keep else ""),
                          fontsize=9)
        fig.tight_layout()
        return fig

    def widget(self):
        """The ipywidgets UI: sliders / dropdowns above a figure that redraws on every change."""
        import ipywidgets as w

        first = next(iter(self.models))
        depth, heads = self.shape(first)
        controls = {
            "index": w.IntSlider(0, 0, self.n_images - 1, description="image"),
            "encoder": w.Dropdown(options=list(self.models), value=first, description="encoder"),
            "layer": w.IntSlider(depth - 1, 0, depth - 1, description="layer"),
            "head": w.Dropdown(options=["mean"] + [str(h) for h in range(heads)], description="head"),
            "keep": w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="threshold"),
            "alpha": w.FloatSlider(0.5, min=0.0, max=1.0, step=0.05, description="opacity"),
        }

        def fit_to_encoder(change) -> None:  # encoders of other depths or head counts: keep the controls in range
            depth, heads = self.shape(change["new"])
            options = ["mean"] + [str(h) for h in range(heads)]
            kept = controls["head"].value if controls["head"].value in options else "mean"
            controls["head"].options = options  # (resets the value to the first option)
            controls["head"].value = kept
            controls["layer"].value = min(controls["layer"].value, depth - 1)
            controls["layer"].max = depth - 1

        controls["encoder"].observe(fit_to_encoder, names="value")
        out = w.interactive_output(self._show, controls)
        return w.VBox([w.HBox(list(controls.values())[:3]), w.HBox(list(controls.values())[3:]), out])

    def _show(self, **kwargs) -> None:
        fig = self.figure(**kwargs)
        plt.show()
        plt.close(fig)
