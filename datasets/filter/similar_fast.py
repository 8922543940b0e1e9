"""Batched window features for `datasets.filter.similar.find_similar` (the fast path).

Every function here gives, for a grid of same-sized windows of a reference region, what
`datasets.filter.features.window_feature` gives for each masked window (same numbers up to
float rounding; the distances and the chosen window are tested against the loop),
without computing each window from scratch:

- HOG (the default feature): gradients, their magnitude/bin (a table look-up: uint8
  gradients are integers in [-255, 255]) and per-bin integral images once over the
  region; cell histograms and L2-Hys blocks once on the lattice of window corners and
  shared by every window containing them. Per window only what the mask changes: cells
  holding the 1-px frame (skimage zeroes the gradient across the border; away from the
  box these depend only on the window's row or column, so they are computed once per
  row/column) and cells touching a 1-px band around the blacked-out box. The distance
  comes from t.f and f.f summed over blocks, never building the windows' features.
- LBP: codes once over the region (`features.lbp` is translation-invariant), per-cell
  code counts from integral images on the corner lattice; ring pixels within R of the
  border or the box are recomputed, grouped by which neighbour taps the mask removes.
- raw: |t|^2, t.w and |w|^2 over the ring as exact integer sums (FFT correlation rounded,
  integral image of squares): identical to the loop's numbers.
- pHash: area-resize and DCT are linear and the mask is a rectangle, so the 8x8 DCT of
  every masked window is two separable matrix products over the region.
- Canny: hysteresis links edges across the window, so each window still runs cv2.Canny
  (C speed); only masking and the distance are batched.

Window grid: `wys` (ny,) and `wxs` (nx,) are evenly spaced window top-left corners in
region coordinates (`region` holds integer pixel values 0..255); outputs are row-major
over (wys, wxs).
"""
import functools
import logging

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from datasets.filter import distances as dist
from datasets.filter import features

log = logging.getLogger(__name__)


def _integral(planes):
    """Zero-padded 2-D integral images over the last two axes (float64)."""
    planes = np.asarray(planes, dtype=np.float64)
    out = np.zeros(planes.shape[:-2] + (planes.shape[-2] + 1, planes.shape[-1] + 1))
    out[..., 1:, 1:] = planes.cumsum(-2).cumsum(-1)
    return out


def _rect_sums(ii_last, wys, wxs, y1, x1, y2, x2):
    """Box sums [y1, y2) x [x1, x2) (window coords, arrays of k rects) for every window.

    ii_last : (Hs + 1, Ws + 1, ...) integral image with the channel axes last.
    Returns (ny, nx, k, ...).
    """
    ya = wys[:, None, None] + np.asarray(y1)[None, None, :]
    yb = wys[:, None, None] + np.asarray(y2)[None, None, :]
    xa = wxs[None, :, None] + np.asarray(x1)[None, None, :]
    xb = wxs[None, :, None] + np.asarray(x2)[None, None, :]
    return ii_last[yb, xb] - ii_last[ya, xb] - ii_last[yb, xa] + ii_last[ya, xa]


def _check_grid(region_shape, window_shape, wys, wxs):
    """Windows must be evenly spaced and lie inside the region."""
    wys, wxs = np.asarray(wys), np.asarray(wxs)
    if len(wys) == 0 or len(wxs) == 0 or wys[0] < 0 or wxs[0] < 0:
        raise ValueError(f"window grid: want non-negative corners, got {wys}, {wxs}")
    for name, v in (("wys", wys), ("wxs", wxs)):
        if len(v) > 1 and (np.any(np.diff(v) <= 0) or len(set(np.diff(v))) != 1):
            raise ValueError(f"window grid: {name} must be evenly spaced and increasing, got {v}")
    need = (int(wys[-1]) + window_shape[0], int(wxs[-1]) + window_shape[1])
    if need[0] > region_shape[0] or need[1] > region_shape[1]:
        raise ValueError(f"window grid needs a region of at least {need}, got {region_shape}")


# ---------------------------------------------------------------- HOG

def _hog_bins(g_row, g_col):
    """Magnitude and orientation bin of gradients, exactly as skimage's hog_histograms."""
    n = features.HOG_ORIENTATIONS
    mag = np.hypot(g_col, g_row)
    ori = np.arctan2(g_row, g_col) * (180 / np.pi) % 180
    # skimage keeps the bin edges as C floats: pixel in bin i iff edge[i] <= ori < edge[i+1]
    edges = np.array([np.float32(180.0 / n * i) for i in range(1, n)], dtype=np.float64)
    return mag, np.searchsorted(edges, ori, side="right")


@functools.lru_cache(maxsize=1)
def _hog_lut():
    """`_hog_bins` of every integer gradient pair in [-255, 255]^2, flattened."""
    g = np.arange(-255, 256, dtype=np.float64)
    mag, bins = _hog_bins(*np.meshgrid(g, g, indexing="ij"))
    return mag.ravel(), bins.astype(np.intp).ravel()


def _hog_lookup(g_row, g_col):
    """`_hog_bins` for integer gradients (uint8 images), by table look-up: same numbers,
    no trigonometry."""
    mag_lut, bin_lut = _hog_lut()
    idx = (np.asarray(g_row, np.intp) + 255) * 511 + (np.asarray(g_col, np.intp) + 255)
    return mag_lut[idx], bin_lut[idx]


def _clean(hist):
    """Snap box-sum round-off to exact zeros and scale like skimage (cell mean, not sum).

    Pixel values are integers, so a gradient is 0 or has magnitude >= 1 and a non-empty
    bin sums to >= 1: anything below 0.5 is cancellation residue (~1e-13), which block
    normalisation would otherwise blow up in cells that are empty in the masked window.
    """
    hist[hist < 0.5] = 0.0
    hist /= features.HOG_CELL_PX * features.HOG_CELL_PX
    return hist


def _l2hys(blocks, eps=1e-5):
    """skimage's L2-Hys block normalisation over the last axis."""
    out = blocks / np.sqrt(np.einsum("...i,...i->...", blocks, blocks) + eps ** 2)[..., None]
    np.minimum(out, 0.2, out=out)
    out /= np.sqrt(np.einsum("...i,...i->...", out, out) + eps ** 2)[..., None]
    return out


