"""The lecture's pictures as numbers (THEORY.md §7; Canziani's NYU Deep Learning lecture 20): the spiral nets of
:mod:`kernelscope.experiments.spirals`, trained there, taken apart here - nothing is trained in this module.

- :func:`class_vector_spread` - the class vectors spread evenly around the circle (against 360/K, and against
  random directions in closed form);
- :func:`training_phases` - a near-linear map of the plane first, then the centre and the outside of the spiral
  turning opposite ways (:func:`linear_r2`, angular velocities of the inner and outer points);
- :func:`layer_norms` - weight norms towards the head;
- :func:`layer_svd`, :func:`svd_stages` - each layer as rotation · scaling · rotation + bias, then the activation;
- :func:`drag`, :func:`influence` - pulling one point drags the others, against the hidden width;
- :func:`count_regions`, :func:`pieces_vs_width` - the exact number of linear pieces of a one-hidden-layer net of
  the plane, against the width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._arrays import ValidationError, as_numpy, check_int, check_positive
from .spirals import FoldingRun, Params, SpiralRun, WidthSweep, count_linear_pieces, from_params

__all__ = ["ClassVectorSpread", "class_vector_spread", "TrainingPhases", "linear_r2", "training_phases",
           "LayerNorms", "layer_norms", "LayerSVD", "layer_svd", "SVDStages", "svd_stages", "Influence", "drag",
           "influence", "count_regions", "PiecesCurve", "pieces_vs_width"]


def _input_lims(X: np.ndarray) -> tuple[float, float, float, float]:
    """The square input box of the chapter's figures and piece counts: ``±1.2 max|x|``."""
    lim = 1.2 * float(np.abs(X).max())
    return (-lim, lim, -lim, lim)


@dataclass
class ClassVectorSpread:
    """How evenly the class vectors (rows of the classifier's W, (K, 2)) spread around the circle.

    angles (K,) : their directions in degrees, sorted, in [0, 360) ; gaps (K,) : from each to the next
    counter-clockwise (they sum to 360) ; norms (K,) : their lengths, in the same order ; ideal : 360/K ;
    max_deviation : ``max |gap − 360/K|`` ; rms_deviation : ``√(mean (gap − 360/K)²)`` ; random_rms_deviation :
    its expectation's root for K independent uniform directions, ``360 √((K − 1) / (K² (K + 1)))`` (the gaps of
    K uniform points on a circle are 360 × Dirichlet(1, …, 1), each of variance ``(K − 1)/(K²(K + 1))``).
    """

    angles: np.ndarray
    gaps: np.ndarray
    norms: np.ndarray
    ideal: float
    max_deviation: float
    rms_deviation: float
    random_rms_deviation: float


def class_vector_spread(W: Any) -> ClassVectorSpread:
    """:class:`ClassVectorSpread` of the class vectors ``W`` (K, 2), K ≥ 2 (the lecture: "the W will most likely
    place themselves such that they maximize the space between them")."""
    W = as_numpy(W, "W", ndim=2)
    if W.shape[1] != 2 or W.shape[0] < 2:
        raise ValidationError("W", "class vectors of shape (K, 2) with K >= 2", f"shape {W.shape}")
    ang = np.degrees(np.arctan2(W[:, 1], W[:, 0])) % 360.0
    order = np.argsort(ang)
    ang = ang[order]
    gaps = np.diff(np.append(ang, ang[0] + 360.0))
    K = len(ang)
    ideal = 360.0 / K
    return ClassVectorSpread(ang, gaps, np.linalg.norm(W[order], axis=1), ideal, float(np.abs(gaps - ideal).max()),
                             float(np.sqrt(np.mean((gaps - ideal) ** 2))),
                             float(360.0 * math.sqrt((K - 1) / (K * K * (K + 1)))))


