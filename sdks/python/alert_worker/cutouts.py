"""Cutout stamps: the small images around an alert's source, as arrays and as pictures.

Every survey ships its stamps as FITS files inside the alert:

- Rubin: ``cutoutScience``, ``cutoutTemplate`` and ``cutoutDifference`` are
  bytes fields at the top of the alert, each an uncompressed FITS file (the
  image in the primary HDU, written by ``astropy.nddata.CCDData``; an image
  extension is read as well);
- ZTF: the same three names are records ``{"fileName": ..., "stampData": ...}``
  whose ``stampData`` is a gzip-compressed FITS file with the image in the
  primary HDU.

In the JSON form a sidecar sends (``Alert.source_content_type`` is Avro), each
of those bytes is a base64 string. Every function here takes any of these::

    from alert_worker import cutouts

    record = alert.record()
    for name, stamp in cutouts.stamps(record).items():    # {"cutoutScience": b"...", ...}
        pixels = cutouts.cutout_array(stamp)              # 2-D float array, FITS row 0 first
        picture = cutouts.cutout_png(stamp, size=128)     # PNG bytes, for a web page or a report

``stamps`` needs nothing more; the others need astropy (FITS, ZScale) and
Pillow (PNG), the SDK's extra ``cutouts`` (``pip install './sdks/python[cutouts]'``), and
imported on first use.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import codecs
from .exceptions import AlertDecodeError, CutoutError, MissingDependencyError

if TYPE_CHECKING:
    import numpy

__all__ = ["STAMP_FIELDS", "STRETCHES", "stamps", "stamp_bytes", "cutout_array", "cutout_png"]

#: The cutout fields of Rubin's and ZTF's alert schemas, in this order.
STAMP_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")

#: The stretches ``cutout_png`` applies after the ZScale interval.
STRETCHES = ("asinh", "linear")

_GZIP_MAGIC = b"\x1f\x8b"

# A stamp is tens of kilobytes (Rubin's at least 18 KB: Rubin DMTN-102; ZTF's
# 20,160 bytes once unzipped, in ZTF's sample packets in tests/data/ztf). A
# gzip member that inflates past this is not a stamp but a compression bomb,
# and is refused before it fills the memory.
_MAX_STAMP_BYTES = 64 * 1024 * 1024

# ZTF writes its first card as "SIMPLE  =  T", the T in column 12 where the
# FITS standard puts it in column 30. astropy reads the file but warns about
# it; the card is rewritten to the standard form before reading instead.
_LOOSE_SIMPLE = re.compile(rb"SIMPLE\s*=\s*T\b")
_SIMPLE_CARD = b"SIMPLE  =" + b"T".rjust(21) + b" " * 50

_CUTOUTS_EXTRA = ("install the SDK's extra cutouts: pip install './sdks/python[cutouts]' from the repository, "
                  "or pip install 'alert-sidecar[cutouts]' beside the sidecar")


# --- finding the stamps of an alert --------------------------------------------------


def stamps(record: Mapping[str, Any]) -> dict[str, bytes]:
    """The cutout stamps present in a decoded alert, by field name, as FITS bytes (gzipped for ZTF).

    ``record`` is a Rubin or ZTF alert as ``Alert.record()`` gives it, from Avro
    or from the JSON form (base64 is decoded here). Cutouts that are null,
    empty or left out by a projection are absent from the result.
    """
    found: dict[str, bytes] = {}
    for name in STAMP_FIELDS:
        data = stamp_bytes(record.get(name))
        if data:
            found[name] = data
    return found


def stamp_bytes(cutout: Any) -> bytes | None:
    """The FITS bytes of one cutout field: bytes or base64 (Rubin), or a ZTF ``{"stampData": ...}`` record.

    None for a null cutout.
    """
    if isinstance(cutout, Mapping):
        if "stampData" not in cutout:
            raise CutoutError(
                f"a cutout record holds its image in stampData (ZTF's form), and this one has only "
                f"{sorted(cutout)}")
        cutout = cutout["stampData"]
    try:
        return codecs.b64bytes(cutout)
    except TypeError:
        raise CutoutError(
            f"a cutout is FITS bytes, a base64 string or a ZTF cutout record, not "
            f"{type(cutout).__name__}") from None
    except AlertDecodeError as exc:
        raise CutoutError(f"the cutout is not base64: {exc}") from exc


# --- stamps as arrays --------------------------------------------------------------


def cutout_array(data: bytes | str | Mapping[str, Any]) -> numpy.ndarray:
    """The image of a cutout stamp as a 2-D float64 array, FITS row 0 (the bottom of the image) first.

    ``data`` is FITS bytes, gzip-compressed FITS bytes (ZTF), a base64 string
    of either (the JSON form), or a ZTF cutout record. The image is the first
    HDU holding 2-D data: the primary HDU for ZTF and Rubin, an image
    extension for files that keep the primary HDU empty. Blank pixels are NaN.

    Raises ``CutoutError`` (an ``AlertDecodeError``) for bytes that are not a
    FITS image, and ``MissingDependencyError`` without astropy.
    """
    fits = _astropy_fits()
    import numpy

    raw = _fits_bytes(data)
    try:
        with fits.open(io.BytesIO(raw), memmap=False) as hdus:
            for hdu in hdus:
                image = hdu.data
                if image is not None and getattr(image, "ndim", 0) == 2:
                    return numpy.array(image, dtype=numpy.float64)
            described = ", ".join(f"{hdu.name} {getattr(hdu.data, 'shape', None)}" for hdu in hdus)
    except CutoutError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, VerifyError, ...
        raise CutoutError(
            f"the cutout ({len(raw)} bytes starting {raw[:12]!r}) is not a readable FITS file, "
            f"truncated or corrupt: {type(exc).__name__}: {exc}") from exc
    raise CutoutError(f"the cutout's FITS file holds no 2-D image (its HDUs: {described or 'none'})")


def _fits_bytes(data: bytes | str | Mapping[str, Any]) -> bytes:
    raw = stamp_bytes(data)
    if not raw:
        raise CutoutError("the cutout is empty (a null or empty stamp): there is no image to read")
    if raw.startswith(_GZIP_MAGIC):
        raw = _gunzip(raw)
    if not raw.startswith(b"SIMPLE  =                    T"):
        loose = _LOOSE_SIMPLE.match(raw, 0, 80)
        if loose is None:
            raise CutoutError(
                f"the cutout is not a FITS file: a FITS file opens with the card 'SIMPLE  = T', and "
                f"this one ({len(raw)} bytes) opens with {raw[:12]!r}")
        raw = _SIMPLE_CARD + raw[80:]
    return raw


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # gzip framing
    try:
        inflated = inflater.decompress(data, _MAX_STAMP_BYTES)
    except zlib.error as exc:
        raise CutoutError(f"the cutout is gzip-compressed but does not inflate: {exc}") from exc
    if inflater.unconsumed_tail:
        raise CutoutError(f"the cutout inflates to over {_MAX_STAMP_BYTES} bytes, far beyond any stamp")
    if not inflater.eof:
        raise CutoutError(f"the cutout is truncated: its gzip stream ends after {len(data)} bytes, unfinished")
    return inflated


# --- stamps as pictures --------------------------------------------------------------


def cutout_png(data: bytes | str | Mapping[str, Any], *, size: int | None = None,
               stretch: str = "asinh") -> bytes:
    """A cutout as an 8-bit grayscale PNG, as a person would look at it.

    Pixel values are mapped with the ZScale interval (IRAF's, as ds9 and most
    broker web pages show stamps) and then ``stretch``: ``"asinh"`` (the
    default: the faint wings and the bright core of a source both show) or
    ``"linear"``. Blank (NaN) pixels are black. FITS row 0 is at the bottom of
    the picture, as ds9 shows it.

    ``size`` resizes the picture to ``size`` x ``size`` pixels (a stamp that
    is not square is stretched to fill it): an enlargement keeps pixels as
    sharp squares (nearest neighbour), so that what the detector saw stays
    visible; a reduction uses Lanczos filtering, which does not alias. None
    keeps the stamp's own size.

    ``data`` is what ``cutout_array`` takes. Raises ``CutoutError`` for a
    stamp that is not a FITS image, ``ValueError`` for a bad ``size`` or
    ``stretch``, and ``MissingDependencyError`` without astropy or Pillow.
    """
    if stretch not in STRETCHES:
        raise ValueError(f"stretch is one of {', '.join(map(repr, STRETCHES))}, not {stretch!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size is a number of pixels (1 or more) or None, not {size!r}")
    visualization = _astropy_visualization()
    image_module = _pillow()
    import numpy

    pixels = cutout_array(data)
    finite = numpy.isfinite(pixels)
    scaled = numpy.zeros(pixels.shape, dtype=numpy.float64)
    if finite.any():
        low, high = visualization.ZScaleInterval().get_limits(pixels[finite])
        if high > low:
            unit = numpy.clip((pixels[finite] - low) / (high - low), 0.0, 1.0)
            mapped = visualization.AsinhStretch() if stretch == "asinh" else visualization.LinearStretch()
            scaled[finite] = numpy.clip(mapped(unit), 0.0, 1.0)
        else:  # a flat stamp: ZScale has no range to spread, so show it mid-grey
            scaled[finite] = 0.5
    gray = numpy.flipud(numpy.round(scaled * 255.0).astype(numpy.uint8))
    picture = image_module.fromarray(numpy.ascontiguousarray(gray))  # uint8, 2-D: grayscale ("L")
    if size is not None and picture.size != (size, size):
        enlarging = size >= max(picture.size)
        picture = picture.resize((size, size), image_module.Resampling.NEAREST if enlarging
                                 else image_module.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


# --- optional packages, imported on first use ------------------------------------------


def _optional(module: str, use: str, package: str) -> Any:
    """``from <parent> import <name>`` for ``module`` = "parent.name", or what to install."""
    parent, _, name = module.rpartition(".")
    try:
        return getattr(__import__(parent, fromlist=[name]), name)
    except ImportError as exc:
        raise MissingDependencyError(f"{use} needs {package}, which is not installed: {_CUTOUTS_EXTRA}") from exc


def _astropy_fits() -> Any:
    return _optional("astropy.io.fits", "reading cutouts", "astropy")


def _astropy_visualization() -> Any:
    return _optional("astropy.visualization", "drawing cutouts", "astropy")


def _pillow() -> Any:
    return _optional("PIL.Image", "drawing cutouts as PNG", "Pillow")
