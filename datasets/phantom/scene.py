"""Rendering of one synthetic dual-panel B-mode screenshot (no annotation ink).

The phantom imitates the clinic's screenshots (DESIGN.md, "Data you can use"): two panels
of the same muscle region side by side, left and right body side, translation-symmetric.

How a panel is made, in the order of the physics it imitates:

1. an *anatomy* echogenicity map (linear amplitude, 1 = muscle background) on a canvas a
   few pixels larger than the panel: skin line, subcutaneous fat with septa, a bright
   fascia, muscle with oblique fibre striations (pennate angle), a deeper aponeurosis,
   sometimes a bone surface with its shadow; look-alikes (vessels with bright walls, cysts
   with posterior enhancement) are drawn here, so both panels show them;
2. each panel is a crop of that map, the right one shifted by a few pixels;
3. strain lesions are drawn into one panel's crop only: darker (hypoechoic) or mottled
   (heteroechoic), soft irregular edges, fibre texture replaced by isotropic texture;
4. fresh speckle per panel: a complex Gaussian field blurred by an anisotropic PSF, whose
   magnitude is Rayleigh distributed, multiplies the map;
5. log compression to the display (dB), depth attenuation with partial TGC, a per-panel gain.

The panels sit on a black canvas with scanner text in the borders and a dark gap between
them, placed so that the border-crop scan lines (columns W/4, W/2, 3W/4, rows H/4, H/2, 3H/4)
meet nothing but panel content, and the midline of the cropped area falls in the gap.

:func:`render_single` draws one panel that fills the whole picture (no border, no text, no
second panel), landscape ``SINGLE_WIDTHS`` x ``SINGLE_HEIGHTS``: the stand-in for
single-panel ultrasound. Both go through the same renderer; only the layout differs.
"""
import dataclasses
import math

import cv2
import numpy as np

SIZES = ((960, 640), (1024, 768), (1136, 852), (1280, 720))
PANEL_WIDTH = (380, 560)
#: Single-panel image sizes, inclusive ranges: landscape pictures around 560 x 470 px, the
#: size of single-panel ultrasound exported without the scanner's frame.
SINGLE_WIDTHS = (520, 600)
SINGLE_HEIGHTS = (440, 500)
_SINGLE_MIN_SIDE = 200
_MARGIN = 8          # anatomy canvas margin around a panel; bounds the right panel's shift
_SCAN_FRACTIONS = (0.25, 0.5, 0.75)
_SCAN_KEEP_OUT = 10  # px either side of a scan line where border text is not drawn


@dataclasses.dataclass
class Lesion:
    """One strain lesion in source (screenshot) coordinates.

    ``contour`` is the lesion outline (N x 2 float, dense), ``box`` its tight bounding box
    ``[x1, y1, x2, y2]``; ``centre``, ``axes`` (semi-axes a >= b) and ``angle`` (radians)
    describe the ellipse the outline perturbs.
    """
    side: str
    contour: np.ndarray
    box: list
    centre: tuple
    axes: tuple
    angle: float
    kind: str


@dataclasses.dataclass
class Screenshot:
    """A rendered screenshot before annotation.

    ``image`` is H x W x 3 uint8 grey (B = G = R); ``panels`` maps "left"/"right" (a
    single-panel picture: "full") to ``[x1, y1, x2, y2]`` (x2, y2 exclusive); ``lookalikes``
    holds one entry per look-alike and panel, ``{"box": [...], "kind": "vessel" | "cyst",
    "side": ...}``.
    """
    image: np.ndarray
    panels: dict
    lesions: list
    lookalikes: list
    shift: tuple
    gain_db: float


# ----------------------------------------------------------------------------- helpers
def convolve_in_order(a, v, mode):
    """``np.convolve(a, v, mode)`` for float32 1-D arrays, summed tap by tap in one order.

    Why not ``np.convolve``: on float32 it calls OpenBLAS's dot product, whose kernel OpenBLAS
    picks for the CPU, and the kernels sum in different orders, so the phantom's grey levels
    differed between CPUs (README, "Phantom data"). Here each output is ``v[m-1] * x[i] +
    v[m-2] * x[i+1] + ...`` over the zero-padded input, accumulated tap by tap with
    element-wise float32 multiply and add: IEEE rounds each of those the same on every CPU
    and at every SIMD width, and NumPy does not fuse them. Only ``"valid"`` and ``"same"``
    with ``len(a) >= len(v)``, the two the phantom uses.
    """
    a = np.asarray(a, np.float32)
    v = np.asarray(v, np.float32)
    n, m = len(a), len(v)
    if a.ndim != 1 or v.ndim != 1 or m == 0 or n < m:
        raise ValueError(f"convolve_in_order needs 1-D arrays with len(a) >= len(v) > 0, "
                         f"got shapes {a.shape} and {v.shape}")
    if mode == "valid":
        padded, start, length = a, 0, n - m + 1
    elif mode == "same":
        # np.convolve's "same" is the middle n of the full n + m - 1 outputs.
        padded = np.concatenate([np.zeros(m - 1, np.float32), a, np.zeros(m - 1, np.float32)])
        start, length = (m - 1) // 2, n
    else:
        raise ValueError(f"convolve_in_order: mode must be 'valid' or 'same', got {mode!r}")
    out = np.zeros(length, np.float32)
    for k, tap in enumerate(v[::-1]):
        out += padded[start + k:start + k + length] * tap
    return out