@dataclass
class TrainingPhases:
    """The phases of training read off the embedding snapshots of a :class:`SpiralRun`.

    epochs (S,) : snapshot epochs. linear_r2 (S,) : the share of the embedding's variance that the best affine
    map of the input explains (least squares; 1: the net acts as a linear map of the plane). mid_epochs (S − 1,)
    and inner_velocity, outer_velocity (S − 1,) : the mean angular velocity (degrees per epoch, counter-clockwise
    positive) of the inner and the outer points (``fraction`` of the points closest to / farthest from the centre
    of the input spiral) about the embedding's centroid, between consecutive snapshots.
    linear_until : the last snapshot epoch of the early, near-linear phase: from the snapshot where the linear R²
    peaks, the last one before it falls below ``threshold``. early_inner/early_outer, late_inner/late_outer :
    total rotation (degrees) of each group before and after ``linear_until``. threshold, fraction : the settings.
    """

    epochs: np.ndarray
    linear_r2: np.ndarray
    mid_epochs: np.ndarray
    inner_velocity: np.ndarray
    outer_velocity: np.ndarray
    linear_until: int
    early_inner: float
    early_outer: float
    late_inner: float
    late_outer: float
    threshold: float
    fraction: float


def linear_r2(X: Any, E: Any) -> float:
    """``1 − ‖E − [X 1] C‖² / ‖E − Ē‖²`` for the least-squares affine map C: how much of the embedding E (N, 2)
    an affine map of the input X (N, d) explains (1 for a linear map of the plane, as early in training)."""
    X = as_numpy(X, "X", ndim=2)
    E = as_numpy(E, "E", ndim=2)
    A = np.column_stack([X, np.ones(len(X))])
    res = E - A @ np.linalg.lstsq(A, E, rcond=None)[0]
    total = float(((E - E.mean(0)) ** 2).sum())
    return 1.0 - float((res ** 2).sum()) / total if total > 0 else float("nan")


def training_phases(run: SpiralRun, *, threshold: float = 0.95, fraction: float = 1 / 3) -> TrainingPhases:
    """The lecture's phases of training as numbers (THEORY.md §7): an early near-linear map of the plane (``linear_r2``
    near 1), then the centre and the outside of the spiral rotating opposite ways (the angular velocities of the
    inner and outer points of the embedding). Needs a run with at least two snapshots."""
    if len(run.snapshot_epochs) < 2:
        raise ValidationError("run", "a SpiralRun with at least two snapshots", f"{len(run.snapshot_epochs)}",
                              "Train with snapshots >= 2.")
    threshold = check_positive(threshold, "threshold")
    fraction = check_positive(fraction, "fraction")
    if fraction > 0.5:
        raise ValidationError("fraction", "a share of the points in (0, 0.5]", repr(fraction))
    X, E, ep = run.X_train, run.embeddings, np.asarray(run.snapshot_epochs)
    r = np.linalg.norm(X, axis=1)
    inner, outer = r <= np.quantile(r, fraction), r >= np.quantile(r, 1 - fraction)
    r2 = np.array([linear_r2(X, e) for e in E])
    theta = np.array([np.arctan2(*(e - e.mean(0))[:, ::-1].T) for e in E])  # (S, N) about the centroid
    dtheta = np.degrees(np.angle(np.exp(1j * np.diff(theta, axis=0))))  # (S − 1, N) wrapped to (−180, 180]
    d_in, d_out = dtheta[:, inner].mean(1), dtheta[:, outer].mean(1)  # degrees per interval
    dt = np.diff(ep).astype(float)
    # the near-linear phase: from the best affine fit on, as long as R² stays above the threshold
    peak = int(np.nanargmax(r2))
    below = np.nonzero(r2[peak:] < threshold)[0]
    k = peak if r2[peak] < threshold else (peak + int(below[0]) - 1 if len(below) else len(ep) - 1)
    return TrainingPhases(ep, r2, (ep[1:] + ep[:-1]) / 2, d_in / dt, d_out / dt, int(ep[k]),
                          float(d_in[:k].sum()), float(d_out[:k].sum()), float(d_in[k:].sum()),
                          float(d_out[k:].sum()), threshold, fraction)


@dataclass
class LayerNorms:
    """Per linear layer of a net (input to head): shape (out, in), ``‖W‖_F``, ``‖W‖₂`` (the largest stretch) and
    ``‖b‖``."""

    shapes: list[tuple[int, int]]
    frobenius: list[float]
    spectral: list[float]
    bias: list[float]


def layer_norms(params: Params) -> LayerNorms:
    """:class:`LayerNorms` of ``params`` (``[(W, b)]`` per linear layer): do the weights grow towards the head?"""
    return LayerNorms([tuple(int(v) for v in np.shape(W)) for W, _ in params],
                      [float(np.linalg.norm(W)) for W, _ in params], [float(np.linalg.norm(W, 2)) for W, _ in params],
                      [float(np.linalg.norm(b)) for _, b in params])


