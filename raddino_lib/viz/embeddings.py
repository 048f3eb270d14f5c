"""Pictures of what frozen embeddings encode about patients.

* :func:`embed_2d` — a 2-D map of the features: UMAP (McInnes et al., 2018;
  ``random_state`` fixed, so the picture is reproducible) or PCA when there are
  too few images for a neighbour graph; :func:`embed_rows` maps several encoders side by side.
* :func:`plot_embedding` — that map coloured by age, sex, site and finding:
  structure that follows age or sex, which reports never mention, is the
  RAD-DINO claim made visible.
* :func:`pc_metadata_correlation` / :func:`plot_pc_heatmap` — Pearson
  correlation of the leading principal components with each metadata field.
* :func:`plot_age_predictions` — predicted vs true age of the age probe.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from raddino_lib.data.schema import CXR14_FINDINGS, label_column

MIN_UMAP_SAMPLES = 20  # below this a k-NN graph is meaningless: PCA instead
AUTO_UMAP_SAMPLES = 500  # method "auto": UMAP from this many images (its first call spends ~20 s compiling)


def embed_2d(features: np.ndarray, seed: int = 0, method: str = "umap",
             n_neighbors: int = 15) -> tuple[np.ndarray, str]:
    """(N, D) features → ((N, 2) coordinates, a label naming the method actually used).

    method: "umap" (PCA below ``MIN_UMAP_SAMPLES`` images), "pca", or "auto" (UMAP from
    ``AUTO_UMAP_SAMPLES`` images, PCA below: keeps smoke runs within their time budget). The label says
    when PCA replaced UMAP and why.
    """
    if method not in ("umap", "pca", "auto"):
        raise ValueError(f"embed_2d: method must be 'umap', 'pca' or 'auto', got {method!r}")
    X = StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))
    threshold = AUTO_UMAP_SAMPLES if method == "auto" else MIN_UMAP_SAMPLES
    if method != "pca" and len(X) >= threshold:
        import umap  # slow import (numba): only when used

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": determinism is the point
            reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(X) - 1), random_state=seed)
            return reducer.fit_transform(X), "UMAP"
    note = "" if method == "pca" else f" (fewer than {threshold} images: PCA instead of UMAP)"
    return PCA(n_components=2, random_state=seed).fit_transform(X), "PCA" + note


def embed_rows(features: Mapping[str, np.ndarray], seed: int = 0, method: str = "umap",
               n_neighbors: int = 15) -> dict[str, tuple[np.ndarray, str]]:
    """``embed_2d`` of every row (name -> (N, D) features); on a CPU the rows run side by side, one core each
    (``parallel.map_jobs``). UMAP's first call in a process compiles its kernels (~20 s): two workers pay that
    once each, at the same time, and then share the maps."""
    from raddino_lib.parallel import map_jobs

    names = list(features)
    done = map_jobs(lambda name: embed_2d(features[name], seed, method, n_neighbors), names, names=names, log=None)
    return dict(zip(names, done, strict=True))


def map_sample(n: int, max_points: int = 1000, seed: int = 0) -> np.ndarray:
    """Sorted row positions of at most ``max_points`` of ``n`` images, drawn without replacement (all when fewer):
    a 2-D map of a thousand images shows the same organisation as one of all, at a fraction of UMAP's cost."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def finding_category(manifest_df: pd.DataFrame) -> pd.Series:
    """Per image: the single positive finding, "No Finding", or "multiple" (for colouring)."""
    cols = [label_column(f) for f in CXR14_FINDINGS if label_column(f) in manifest_df.columns]
    labels = manifest_df[cols].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() == 1
    names = np.array([c[len("label_"):] for c in cols], dtype=object)
    out = [names[row][0] if row.sum() == 1 else ("multiple" if row.sum() > 1 else "No Finding") for row in labels]
    return pd.Series(out, index=manifest_df.index, name="finding")