class _HogSearch:
    """Everything about the windows' HOG that does not depend on the template.

    Cells (8x8 px) of window (ky, kx) sit at region pixels (wys[ky] + 8 i, wxs[kx] + 8 j).
    A cell is *changed* if it holds a pixel whose gradient differs in the masked window
    from the unmasked region: the window's 1-px frame (skimage zeroes the gradient across
    the image border) and the blacked-out box grown by 1 px; it is *zero* if it lies
    where the masked window is flat (inside the box). Other cells are box sums of the
    region's per-bin magnitudes, computed once on the lattice of window corners; blocks
    made only of such cells are normalised once on that lattice and shared by every
    window that contains them. Arrays of per-window cells are cell-major: (K, ny, nx, nb).
    """

    def __init__(self, region, mask, wys, wxs):
        cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
        self.mask = mask
        h, w = mask.shape
        self.ncr, self.ncc = ncr, ncc = h // cell, w // cell
        self.nbr, self.nbc = ncr - 1, ncc - 1
        self.wys, self.wxs = wys, wxs = np.asarray(wys), np.asarray(wxs)
        self.img = img = np.asarray(region).astype(np.intp)
        hs, ws = img.shape
        _check_grid(img.shape, mask.shape, wys, wxs)
        g_row = np.zeros_like(img)
        g_col = np.zeros_like(img)
        g_row[1:-1] = img[2:] - img[:-2]
        g_col[:, 1:-1] = img[:, 2:] - img[:, :-2]
        self.mag, self.bins = _hog_lookup(g_row, g_col)
        self.g_row, self.g_col = g_row, g_col
        planes = np.zeros(hs * ws * nb)
        planes[np.arange(0, hs * ws * nb, nb) + self.bins.ravel()] = self.mag.ravel()
        self.ii = cv2.integral(planes.reshape(hs, ws, nb), sdepth=cv2.CV_64F)  # (hs+1, ws+1, nb)

        # window corners are evenly spaced: cells live on a lattice of step g
        steps = np.concatenate([np.diff(wys), np.diff(wxs), [cell]]).astype(int)
        self.g = g = int(np.gcd.reduce(steps))
        self.sy = int(wys[1] - wys[0]) // g if len(wys) > 1 else 0
        self.sx = int(wxs[1] - wxs[0]) // g if len(wxs) > 1 else 0
        q = cell // g
        iig = self.ii[::g, ::g]
        self.cell_sums = iig[q:, q:] - iig[:-q, q:] - iig[q:, :-q] + iig[:-q, :-q]
        self.cells = c = _clean(self.cell_sums.copy())
        blocks = np.concatenate([c[:-q, :-q], c[:-q, q:], c[q:, :-q], c[q:, q:]], axis=-1)
        self.blocks = _l2hys(blocks)                       # (Ly, Lx, 4 nb)
        self.block_sq = np.einsum("yxd,yxd->yx", self.blocks, self.blocks)

        zero = np.argwhere(mask == 0)
        iy1, ix1 = zero.min(0)
        iy2, ix2 = zero.max(0) + 1
        self.inner = (iy1, ix1, iy2, ix2)
        self.z = (iy1 + 1, ix1 + 1, iy2 - 1, ix2 - 1)     # zero gradient in the masked window

    def lattice_view(self, arr, nr, nc):
        """View (ny, nx, nr, nc, ...) of a lattice array at every window's blocks or cells."""
        g, q = self.g, features.HOG_CELL_PX // self.g
        base = arr[self.wys[0] // g:, self.wxs[0] // g:]
        st = base.strides
        shape = (len(self.wys), len(self.wxs), nr, nc) + arr.shape[2:]
        if ((shape[0] - 1) * self.sy + (nr - 1) * q >= base.shape[0]
                or (shape[1] - 1) * self.sx + (nc - 1) * q >= base.shape[1]):
            raise RuntimeError("HOG lattice too small for the window grid")
        return np.lib.stride_tricks.as_strided(
            base, shape, (self.sy * st[0], self.sx * st[1], q * st[0], q * st[1]) + st[2:],
            writeable=False)

    def lattice_cells(self, ci, cj, arr):
        """Lattice array at cells (ci[k], cj[k]) of every window: (K, ny, nx, ...)."""
        cell, g = features.HOG_CELL_PX, self.g
        ly = (self.wys[None, :] + cell * ci[:, None]) // g
        lx = (self.wxs[None, :] + cell * cj[:, None]) // g
        return arr[ly[:, :, None], lx[:, None, :]]

    def exact_cells(self, ci, cj):
        """Histograms of cells (ci[k], cj[k]) in every masked window: (K, ny, nx, nb)."""
        cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
        wys, wxs = self.wys, self.wxs
        ny, nx = len(wys), len(wxs)
        h, w = self.mask.shape
        hist = self.lattice_cells(ci, cj, self.cell_sums)
        zy1, zx1, zy2, zx2 = self.z
        ry1, ry2 = np.maximum(ci * cell, zy1), np.minimum(ci * cell + cell, zy2)
        rx1, rx2 = np.maximum(cj * cell, zx1), np.minimum(cj * cell + cell, zx2)
        hit = np.flatnonzero((ry2 > ry1) & (rx2 > rx1))
        if len(hit):
            ii = self.ii
            ya = wys[None, :, None] + ry1[hit, None, None]
            yb = wys[None, :, None] + ry2[hit, None, None]
            xa = wxs[None, None, :] + rx1[hit, None, None]
            xb = wxs[None, None, :] + rx2[hit, None, None]
            hist[hit] -= ii[yb, xb] - ii[ya, xb] - ii[yb, xa] + ii[ya, xa]

        # changed pixels of these cells, in window coordinates
        kk, yy, xx = np.meshgrid(np.arange(len(ci)), np.arange(cell), np.arange(cell),
                                 indexing="ij")
        yy = yy + cell * ci[:, None, None]
        xx = xx + cell * cj[:, None, None]
        iy1, ix1, iy2, ix2 = self.inner
        frame = (yy == 0) | (yy == h - 1) | (xx == 0) | (xx == w - 1)
        band = (yy >= iy1 - 1) & (yy < iy2 + 1) & (xx >= ix1 - 1) & (xx < ix2 + 1)
        band &= ~((yy >= zy1) & (yy < zy2) & (xx >= zx1) & (xx < zx2))
        sel = frame | band
        k, y, x = kk[sel], yy[sel], xx[sel]
        if len(k):
            def keep(yn, xn):
                ok = (yn >= 0) & (yn < h) & (xn >= 0) & (xn < w)
                ok[ok] = self.mask[yn[ok], xn[ok]] > 0
                return ok
            # which neighbours the masked window still has; skimage's zeroed border gradients
            flags = np.stack([keep(y + 1, x), keep(y - 1, x), keep(y, x + 1), keep(y, x - 1),
                              (y == 0) | (y == h - 1), (x == 0) | (x == w - 1)])
            code = (flags * (1 << np.arange(6))[:, None]).sum(0)
            # frame rows and the box's top/bottom edges run along rows, the rest along
            # columns; a pixel that keeps all four neighbours votes as in the region
            along_row = ((y == 0) | (y == h - 1)
                         | (np.isin(y, [iy1 - 1, iy1, iy2 - 1, iy2]) & (x >= ix1) & (x < ix2)))
            changed = code != 0b001111
            kmap = np.full((self.ncr, self.ncc), -1)
            kmap[ci, cj] = np.arange(len(ci))
            for horizontal in (True, False):
                m = changed & (along_row if horizontal else ~along_row)
                if m.any():
                    self._runs(hist, kmap, y[m], x[m], code[m], horizontal)
        return _clean(hist)

    def _runs(self, hist, kmap, py, px, code, horizontal):
        """Add (masked - plain) votes of changed pixels, as straight runs, to `hist`.

        Pixels are cut into runs along one row (or column) of the window with one
        neighbour pattern. In every window of a grid row (column) a run covers the same
        region row, shifted sideways, and its masked gradient depends only on the absolute
        position: each run's votes are computed once on the region row(s) it visits,
        prefix-summed per bin, and each window's cell gets the difference of two
        prefixes. All runs go through the same few array operations.
        """
        cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
        img, hs_, ws_ = self.img, self.img.shape[0], self.img.shape[1]
        wys, wxs = self.wys, self.wxs
        ny, nx = len(wys), len(wxs)
        fixed, along = (py, px) if horizontal else (px, py)
        shared, shift = (wys, wxs) if horizontal else (wxs, wys)
        order = np.lexsort((along, code, fixed))
        f_, a_, c_ = fixed[order], along[order], code[order]
        new = np.r_[True, (f_[1:] != f_[:-1]) | (c_[1:] != c_[:-1]) | (a_[1:] != a_[:-1] + 1)]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(a_)] - 1
        r_fix, r_a, r_b, r_code = f_[starts], a_[starts], a_[ends] + 1, c_[starts]
        n_runs, n = len(starts), len(shared)
        r_len = r_b - r_a + (shift[-1] - shift[0])          # positions one run visits
        seg = np.r_[0, np.cumsum(n * r_len)]                 # run r: n lines of r_len
        e_run = np.repeat(np.arange(n_runs), n * r_len)
        local = np.arange(seg[-1]) - seg[e_run]
        e_fix = shared[local // r_len[e_run]] + r_fix[e_run]
        e_along = shift[0] + r_a[e_run] + local % r_len[e_run]
        yy, xx = (e_fix, e_along) if horizontal else (e_along, e_fix)
        fl = (r_code[e_run][None, :] >> np.arange(6)[:, None]) & 1
        g_row = (fl[0] * img[np.minimum(yy + 1, hs_ - 1), xx]
                 - fl[1] * img[np.maximum(yy - 1, 0), xx]) * (1 - fl[4])
        g_col = (fl[2] * img[yy, np.minimum(xx + 1, ws_ - 1)]
                 - fl[3] * img[yy, np.maximum(xx - 1, 0)]) * (1 - fl[5])
        mag_e, bin_e = _hog_lookup(g_row, g_col)
        rows = np.arange(len(e_run))
        delta = np.zeros((len(e_run) + 1, nb))
        delta[rows + 1, bin_e] += mag_e
        delta[rows + 1, self.bins[yy, xx]] -= self.mag[yy, xx]
        pre = np.cumsum(delta, axis=0)        # pre[s + t] - pre[s]: first t votes of a line

        # cells each run crosses and the stretch of the run inside each
        j0, j1 = r_a // cell, (r_b - 1) // cell
        n_j = j1 - j0 + 1
        j_run = np.repeat(np.arange(n_runs), n_j)
        jj = j0[j_run] + np.arange(n_j.sum()) - np.repeat(np.cumsum(n_j) - n_j, n_j)
        lo = np.maximum(jj * cell, r_a[j_run]) - r_a[j_run]
        hi = np.minimum(jj * cell + cell, r_b[j_run]) - r_a[j_run]
        fix_cell = r_fix[j_run] // cell
        ks = kmap[fix_cell, jj] if horizontal else kmap[jj, fix_cell]
        start = seg[j_run][None, :] + np.arange(n)[:, None] * r_len[j_run][None, :]   # (n, J)
        at = start[:, None, :] + (shift - shift[0])[None, :, None]                    # (n, m, J)
        part = pre[at + hi] - pre[at + lo]                                            # (n, m, J, nb)
        if not horizontal:
            part = part.transpose(1, 0, 2, 3)                                         # (ny, nx, J, nb)
        idx = ((ks[None, None, :] * ny + np.arange(ny)[:, None, None]) * nx
               + np.arange(nx)[None, :, None])[..., None] * nb + np.arange(nb)
        hist.reshape(-1)[:] += np.bincount(idx.ravel(), part.ravel(), minlength=hist.size)

    def side_cells(self):
        """Frame cells away from the box, shared by windows on the same row or column.

        A top-frame cell of window (ky, kx) differs from the plain lattice cell only on the
        window's top row, where skimage zeroes g_row: the pixel adds |g_col| to the 0-deg
        bin instead of its usual vote. That depends on the absolute row wys[ky] and the
        cell's column, not on kx, so it is computed once per (ky, lattice column) with 1-D
        prefix sums. Likewise bottom (if the last cell row holds the last pixel row), left
        and right. Corner cells are not covered (two frame sides meet there).

        Returns
        -------
        dict side -> (ny or nx, L, nb) scaled cell histograms; 'top'/'bottom' are indexed
        [ky, lattice column], 'left'/'right' [kx, lattice row].
        """
        cell, nb, g = features.HOG_CELL_PX, features.HOG_ORIENTATIONS, self.g
        h, w = self.mask.shape
        ly_n, lx_n = self.cell_sums.shape[:2]
        b0 = _hog_lookup(0, 1)[1]
        b_up, b_dn = _hog_lookup(1, 0)[1], _hog_lookup(-1, 0)[1]
        out = {}

        def variant(add_mag, add_bin, mag, bins, base, n_lat):
            n, length = mag.shape
            d = np.zeros((n * length, nb))
            rows = np.arange(n * length)
            d[rows, np.broadcast_to(add_bin, mag.shape).ravel()] += add_mag.ravel()
            d[rows, bins.ravel()] -= mag.ravel()
            pre = np.zeros((n, length + 1, nb))
            np.cumsum(d.reshape(n, length, nb), axis=1, out=pre[:, 1:])
            lat = np.arange(n_lat) * g
            return _clean(base + pre[:, lat + cell] - pre[:, lat])

        for side, row in (("top", 0), ("bottom", h - 1)):
            if side == "bottom" and cell * self.ncr != h:
                continue
            y = self.wys + row
            cy = (self.wys + cell * (0 if side == "top" else self.ncr - 1)) // g
            out[side] = variant(np.abs(self.g_col[y]), b0, self.mag[y], self.bins[y],
                                self.cell_sums[cy], lx_n)
        for side, col in (("left", 0), ("right", w - 1)):
            if side == "right" and cell * self.ncc != w:
                continue
            x = self.wxs + col
            cx = (self.wxs + cell * (0 if side == "left" else self.ncc - 1)) // g
            add_bin = np.where(self.g_row[:, x].T > 0, b_up, b_dn)
            out[side] = variant(np.abs(self.g_row[:, x].T), add_bin, self.mag[:, x].T,
                                self.bins[:, x].T, self.cell_sums[:, cx].transpose(1, 0, 2),
                                ly_n)
        return out

    def side_cell(self, sides, side, i, j):
        """Side-variant histogram of window cell (i, j) for every window: (ny, nx, nb)."""
        cell, g = features.HOG_CELL_PX, self.g
        if side in ("top", "bottom"):
            return sides[side][np.arange(len(self.wys))[:, None], (self.wxs + cell * j) // g]
        return sides[side][np.arange(len(self.wxs))[None, :], ((self.wys + cell * i) // g)[:, None]]

    def changed_cells(self):
        """(changed (ncr, ncc) bool, zero (ncr, ncc) bool): cells needing per-window work."""
        cell = features.HOG_CELL_PX
        h, w = self.mask.shape
        iy1, ix1, iy2, ix2 = self.inner
        zy1, zx1, zy2, zx2 = self.z
        y0 = cell * np.arange(self.ncr)
        x0 = cell * np.arange(self.ncc)
        frame_r = (y0 == 0) | (y0 + cell > h - 1)
        frame_c = (x0 == 0) | (x0 + cell > w - 1)
        near_r = (y0 < iy2 + 1) & (y0 + cell > iy1 - 1)
        near_c = (x0 < ix2 + 1) & (x0 + cell > ix1 - 1)
        zero = ((y0 >= zy1) & (y0 + cell <= zy2))[:, None] & ((x0 >= zx1) & (x0 + cell <= zx2))
        changed = frame_r[:, None] | frame_c[None, :] | (near_r[:, None] & near_c[None, :])
        return changed & ~zero, zero


def hog_single(img):
    """`features.hog` of one uint8 image in numpy (same numbers up to skimage's float32
    cell sums). Used for the template, where one skimage call would cost as much as the
    whole batched search."""
    cell, nb = features.HOG_CELL_PX, features.HOG_ORIENTATIONS
    img = np.asarray(img).astype(np.intp)
    h, w = img.shape
    ncr, ncc = h // cell, w // cell
    g_row = np.zeros_like(img)
    g_col = np.zeros_like(img)
    g_row[1:-1] = img[2:] - img[:-2]
    g_col[:, 1:-1] = img[:, 2:] - img[:, :-2]
    mag, bins = _hog_lookup(g_row[:ncr * cell, :ncc * cell], g_col[:ncr * cell, :ncc * cell])
    cell_id = (np.arange(ncr * cell)[:, None] // cell) * ncc + np.arange(ncc * cell) // cell
    hist = np.bincount((cell_id * nb + bins).ravel(), mag.ravel(), minlength=ncr * ncc * nb)
    hist = hist.reshape(ncr, ncc, nb) / (cell * cell)
    blocks = np.concatenate([hist[:-1, :-1], hist[:-1, 1:], hist[1:, :-1], hist[1:, 1:]], -1)
    return _l2hys(blocks).ravel()


def hog_windows(region, mask, wys, wxs):
    """HOG (as `features.hog`) of every masked window of `region`, every cell exact.

    Parameters
    ----------
    region : (Hs, Ws) array of integers 0..255
        Reference pixels covering all windows.
    mask : (H, W) uint8
        Ring mask (0 on the blacked-out box, a rectangle).
    wys, wxs : (ny,), (nx,) int
        Window top-left corners in region coordinates (evenly spaced).

    Returns
    -------
    (ny * nx, D) float64
    """
    hs = _HogSearch(region, mask, wys, wxs)
    ci, cj = (a.ravel() for a in np.indices((hs.ncr, hs.ncc)))
    hist = hs.exact_cells(ci, cj)                                 # (ncr*ncc, ny, nx, nb)
    ny, nx = len(hs.wys), len(hs.wxs)
    hist = np.moveaxis(hist.reshape(hs.ncr, hs.ncc, ny, nx, -1), (2, 3), (0, 1))
    blocks = np.concatenate([hist[:, :, :-1, :-1], hist[:, :, :-1, 1:],
                             hist[:, :, 1:, :-1], hist[:, :, 1:, 1:]], axis=-1)
    return _l2hys(blocks).reshape(ny * nx, -1)


_PLAIN, _ZERO, _WINDOW, _SIDE0 = 0, 1, 2, 3


def hog_terms(region, mask, wys, wxs, template):
    """Dot products of the template HOG with every window's HOG, and the windows' norms.

    Each cell of the window grid has a kind (`_cell_kinds`), each block the set of its four
    cells' kinds; the blocks' terms are summed three ways: blocks of plain cells from the
    lattice, normalised once (`_add_plain_block_terms`); blocks of plain cells and one frame
    side's cells, normalised once per window row or column (`_add_side_block_terms`); the
    rest with cells and blocks per window (`_add_window_block_terms`).

    Parameters
    ----------
    region, mask, wys, wxs
        As `hog_windows`.
    template : (D,) float64
        HOG of the masked template (same size as the windows).

    Returns
    -------
    tw, ww : (ny * nx,) float64
        `template @ f` and `f @ f` for each window's feature `f`.
    """
    hs = _HogSearch(region, mask, wys, wxs)
    t = template.reshape(hs.nbr, hs.nbc, 4 * features.HOG_ORIENTATIONS)
    sides = hs.side_cells()
    side_names = list(sides)
    kind = _cell_kinds(hs, side_names)
    # each block's four cell kinds, as a bit set
    bits = 1 << kind
    b_set = bits[:-1, :-1] | bits[:-1, 1:] | bits[1:, :-1] | bits[1:, 1:]

    tw = np.zeros((len(hs.wys), len(hs.wxs)))
    ww = np.zeros((len(hs.wys), len(hs.wxs)))
    plain = _add_plain_block_terms(hs, t, b_set, tw, ww)
    side_blocks = _add_side_block_terms(hs, t, b_set, sides, side_names, tw, ww)
    per_win = ~plain & ~side_blocks & (b_set != 1 << _ZERO)
    if per_win.any():
        _add_window_block_terms(hs, t, kind, per_win, sides, side_names, tw, ww)
    return tw.ravel(), ww.ravel()


def _cell_kinds(hs, side_names):
    """Integer kind of every window cell (ncr, ncc): _PLAIN (the region's lattice cell),
    _ZERO (inside the box), _WINDOW (needs per-window work), or _SIDE0 + n for a frame cell of
    side ``side_names[n]`` away from the box, shared by windows on one row or column."""
    cell = features.HOG_CELL_PX
    ncr, ncc = hs.ncr, hs.ncc
    changed, zero = hs.changed_cells()
    h, w = hs.mask.shape
    iy1, ix1, iy2, ix2 = hs.inner
    y0, x0 = cell * np.arange(ncr), cell * np.arange(ncc)
    near = (((y0 < iy2 + 1) & (y0 + cell > iy1 - 1))[:, None]
            & ((x0 < ix2 + 1) & (x0 + cell > ix1 - 1))[None, :])
    on = {"top": (y0 == 0)[:, None] & np.ones(ncc, bool),
          "bottom": ((y0 + cell == h)[:, None] & np.ones(ncc, bool)),
          "left": np.ones(ncr, bool)[:, None] & (x0 == 0)[None, :],
          "right": np.ones(ncr, bool)[:, None] & (x0 + cell == w)[None, :]}
    n_sides = sum(v.astype(int) for v in on.values())
    kind = np.where(zero, _ZERO, np.where(changed, _WINDOW, _PLAIN))
    for n_side, side in enumerate(side_names):
        kind[changed & on[side] & (n_sides == 1) & ~near] = _SIDE0 + n_side
    return kind


def _add_plain_block_terms(hs, t, b_set, tw, ww):
    """Add the terms of blocks made only of plain cells to ``tw``, ``ww`` (in place): their
    L2-Hys blocks were normalised once on the lattice. Returns those blocks (nbr, nbc) bool."""
    plain = b_set == 1 << _PLAIN
    tw += np.einsum("yxijd,ijd->yx", hs.lattice_view(hs.blocks, hs.nbr, hs.nbc),
                    np.where(plain[..., None], t, 0.0))
    ww += np.einsum("yxij,ij->yx", hs.lattice_view(hs.block_sq, hs.nbr, hs.nbc),
                    plain.astype(float))
    return plain


def _add_side_block_terms(hs, t, b_set, sides, side_names, tw, ww):
    """Add the terms of blocks made of plain cells and one side's shared frame cells (in
    place), each block normalised once per window row (top, bottom) or column (left,
    right). Returns those blocks (nbr, nbc) bool."""
    cell, g = features.HOG_CELL_PX, hs.g
    q = cell // g
    ny, nx = len(hs.wys), len(hs.wxs)
    c = hs.cells
    side_blocks = np.zeros(b_set.shape, bool)
    for n_side, side in enumerate(side_names):
        sel = (b_set | 1 << _PLAIN) == (1 << _PLAIN | 1 << (_SIDE0 + n_side))
        side_blocks |= sel
        if not sel.any():
            continue
        v = sides[side]
        if side == "top":
            yc = hs.wys // g + q
            blk = np.concatenate([v[:, :-q], v[:, q:], c[yc, :-q], c[yc, q:]], -1)
        elif side == "bottom":
            yc = (hs.wys + cell * (hs.ncr - 2)) // g
            blk = np.concatenate([c[yc, :-q], c[yc, q:], v[:, :-q], v[:, q:]], -1)
        elif side == "left":
            xc = hs.wxs // g + q
            cc = c[:, xc].transpose(1, 0, 2)
            blk = np.concatenate([v[:, :-q], cc[:, :-q], v[:, q:], cc[:, q:]], -1)
        else:
            xc = (hs.wxs + cell * (hs.ncc - 2)) // g
            cc = c[:, xc].transpose(1, 0, 2)
            blk = np.concatenate([cc[:, :-q], v[:, :-q], cc[:, q:], v[:, q:]], -1)
        blk = _l2hys(blk)
        bi, bj = np.nonzero(sel)
        if side in ("top", "bottom"):
            idx = (np.arange(ny)[:, None, None], (hs.wxs[None, :, None] + cell * bj) // g)
        else:
            idx = (np.arange(nx)[None, :, None], (hs.wys[:, None, None] + cell * bi) // g)
        tw += np.einsum("yxkd,kd->yx", blk[idx], t[bi, bj])
        ww += np.einsum("yxkd,yxkd->yx", blk[idx], blk[idx])
    return side_blocks


def _add_window_block_terms(hs, t, kind, per_win, sides, side_names, tw, ww):
    """Add the terms of the ``per_win`` blocks (in place): the cells they need, each by its
    kind, for every window, then the blocks' L2-Hys terms (`_l2hys_terms`)."""
    nb = features.HOG_ORIENTATIONS
    ny, nx = len(hs.wys), len(hs.wxs)
    bi, bj = np.nonzero(per_win)
    need = np.zeros((hs.ncr, hs.ncc), bool)
    for di in (0, 1):
        for dj in (0, 1):
            need[bi + di, bj + dj] = True
    ni, nj = np.nonzero(need)
    pos = np.full((hs.ncr, hs.ncc), -1)
    pos[ni, nj] = np.arange(len(ni))
    cells = np.empty((len(ni), ny, nx, nb))
    kinds = kind[ni, nj]
    sel = kinds == _WINDOW
    if sel.any():
        cells[sel] = hs.exact_cells(ni[sel], nj[sel])
    cells[kinds == _ZERO] = 0.0
    sel = kinds == _PLAIN
    if sel.any():
        cells[sel] = hs.lattice_cells(ni[sel], nj[sel], hs.cells)
    for k in np.flatnonzero(kinds >= _SIDE0):
        cells[k] = hs.side_cell(sides, side_names[kinds[k] - _SIDE0], ni[k], nj[k])
    slots = [pos[bi, bj], pos[bi, bj + 1], pos[bi + 1, bj], pos[bi + 1, bj + 1]]
    t_slots = t[bi, bj].reshape(len(bi), 4, nb)
    dt, dd = _l2hys_terms(cells, slots, t_slots)
    tw += dt
    ww += dd


def _l2hys_terms(cells, slots, t_slots, eps=1e-5):
    """Sum over blocks of (t_b . f_b, f_b . f_b), f_b the L2-Hys block of four cells.

    Same arithmetic as `_l2hys` (so the same numbers up to summation order) without
    building the (K, ny, nx, 36) block array: L2-Hys is v / n1, clipped at 0.2, divided by
    n2 = sqrt(|clipped|^2 + eps^2), so t.f = (t.clipped) / n2 and f.f = |clipped|^2 / n2^2.

    cells : (Kc, ny, nx, nb); slots : four (K,) index arrays into cells (block order);
    t_slots : (K, 4, nb) template blocks.
    """
    sq = np.einsum("kyxd,kyxd->kyx", cells, cells)
    slots = np.stack(slots)                                     # (4, K)
    inv1 = 1.0 / np.sqrt(sq[slots].sum(0) + eps ** 2)           # (K, ny, nx)
    v = cells[slots]                                            # (4, K, ny, nx, nb)
    v *= inv1[None, ..., None]
    np.minimum(v, 0.2, out=v)
    clip_sq = np.einsum("skyxd,skyxd->kyx", v, v)
    clip_t = np.einsum("skyxd,ksd->kyx", v, t_slots)
    n2sq = clip_sq + eps ** 2
    return (clip_t / np.sqrt(n2sq)).sum(0), (clip_sq / n2sq).sum(0)


# ---------------------------------------------------------------- raw, pHash, Canny, LBP

def _inner(mask):
    zero = np.argwhere(mask == 0)
    iy1, ix1 = zero.min(0)
    iy2, ix2 = zero.max(0) + 1
    return int(iy1), int(ix1), int(iy2), int(ix2)


def raw_terms(region, mask, wys, wxs, masked_template):
    """Exact ring sums for raw pixels: |t|^2, t.w and |w|^2 of every window's ring.

    The cross term is an FFT correlation in float64 rounded to the nearest integer: the
    true value is an integer below 2^53 and the FFT error is far below 0.5, so all three
    terms (and hence mse/euclidean/cosine) equal the loop's exact integer sums.
    """
    from scipy import signal
    h, w = mask.shape
    t = masked_template.astype(np.float64)
    tt = float(np.sum(t * t))
    _check_grid(region.shape, mask.shape, wys, wxs)
    sub = region[wys[0]:wys[-1] + h, wxs[0]:wxs[-1] + w]
    corr = signal.correlate(sub, t, mode="valid", method="fft")
    tw = np.rint(corr[(wys - wys[0])[:, None], (wxs - wxs[0])[None, :]])
    ii = _integral(region * region)
    iy1, ix1, iy2, ix2 = _inner(mask)
    whole = _rect_sums(ii[..., None], wys, wxs, [0], [0], [h], [w])[..., 0, 0]
    box = _rect_sums(ii[..., None], wys, wxs, [iy1], [ix1], [iy2], [ix2])[..., 0, 0]
    return tt, tw.ravel(), (whole - box).ravel()


def phash_windows(region, mask, wys, wxs):
    """pHash bits (as `features.phash`) of every masked window: (ny * nx, 64) bool.

    The 8x8 DCT of the area-resized masked window is `P_h @ (win - win * box) @ P_w.T`;
    both terms are separable, so each is two matrix products over strided views.
    """
    h, w = mask.shape
    ph, pw = features.phash_projection(h), features.phash_projection(w)
    iy1, ix1, iy2, ix2 = _inner(mask)

    def coef(y1, x1, y2, x2):
        # columns first: (Hs, nx, 8), then rows: (ny, nx, 8, 8)
        cols = sliding_window_view(region, x2 - x1, axis=1)[:, wxs + x1]     # (Hs, nx, x2-x1)
        a = cols @ pw[:, x1:x2].T                                            # (Hs, nx, 8)
        rows = sliding_window_view(a, y2 - y1, axis=0)[wys + y1]             # (ny, nx, 8, y2-y1)
        return np.einsum("uh,yxvh->yxuv", ph[:, y1:y2], rows)

    c = coef(0, 0, h, w) - coef(iy1, ix1, iy2, ix2)
    c = c.reshape(len(wys) * len(wxs), -1)
    return c >= c.mean(axis=1, keepdims=True)


def canny_windows(region, mask, wys, wxs):
    """Canny edges of every masked window at the ring pixels: (ny * nx, n_ring) bool.

    Canny's hysteresis links edges across the whole window, so each window runs cv2.Canny.
    """
    h, w = mask.shape
    ring = mask.astype(bool)
    img = region.astype(np.uint8)
    out = np.empty((len(wys) * len(wxs), int(ring.sum())), bool)
    k = 0
    for y in wys:
        for x in wxs:
            win = cv2.bitwise_and(img[y:y + h, x:x + w], img[y:y + h, x:x + w], mask=mask)
            out[k] = features.canny(win)[ring]
            k += 1
    return out


def lbp_windows(region, mask, wys, wxs):
    """LBP cell histograms (as `features.lbp_histograms` over the ring) of every window.

    Codes are computed once over the region (`features.lbp` is translation-invariant) and
    counted per cell with integral images on the lattice of window corners; the box's
    pixels are subtracted with box sums (`_lbp_cell_counts`). Ring pixels within R of the
    window border or of the blacked-out box sample masked or missing neighbours: their
    counts are corrected by `_lbp_edge_corrections`.

    Returns
    -------
    (ny * nx, ncells * 10) float64
    """
    _check_grid(region.shape, mask.shape, wys, wxs)
    cell = features.LBP_CELL_PX
    wys, wxs = np.asarray(wys), np.asarray(wxs)
    img = np.asarray(region, np.float64)
    codes = features.lbp(img)
    hist = _lbp_cell_counts(codes, mask, wys, wxs)
    _lbp_edge_corrections(hist, img, codes, mask, wys, wxs)
    hist = np.rint(hist)      # counts: integral-image round-off removed
    return np.moveaxis(hist, 0, 2).reshape(len(wys) * len(wxs), -1) / (cell * cell)


def _lbp_cell_counts(codes, mask, wys, wxs):
    """Per-cell counts of the region's (unmasked) codes in every window, the blacked-out
    box's pixels left out: (ncells, ny, nx, nbins), cells row-major."""
    cell, nbins = features.LBP_CELL_PX, features.LBP_POINTS + 2
    h, w = mask.shape
    ncr, ncc = h // cell, w // cell
    hs, ws = codes.shape
    planes = np.zeros((hs * ws, nbins))
    planes[np.arange(hs * ws), codes.ravel()] = 1.0
    ii = cv2.integral(planes.reshape(hs, ws, nbins), sdepth=cv2.CV_64F)

    ci, cj = (a.ravel() for a in np.indices((ncr, ncc)))
    # cell sums once on the lattice of window corners, then one gather per window cell
    steps = np.concatenate([np.diff(wys), np.diff(wxs), [cell]]).astype(int)
    g = int(np.gcd.reduce(steps))
    q = cell // g
    iig = ii[::g, ::g]
    lattice = iig[q:, q:] - iig[:-q, q:] - iig[q:, :-q] + iig[:-q, :-q]
    hist = lattice[((wys[None, :] + cell * ci[:, None]) // g)[:, :, None],
                   ((wxs[None, :] + cell * cj[:, None]) // g)[:, None, :]]   # (K, ny, nx, nb)
    iy1, ix1, iy2, ix2 = _inner(mask)
    ry1, ry2 = np.maximum(ci * cell, iy1), np.minimum(ci * cell + cell, iy2)
    rx1, rx2 = np.maximum(cj * cell, ix1), np.minimum(cj * cell + cell, ix2)
    inside = (ry2 - ry1 == cell) & (rx2 - rx1 == cell)
    hist[inside] = 0.0  # the box's pixels are not counted
    hit = np.flatnonzero((ry2 > ry1) & (rx2 > rx1) & ~inside)
    if len(hit):
        ya = wys[None, :, None] + ry1[hit, None, None]
        yb = wys[None, :, None] + ry2[hit, None, None]
        xa = wxs[None, None, :] + rx1[hit, None, None]
        xb = wxs[None, None, :] + rx2[hit, None, None]
        hist[hit] -= ii[yb, xb] - ii[ya, xb] - ii[yb, xa] + ii[ya, xa]
    return hist


def _lbp_edge_corrections(hist, img, codes, mask, wys, wxs):
    """Add to ``hist`` (in place) the masked-minus-plain code counts of the ring pixels whose
    LBP neighbourhood reaches the window border or the box.

    Those pixels are grouped by which neighbour taps the mask removes (a bit pattern). A
    frequent pattern's codes are computed once on the rows x columns its pixels visit
    across all windows (`_lbp_pattern_votes`); rare ones (corners of the box and of the
    window) window by window (`_lbp_rare_votes`); all votes are counted with one bincount.
    """
    cell, nbins = features.LBP_CELL_PX, features.LBP_POINTS + 2
    rad = int(np.ceil(features.LBP_RADIUS))
    ny, nx = len(wys), len(wxs)
    h, w = mask.shape
    ncr, ncc = h // cell, w // cell
    iy1, ix1, iy2, ix2 = _inner(mask)

    # ring pixels (inside whole cells) whose neighbourhood reaches the border or the box
    yy, xx = np.mgrid[:ncr * cell, :ncc * cell]
    ring = mask[:ncr * cell, :ncc * cell] > 0
    near = ((yy < rad) | (yy >= h - rad) | (xx < rad) | (xx >= w - rad)
            | ((yy >= iy1 - rad) & (yy < iy2 + rad) & (xx >= ix1 - rad) & (xx < ix2 + rad)))
    py, px = yy[ring & near], xx[ring & near]
    taps = sorted({(r, c) for r0, r1, c0, c1, _, _ in features.lbp_samples()
                   for r in (r0, r1) for c in (c0, c1)})
    kept = np.stack([_kept(mask, py + dy, px + dx) for dy, dx in taps], axis=1)
    pattern = kept @ (1 << np.arange(len(taps), dtype=np.int64))
    # corrections are accumulated over the touched cells only, then added to those
    touched, cell_of = np.unique((py // cell) * ncc + px // cell, return_inverse=True)
    base = (cell_of[:, None, None] * ny + np.arange(ny)[None, :, None]) * nx
    base = (base + np.arange(nx)[None, None, :]) * nbins                # (P, ny, nx)
    add, sub = [], []
    pats, counts = np.unique(pattern, return_counts=True)
    for pat in pats[counts >= 16]:
        m = pattern == pat
        keep = dict(zip(taps, ((pat >> np.arange(len(taps))) & 1).astype(bool)))
        a, b = _lbp_pattern_votes(img, codes, keep, py[m], px[m], base[m], wys, wxs)
        add.append(a)
        sub.append(b)
    small = np.isin(pattern, pats[counts < 16])
    if small.any():
        a, b = _lbp_rare_votes(img, codes, taps, kept[small], py[small], px[small],
                               base[small], wys, wxs)
        add.append(a)
        sub.append(b)
    if add:
        size = len(touched) * ny * nx * nbins
        delta = (np.bincount(np.concatenate(add), minlength=size)
                 - np.bincount(np.concatenate(sub), minlength=size))
        hist[touched] += delta.reshape(len(touched), ny, nx, nbins)


def _lbp_pattern_votes(img, codes, keep, gy, gx, base, wys, wxs):
    """Bin indices of the exact (masked) and the plain codes of pixels (gy, gx) that share one
    neighbour pattern ``keep`` ({tap: kept}), in every window: codes computed once on the
    region rows x columns the pixels visit. ``base`` (P, ny, nx): each pixel's first bin."""
    rows = np.unique(wys[:, None] + gy[None, :])
    cols = np.unique(wxs[:, None] + gx[None, :])
    cache = {}

    def tap(dy, dx):
        if not keep[(dy, dx)]:
            return 0.0
        if (dy, dx) not in cache:
            cache[(dy, dx)] = img[(rows + dy)[:, None], (cols + dx)[None, :]]
        return cache[(dy, dx)]
    exact = features.lbp_codes(tap, img[rows[:, None], cols[None, :]])
    plain = codes[rows[:, None], cols[None, :]]
    grid = (np.searchsorted(rows, wys[:, None] + gy[None, :])[:, None, :] * len(cols)
            + np.searchsorted(cols, wxs[:, None] + gx[None, :])[None, :, :])  # (ny, nx, P)
    b = np.moveaxis(base, 0, -1)
    return (b + exact.ravel()[grid]).ravel(), (b + plain.ravel()[grid]).ravel()


def _lbp_rare_votes(img, codes, taps, kept, gy, gx, base, wys, wxs):
    """As `_lbp_pattern_votes` for pixels of rare patterns (``kept`` (P, taps) per pixel),
    computed directly in every window."""
    hs, ws = img.shape
    ay = wys[:, None, None] + gy[None, None, :]                        # (ny, 1, P)
    ax = wxs[None, :, None] + gx[None, None, :]                        # (1, nx, P)

    def tap(dy, dx):
        k = kept[:, taps.index((dy, dx))]
        vals = img[np.clip(ay + dy, 0, hs - 1), np.clip(ax + dx, 0, ws - 1)]
        return vals * k
    exact = features.lbp_codes(tap, img[ay, ax])
    b = np.moveaxis(base, 0, -1)
    return (b + exact).ravel(), (b + codes[ay, ax]).ravel()


def _kept(mask, y, x):
    """Whether window pixels (y, x) exist and are not blacked out."""
    h, w = mask.shape
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    ok[ok] = mask[y[ok], x[ok]] > 0
    return ok


def distances(feature, distance, masked_template, mask, region, wys, wxs):
    """Distance from the template to every masked window (row-major over wys, wxs).

    Parameters
    ----------
    feature, distance : str
        A valid pair (see `datasets.filter.similar.VALID_DISTANCES`).
    masked_template : (H, W) uint8
        Template with its box blacked out.
    mask : (H, W) uint8
        Ring mask.
    region : (Hs, Ws) float64
        Reference pixels covering all windows.
    wys, wxs : int arrays
        Window corners in region coordinates.

    Returns
    -------
    (len(wys) * len(wxs),) float64
    """
    _check_grid(region.shape, mask.shape, wys, wxs)
    if feature == "hog":
        template = hog_single(masked_template)
    else:
        template = features.window_feature(masked_template, mask, feature)  # as the loop's
    if feature == "hog":
        tw, ww = hog_terms(region, mask, wys, wxs, template)
        return _from_terms(distance, float(template @ template), tw, ww, template.size)
    if feature == "raw":
        tt, tw, ww = raw_terms(region, mask, wys, wxs, masked_template)
        return _from_terms(distance, tt, tw, ww, int(mask.sum()))
    if feature == "phash":
        return dist.to_many(distance, template, phash_windows(region, mask, wys, wxs))
    if feature == "canny":
        return dist.to_many(distance, template, canny_windows(region, mask, wys, wxs))
    if feature == "lbp":
        # histograms are multiples of 1/64: these dot products are exact, like the loop's
        f = lbp_windows(region, mask, wys, wxs)
        return _from_terms(distance, float(template @ template), f @ template,
                           np.einsum("ij,ij->i", f, f), template.size)
    raise ValueError(f"unknown feature {feature!r}")


def _from_terms(distance, tt, tw, ww, size):
    """Distance from dot products: |t|^2, t.f and |f|^2 (euclidean, mse or cosine)."""
    if distance == "cosine":
        return dist._cosine_from(tw, tt, ww)
    sq = np.maximum(tt - 2.0 * tw + ww, 0.0)
    return sq / size if distance == "mse" else np.sqrt(sq)