def _rotation_angle(Q: np.ndarray) -> float:
    """Angle (degrees) of the rotation ``Q`` (2 × 2, det +1), or of ``Q · diag(1, −1)`` for a reflection."""
    R = Q if np.linalg.det(Q) > 0 else Q @ np.diag([1.0, -1.0])
    return float(np.degrees(np.arctan2(R[1, 0], R[0, 0])))


@dataclass
class LayerSVD:
    """A linear layer ``z = W h + b`` written as rotation · scaling · rotation + bias, ``W = U diag(s) Vᵀ``.

    U (out, r), s (r,), Vt (r, in), b (out,) with r = min(out, in). For a 2 × 2 layer, V is made a rotation
    (the signs of paired columns of U and V flipped), so that a reflection, if det W < 0, sits in U:
    angle_in (degrees, counter-clockwise) is the rotation h ↦ Vᵀh, angle_out that of h ↦ Uh (after a reflection
    across the first axis when ``reflection``: U = R(angle_out) diag(1, −1)). A layer into or out of more
    dimensions leaves the angles NaN. error : ``‖U diag(s) Vᵀ − W‖_F / ‖W‖_F``.
    """

    U: np.ndarray
    s: np.ndarray
    Vt: np.ndarray
    b: np.ndarray
    angle_in: float
    angle_out: float
    reflection: bool
    error: float


def layer_svd(W: Any, b: Any) -> LayerSVD:
    """The singular value decomposition of one layer (Canziani's lecture: "a matrix does a rotation, a squashing,
    another rotation; then the bias and the positive part"), :class:`LayerSVD`."""
    W = as_numpy(W, "W", ndim=2)
    b = as_numpy(b, "b", ndim=1)
    if len(b) != W.shape[0]:
        raise ValidationError("b", f"a bias of length {W.shape[0]} (the rows of W)", f"length {len(b)}")
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    square2 = W.shape == (2, 2)
    if square2 and np.linalg.det(Vt) < 0:  # flip one paired column: U s Vᵀ is unchanged, V becomes a rotation
        U[:, 1], Vt[1] = -U[:, 1], -Vt[1]
    nan = float("nan")
    err = float(np.linalg.norm(U * s @ Vt - W) / np.linalg.norm(W)) if np.linalg.norm(W) > 0 else 0.0
    return LayerSVD(U, s, Vt, b, _rotation_angle(Vt) if square2 else nan, _rotation_angle(U) if square2 else nan,
                    bool(square2 and np.linalg.det(U) < 0), err)


@dataclass
class SVDStages:
    """A net of 2-D layers (:func:`train_folding_net`), each layer split into its SVD stages.

    layers : one :class:`LayerSVD` per linear layer up to the embedding (the classifier is left out).
    stage_names (T,) : "input", "Vᵀ (rotate)", "Σ (scale)", "U (rotate / reflect)", "+ b", "leaky ReLU".
    points, grids : [layer][stage] the training points (N, 2) and a grid of the input plane (2L, P, 2) after each
    stage (the embedding layer has no activation: its last stage repeats "+ b").
    error : the largest ``max |stages − layer| / max |layer|`` over the layers (on the points and the grid).
    """

    layers: list[LayerSVD]
    stage_names: list[str]
    points: list[list[np.ndarray]]
    grids: list[list[np.ndarray]]
    y: np.ndarray
    error: float


