"""DenseCRF refinement of a foreground probability map (the authors' post-processing).

A fully connected CRF (Kraehenbuehl & Koltun, 2011; package `pydensecrf2`, module `pydensecrf`)
with two labels, 0 = background and 1 = foreground. The unary energies are the negative log
probabilities `[-log(1 - p), -log(p)]` with `p` clipped away from 0 and 1 (or, with
`clip=False`, unclipped as the authors' code: an infinite energy where `p` is exactly 0 or 1,
which pydensecrf reads as probability 0 of that label); the pairwise terms
are a Gaussian smoothness kernel and a bilateral appearance kernel on the RGB image. After mean
field inference the label of highest marginal gives the mask.

Pure NumPy around the C++ extension; no TensorFlow needed.
"""

from __future__ import annotations

import numbers

import numpy as np
import pydensecrf.densecrf as dcrf

# Probabilities are clipped to [EPSILON, 1 - EPSILON] so that the unary energies stay finite.
EPSILON = 1e-8


def _check_positive(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number, got {value!r}.")


def dense_crf(
    image,
    probabilities,
    *,
    iterations: int = 5,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 20,
    bilateral_srgb: float = 3,
    bilateral_compat: float = 10,
    clip: bool = True,
) -> np.ndarray:
    """Refines a foreground probability map with a fully connected CRF.

    The defaults are the authors' settings: Gaussian kernel `sxy=3, compat=3`, bilateral kernel
    `sxy=20, srgb=3, compat=10`, 5 mean field iterations.

    Args:
        image: `[H, W, 3]` uint8 RGB image, at the size of `probabilities`.
        probabilities: `[H, W]` real array of foreground probabilities in [0, 1].
        iterations: number of mean field iterations (positive int).
        gaussian_sxy: spatial standard deviation of the smoothness kernel, in pixels.
        gaussian_compat: weight of the smoothness kernel (Potts compatibility).
        bilateral_sxy: spatial standard deviation of the appearance kernel, in pixels.
        bilateral_srgb: colour standard deviation of the appearance kernel, in 0..255 units.
        bilateral_compat: weight of the appearance kernel (Potts compatibility).
        clip: clip `p` to `[EPSILON, 1 - EPSILON]` (finite energies); `False`: the authors'
            unclipped `-log(1 - p)`, `-log(p)`, computed in float32 as theirs.

    Returns:
        `[H, W]` uint8 mask, 1 = foreground, 0 = background.

    Raises:
        ValueError: on a wrong shape, dtype or value range of an input, or a non-positive
            parameter.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must have shape [H, W, 3] (RGB), got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"`image` must have dtype uint8 (values 0..255), got dtype {image.dtype}.")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"`image` must not be empty, got shape {image.shape}.")

    probabilities = np.asarray(probabilities)
    if probabilities.shape != (height, width):
        raise ValueError(
            f"`probabilities` must have shape [H, W] = {(height, width)} matching `image` "
            f"of shape {image.shape}, got shape {probabilities.shape}."
        )
    if not (
        np.issubdtype(probabilities.dtype, np.floating)
        or np.issubdtype(probabilities.dtype, np.integer)
    ):
        raise ValueError(
            f"`probabilities` must be a real-valued array, got dtype {probabilities.dtype}."
        )
    probabilities = probabilities.astype(np.float64)
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("`probabilities` must be finite, found NaN or infinity.")
    low, high = float(probabilities.min()), float(probabilities.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"`probabilities` must lie in [0, 1], got values in [{low}, {high}]. "
            "Apply a sigmoid to logits first."
        )

    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, numbers.Integral)
        or iterations < 1
    ):
        raise ValueError(f"`iterations` must be a positive int, got {iterations!r}.")
    for name, value in (
        ("gaussian_sxy", gaussian_sxy),
        ("gaussian_compat", gaussian_compat),
        ("bilateral_sxy", bilateral_sxy),
        ("bilateral_srgb", bilateral_srgb),
        ("bilateral_compat", bilateral_compat),
    ):
        _check_positive(value, name)

    # Label 0 = background, label 1 = foreground.
    if clip:
        foreground = np.clip(probabilities, EPSILON, 1.0 - EPSILON)
        unary = np.stack([-np.log1p(-foreground), -np.log(foreground)])  # [2, H, W]
    else:
        foreground = probabilities.astype(np.float32)
        with np.errstate(divide="ignore"):  # p = 0 or 1: an infinite energy, as theirs
            unary = np.stack([-np.log(1 - foreground), -np.log(foreground)])  # [2, H, W]
    unary = np.ascontiguousarray(unary.reshape(2, height * width), dtype=np.float32)  # [2, H*W]

    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=float(gaussian_sxy), compat=float(gaussian_compat))
    crf.addPairwiseBilateral(
        sxy=float(bilateral_sxy),
        srgb=float(bilateral_srgb),
        # pydensecrf needs a writable C-contiguous buffer (a PIL-backed array is read-only).
        rgbim=np.array(image, dtype=np.uint8, order="C", copy=True),
        compat=float(bilateral_compat),
    )
    marginals = np.asarray(crf.inference(int(iterations)))  # [2, H*W]
    return marginals.argmax(axis=0).reshape(height, width).astype(np.uint8)  # [H, W]