def _smooth_noise(rng, n, scale, amp):
    """1-D smooth random curve of length ``n`` (Gaussian-filtered white noise, std ~amp)."""
    k = cv2.getGaussianKernel(int(6 * scale) | 1, scale).astype(np.float32).ravel()
    raw = rng.standard_normal(n + len(k) - 1).astype(np.float32)
    sm = convolve_in_order(raw, k, "valid")[:n]
    sm /= max(float(sm.std()), 1e-6)
    return amp * sm


def _field(rng, shape, sigma_x, sigma_y, down=4):
    """2-D smooth random field with unit std, made at 1/``down`` resolution for speed."""
    h, w = shape
    hs, ws = max(h // down, 4), max(w // down, 4)
    f = rng.standard_normal((hs, ws)).astype(np.float32)
    f = cv2.GaussianBlur(f, (0, 0), max(sigma_x / down, 0.5), sigmaY=max(sigma_y / down, 0.5),
                         borderType=cv2.BORDER_REFLECT)
    f = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
    f /= max(float(f.std()), 1e-6)
    return f


def _line_profile(rng, length, spacing, width, amp_range):
    """1-D profile of thin bright lines at random spacing (fibre or septum cross-section)."""
    n = int(length / spacing[0]) + 2
    pos = rng.uniform(0, spacing[1]) + np.cumsum(rng.uniform(*spacing, size=n))
    amps = rng.uniform(*amp_range, size=n)
    keep = pos < length - 1
    prof = np.zeros(length, np.float32)
    np.add.at(prof, pos[keep].astype(np.int64), amps[keep].astype(np.float32))
    k = cv2.getGaussianKernel(int(6 * width) | 1, width).astype(np.float32).ravel()
    return convolve_in_order(prof, k / k.max(), "same")


def _sample_1d(profile, u):
    """``profile`` linearly interpolated at float index array ``u`` (cv2.remap on one row)."""
    row = profile[None, :]
    map_y = np.zeros_like(u, dtype=np.float32)
    return cv2.remap(row, u.astype(np.float32), map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def _band(y, centre, sigma):
    """Gaussian band exp(-((y - centre)/sigma)^2 / 2) with per-column centre (broadcast)."""
    return np.exp(-0.5 * ((y - centre[None, :]) / sigma) ** 2)


# ----------------------------------------------------------------------------- anatomy
def _anatomy(rng, h, w, scale):
    """Echogenicity map (float32, h x w) of a longitudinal muscle view, plus layer info."""
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    skin = _MARGIN + rng.uniform(5, 9) * scale
    fat_end = _MARGIN + rng.uniform(0.1, 0.22) * h + _smooth_noise(rng, w, 60 * scale, 3 * scale)
    fat_end += np.linspace(0, rng.uniform(-0.04, 0.04) * h, w, dtype=np.float32)
    deep = _MARGIN + rng.uniform(0.55, 0.75) * h + _smooth_noise(rng, w, 80 * scale, 5 * scale)
    deep += np.linspace(0, rng.uniform(-0.12, 0.12) * h, w, dtype=np.float32)

    # fat: hypoechoic with near-horizontal bright septa
    septa = _line_profile(rng, h + w, (8 * scale, 22 * scale), 0.9, (0.6, 1.6))
    u = y + x * rng.uniform(-0.08, 0.08) + _field(rng, (h, w), 40, 12) * 3 * scale
    fat = 0.38 + 1.2 * _sample_1d(septa, u) * (0.5 + 0.5 * _field(rng, (h, w), 60, 8))
    # muscle: pennate fibres, bright perimysium lines on a darker background
    ang1 = math.radians(rng.uniform(8, 24)) * rng.choice([-1, 1])
    ang2 = math.radians(rng.uniform(5, 22)) * rng.choice([-1, 1])
    wobble = _field(rng, (h, w), 80, 40) * 2.5 * scale
    fib1 = _line_profile(rng, 3 * (h + w), (4 * scale, 12 * scale), 1.0 * scale, (0.3, 1.3))
    fib2 = _line_profile(rng, 3 * (h + w), (4 * scale, 12 * scale), 1.0 * scale, (0.3, 1.3))
    off = float(h + w)
    u1 = y * math.cos(ang1) - x * math.sin(ang1) + wobble + off
    u2 = y * math.cos(ang2) - x * math.sin(ang2) + wobble + off
    fade = np.clip(0.55 + 0.45 * _field(rng, (h, w), 50, 6), 0.1, 1.2)  # lines fade along fibres
    muscle1 = 0.5 + 1.1 * _sample_1d(fib1, u1) * fade
    muscle2 = 0.46 + 1.0 * _sample_1d(fib2, u2) * fade
    # layers, blended with soft boundaries
    t_fat = _sigmoid((y - fat_end[None, :]) / 1.5)
    t_deep = _sigmoid((y - deep[None, :]) / 1.5)
    amp = fat * (1 - t_fat) + (muscle1 * (1 - t_deep) + muscle2 * t_deep) * t_fat
    skin_col = np.full(w, skin, np.float32)
    top = np.clip(1.0 - (y - _MARGIN) / max(skin - _MARGIN, 1.0), 0, 1)  # bright probe/skin band
    amp = amp * (1 - top) + 3.2 * top
    amp += 1.6 * _band(y, skin_col + 2 * scale, 1.8 * scale)             # dermis-fat interface
    amp += rng.uniform(2.2, 3.6) * _band(y, fat_end + 1.5 * scale, rng.uniform(1.4, 2.4) * scale)
    amp += rng.uniform(1.6, 2.8) * _band(y, deep, rng.uniform(1.2, 2.2) * scale)
    info = {"fat_end": fat_end, "deep": deep, "skin": skin, "fibre_angles": (ang1, ang2)}
    if rng.random() < 0.35:   # bone surface: bright curved line with an acoustic shadow below
        bone = _MARGIN + rng.uniform(0.84, 0.93) * h + _smooth_noise(rng, w, 120 * scale, 4 * scale)
        bone -= 0.04 * h * np.sin(np.linspace(0, math.pi, w, dtype=np.float32) * rng.uniform(0.5, 1))
        amp += 4.0 * _band(y, bone, 1.8 * scale)
        shadow = _sigmoid((y - bone[None, :] - 4 * scale) / 2.0)
        amp *= 1 - 0.85 * shadow
        info["bone"] = bone
    return amp.astype(np.float32), info


def _ellipse_coords(shape, centre, axes, angle):
    """Normalised radius rho and polar angle phi of every pixel relative to a rotated ellipse."""
    h, w = shape
    cx, cy = centre
    a, b = axes
    y = np.arange(h, dtype=np.float32)[:, None] - cy
    x = np.arange(w, dtype=np.float32)[None, :] - cx
    c, s = math.cos(angle), math.sin(angle)
    u = (x * c + y * s) / a
    v = (-x * s + y * c) / b
    return np.sqrt(u * u + v * v), np.arctan2(v, u)


def _outline(centre, axes, angle, harmonics, n=180):
    """Points of the perturbed ellipse r(phi) = 1 + sum a_k cos(k phi + p_k), shape (n, 2)."""
    phi = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = _radius(phi, harmonics)
    a, b = axes
    u, v = a * r * np.cos(phi), b * r * np.sin(phi)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([centre[0] + u * c - v * s, centre[1] + u * s + v * c], axis=1)


def _radius(phi, harmonics):
    r = np.ones_like(phi)
    for k, ak, pk in harmonics:
        r = r + ak * np.cos(k * phi + pk)
    return r


def _window(box, shape, pad):
    """Integer window (slices and origin) around ``box`` padded by ``pad``, clipped to shape."""
    h, w = shape
    x1 = max(int(math.floor(box[0] - pad)), 0)
    y1 = max(int(math.floor(box[1] - pad)), 0)
    x2 = min(int(math.ceil(box[2] + pad)) + 1, w)
    y2 = min(int(math.ceil(box[3] + pad)) + 1, h)
    return (slice(y1, y2), slice(x1, x2)), (x1, y1)


def _ellipse_box(centre, axes, angle, rmax=1.0):
    a, b = axes[0] * rmax, axes[1] * rmax
    c, s = math.cos(angle), math.sin(angle)
    hw = math.sqrt((a * c) ** 2 + (b * s) ** 2)
    hh = math.sqrt((a * s) ** 2 + (b * c) ** 2)
    return [centre[0] - hw, centre[1] - hh, centre[0] + hw, centre[1] + hh]


def _draw_lookalike(rng, amp, kind, centre, axes, angle):
    """Draw a vessel or cyst into the anatomy map ``amp`` in place.

    Most are anechoic with a sharp edge, a bright wall (vessels) and posterior enhancement;
    about a third are "complex": low-level internal echoes, a soft edge and hardly any wall,
    which a detector can take for a lesion. Only the contralateral comparison tells them
    apart (they sit in both panels).
    """
    box = _ellipse_box(centre, axes, angle, 1.4)
    sl, (ox, oy) = _window([box[0], box[1], box[2], box[3] + 6 * axes[1]], amp.shape, 4)
    sub = amp[sl]
    rho, _ = _ellipse_coords(sub.shape, (centre[0] - ox, centre[1] - oy), axes, angle)
    local = float(sub.mean())
    if rng.random() < 0.35:
        edge = rng.uniform(2.0, 4.0)
        inside = _sigmoid((1.0 - rho) * axes[1] / edge)
        mott = _field(rng, sub.shape, 5, 5, down=2)
        fill = local * rng.uniform(0.3, 0.5) * np.clip(1 + 0.2 * mott, 0.6, 1.4)
        wall_gain, enh_gain = rng.uniform(0.0, 0.4), rng.uniform(0.0, 0.3)
    else:
        inside = _sigmoid((1.0 - rho) * axes[1])       # sharp edge, ~1 px
        fill = local * rng.uniform(0.03, 0.15)
        wall_gain = rng.uniform(1.5, 2.8) if kind == "vessel" else rng.uniform(0.6, 1.6)
        enh_gain = rng.uniform(0.3, 0.7)
    wall = np.exp(-0.5 * ((rho - 1.0) * axes[1] / (0.9 + 0.5 * rng.random())) ** 2)
    out = sub * (1 - inside) + fill * inside
    out = out + wall_gain * wall * (1 - inside)
    # posterior acoustic enhancement below fluid, fading with depth
    yy = np.arange(sub.shape[0], dtype=np.float32)[:, None] + oy - centre[1]
    xx = np.arange(sub.shape[1], dtype=np.float32)[None, :] + ox - centre[0]
    hw = axes[0] * abs(math.cos(angle)) + axes[1] * abs(math.sin(angle))
    col = np.exp(-0.5 * (xx / (0.7 * hw)) ** 2)
    below = np.clip(yy / axes[1] - 0.6, 0, None)
    enh = enh_gain * col * np.exp(-below / 4.0) * (below > 0)
    sub[...] = out * (1 + enh * (1 - inside))


# ----------------------------------------------------------------------------- lesions
def _draw_lesion(rng, amp, centre, axes, angle, harmonics, kind, smooth):
    """Put one lesion into ``amp`` (a panel's map) in place."""
    rmax = 1.0 + sum(abs(h[1]) for h in harmonics) + 0.3
    box = _ellipse_box(centre, axes, angle, rmax)
    sl, (ox, oy) = _window(box, amp.shape, 3)
    sub = amp[sl]
    lc = (centre[0] - ox, centre[1] - oy)
    rho, phi = _ellipse_coords(sub.shape, lc, axes, angle)
    edge_noise = _field(rng, sub.shape, 6, 6, down=2) * 0.05
    soft = rng.uniform(0.12, 0.3)
    d = (_radius(phi, harmonics) - rho + edge_noise) / soft
    m = np.clip(0.5 + 0.5 * d, 0.0, 1.0)
    m = m * m * (3 - 2 * m)                       # smoothstep: soft edge, 0.5 level = outline
    base = smooth[sl]
    if kind == "hypo":
        level = rng.uniform(0.04, 0.26)
        tex = level * (1 + 0.25 * _field(rng, sub.shape, 8, 8, down=2))
    else:                                         # heteroechoic: dark and bright patches
        level = rng.uniform(0.08, 0.3)
        mott = _field(rng, sub.shape, 5, 5, down=2)
        tex = level * (1 + 0.55 * mott)
        tex = np.where(mott > 1.6, tex * 1.6, tex)
    lesion = base * np.clip(tex, 0.05, 1.5)
    sub[...] = sub * (1 - m) + lesion * m


def _lesion_shape(rng, scale):
    """Random lesion ellipse: semi-axes (a >= b), angle jitter off the fibres, edge harmonics."""
    major = rng.uniform(25, 90) * scale
    minor = max(major * rng.uniform(0.4, 0.9), 16 * scale)
    jitter = math.radians(rng.uniform(-15, 15))
    nh = int(rng.integers(2, 5))
    harmonics = [(int(k), rng.uniform(0.03, 0.16) / math.sqrt(k - 1), rng.uniform(0, 2 * math.pi))
                 for k in rng.choice(np.arange(2, 7), size=nh, replace=False)]
    return (major / 2, minor / 2), jitter, harmonics


def lesion_count(rng):
    """Lesions in one affected half: mostly 3-5 (the notes), sometimes 1-2 or 6."""
    return int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.04, 0.08, 0.3, 0.3, 0.22, 0.06]))