def svd_stages(fold: FoldingRun) -> SVDStages:
    """Every linear layer of the narrow folding net as ``x → Vᵀx → ΣVᵀx → UΣVᵀx → UΣVᵀx + b → leaky ReLU``,
    applied to its training points and the grid of :attr:`FoldingRun.stage_grid`, and checked against the layer
    ``W x + b`` itself (to rounding: the error is about 1e-16)."""
    slope = float(fold.config["slope"])
    depth = int(fold.config["depth"])
    names = ["input", "Vᵀ (rotate)", "Σ (scale)", "U (rotate / reflect)", "+ b", "leaky ReLU"]
    h_pts, h_grid = fold.X_train, fold.stage_grid[0].reshape(-1, 2)
    shape = fold.stage_grid[0].shape
    layers, points, grids, err = [], [], [], 0.0
    for l, (W, b) in enumerate(fold.params[:depth + 1]):
        svd = layer_svd(W, b)
        layers.append(svd)
        pts, grd = [h_pts], [h_grid]
        for M, shift in ((svd.Vt.T, 0.0), (np.diag(svd.s), 0.0), (svd.U.T, 0.0), (np.eye(len(svd.b)), svd.b)):
            pts.append(pts[-1] @ M + shift)
            grd.append(grd[-1] @ M + shift)
        for h, z in ((h_pts, pts[-1]), (h_grid, grd[-1])):
            direct = h @ np.asarray(W).T + np.asarray(b)
            err = max(err, float(np.abs(z - direct).max() / np.abs(direct).max()))
        act = (lambda z: np.where(z > 0, z, slope * z)) if l < depth else (lambda z: z)
        pts.append(act(pts[-1]))
        grd.append(act(grd[-1]))
        points.append(pts)
        grids.append([g.reshape(shape) for g in grd])
        h_pts, h_grid = pts[-1], grd[-1]
    return SVDStages(layers, names, points, grids, fold.y_train, err)


@dataclass
class Influence:
    """Pulling one point drags the others (the lecture): the tangent kernel of the embedding.

    A gradient step on the loss of x_i alone, through the feature extractor's weights w (everything before the
    classifier), moves the embedding of every x_j by ``Δe_j = −η Θ_e(x_j, x_i) g_i`` with ``Θ_e = J_e(x_j) J_e(x_i)ᵀ``
    (2 × 2) and ``g_i = ∂ℓ_i/∂e_i = Wᵀ(softmax(s_i) − onehot(y_i))``. The drag of x_j is ``‖Δe_j‖ / ‖Δe_i‖``.

    widths (H,) ; near (H,) : mean drag on the ``k`` nearest training neighbours of each anchor (in the input) ;
    far (H,) : mean drag on the points of the other classes ; both averaged over the anchors ; anchors (A,)
    indices ; maps : width -> (A, N) drag of every training point for each anchor, for ``keep_maps`` widths ;
    X_train (N, 2), y_train (N,) : the points.
    """

    widths: list[int]
    near: list[float]
    far: list[float]
    anchors: np.ndarray
    k: int
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    X_train: np.ndarray | None = None
    y_train: np.ndarray | None = None


def drag(params: Params, X: Any, y: Any, anchors: Sequence[int]) -> np.ndarray:
    """The drag ``‖Δe_j‖ / ‖Δe_i‖`` of every training point j when anchor i is pulled (:class:`Influence`), for a
    net of :func:`train_spiral` with weights ``params``: (A, N)."""
    from .. import empirical

    X = as_numpy(X, "X", ndim=2)
    y = as_numpy(y, "y", ndim=1, dtype=np.int64)
    anchors = np.asarray(anchors, dtype=np.int64)
    model = from_params(params)
    extractor, head = model[:-1], model[-1]
    theta = np.asarray(empirical.ntk(extractor, X, X[anchors]))  # (N, A, 2, 2): Θ_e(x_j, x_i)
    with torch.no_grad():
        s = head(extractor(torch.as_tensor(X[anchors])))
        p = torch.softmax(s, 1)
        p[torch.arange(len(anchors)), torch.as_tensor(y[anchors])] -= 1.0
        g = (p @ head.weight).numpy()  # (A, 2) ∂ℓ_i/∂e_i
    move = np.einsum("jaoc,ac->ajo", theta, g)  # (A, N, 2) Δe_j / (−η)
    size = np.linalg.norm(move, axis=2)
    return size / size[np.arange(len(anchors)), anchors][:, None]