def plot_embedding(coords: np.ndarray, manifest_df: pd.DataFrame, method: str, title: str = "",
                   colour_by: Sequence[str] = ("age", "sex", "site", "finding")) -> plt.Figure:
    """One scatter panel per field; numeric fields get a continuous palette. coords: (N, 2) in manifest order."""
    data = manifest_df.reset_index(drop=True).assign(x=coords[:, 0], y=coords[:, 1])
    data["finding"] = finding_category(data).to_numpy()
    fields = [c for c in colour_by if c in data.columns and data[c].notna().any()]
    fig, axes = plt.subplots(1, len(fields), figsize=(3.6 * len(fields), 3.4), squeeze=False)
    for ax, field in zip(axes[0], fields, strict=True):
        numeric = pd.api.types.is_numeric_dtype(data[field])
        sns.scatterplot(data=data, x="x", y="y", hue=field, s=14, ax=ax, linewidth=0,
                        palette="viridis" if numeric else "tab10", legend="brief" if numeric else "auto")
        ax.set(title=field, xticks=[], yticks=[], xlabel=f"{method} 1", ylabel=f"{method} 2")
        ax.legend(fontsize=6, loc="best", markerscale=0.6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def metadata_columns(manifest_df: pd.DataFrame) -> pd.DataFrame:
    """Numeric view of the metadata: age, bmi, sex (M = 1), one 0/1 column per view and per site (one column
    only when there are two values)."""
    out = pd.DataFrame(index=manifest_df.index)
    for col in ("age", "bmi"):
        if col in manifest_df.columns:
            out[col] = pd.to_numeric(manifest_df[col], errors="coerce")
    if "sex" in manifest_df.columns:
        out["sex=M"] = (manifest_df["sex"] == "M").astype(float).where(manifest_df["sex"].isin(["M", "F"]))
    for col in ("view", "site"):
        if col in manifest_df.columns:
            values = sorted(manifest_df[col].dropna().astype(str).unique())
            for value in values[1:] if len(values) == 2 else values:  # two values: one 0/1 column says it all
                out[f"{col}={value}"] = (manifest_df[col].astype(str) == value).astype(float)
    return out.loc[:, out.nunique() > 1]  # a constant column has no correlation


def pc_metadata_correlation(features: np.ndarray, manifest_df: pd.DataFrame, n_components: int = 8) -> pd.DataFrame:
    """Pearson r between each of the leading PCs of the (centered, unscaled) features and each metadata column.

    Returns a (n_components, n_columns) frame indexed "PC1".. with columns from :func:`metadata_columns`.
    """
    X = np.asarray(features, dtype=np.float64)
    k = min(n_components, *X.shape)
    pcs = pd.DataFrame(PCA(n_components=k, random_state=0).fit_transform(X),
                       columns=[f"PC{i + 1}" for i in range(k)], index=manifest_df.index)
    meta = metadata_columns(manifest_df)
    return pd.DataFrame({m: [pcs[p].corr(meta[m]) for p in pcs] for m in meta}, index=pcs.columns)


def plot_pc_heatmap(corr: pd.DataFrame, title: str = "") -> plt.Figure:
    """Heatmap of :func:`pc_metadata_correlation` (diverging, r in [-1, 1])."""
    fig, ax = plt.subplots(figsize=(0.7 * corr.shape[1] + 2.5, 0.4 * corr.shape[0] + 1.5))
    sns.heatmap(corr, vmin=-1, vmax=1, cmap="RdBu_r", annot=True, fmt=".2f", annot_kws={"size": 7}, ax=ax)
    ax.set(title=title or "correlation of principal components with metadata")
    fig.tight_layout()
    return fig


def plot_age_predictions(predictions: dict[str, tuple[np.ndarray, np.ndarray]]) -> plt.Figure:
    """{encoder: (true ages, predicted ages)} → one panel per encoder with the identity line."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(3.2 * len(predictions), 3.2), squeeze=False)
    for ax, (name, (y, p)) in zip(axes[0], predictions.items(), strict=True):
        ax.scatter(y, p, s=10, alpha=0.7)
        lo, hi = float(np.min(y)), float(np.max(y))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(title=name, xlabel="true age (years)", ylabel="predicted age (years)")
    fig.tight_layout()
    return fig
