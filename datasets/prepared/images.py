"""Image file I/O with the checks raw clinic folders need.

Decoding goes through bytes (``np.fromfile`` + ``cv2.imdecode``) so non-ASCII paths work on
every platform, and refuses what OpenCV would quietly half-read: empty files, random bytes,
JPEGs without their end marker and PNGs without their IEND chunk (OpenCV fills the missing
rows with grey and only prints a warning). Writing is atomic (temporary file + rename).
"""
import logging
from pathlib import Path

import cv2
import numpy as np

from datasets.prepared.errors import BadFileError
from infra.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
JPEG_QUALITY = 95


def _check_complete(data, where):
    """Reject truncated JPEG/PNG streams, which OpenCV decodes partially without an error."""
    if data[:3] == b"\xff\xd8\xff":
        # Inside entropy-coded data 0xFF is byte-stuffed, so EOI (FFD9) can only follow the
        # last start-of-scan (FFDA) if the stream is complete.
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            raise BadFileError(f"{where}: truncated JPEG (no end-of-image marker after the "
                               f"last scan; {len(data)} bytes)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            raise BadFileError(f"{where}: truncated PNG (no IEND chunk; {len(data)} bytes)")


def decode_image(data, where="<bytes>"):
    """Decode an encoded image into a 3-channel BGR uint8 array.

    Parameters
    ----------
    data : bytes
        The encoded file content (JPEG, PNG, BMP, TIFF ...).
    where : str
        Name used in error messages (the file path).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8, BGR (OpenCV order). Grey files are expanded to 3 channels,
        alpha is dropped.

    Raises
    ------
    BadFileError
        Empty, truncated or undecodable data.
    """
    if len(data) == 0:
        raise BadFileError(f"{where}: empty file (0 bytes)")
    _check_complete(data, where)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise BadFileError(f"{where}: cannot be decoded as an image (want JPEG/PNG/BMP/TIFF, "
                           f"found {len(data)} bytes starting {data[:8].hex()})")
    return img


def read_image(path):
    """Read and decode an image file (any path, including non-ASCII names).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 BGR.

    Raises
    ------
    BadFileError
        Missing, empty, truncated or undecodable file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadFileError(f"{path}: cannot read ({e.strerror or e})") from None
    return decode_image(data, str(path))


def check_content(img, where, black_level=10):
    """Refuse images without usable content.

    Parameters
    ----------
    img : numpy.ndarray
        Decoded image.
    where : str
        Name for the message.
    black_level : int
        An image whose brightest pixel is at most this value is "all black".

    Raises
    ------
    BadFileError
        All-black image, or an image smaller than 8x8 pixels.
    """
    h, w = img.shape[:2]
    if h < 8 or w < 8:
        raise BadFileError(f"{where}: image is {w}x{h} pixels; want at least 8x8")
    peak = int(img.max())
    if peak <= black_level:
        raise BadFileError(f"{where}: all-black image (brightest pixel {peak} <= {black_level})")


def encode_jpeg(img, quality=JPEG_QUALITY):
    """Encode a BGR image as JPEG bytes at the given quality (1-100)."""
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} {img.dtype} image as JPEG")
    return buf.tobytes()


def write_jpeg(path, img, quality=JPEG_QUALITY, atomic=True):
    """Write a BGR image as JPEG; returns the path.

    ``atomic=True`` goes through a temporary file, fsync and rename. Callers that build a
    whole folder in a staging place and move it in at the end (prepare_data.py) pass
    False: the folder swap is their atomic step, and an fsync per image costs more than
    the encoding.
    """
    path = Path(path)
    data = encode_jpeg(img, quality)
    if atomic:
        return atomic_write_bytes(path, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