def _overlaps(box, others, gap):
    for o in others:
        if (box[0] < o[2] + gap and o[0] < box[2] + gap and
                box[1] < o[3] + gap and o[1] < box[3] + gap):
            return True
    return False


def _place_lesions(rng, n, pw, ph, top_of, bottom_of, deep_of, scale, fibre_angles, avoid):
    """Sample up to ``n`` non-overlapping lesions in a panel (panel coordinates).

    Lesions lie below the superficial fascia (``top_of``, per column), above a bone surface
    (``bottom_of``), elongated along the fibres of their muscle (above or below ``deep_of``).
    """
    out, boxes = [], []
    for _ in range(60 * n):
        if len(out) >= n:
            break
        axes, jitter, harm = _lesion_shape(rng, scale)
        r = 1.0 + sum(h[1] for h in harm)
        half = max(axes) * r + 4                     # room for a circle/sector drawn around it
        cx = rng.uniform(half + 4, pw - half - 4) if pw > 2 * half + 8 else None
        if cx is None:
            continue
        col = int(np.clip(cx, 0, len(top_of) - 1))
        y_top = float(top_of[col]) + half + 4
        y_bot = min(ph - 10, float(bottom_of[max(col - int(half), 0):col + int(half) + 1].min())) - half
        if y_top >= y_bot:
            continue
        cy = rng.uniform(y_top, y_bot)
        angle = fibre_angles[int(cy > deep_of[col])] + jitter   # strain follows the fibres
        pts = _outline((cx, cy), axes, angle, harm)
        box = [float(pts[:, 0].min()), float(pts[:, 1].min()),
               float(pts[:, 0].max()), float(pts[:, 1].max())]
        # occasionally let lesions touch; otherwise keep them apart
        gap = -2.0 if rng.random() < 0.08 else 5.0
        if _overlaps(box, boxes, gap) or _overlaps(box, avoid, 8.0):
            continue
        boxes.append(box)
        out.append(((cx, cy), axes, angle, harm, pts, box))
    if out and rng.random() < 0.03:                  # rare nested lesion: a focal core
        (cx, cy), axes, angle, harm, pts, box = max(out, key=lambda t: t[1][0])
        if axes[1] > 12 * scale:
            inner = (axes[0] * 0.4, axes[1] * 0.45)
            ipts = _outline((cx, cy), inner, angle, [])
            ibox = [float(ipts[:, 0].min()), float(ipts[:, 1].min()),
                    float(ipts[:, 0].max()), float(ipts[:, 1].max())]
            out.append(((cx, cy), inner, angle, [], ipts, ibox))
    return out


