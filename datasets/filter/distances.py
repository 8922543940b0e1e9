"""Distances between feature vectors (notes 002, "计算距离"): smaller is more similar.

`DISTANCES[name](a, b)` compares two vectors; `to_many(name, t, m)` compares one vector
with every row of a matrix (the fast search path). Conventions:

- mse: mean of squared differences; euclidean: L2 norm of the difference.
- cosine: 1 - cos(angle); two all-zero vectors are at 0, one all-zero vector at 1.
- jaccard: 1 - |A and B| / |A or B| over boolean sets; two empty sets are at 0.
- hamming: number of differing bits (the notes count bits; scipy gives the fraction).
"""
import numpy as np


def _pair(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"distance: feature shapes differ: {a.shape} vs {b.shape}")
    return a.ravel(), b.ravel()


def mse(a, b):
    """Mean squared difference (float)."""
    a, b = _pair(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def euclidean(a, b):
    """L2 norm of the difference (float)."""
    a, b = _pair(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.sqrt(np.dot(d, d)))


def _cosine_from(dot, na2, nb2):
    dot, na2, nb2 = np.broadcast_arrays(np.asarray(dot, float), np.asarray(na2, float),
                                        np.asarray(nb2, float))
    out = np.ones(dot.shape)
    both_zero = (na2 == 0) & (nb2 == 0)
    ok = (na2 > 0) & (nb2 > 0)
    out[both_zero] = 0.0
    out[ok] = 1.0 - dot[ok] / np.sqrt(na2[ok] * nb2[ok])
    return out


def cosine(a, b):
    """1 - cosine similarity (float in [0, 2])."""
    a, b = _pair(a, b)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(_cosine_from(np.dot(a, b), np.dot(a, a), np.dot(b, b)))


def jaccard(a, b):
    """1 - intersection over union of two boolean sets (float in [0, 1])."""
    a, b = _pair(a, b)
    a = a.astype(bool)
    b = b.astype(bool)
    union = np.count_nonzero(a | b)
    if union == 0:
        return 0.0
    return 1.0 - np.count_nonzero(a & b) / union


def hamming(a, b):
    """Number of differing entries (float, an integer value)."""
    a, b = _pair(a, b)
    return float(np.count_nonzero(a != b))


DISTANCES = {"mse": mse, "cosine": cosine, "euclidean": euclidean,
             "jaccard": jaccard, "hamming": hamming}


def get(name):
    """Distance function by name; ValueError listing the names if unknown."""
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES)}") from None


def to_many(name, t, m):
    """Distance from vector `t` (d,) to every row of `m` (n, d), as `get(name)` would give.

    Returns
    -------
    (n,) float64
    """
    get(name)
    t = np.asarray(t).ravel()
    m = np.asarray(m).reshape(len(m), -1)
    if m.shape[1] != t.size:
        raise ValueError(f"distance: feature sizes differ: {t.size} vs {m.shape[1]}")
    if name in ("jaccard", "hamming"):
        if name == "hamming":
            return np.count_nonzero(m != t[None, :], axis=1).astype(np.float64)
        tb = t.astype(bool)
        mb = m.astype(bool)
        inter = np.count_nonzero(mb & tb[None, :], axis=1)
        union = np.count_nonzero(mb | tb[None, :], axis=1)
        out = np.zeros(len(m))
        nz = union > 0
        out[nz] = 1.0 - inter[nz] / union[nz]
        return out
    t = t.astype(np.float64)
    m = m.astype(np.float64)
    if name == "cosine":
        return _cosine_from(m @ t, t @ t, np.einsum("ij,ij->i", m, m))
    d = m - t[None, :]
    ss = np.einsum("ij,ij->i", d, d)
    return ss / t.size if name == "mse" else np.sqrt(ss)
