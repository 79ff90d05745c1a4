"""The Python SDK's cutouts: ZTF's and Rubin's stamps as arrays and as PNG pictures."""

from __future__ import annotations

import base64
import gzip
import io
import os
import sys
import warnings
from typing import Any

import numpy
import pytest
from astropy.io import fits
from PIL import Image

import alert_worker
from alert_worker import AlertDecodeError, CutoutError, MissingDependencyError, Verdict, codecs, cutouts
from alert_worker.testing import json_form, make_alert, run, ztf_alert
from alert_sidecar.simulate.rubin import RubinAlertFactory
from tests.data import ZTF_PACKETS

STAMPS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def astropy_image(fits_bytes: bytes) -> numpy.ndarray:
    """The primary image of a FITS file, read with astropy alone: what the SDK must agree with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ZTF's SIMPLE card is not in the standard's column
        with fits.open(io.BytesIO(fits_bytes)) as hdus:
            return numpy.array(hdus[0].data)


def fits_file(*images: numpy.ndarray | None) -> bytes:
    """A FITS file: the first image in the primary HDU (None leaves it empty), the others as extensions."""
    first, *others = images
    hdus = fits.HDUList([fits.PrimaryHDU(first), *(fits.ImageHDU(image) for image in others)])
    out = io.BytesIO()
    hdus.writeto(out)
    return out.getvalue()


def png_pixels(png: bytes) -> numpy.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG" and picture.mode == "L"
        return numpy.asarray(picture)


@pytest.fixture(scope="module")
def rubin_record() -> dict[str, Any]:
    return RubinAlertFactory(seed=1).make(0)


# --- ZTF: gzipped FITS in {"stampData": ...} records ---------------------------------


@pytest.mark.parametrize("path", ZTF_PACKETS, ids=os.path.basename)
def test_ztf_stamps_become_arrays_and_pictures(path: str) -> None:
    record = ztf_alert(path).record()
    found = cutouts.stamps(record)
    assert list(found) == list(STAMPS)
    for name, stamp in found.items():
        assert stamp == record[name]["stampData"]  # as the alert carries it, still gzipped
        expected = astropy_image(gzip.decompress(stamp))
        array = cutouts.cutout_array(stamp)
        assert array.ndim == 2 and array.dtype == numpy.float64
        assert array.shape == expected.shape == (63, 63)
        numpy.testing.assert_array_equal(array, expected.astype(numpy.float64))
        assert png_pixels(cutouts.cutout_png(stamp)).shape == expected.shape
        assert png_pixels(cutouts.cutout_png(stamp, size=128)).shape == (128, 128)
        assert png_pixels(cutouts.cutout_png(stamp, size=32, stretch="linear")).shape == (32, 32)


def test_ztf_cutout_record_is_taken_as_it_is() -> None:
    record = ztf_alert(ZTF_PACKETS[0]).record()
    numpy.testing.assert_array_equal(cutouts.cutout_array(record["cutoutDifference"]),
                                     cutouts.cutout_array(record["cutoutDifference"]["stampData"]))


def test_ztf_stamps_read_without_a_warning() -> None:
    stamp = ztf_alert(ZTF_PACKETS[0]).record()["cutoutScience"]["stampData"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cutouts.cutout_array(stamp)


# --- Rubin: uncompressed FITS bytes at the top of the alert -----------------------------


def test_rubin_stamps_become_arrays(rubin_record: dict[str, Any]) -> None:
    found = cutouts.stamps(rubin_record)
    assert sorted(found) == sorted(STAMPS)
    for name, stamp in found.items():
        assert stamp is rubin_record[name]
        expected = astropy_image(stamp)
        array = cutouts.cutout_array(stamp)
        assert array.shape == expected.shape == (30, 30)
        numpy.testing.assert_allclose(array, expected, rtol=0, atol=0)


def test_the_source_is_where_the_picture_is_brightest(rubin_record: dict[str, Any]) -> None:
    # The factory centres a PSF-shaped source of the measured flux on the science stamp.
    pixels = png_pixels(cutouts.cutout_png(rubin_record["cutoutScience"]))
    centre = pixels[12:18, 12:18].astype(int)
    corners = numpy.concatenate([pixels[:5, :5].ravel(), pixels[-5:, -5:].ravel()]).astype(int)
    assert centre.mean() > corners.mean() + 40


def test_image_in_an_extension_is_found() -> None:
    image = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    array = cutouts.cutout_array(fits_file(None, image))
    numpy.testing.assert_array_equal(array, image)


# --- the JSON form: base64 strings ------------------------------------------------------


def test_base64_gives_the_same_array_as_the_bytes(rubin_record: dict[str, Any]) -> None:
    ztf_stamp = ztf_alert(ZTF_PACKETS[1]).record()["cutoutTemplate"]["stampData"]
    for stamp in (ztf_stamp, rubin_record["cutoutDifference"]):
        text = base64.b64encode(stamp).decode("ascii")
        numpy.testing.assert_array_equal(cutouts.cutout_array(text), cutouts.cutout_array(stamp))
        assert cutouts.cutout_png(text, size=64) == cutouts.cutout_png(stamp, size=64)


def test_stamps_of_the_json_form_are_the_avro_bytes() -> None:
    alert = ztf_alert(ZTF_PACKETS[0])
    as_json = json_form(alert)
    assert isinstance(as_json.record()["cutoutScience"]["stampData"], str)
    assert cutouts.stamps(as_json.record()) == cutouts.stamps(alert.record())


def test_stamps_leaves_out_what_is_absent() -> None:
    projected = json_form(ztf_alert(ZTF_PACKETS[0]), fields=["candid", "cutoutDifference"]).record()
    assert list(cutouts.stamps(projected)) == ["cutoutDifference"]
    assert cutouts.stamps({"cutoutScience": None, "cutoutTemplate": b"", "diaSourceId": 1}) == {}


# --- pictures ---------------------------------------------------------------------------


def test_fits_row_zero_is_at_the_bottom_and_nan_is_black() -> None:
    image = numpy.zeros((8, 6), dtype=numpy.float32)
    image += numpy.random.default_rng(3).normal(0, 1, image.shape)
    image[0, :] = 100.0      # FITS row 0: the bottom of the image, as ds9 shows it
    image[7, 5] = numpy.nan  # top right
    pixels = png_pixels(cutouts.cutout_png(fits_file(image)))
    assert pixels.shape == (8, 6)
    assert (pixels[-1, :] == 255).all()  # the bright row is the picture's last
    assert pixels[0, 5] == 0


def test_asinh_shows_faint_pixels_brighter_than_linear(rubin_record: dict[str, Any]) -> None:
    stamp = rubin_record["cutoutScience"]
    asinh = png_pixels(cutouts.cutout_png(stamp)).astype(int)
    linear = png_pixels(cutouts.cutout_png(stamp, stretch="linear")).astype(int)
    assert numpy.median(asinh) > numpy.median(linear)


def test_enlarging_keeps_pixels_square() -> None:
    image = numpy.arange(16, dtype=numpy.float32).reshape(4, 4)
    pixels = png_pixels(cutouts.cutout_png(fits_file(image), size=40, stretch="linear"))
    # Each stamp pixel is a 10 x 10 block of one grey level (nearest neighbour).
    blocks = pixels.reshape(4, 10, 4, 10)
    assert (blocks == blocks[:, :1, :, :1]).all()


@pytest.mark.parametrize("arguments, message", [
    ({"stretch": "log"}, "stretch is one of 'asinh', 'linear'"),
    ({"size": 0}, "size is a number of pixels"),
    ({"size": 12.5}, "size is a number of pixels"),
])
def test_bad_picture_arguments_are_refused(rubin_record: dict[str, Any], arguments: dict[str, Any],
                                           message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cutouts.cutout_png(rubin_record["cutoutScience"], **arguments)


# --- what cannot be read ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_corrupt_stamps_raise_a_cutout_error(rubin_record: dict[str, Any]) -> None:
    fits_bytes = rubin_record["cutoutScience"]
    ztf_stamp = ztf_alert(ZTF_PACKETS[0]).record()["cutoutScience"]["stampData"]
    cases = [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), r"not a FITS file: .* opens with b'\\x89PNG"),
        (ztf_stamp[: len(ztf_stamp) // 2], "truncated: its gzip stream ends"),
        (gzip.compress(b"not a fits file"), "not a FITS file"),
        (fits_bytes[:4000], "not a readable FITS file, truncated or corrupt"),
        ("%%% not base64", "not base64"),
        (b"", "the cutout is empty"),
        ({"fileName": "x.fits.gz"}, "holds its image in stampData"),
        (fits_file(numpy.zeros(5, dtype=numpy.float32)), "holds no 2-D image"),
    ]
    for stamp, message in cases:
        with pytest.raises(CutoutError, match=message):
            cutouts.cutout_array(stamp)
    with pytest.raises(CutoutError, match="a cutout is FITS bytes, a base64 string or a ZTF cutout record"):
        cutouts.cutout_array(12)  # type: ignore[arg-type]


def test_a_corrupt_stamp_dead_letters_the_alert() -> None:
    @alert_worker.worker(name="pictures")
    def pictures(alert: alert_worker.Alert) -> Any:
        return {"png": cutouts.cutout_png(alert.record()["cutoutScience"])}

    [result] = run(pictures, [make_alert({"cutoutScience": base64.b64encode(b"junk").decode()})])
    assert issubclass(CutoutError, AlertDecodeError)
    assert result.verdict is Verdict.DEAD_LETTER
    assert "cannot decode the alert: the cutout is not a FITS file" in result.error


@pytest.mark.parametrize("module, function, message", [
    ("astropy.io", cutouts.cutout_array, "reading cutouts needs astropy"),
    ("astropy.io", cutouts.cutout_png, "reading cutouts needs astropy"),
    ("PIL", cutouts.cutout_png, "as PNG needs Pillow"),
])
def test_missing_packages_are_named(monkeypatch: pytest.MonkeyPatch, rubin_record: dict[str, Any],
                                    module: str, function: Any, message: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=f"{message}.*pip install 'alert-sidecar\\[cutouts\\]'"):
        function(rubin_record["cutoutScience"])
    # Finding the stamps needs neither.
    assert len(cutouts.stamps(rubin_record)) == 3


def test_a_stamp_worker_answers_the_same_in_both_forms() -> None:
    # The README's example: the same code on raw Avro and on the JSON form.
    @alert_worker.worker(name="stamp-pictures", version="1.0.0")
    def stamp_pictures(alert: alert_worker.Alert) -> dict[str, Any]:
        record = alert.record()
        found = cutouts.stamps(record)
        pixels = cutouts.cutout_array(found["cutoutDifference"])
        return {"diaSourceId": record["diaSourceId"],
                "peak": float(numpy.nanmax(pixels)),
                "science_png": cutouts.cutout_png(found["cutoutScience"], size=128)}

    factory = RubinAlertFactory(seed=1)
    raw = make_alert(factory.encode(factory.make(0)), content_type=codecs.AVRO_CONFLUENT)
    results = run(stamp_pictures, [raw, json_form(raw)])
    assert all(result.verdict is Verdict.OK for result in results), [r.error for r in results]
    outputs = [codecs.decode_json(result.outputs[0].value) for result in results]
    assert outputs[0] == outputs[1]
    assert outputs[0]["diaSourceId"] == factory.make(0)["diaSourceId"]
    png = base64.b64decode(outputs[0]["science_png"])
    assert png_pixels(png).shape == (128, 128)