# ----------------------------------------------------------------------------- display
def _speckle(rng, shape, sigma_lat, sigma_ax):
    """Rayleigh amplitude |h * n| for complex white noise n and a Gaussian PSF h (mean 1)."""
    h, w = shape
    re = rng.standard_normal((h, w), dtype=np.float32)
    im = rng.standard_normal((h, w), dtype=np.float32)
    re = cv2.GaussianBlur(re, (0, 0), sigma_lat, sigmaY=sigma_ax, borderType=cv2.BORDER_REFLECT)
    im = cv2.GaussianBlur(im, (0, 0), sigma_lat, sigmaY=sigma_ax, borderType=cv2.BORDER_REFLECT)
    a = cv2.magnitude(re, im)
    return a / float(a.mean())


def _to_display(amp, speckle, gain_db, atten_db, floor, style):
    """Display grey: tissue amplitude (depth attenuation, gain) and speckle, power-law mapped.

    ``style`` = (k, beta, gamma): grey ~ k * amp**beta * speckle**gamma. Log compression of
    the speckle would paint its nulls as a network of dark lines; scanners' grey maps keep
    grains bright on a darker ground, which a power law imitates.
    """
    k, beta, gamma = style
    h = amp.shape[0]
    depth = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    lin = amp * np.power(10.0, (gain_db - atten_db * depth) / 20.0).astype(np.float32)
    g = cv2.multiply(cv2.pow(np.maximum(lin, 1e-6), beta), cv2.pow(speckle, gamma),
                     scale=k * (255.0 - floor))
    return np.clip(g + floor, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- layout
def _layout(rng, size):
    """Panel rectangles for canvas ``size`` = (W, H)."""
    w, h = size
    gap = int(rng.integers(14, 41))
    side_min = 34                                    # room for depth marks
    # centred panels reach the scan column W/4 only if pw + gap/2 > W/4 (+ jitter, + margin)
    reach = int(math.ceil(w / 4 - gap / 2)) + 28
    room = (w - gap - 2 * side_min) // 2
    pw_min = min(max(PANEL_WIDTH[0], reach), room)
    pw_max = min(max(PANEL_WIDTH[1], pw_min), room)
    if room < 120 or h < 200:
        raise ValueError(f"canvas {w}x{h} too small for two panels "
                         f"(want W >= {2 * 120 + 2 * side_min + 40}, H >= 200)")
    pw = int(rng.integers(pw_min, pw_max + 1))
    spare = w - 2 * pw - gap
    jit = max(min(12, spare // 2 - side_min), 0)
    left = spare // 2 + int(rng.integers(-jit, jit + 1))
    top = int(rng.integers(max(int(0.06 * h), 34), max(int(0.11 * h), 35) + 1))
    bottom = int(rng.integers(max(int(0.05 * h), 28), max(int(0.1 * h), 29) + 1))
    # the panel must span the scan rows H/4 and 3H/4 with room to spare
    ph_min = int(math.ceil(0.75 * h + 16)) - top
    ph = int(np.clip(pw * rng.uniform(1.05, 1.4), ph_min, h - top - bottom))
    lp = [left, top, left + pw, top + ph]
    rp = [left + pw + gap, top, left + 2 * pw + gap, top + ph]
    for xf in _SCAN_FRACTIONS[::2]:                  # W/4 in the left panel, 3W/4 in the right
        xs, ys = xf * w, xf * h
        if not any(p[0] + 8 < xs < p[2] - 8 for p in (lp, rp)) or not top + 8 < ys < top + ph - 8:
            raise ValueError(f"canvas {w}x{h}: scan lines x={xs:.0f}, y={ys:.0f} miss the "
                             f"panels {lp} {rp}; use a wider or less tall canvas")
    return {"left": lp, "right": rp}, gap


_PROBES = ("L12-5", "L14-5", "ML6-15", "11L", "L10-4", "LA523", "eL18-4")
_PRESETS = ("MSK", "Muscle", "MSK Gen", "Sm Parts", "Musc")


def _keep_out(w, h, panels):
    """Rectangles text must avoid: panels (+4 px), the gap, and the border-crop scan lines."""
    lp, rp = panels["left"], panels["right"]
    rects = [[lp[0] - 4, lp[1] - 4, rp[2] + 4, lp[3] + 4]]
    for f in _SCAN_FRACTIONS:
        x = f * w
        y = f * h
        rects.append([x - _SCAN_KEEP_OUT, 0, x + _SCAN_KEEP_OUT, h])
        rects.append([0, y - _SCAN_KEEP_OUT, w, y + _SCAN_KEEP_OUT])
    return rects


def _put_text(img, text, org, scale, grey, thick, keep_out):
    """Draw ``text`` with baseline-left ``org`` unless it would touch a keep-out rectangle."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    r = [org[0] - 1, org[1] - th - 1, org[0] + tw + 1, org[1] + base + 1]
    hh, ww = img.shape[:2]
    if r[0] < 0 or r[1] < 0 or r[2] > ww or r[3] > hh or _overlaps(r, keep_out, 0):
        return False
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, int(grey), thick, cv2.LINE_AA)
    keep_out.append([r[0] - 6, r[1] - 2, r[2] + 6, r[3] + 2])   # later text keeps clear of it
    return True


def _scanner_text(rng, img, panels, depth_cm):
    """Scanner annotations in the black border: preset, probe, date, gain, L/R, depth marks."""
    h, w = img.shape[:2]
    keep = _keep_out(w, h, panels)
    lp, rp = panels["left"], panels["right"]
    grey = int(rng.integers(170, 236))
    s = float(rng.uniform(0.38, 0.5))
    yt = lp[1] - 8 - int(rng.integers(0, max(lp[1] - 30, 1)))
    date = (f"{rng.integers(2015, 2024)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d} "
            f"{rng.integers(7, 19):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}")
    _put_text(img, f"{rng.choice(_PRESETS)} {rng.choice(_PROBES)}", (6, max(yt, 14)), s, grey, 1, keep)
    (tw, _), _ = cv2.getTextSize(date, cv2.FONT_HERSHEY_SIMPLEX, s, 1)
    _put_text(img, date, (w - tw - 8, max(yt, 14)), s, grey, 1, keep)
    yb = lp[3] + 18 + int(rng.integers(0, max(h - lp[3] - 26, 1)))
    yb = min(yb, h - 6)
    for name, p, dx in (("L", lp, 10), ("R", rp, rp[2] - rp[0] - 24)):
        _put_text(img, name, (p[0] + dx, yb), s * 1.4, grey, 2, keep)
    info = f"G{rng.integers(40, 80)} D{depth_cm:.1f}cm FR{rng.integers(18, 45)}"
    for x in (6, lp[0] + 40, rp[0] + 30):     # first place that is free
        if _put_text(img, info, (x, yb), s, grey, 1, keep):
            break
    # depth marks: a dot per cm beside the outer edge of each panel, numbers every 1 cm
    px_cm = (lp[3] - lp[1]) / depth_cm
    for k in range(int(depth_cm) + 1):
        yy = int(round(lp[1] + k * px_cm))
        if yy >= lp[3]:
            break
        for xx in (lp[0] - 9, rp[2] + 7):
            r = [xx - 2, yy - 2, xx + 2, yy + 2]
            if not _overlaps(r, keep[1:], 0) and 0 <= xx < w:
                cv2.circle(img, (xx, yy), 1, grey, -1)
        if k:
            _put_text(img, str(k), (max(lp[0] - 30, 2), yy + 4), s * 0.9, grey, 1, keep)


# ----------------------------------------------------------------------------- main entry
def render_pair(rng, size=None, sizes=None, both_sides_frac=0.15, affected=None):
    """Render one dual-panel screenshot with lesions on one (or both) sides.

    Parameters
    ----------
    rng : numpy.random.Generator
        All randomness comes from here; the same generator state gives the same image.
    size : tuple of int, optional
        Canvas ``(W, H)``; default: drawn from ``sizes``.
    sizes : sequence of (W, H), optional
        Canvas sizes to draw from (default ``SIZES``).
    both_sides_frac : float
        Probability that both halves hold lesions.
    affected : {"left", "right", "both"}, optional
        Force the affected side(s).

    Returns
    -------
    Screenshot
        Clean image (H x W x 3 uint8, grey), panel rectangles, lesions (source coordinates),
        look-alikes (one entry per panel).
    """
    if size is None:
        choices = list(sizes) if sizes else list(SIZES)
        size = tuple(int(v) for v in choices[int(rng.integers(len(choices)))])
    panels, _ = _layout(rng, size)
    lp = panels["left"]
    return _render(rng, size, panels, (lp[2] - lp[0]) / 500.0, both_sides_frac, affected,
                   scanner_text=True)


def render_single(rng, size=None, sizes=None):
    """Render one single-panel B-mode picture: the panel is the whole image.

    The stand-in for single-panel ultrasound exported without the scanner's frame: no black
    border, no scanner text, no contralateral panel. Anatomy, look-alikes, lesions (one
    affected panel, 3-5 lesions mostly) and display are those of :func:`render_pair`, at the
    scale set by the panel's shorter side, as for a dual-panel half (whose shorter side is
    its width), so lesions keep the dual-panel set's pixel sizes and contrast.

    Parameters
    ----------
    rng : numpy.random.Generator
    size : tuple of int, optional
        Image ``(W, H)``; default: drawn from ``sizes``, or uniformly from
        ``SINGLE_WIDTHS`` x ``SINGLE_HEIGHTS`` (inclusive).
    sizes : sequence of (W, H), optional

    Returns
    -------
    Screenshot
        ``panels`` is ``{"full": [0, 0, W, H]}``; every lesion and look-alike has side
        ``"full"``; ``shift`` is ``(0, 0)`` and ``gain_db`` 0.
    """
    if size is None:
        if sizes:
            size = tuple(int(v) for v in sizes[int(rng.integers(len(sizes)))])
        else:
            size = (int(rng.integers(SINGLE_WIDTHS[0], SINGLE_WIDTHS[1] + 1)),
                    int(rng.integers(SINGLE_HEIGHTS[0], SINGLE_HEIGHTS[1] + 1)))
    w, h = size
    if min(w, h) < _SINGLE_MIN_SIDE:
        raise ValueError(f"image {w}x{h} too small for a single panel (want both sides >= "
                         f"{_SINGLE_MIN_SIDE} px)")
    return _render(rng, (w, h), {"full": [0, 0, w, h]}, min(w, h) / 500.0, 0.0, "full",
                   scanner_text=False)


def _render(rng, size, panels, scale, both_sides_frac, affected, scanner_text):
    """Draw ``panels`` (equal sizes) of one anatomy on a canvas of ``size``.

    The order of the random draws is the dual-panel screenshot's as it has always been: a
    dual-panel set keeps its bytes. A second panel ("right") repeats the anatomy shifted by
    a few pixels and with its own gain; ``scale`` (pixels per 500 px of panel) sizes fibres,
    speckle, lesions and look-alikes. Steps, in draw order: anatomy, look-alikes, the right
    panel's shift, the affected side(s), the display settings, the border grey, then per
    panel its lesions and speckle, and last the scanner text.
    """
    w, h = size
    first = next(iter(panels.values()))
    pw, ph = first[2] - first[0], first[3] - first[1]
    amp, info = _anatomy(rng, ph + 2 * _MARGIN, pw + 2 * _MARGIN, scale)
    looks = _draw_lookalikes(rng, amp, info, scale)
    smooth = cv2.GaussianBlur(amp, (0, 0), 6 * scale)   # local brightness without fibres
    shift = (int(rng.integers(-5, 6)), int(rng.integers(-4, 5))) if "right" in panels else (0, 0)
    sides = _affected_sides(rng, panels, both_sides_frac, affected)
    display = _display_settings(rng, scale)

    image = np.zeros((h, w), np.uint8)
    border = int(rng.integers(0, 7))
    image[:] = border
    lesions, lookalikes = [], []
    for side, p in panels.items():
        # the panel's crop of the anatomy canvas; the right one is shifted
        ox, oy = (_MARGIN + shift[0], _MARGIN + shift[1]) if side == "right" else (_MARGIN, _MARGIN)
        p_amp = amp[oy:oy + ph, ox:ox + pw].copy()
        p_looks = [[box[0] - ox, box[1] - oy, box[2] - ox, box[3] - oy] for _, box in looks]
        lookalikes += [{"box": [b[0] + p[0], b[1] + p[1], b[2] + p[0], b[3] + p[1]],
                        "kind": kind, "side": side} for (kind, _), b in zip(looks, p_looks)]
        if side in sides:
            lesions += _draw_panel_lesions(rng, p_amp, smooth[oy:oy + ph, ox:ox + pw], p, side,
                                           info, ox, scale, p_looks)
        image[p[1]:p[3], p[0]:p[2]] = _display_panel(rng, p_amp, display,
                                                     right=side == "right")

    if scanner_text:
        depth_cm = float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0, 6.0]))
        _scanner_text(rng, image, panels, depth_cm)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return Screenshot(image=image, panels=panels, lesions=lesions, lookalikes=lookalikes,
                      shift=shift, gain_db=display["gain_db"] if "right" in panels else 0.0)


def _draw_lookalikes(rng, amp, info, scale):
    """Draw 0-4 non-overlapping vessels and cysts into the anatomy map ``amp`` (in place),
    so that both panels show them; returns ``[(kind, box)]`` in anatomy coordinates."""
    ah, aw = amp.shape
    looks, look_boxes = [], []
    n_look = int(rng.choice([0, 1, 2, 3, 4], p=[0.05, 0.3, 0.35, 0.22, 0.08]))
    for _ in range(40 * max(n_look, 1)):
        if len(looks) >= n_look:
            break
        kind = "vessel" if rng.random() < 0.5 else "cyst"
        if kind == "vessel":
            a = rng.uniform(20, 70) * scale
            axes = (a, max(rng.uniform(5, 13) * scale, 4.0))
            angle = math.radians(rng.uniform(-8, 8))
        else:
            a = rng.uniform(9, 28) * scale
            axes = (a, a * rng.uniform(0.75, 1.0))
            angle = rng.uniform(0, math.pi)
        half = _ellipse_box((0, 0), axes, angle, 1.1)
        cx = rng.uniform(_MARGIN + 12 - half[0], aw - _MARGIN - 12 - half[2])
        cy = rng.uniform(info["skin"] + 12 - half[1], ah - _MARGIN - 16 - half[3])
        box = _ellipse_box((cx, cy), axes, angle, 1.1)
        if _overlaps(box, look_boxes, 10):
            continue
        _draw_lookalike(rng, amp, kind, (cx, cy), axes, angle)
        look_boxes.append(box)
        looks.append((kind, box))
    return looks


def _affected_sides(rng, panels, both_sides_frac, affected):
    """The panel(s) that get lesions: ``affected``, or drawn (both with ``both_sides_frac``)."""
    if affected is None:
        r = rng.random()
        affected = "both" if r < both_sides_frac else ("left" if rng.random() < 0.5 else "right")
    sides = tuple(panels) if affected == "both" else (affected,)
    if not set(sides) <= set(panels):
        raise ValueError(f"affected={affected!r}: want 'both' or one of {sorted(panels)}")
    return sides


def _display_settings(rng, scale):
    """One screenshot's scanner settings: the right panel's gain, depth attenuation, grey
    floor, grey map style (see :func:`_to_display`) and the speckle PSF widths."""
    gain_db = float(rng.uniform(0.8, 3.0) * rng.choice([-1, 1]))
    atten = float(rng.uniform(4, 9))
    floor = float(rng.uniform(27, 35))
    style = (float(rng.uniform(0.42, 0.54)), float(rng.uniform(0.75, 0.95)),
             float(rng.uniform(0.5, 0.7)))
    sig_lat = float(rng.uniform(1.3, 2.0) * max(scale, 0.6))
    sig_ax = float(rng.uniform(0.7, 1.0) * max(scale, 0.6))
    return {"gain_db": gain_db, "atten": atten, "floor": floor, "style": style,
            "sig_lat": sig_lat, "sig_ax": sig_ax}


def _draw_panel_lesions(rng, p_amp, p_smooth, panel, side, info, ox, scale, avoid):
    """Place and draw one affected panel's lesions into its map ``p_amp`` (in place).

    Lesions live below the fascia and above a bone surface, along the fibres, away from the
    look-alikes ``avoid`` (panel coordinates); ``ox`` is the panel's column in the anatomy
    canvas. Returns the :class:`Lesion` list in source coordinates.
    """
    ph, pw = p_amp.shape
    aw = len(info["fat_end"])
    # lesions live below the fascia and above a bone surface (none: far below the panel)
    top_of = info["fat_end"] - _MARGIN + 6 * scale
    bottom_of = info.get("bone", np.full(aw, 1e9, np.float32)) - _MARGIN - 8 * scale
    n = lesion_count(rng)
    shapes = _place_lesions(rng, n, pw, ph, top_of[ox:ox + pw], bottom_of[ox:ox + pw],
                            info["deep"][ox:ox + pw] - _MARGIN, scale, info["fibre_angles"],
                            avoid)
    lesions = []
    for centre, axes, angle, harm, pts, box in shapes:
        kind = "hypo" if rng.random() < 0.6 else "hetero"
        _draw_lesion(rng, p_amp, centre, axes, angle, harm, kind, p_smooth)
        off = np.array([panel[0], panel[1]], np.float64)
        lesions.append(Lesion(side=side, contour=pts + off,
                              box=[box[0] + panel[0], box[1] + panel[1], box[2] + panel[0],
                                   box[3] + panel[1]],
                              centre=(centre[0] + panel[0], centre[1] + panel[1]), axes=axes,
                              angle=angle, kind=kind))
    return lesions


def _display_panel(rng, p_amp, display, right):
    """The panel's grey image: fresh speckle on its map, through the display settings (the
    right panel with its own gain)."""
    spk = _speckle(rng, p_amp.shape, display["sig_lat"], display["sig_ax"])
    gain = display["gain_db"] if right else 0.0
    return _to_display(p_amp, spk, gain, display["atten"], display["floor"], display["style"])