def influence(sweep: WidthSweep, *, anchors: int = 20, k: int = 10, keep_maps: Sequence[int] = ()) -> Influence:
    """:class:`Influence` of every trained net of a width sweep (the nets of the chapter, no training here):
    ``anchors`` training points spread along the arms, drag on their ``k`` nearest neighbours and on the other
    classes."""
    if sweep.X_train is None or not sweep.params or any(p is None for p in sweep.params):
        raise ValidationError("sweep", "a WidthSweep with its trained weights", "one without",
                              "Run spiral_width_sweep again (a checkpoint of an older layout has no weights).")
    X, y = sweep.X_train, sweep.y_train
    A = np.unique(np.linspace(0, len(X) - 1, check_int(anchors, "anchors", minimum=1)).astype(np.int64))
    k = check_int(k, "k", minimum=1, maximum=len(X) - 1)
    dist = np.linalg.norm(X[A][:, None] - X[None], axis=2)  # (A, N)
    neighbours = np.argsort(dist, axis=1)[:, 1:k + 1]
    other = y[None, :] != y[A][:, None]
    near, far, maps = [], [], {}
    for w, params in zip(sweep.widths, sweep.params):
        d = drag(params, X, y, A)
        near.append(float(np.take_along_axis(d, neighbours, 1).mean()))
        far.append(float((d * other).sum() / other.sum()))
        if w in keep_maps:
            maps[w] = d
    return Influence(list(sweep.widths), near, far, A, k, maps, X, y)


def count_regions(W: Any, b: Any, lims: Sequence[float]) -> int:
    """The exact number of regions into which the lines ``W_k · x + b_k = 0`` (one per ReLU unit, W (H, 2)) cut
    the open box ``lims``: ``1 + L + I``, L the lines that cross the box and I their crossings inside it (each line
    adds one region plus one for every earlier line it crosses; lines in general position - no two parallel, no
    three through one point - which holds with probability one for trained weights). This is the number of linear
    pieces of a one-hidden-layer ReLU net of the plane, which :func:`count_linear_pieces` counts on a grid (a lower
    bound); at most ``1 + H + H(H − 1)/2``."""
    W = as_numpy(W, "W", ndim=2)
    b = as_numpy(b, "b", ndim=1)
    x0, x1, y0, y1 = (float(v) for v in lims)
    corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]])
    vals = corners @ W.T + b  # (4, H)
    crossing = (vals.min(0) < 0) & (vals.max(0) > 0)
    Wc, bc = W[crossing], b[crossing]
    L = len(Wc)
    det = Wc[:, None, 0] * Wc[None, :, 1] - Wc[:, None, 1] * Wc[None, :, 0]  # (L, L)
    iu = np.triu_indices(L, 1)
    d = det[iu]
    ok = np.abs(d) > 0
    i, j = iu[0][ok], iu[1][ok]
    # Cramer's rule for W_i x = −b_i, W_j x = −b_j
    px = (-bc[i] * Wc[j, 1] + bc[j] * Wc[i, 1]) / d[ok]
    py = (-Wc[i, 0] * bc[j] + Wc[j, 0] * bc[i]) / d[ok]
    inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
    return int(1 + L + inside.sum())


@dataclass
class PiecesCurve:
    """Linear pieces of the one-hidden-layer nets of a width sweep on the input box, against the width H.

    widths ; trained, initial : exact counts (:func:`count_regions`) for the trained and the initial weights ;
    grid : :func:`count_linear_pieces` of the trained nets at ``resolution`` (a lower bound) ; bound : the most
    H lines can make, ``1 + H + H(H − 1)/2`` ; lims : the box.
    """

    widths: list[int]
    trained: list[int]
    initial: list[int]
    grid: list[int]
    bound: list[int]
    resolution: int
    lims: tuple[float, float, float, float]


def pieces_vs_width(sweep: WidthSweep, resolution: int = 300) -> PiecesCurve:
    """:class:`PiecesCurve` of a width sweep's nets (their first layer is the only ReLU layer)."""
    if sweep.X_train is None or not sweep.params or any(p is None for p in sweep.params + sweep.params_init):
        raise ValidationError("sweep", "a WidthSweep with its initial and trained weights", "one without",
                              "Run spiral_width_sweep again (a checkpoint of an older layout has no weights).")
    lims = _input_lims(sweep.X_train)
    trained = [count_regions(*p[0], lims) for p in sweep.params]
    initial = [count_regions(*p[0], lims) for p in sweep.params_init]
    grid = [count_linear_pieces(p[:1], lims, resolution) for p in sweep.params]
    return PiecesCurve(list(sweep.widths), trained, initial, grid, [1 + w + w * (w - 1) // 2 for w in sweep.widths],
                       resolution, lims)
