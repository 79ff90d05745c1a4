"""Realistic Rubin (LSST) alerts, for the demo, the tests and the load generator.

``RubinAlertFactory`` makes alert records that are valid against Rubin's real
Avro schemas, as shipped by ``lsst-alert-packet``, and encodes them in the
Confluent wire format Rubin publishes: byte 0 is 0, bytes 1 to 4 the schema id
(big-endian; Rubin's ids encode the version, 11.1 is 1101), then the schemaless
Avro body.

Alert ``i`` is a pure function of ``(seed, i)``: the same seed gives the same
alerts in any order and in any process, so a load generator can split one
stream across processes by ranges of ``i``. Alerts come in visit bursts: the
``ALERTS_PER_VISIT`` alerts of one visit share its visit id, band, seeing and
mid-exposure time, as a real visit's alerts do.

What is realistic, field by field:

- ids are 64-bit and above 2**53, so that a reader that turns them into
  doubles (JSON in R or JavaScript) breaks them, as it would Rubin's. They
  encode ``(seed, i, k)``: see ``RubinAlertFactory.dia_source_id``.
- the diaObjectId is the id of the object's first diaSource, as in Rubin's
  pipeline, and is the same in diaSource, prvDiaSources, prvDiaForcedSources
  and diaObject.
- positions are spread over the southern sky (dec below +30 deg); a source's
  position scatters about its object's by its astrometric error.
- fluxes are in nJy; the triggering source's AB magnitude follows
  ``BRIGHT_SHARE`` (a fifth brighter than mag 20, the rest rising towards the
  band's 5-sigma depth); errors follow the LSST noise model of Ivezic et al.
  (2019) for a 30 s visit, so snr = psfFlux / psfFluxErr is what a real visit
  would give.
- prvDiaSources are earlier detections of the same object (a light curve over
  the past year, in all six bands), prvDiaForcedSources a few forced
  measurements (non-detections included), and diaObject the per-band summary
  of the detections.
- cutouts are FITS files laid out as Rubin's pipeline writes them
  (``astropy.nddata.CCDData.write``: a float32 image in nJy with its WCS, then
  an ``UNCERT`` variance extension), ``max(30, bboxSize)`` pixels on a side,
  centred on the source: a PSF-shaped source of the measured flux on noise that
  agrees with psfFluxErr. A 30 x 30 cutout is 17,280 bytes.

Left None, as the real stream leaves them: the solar-system fields (ssObject,
ssSource, MPCORB, mpc_orbits), the trailed-source and dipole fits, withdrawal
times, the scheduler's observation_reason and target_name.

Fields are filled in two steps. First every field gets a value from its type
alone (None for nullable fields, False for nullable flags, zero for required
numbers), so that any version of the schema is served. Then the fields that
mean something are set by their names in the newest schema; ``_OLDER_NAMES``
maps those names to the ones older schemas used for the same quantity.

Encoding is done here rather than by fastavro, which spends about a
microsecond on each nullable field: an LSST-sized alert has over 3,000 of them,
which would cap a load generator near 200 alerts/s. ``_RecordEncoder`` encodes
a record with one compiled function per shape of record, packing runs of
fixed-size fields with one ``struct`` call; ``alerts`` goes further and makes
alerts in batches, numpy computing their values and ``_ColumnEncoder`` encoding
all their diaSources at once. Tests hold both to fastavro's output, byte for
byte; ``encode`` falls back to fastavro for any record it cannot encode.

A factory is not thread-safe: give each thread or process its own.

The schemas come from ``lsst-alert-packet`` (``pip install alert-sidecar[rubin]``),
which also brings numpy.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, islice, repeat
from operator import itemgetter
from typing import Any

import numpy as np

from alert_worker.codecs import RubinSchemaResolver, confluent_header, encode_confluent, named_types, rubin_resolver
from alert_worker.exceptions import MissingDependencyError

from alert_sidecar.exceptions import ConfigError, SidecarError

# ---------------------------------------------------------------------------
# Photometry
# ---------------------------------------------------------------------------

# AB magnitude of a flux of 1 nJy: m_AB = -2.5 log10(f / 3631 Jy) (Oke & Gunn
# 1983), and 2.5 log10(3631e9) = 31.40. Rubin's fluxes are all in nJy.
AB_ZERO_POINT_NJY = 31.4


def magnitude(flux_njy: float) -> float:
    """AB magnitude of a flux in nJy; NaN for a flux that is not positive."""
    if not flux_njy > 0:
        return math.nan
    return AB_ZERO_POINT_NJY - 2.5 * math.log10(flux_njy)


def flux_njy(mag: float) -> float:
    """Flux in nJy of an AB magnitude: the inverse of ``magnitude``."""
    return 10.0 ** (-0.4 * (mag - AB_ZERO_POINT_NJY))


BANDS = ("u", "g", "r", "i", "z", "y")
# Visits per band over the ten years of the main survey (Ivezic et al. 2019,
# ApJ 873 111, Table 1), hence the share of visits, and of alerts, per band.
_BAND_VISITS = np.array([56, 80, 184, 184, 160, 160], dtype=np.float64)
_BAND_CDF = np.cumsum(_BAND_VISITS) / _BAND_VISITS.sum()
# Single-visit 5-sigma point-source depths (AB) and the gamma of the noise
# model, per band, from the same paper (Table 2).
_M5 = np.array([23.78, 24.81, 24.35, 23.92, 23.34, 22.45])
_GAMMA = np.array([0.038, 0.039, 0.039, 0.039, 0.039, 0.039])
_SIGMA_SYS_MAG = 0.005  # systematic floor of one visit's photometry, same paper
_MAG_PER_RELATIVE_FLUX = 2.5 / math.log(10.0)  # sigma_mag = this * sigma_flux / flux
# A source's magnitude per band relative to r, per unit of "redness" (a
# standard normal per object): only so that a light curve's bands differ.
_COLOUR_SLOPE = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]) * 0.15

# The share of triggering diaSources brighter than mag 20. An assumption, not a
# measurement: difference-image detections are dominated by faint sources near
# the detection limit; a fifth of bright ones (variable stars, bright nuclear
# transients, artefacts near bright stars) gives a filter on "brighter than 20"
# a realistic minority to select. The tests hold a seeded factory to it.
BRIGHT_SHARE = 0.2
BRIGHT_MAG_RANGE = (16.0, 20.0)  # 16: Rubin saturates near mag 16 in a 30 s visit
_FAINT_SLOPE = 0.3 * math.log(10.0)  # fainter than 20, counts rise as 10**(0.3 m) to the depth

# ---------------------------------------------------------------------------
# Survey figures, each with its public source (Rubin DMTN-102, DMTN-028, the LSST SRD)
# ---------------------------------------------------------------------------

ALERTS_PER_VISIT = 10_000  # Rubin's average per visit (DMTN-102)
VISIT_INTERVAL_S = 39.0  # from one visit to the next, on average (DMTN-102, DMTN-028)
VISITS_PER_NIGHT = 1_000  # about 10 million alerts a night (DMTN-102)
EXPOSURE_S = 30.0
# First visit of the first night: MJD 61000.98 is 2025-11-21 23:31 UTC, 20:31 in Chile.
FIRST_VISIT_MJD = 61000.98
HISTORY_DAYS = 365  # alerts carry the past 12 months of an object (DMTN-102)
MAX_DEC_DEG = 30.0  # Rubin's footprint reaches about +30 deg in declination
DETECTORS = 189  # science detectors of LSSTCam
_DETECTOR_PIXELS = (4072.0, 4000.0)  # x, y extent of an LSSTCam science detector
PIXEL_SCALE_ARCSEC = 0.2
_MEDIAN_SEEING_ARCSEC = 0.8  # median delivered FWHM at Cerro Pachon (LSST SRD)
_FWHM_PER_SIGMA = 2.3548  # of a Gaussian
_PROCESSING_DELAY_S = (60.0, 120.0)  # from mid-exposure to the diaSource record
_MJD_EPOCH = dt.datetime(1858, 11, 17, tzinfo=dt.timezone.utc)
_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

# Cutouts are max(30, bboxSize) pixels on a side: ap_association's
# PackageAlertsConfig.minCutoutSize is 30.
MIN_CUTOUT_PIXELS = 30
_FITS_BLOCK = 2880  # FITS headers and data come in blocks of 2880 bytes (FITS 4.0, 3.1)

# Ids (see RubinAlertFactory.dia_source_id); the base puts every id above 2**53.
_ID_BASE = 1 << 57
_ID_SEED_BITS = 14
_ID_INDEX_BITS = 28  # 268 million alerts per seed: 27 nights of 10 million
_ID_SLOT_BITS = 12  # per alert: the triggering source, its history, its forced sources
_FORCED_ID_OFFSET = 1 << (_ID_SLOT_BITS - 1)
MAX_PRV_SOURCES = _FORCED_ID_OFFSET - 1
_FORCED_PER_PRV = 6  # forced measurements per alert: 0 to prv_sources // 6 ("a few")
_VISIT_STREAM = 1 << 100  # where per-visit random numbers start in the seed's stream

# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------


def _rubin() -> RubinSchemaResolver:
    """Rubin's schema index (the SDK's), once lsst-alert-packet is known to be there."""
    resolver = rubin_resolver()
    try:
        resolver.known_ids()
    except MissingDependencyError as exc:  # pragma: no cover - depends on the environment
        raise SidecarError(
            "Rubin alerts need the lsst-alert-packet package: pip install 'alert-sidecar[rubin]'"
        ) from exc
    return resolver


@lru_cache(maxsize=1)
def schema_versions() -> tuple[str, ...]:
    """The versions of Rubin's alert schema that lsst-alert-packet ships, oldest first."""
    return _rubin().versions()


def latest_schema_version() -> str:
    """The newest version lsst-alert-packet ships."""
    return _rubin().latest_version()


def _load_schema(version: str) -> tuple[int, dict]:
    """Registry id and parsed schema of a version such as "11.1"."""
    if version not in schema_versions():
        raise ConfigError(
            f"Rubin alert schema {version!r} is unknown: use one that lsst-alert-packet ships, "
            f"{', '.join(schema_versions())}"
        )
    resolver = _rubin()
    schema_id = resolver.schema_id(version)
    return schema_id, resolver.schema(schema_id)


def _resolve(avro_type: Any, named: dict[str, dict]) -> Any:
    """A type, with a reference to a named type replaced by its definition."""
    if isinstance(avro_type, str) and avro_type in named:
        return named[avro_type]
    if isinstance(avro_type, dict) and isinstance(avro_type.get("type"), (dict, list)):
        return _resolve(avro_type["type"], named)
    return avro_type


def _non_null(avro_type: Any, named: dict[str, dict]) -> tuple[bool, Any]:
    """(nullable, the resolved non-null type) of a field's type."""
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null"]
        if len(branches) != 1:
            raise NotImplementedError(f"union {avro_type} has several non-null branches")
        return "null" in avro_type, _resolve(branches[0], named)
    return False, _resolve(avro_type, named)


def _type_name(avro_type: Any) -> str:
    """"float", "long", "record", "timestamp-micros", ... of a resolved, non-union type."""
    if isinstance(avro_type, dict):
        return avro_type.get("logicalType") or avro_type["type"]
    return avro_type


_TYPE_DEFAULTS: dict[str, Any] = {
    "boolean": False,
    "int": 0,
    "long": 0,
    "float": 0.0,
    "double": 0.0,
    "string": "",
    "bytes": b"",
    "timestamp-micros": _UNIX_EPOCH,
}


def _default_value(avro_type: Any, named: dict[str, dict]) -> Any:
    """The value a field has before the generator sets it, from its type alone.

    Nullable fields are None, except flags (nullable booleans), which Rubin's
    pipeline always sets: False. Required fields get a zero of their type.
    """
    nullable, base = _non_null(avro_type, named)
    name = _type_name(base)
    if nullable:
        return False if name == "boolean" else None
    if name == "record":
        return {f["name"]: _default_value(f["type"], named) for f in base["fields"]}
    if name == "array":
        return []
    if name == "enum":
        return base["symbols"][0]
    if name == "fixed":
        return bytes(base["size"])
    if name == "map":
        return {}
    if name in _TYPE_DEFAULTS:
        return _TYPE_DEFAULTS[name]
    raise NotImplementedError(f"no default value for Avro type {base!r}")


# Where an older schema named a quantity differently, its name in the newest
# schema maps to the older names here. Quantities that only older schemas have
# (ccdVisitId, radecMjdTai, programId, flags) are set by their own names.
_OLDER_NAMES: dict[str, tuple[str, ...]] = {
    "diaSourceId": ("alertId",),  # alert level: alertId, equal to the diaSourceId, until 7.x
    "midpointMjdTai": ("midPointTai",),  # until 4.x
    "band": ("filterName",),  # until 4.x
    "dec": ("decl",),  # until 4.x
    "decErr": ("declErr",),
    "ra_dec_Cov": ("ra_decl_Cov",),
    "psfFlux": ("psFlux",),  # until 4.x
    "psfFluxErr": ("psFluxErr",),
    "psfLnL": ("psLnL",),
    "psfChi2": ("psChi2",),
    "psfNdata": ("psNdata",),
    "scienceFlux": ("totFlux",),  # forced sources until 4.x
    "scienceFluxErr": ("totFluxErr",),
    "radecMjdTai": ("radecTai",),  # until 4.x
    "timeProcessedMjdTai": ("time_processed",),  # 8.x, a timestamp
    "validityStartMjdTai": ("validityStart",),  # 8.x, a timestamp
}
for _band in BANDS:  # per-band summaries of a diaObject: "r_psfFluxMean" from 5.0, "rPSFluxMean" before
    for _stat in ("Mean", "MeanErr", "Sigma", "Chi2", "Ndata"):
        _OLDER_NAMES[f"{_band}_psfFlux{_stat}"] = (f"{_band}PSFlux{_stat}",)
        _OLDER_NAMES[f"{_band}_fpFlux{_stat}"] = (f"{_band}FPFlux{_stat}",)


def _mjd_to_datetime(mjd: float) -> dt.datetime:
    return _MJD_EPOCH + dt.timedelta(microseconds=round(mjd * 86_400_000_000))


_FLOAT32 = struct.Struct("<f")

# Values are cast to their field's type, so that a record equals what a reader
# decodes from it; Avro floats are 32-bit, so floats are rounded to float32.
_SCALAR_CASTS: dict[str, Callable[[Any], Any]] = {
    "float": lambda v: _FLOAT32.unpack(_FLOAT32.pack(v))[0],
    "double": float,
    "int": int,
    "long": int,  # never through a float: ids exceed 2**53
    "boolean": bool,
    "string": str,
    "bytes": bytes,
    "timestamp-micros": lambda v: _mjd_to_datetime(float(v)),
}
_NUMPY_TYPES = {"float": np.float32, "double": np.float64, "int": np.int64, "long": np.int64}
# Plans kept per record type (name mappings, compiled encoders): more than the
# shapes the generator makes of a diaSource; a diaObject, whose nulls move from
# one alert to the next, uses one generic plan past this many.
_MAX_PLANS = 64


class _RecordLayout:
    """The fields of one record type of one schema version, and how to fill them.

    Values are given by their names in the newest schema, as columns (a value
    per row) or constants (one value for every row; None leaves the field at
    its default). ``rows`` returns rows of this version as tuples in field
    order, renamed, cast to the field's type, every other field at its default;
    ``encode_columns`` encodes the same rows without making them.
    """

    def __init__(self, schema: dict, named: dict[str, dict]):
        self.name = schema["name"]
        self.names = tuple(f["name"] for f in schema["fields"])
        self.defaults = {f["name"]: _default_value(f["type"], named) for f in schema["fields"]}
        self.types = {f["name"]: _non_null(f["type"], named) for f in schema["fields"]}  # (nullable, type)
        self._kinds = {name: _type_name(base) for name, (_, base) in self.types.items()}
        self._actual: dict[str, str | None] = {}
        self._column_encoders: dict[frozenset, _ColumnEncoder] = {}
        self._name_plans: dict[tuple, tuple[list, list]] = {}
        self._record_plans: dict[tuple, list] = {}

    def field(self, canonical: str) -> str | None:
        """This version's name for the quantity the newest schema calls ``canonical``, if it has one."""
        try:
            return self._actual[canonical]
        except KeyError:
            candidates = (canonical, *_OLDER_NAMES.get(canonical, ()))
            found = self._actual[canonical] = next((c for c in candidates if c in self.defaults), None)
            return found

    def _by_name(self, columns: dict[str, Any], constants: dict[str, Any]) -> tuple[dict, dict]:
        """Columns and constants under this version's names; None constants dropped."""
        key = (tuple(columns), tuple(constants))
        names = self._name_plans.get(key)
        if names is None:
            if len(self._name_plans) >= _MAX_PLANS:
                self._name_plans.clear()
            names = self._name_plans[key] = (
                [(c, a) for c in columns if (a := self.field(c)) is not None],
                [(c, a) for c in constants if (a := self.field(c)) is not None],
            )
        column_names, constant_names = names
        return ({name: columns[canonical] for canonical, name in column_names},
                {name: constants[canonical] for canonical, name in constant_names
                 if constants[canonical] is not None})

    def rows(self, n: int, columns: dict[str, Any], constants: dict[str, Any]) -> list[tuple]:
        named_columns, named_constants = self._by_name(columns, constants)
        values: dict[str, Any] = {}
        # Numbers are cast by numpy, a block of one type at a time.
        constants_by_type: dict[Any, list[tuple[str, Any]]] = {}
        columns_by_type: dict[Any, list[tuple[str, Any]]] = {}
        for name, value in named_constants.items():
            kind = self._kinds[name]
            if kind in _NUMPY_TYPES:
                constants_by_type.setdefault(_NUMPY_TYPES[kind], []).append((name, value))
            else:
                cast = _SCALAR_CASTS.get(kind)
                values[name] = repeat(cast(value) if cast is not None else value)
        for name, column in named_columns.items():
            kind = self._kinds[name]
            if kind in _NUMPY_TYPES:
                columns_by_type.setdefault(_NUMPY_TYPES[kind], []).append((name, column))
            else:
                cast = _SCALAR_CASTS.get(kind)
                values[name] = [cast(v) for v in column] if cast else list(column)
        for numpy_type, typed in constants_by_type.items():
            cast_values = np.array([value for _, value in typed], dtype=numpy_type).tolist()
            values.update((name, repeat(value)) for (name, _), value in zip(typed, cast_values))
        for numpy_type, typed in columns_by_type.items():
            block = np.array([column for _, column in typed], dtype=numpy_type).tolist()
            values.update(zip((name for name, _ in typed), block))
        defaults = self.defaults
        return list(islice(zip(*(values.get(name) or repeat(defaults[name]) for name in self.names)), n))

    def dicts(self, rows: list[tuple]) -> list[dict]:
        names = self.names
        return [dict(zip(names, row)) for row in rows]

    def record_to_encode(self, constants: dict[str, Any]) -> dict:
        """``dicts(rows(1, {}, constants))[0]`` less the rounding of its numbers,
        which encoding does anyway: the same bytes, made faster."""
        key = tuple(constants)
        plan = self._record_plans.get(key)
        if plan is None:
            if len(self._record_plans) >= _MAX_PLANS:
                self._record_plans.clear()
            plan = self._record_plans[key] = [
                (canonical, name, None if self._kinds[name] in _NUMPY_TYPES else _SCALAR_CASTS.get(self._kinds[name]))
                for canonical in constants if (name := self.field(canonical)) is not None
            ]
        record = dict(self.defaults)
        for canonical, name, cast in plan:
            value = constants[canonical]
            if value is not None:
                record[name] = value if cast is None else cast(value)
        return record

    def encode_columns(self, n: int, columns: dict[str, Any], constants: dict[str, Any]) -> list[bytes]:
        """The Avro encoding of each of ``rows(n, columns, constants)``."""
        named_columns, named_constants = self._by_name(columns, constants)
        key = frozenset(named_columns) | frozenset(named_constants)
        encoder = self._column_encoders.get(key)
        if encoder is None:
            encoder = self._column_encoders[key] = _ColumnEncoder(self, key)
        return encoder.encode(n, named_columns, named_constants)


# ---------------------------------------------------------------------------
# Avro binary encoding
# ---------------------------------------------------------------------------

# Zig-zag varints (Avro's int and long) of up to two bytes, precomputed, and
# pairs of bytes that both continue a longer varint.
_SMALL_VARINTS = tuple(bytes([z]) if z < 0x80 else bytes([(z & 0x7F) | 0x80, z >> 7]) for z in range(1 << 14))
_CONTINUED_PAIRS = tuple(bytes([(c & 0x7F) | 0x80, (c >> 7) | 0x80]) for c in range(1 << 14))
# The varint of a long above 2**13 is a continued pair for its low 14 bits,
# then the varint of the rest; the ids of one alert share their rest.
_VARINT_RESTS: dict[int, bytes] = {}
_VARINT_RESTS_KEPT = 1 << 16


def _varint(z: int) -> bytes:
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _long(v: int) -> bytes:
    """Avro int or long: zig-zag, then a little-endian base-128 varint (Avro spec)."""
    z = (v << 1) ^ (v >> 63)
    if z < 16384:
        return _SMALL_VARINTS[z]
    rest = z >> 14
    tail = _VARINT_RESTS.get(rest)
    if tail is None:
        if len(_VARINT_RESTS) >= _VARINT_RESTS_KEPT:
            _VARINT_RESTS.clear()
        tail = _VARINT_RESTS[rest] = _varint(rest)
    return _CONTINUED_PAIRS[z & 0x3FFF] + tail


@lru_cache(maxsize=4096)  # strings in alerts are short and repeat: bands, versions
def _string(v: str) -> bytes:
    b = v.encode()
    return _long(len(b)) + b


def _bytes(v: bytes) -> bytes:
    return _long(len(v)) + v


def _timestamp_micros(v: dt.datetime | int) -> bytes:
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise TypeError("a naive datetime: fastavro reads it in local time")
        delta = v - _UNIX_EPOCH
        v = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _long(v)


def _array(items: list[bytes]) -> bytes:
    """An array of encoded items: one block, then the empty block that ends it."""
    return _long(len(items)) + b"".join(items) + b"\x00" if items else b"\x00"


class _Encoded(bytes):
    """A record or array already encoded: ``_RecordEncoder`` writes it as it is."""


_PACKED = {"float": "f", "double": "d", "boolean": "?"}
_NUMPY_PACKED = {"float": "<f4", "double": "<f8", "boolean": "?"}
_VARIABLE = {"int": _long, "long": _long, "string": _string, "bytes": _bytes, "timestamp-micros": _timestamp_micros}
_NoneType = type(None)


class _RecordEncoder:
    """Avro binary encoder for one record schema whose unions are all [null, T].

    For each shape of record it meets (its values' Python types, in field
    order) it compiles a function that packs each run of fixed-size fields with
    one ``struct`` call and writes null fields as constant bytes. A record of a
    shape it cannot encode raises TypeError, ValueError or KeyError.
    """

    def __init__(self, schema: dict, named: dict[str, dict], encoders: dict[str, _RecordEncoder]):
        encoders[schema["name"]] = self
        self.name = schema["name"]
        self._fields: list[tuple[str, bool, str, Callable | None]] = []
        for field in schema["fields"]:
            nullable, base = _non_null(field["type"], named)
            kind = _type_name(base)
            self._fields.append((field["name"], nullable, kind, _sub_encoder(kind, base, named, encoders)))
        names = [f[0] for f in self._fields]
        self._get = itemgetter(*names) if len(names) > 1 else (lambda r, n=names[0]: (r[n],))
        self._plans: dict[tuple, Callable[[tuple], bytes]] = {}
        self._generic_plan: Callable[[tuple], bytes] | None = None

    def encode(self, record: dict) -> bytes:
        return self.encode_values(self._get(record))

    def encode_values(self, values: tuple) -> bytes:
        """A record given as its values in field order."""
        return self._plan(tuple(map(type, values)))(values)

    def _plan(self, shape: tuple) -> Callable[[tuple], bytes]:
        plan = self._plans.get(shape)
        if plan is None:
            # A record whose nulls move from one record to the next (a
            # diaObject's per-band summaries) would compile a plan per record:
            # past _MAX_PLANS shapes, one plan that tests every field serves all.
            if len(self._plans) < _MAX_PLANS:
                plan = self._plans[shape] = self._compile(shape)
            else:
                return self._generic()
        return plan

    def _generic(self) -> Callable[[tuple], bytes]:
        """The plan for any shape: it tests every nullable field for None."""
        if self._generic_plan is not None:
            return self._generic_plan
        namespace: dict[str, Any] = {"_Encoded": _Encoded}
        pieces = []
        for index, (_, nullable, kind, sub) in enumerate(self._fields):
            value = f"v[{index}]"
            if kind in _PACKED:
                namespace[f"_f{index}"] = struct.Struct("<" + _PACKED[kind]).pack
            else:
                namespace[f"_f{index}"] = sub
            encoded = f"_f{index}({value})"
            if kind in ("record", "array"):
                encoded = f"({value} if type({value}) is _Encoded else {encoded})"
            pieces.append(f"(b'\\x00' if {value} is None else b'\\x02' + {encoded})" if nullable else encoded)
        exec(f"def plan(v):\n    return b''.join(({', '.join(pieces)},))\n", namespace)  # noqa: S102
        self._generic_plan = namespace["plan"]
        return self._generic_plan

    def _compile(self, shape: tuple) -> Callable[[tuple], bytes]:
        pieces: list[str] = []  # Python expressions whose bytes are joined, in order
        namespace: dict[str, Any] = {}
        run: list[tuple[str, Any]] = []  # fixed-size parts: (struct format, bytes or "v[i]")
        constant = bytearray()  # constant bytes not yet placed in the run

        def end_constant():
            if constant:
                run.append((f"{len(constant)}s", bytes(constant)))
                constant.clear()

        def end_run():
            end_constant()
            if all(isinstance(part, bytes) for _, part in run):  # constants only: a literal
                literal = b"".join(part for _, part in run)
                if literal:
                    pieces.append(repr(literal))
            else:
                name = f"_s{len(namespace)}"
                namespace[name] = struct.Struct("<" + "".join(fmt for fmt, _ in run))
                args = ", ".join(repr(part) if isinstance(part, bytes) else part for _, part in run)
                pieces.append(f"{name}.pack({args})")
            run.clear()

        for index, ((name, nullable, kind, sub), value_type) in enumerate(zip(self._fields, shape)):
            if value_type is _NoneType:
                if not nullable:
                    raise ValueError(f"{self.name}.{name} is required but None")
                constant.append(0)  # union branch 0: null
                continue
            if nullable:
                constant.append(2)  # union branch 1, zig-zag encoded
            if kind in _PACKED:
                end_constant()
                run.append((_PACKED[kind], f"v[{index}]"))
            elif value_type is _Encoded and kind in ("record", "array"):
                end_run()
                pieces.append(f"v[{index}]")
            else:
                end_run()
                namespace[f"_f{index}"] = sub
                pieces.append(f"_f{index}(v[{index}])")
        end_run()
        body = ", ".join(pieces) if pieces else "b''"
        exec(f"def plan(v):\n    return b''.join(({body},))\n", namespace)  # noqa: S102 - made from the schema
        return namespace["plan"]


class _ColumnEncoder:
    """Encodes many records of one layout given as columns, with no Python code per record.

    Each run of fixed-size fields is packed for all records at once, as a
    numpy structured array whose constant parts (null markers, fields left at
    their defaults) are filled in advance; each variable-size field is one
    function mapped over its column; ``zip`` and ``bytes.join`` put each
    record together.
    """

    def __init__(self, layout: _RecordLayout, provided: frozenset):
        # ("bytes", b) | ("run", _PackedRun) | ("value", name, encode, cast)
        self._steps: list[tuple] = []
        run: list[tuple[str, Any]] = []  # (numpy type, field name or constant bytes)
        constant = bytearray()

        def end_constant():
            if constant:
                run.append((f"V{len(constant)}", bytes(constant)))
                constant.clear()

        def end_run():
            end_constant()
            if any(isinstance(part, str) for _, part in run):
                self._steps.append(("run", _PackedRun(run)))
            elif run:
                self._steps.append(("bytes", b"".join(part for _, part in run)))
            run.clear()

        for name in layout.names:
            nullable, base = layout.types[name]
            kind = _type_name(base)
            if name not in provided:
                constant.extend(_encode_value(nullable, kind, layout.defaults[name]))
                continue
            if nullable:
                constant.append(2)  # union branch 1, zig-zag encoded
            if kind in _PACKED:
                end_constant()
                run.append((_NUMPY_PACKED[kind], name))
            elif kind in _VARIABLE:
                end_run()
                self._steps.append(("value", name, _VARIABLE[kind], _SCALAR_CASTS[kind]))
            else:
                raise NotImplementedError(f"a column of {kind}")
        end_run()

    def encode(self, n: int, columns: dict[str, Any], constants: dict[str, Any]) -> list[bytes]:
        pieces: list[Any] = []
        encoded: dict[int, list[bytes]] = {}  # a column given for several fields is encoded once
        for step in self._steps:
            if step[0] == "bytes":
                pieces.append(repeat(step[1]))
            elif step[0] == "run":
                pieces.append(step[1].pack(n, columns, constants))
            else:
                _, name, encode, cast = step
                if name in constants:
                    pieces.append(repeat(encode(cast(constants[name]))))
                    continue
                values = columns[name]
                done = encoded.get(id(values))
                if done is None:
                    values = values.tolist() if isinstance(values, np.ndarray) else list(values)
                    if encode is _long and values and min(values) >= 0 and max(values) < 8192:
                        # Small and not negative: the zig-zag of v is 2 v, its varint in the table.
                        done = list(map(_SMALL_VARINTS.__getitem__, map((2).__mul__, values)))
                    else:
                        done = list(map(encode, map(cast, values)))
                    encoded[id(columns[name])] = done
                pieces.append(done)
        return list(map(b"".join, islice(zip(*pieces), n)))


class _PackedRun:
    """A run of fixed-size fields (and constant bytes), packed for many records at once."""

    def __init__(self, parts: list[tuple[str, Any]]):
        self._dtype = np.dtype([(f"p{k}", numpy_type) for k, (numpy_type, _) in enumerate(parts)])
        self._constants = [(f"p{k}", np.void(part)) for k, (_, part) in enumerate(parts) if isinstance(part, bytes)]
        self._fields = [(f"p{k}", part) for k, (_, part) in enumerate(parts) if isinstance(part, str)]
        self._template = np.zeros(0, self._dtype)  # constants filled in, grown on demand
        self._width = self._dtype.itemsize
        self._slices: list[slice] = []  # each record's bytes in the packed run

    def pack(self, n: int, columns: dict[str, Any], constants: dict[str, Any]) -> Iterator[bytes]:
        if len(self._template) < n:
            self._template = np.zeros(max(n, 2 * len(self._template)), self._dtype)
            for key, value in self._constants:
                self._template[key] = value
            self._slices = [slice(k * self._width, (k + 1) * self._width) for k in range(len(self._template))]
        packed = self._template[:n].copy()
        for key, name in self._fields:
            packed[key] = constants[name] if name in constants else columns[name]
        return map(packed.tobytes().__getitem__, self._slices[:n])


def _encode_value(nullable: bool, kind: str, value: Any) -> bytes:
    """One value of a primitive type (or null), encoded."""
    if value is None:
        if not nullable:
            raise ValueError("a required field is None")
        return b"\x00"
    prefix = b"\x02" if nullable else b""
    if kind in _PACKED:
        return prefix + struct.pack("<" + _PACKED[kind], value)
    if kind in _VARIABLE:
        return prefix + _VARIABLE[kind](value)
    raise NotImplementedError(f"a constant of {kind}")


def _sub_encoder(kind: str, base: Any, named: dict[str, dict], encoders: dict[str, _RecordEncoder]):
    """The function that encodes a value of a non-fixed-size type; None for fixed-size ones."""
    if kind == "record":
        known = encoders.get(base["name"])
        return (known or _RecordEncoder(base, named, encoders)).encode
    if kind == "array":
        nullable, items = _non_null(base["items"], named)
        item_kind = _type_name(items)
        if nullable:
            raise NotImplementedError(f"array of {base['items']!r}")
        if item_kind in _PACKED:
            item = struct.Struct("<" + _PACKED[item_kind]).pack
        else:
            item = _sub_encoder(item_kind, items, named, encoders)
        return lambda values: _array(list(map(item, values)))
    if kind in _PACKED:
        return None
    if kind in _VARIABLE:
        return _VARIABLE[kind]
    raise NotImplementedError(f"Avro type {base!r}")


# ---------------------------------------------------------------------------
# Cutouts
# ---------------------------------------------------------------------------


def _fits_value(value: Any) -> str:
    if isinstance(value, bool):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, int):
        return f"{value:>20d}"
    if isinstance(value, float):
        text = f"{value:.15G}"
        if "." not in text and "E" not in text:
            text += ".0"
        return f"{text:>20}"
    return f"{chr(39) + f'{value:<8}' + chr(39):<20}"


def _fits_card(key: str, value: Any, comment: str = "") -> bytes:
    card = f"{key:<8}= {_fits_value(value)}"
    if comment:
        card += f" / {comment}"
    return card[:80].ljust(80).encode("ascii")


def _fits_header(cards: list[bytes]) -> bytes:
    header = b"".join(cards) + b"END".ljust(80)
    return header.ljust(-(-len(header) // _FITS_BLOCK) * _FITS_BLOCK, b" ")


def _fits_pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % _FITS_BLOCK)


class _Cutouts:
    """Difference, science and template cutouts, laid out as Rubin's pipeline writes them.

    The noise comes from a few fields of unit Gaussian noise made once; each
    stamp takes a window of one at a random offset: cheap, and no two stamps
    alike. Pixels are in nJy; the noise per pixel is what makes a PSF fit on
    the difference stamp give the alert's psfFluxErr.
    """

    _NOISE_FIELDS = 4
    _NOISE_PIXELS = 256

    def __init__(self, seed: int):
        rng = np.random.Generator(np.random.PCG64(seed))
        self._noise = rng.standard_normal((self._NOISE_FIELDS, self._NOISE_PIXELS, self._NOISE_PIXELS), np.float32)
        self._uncert_headers: dict[int, bytes] = {}
        self._primary_headers: dict[int, list[bytes]] = {}

    @staticmethod
    @lru_cache(maxsize=1024)
    def _psf(size: int, sigma_pix: float) -> np.ndarray:
        """A Gaussian PSF of unit flux, centred on the stamp."""
        axis = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        profile = np.exp(-0.5 * (axis / sigma_pix) ** 2)
        image = np.outer(profile, profile)
        return (image / image.sum()).astype(np.float32)

    def _uncert_header(self, size: int) -> bytes:
        header = self._uncert_headers.get(size)
        if header is None:
            header = self._uncert_headers[size] = _fits_header([
                _fits_card("XTENSION", "IMAGE", "Image extension"),
                _fits_card("BITPIX", -32, "array data type"),
                _fits_card("NAXIS", 2, "number of array dimensions"),
                _fits_card("NAXIS1", size),
                _fits_card("NAXIS2", size),
                _fits_card("PCOUNT", 0, "number of parameters"),
                _fits_card("GCOUNT", 1, "number of groups"),
                _fits_card("UTYPE", "VarianceUncertainty"),
                _fits_card("EXTNAME", "UNCERT", "extension name"),
            ])
        return header

    def _primary_header(self, size: int) -> list[bytes]:
        """The primary header of a stamp of this size, cut where its varying values go."""
        cached = self._primary_headers.get(size)
        if cached is None:
            cards = [
                _fits_card("SIMPLE", True, "conforms to FITS standard"),
                _fits_card("BITPIX", -32, "array data type"),
                _fits_card("NAXIS", 2, "number of array dimensions"),
                _fits_card("NAXIS1", size),
                _fits_card("NAXIS2", size),
                _fits_card("EXTEND", True),
                _fits_card("CUTMINX", 0),
                _fits_card("CUTMINY", 0),
                _fits_card("BUNIT", "nJy"),
                _fits_card("WCSAXES", 2, "Number of coordinate axes"),
                _fits_card("CRPIX1", (size + 1) / 2.0, "Pixel coordinate of reference point"),
                _fits_card("CRPIX2", (size + 1) / 2.0, "Pixel coordinate of reference point"),
                _fits_card("PC1_1", -PIXEL_SCALE_ARCSEC / 3600.0, "Coordinate transformation matrix element"),
                _fits_card("PC2_2", PIXEL_SCALE_ARCSEC / 3600.0, "Coordinate transformation matrix element"),
                _fits_card("CDELT1", 1.0, "[deg] Coordinate increment at reference point"),
                _fits_card("CDELT2", 1.0, "[deg] Coordinate increment at reference point"),
                _fits_card("CUNIT1", "deg", "Units of coordinate increment and value"),
                _fits_card("CUNIT2", "deg", "Units of coordinate increment and value"),
                _fits_card("CTYPE1", "RA---TAN", "Right ascension, gnomonic projection"),
                _fits_card("CTYPE2", "DEC--TAN", "Declination, gnomonic projection"),
                _fits_card("CRVAL1", 0.0, "[deg] Coordinate value at reference point"),
                _fits_card("CRVAL2", 0.0, "[deg] Coordinate value at reference point"),
                _fits_card("LONPOLE", 180.0, "[deg] Native longitude of celestial pole"),
                _fits_card("LATPOLE", 0.0, "[deg] Native latitude of celestial pole"),
                _fits_card("MJDREF", 0.0, "[d] MJD of fiducial time"),
                _fits_card("RADESYS", "ICRS", "Equatorial coordinate system"),
            ]
            header = _fits_header(cards)
            # Value fields (columns 11 to 30) of CUTMINX, CUTMINY, CRVAL1, CRVAL2, LATPOLE.
            offsets = [80 * k + 10 for k in (6, 7, 20, 21, 23)]
            cached = self._primary_headers[size] = [
                header[a:b] for a, b in zip([0] + [o + 20 for o in offsets], offsets + [len(header)])]
        return cached

    def stamps(self, *, size: int, ra: float, dec: float, x: float, y: float, sigma_psf_pix: float,
               flux: float, flux_err: float, template_flux: float,
               uniforms: list[float]) -> tuple[bytes, bytes, bytes]:
        """(difference, science, template) as FITS bytes; ``uniforms`` are 9 numbers in [0, 1)."""
        values = [_fits_value(v).encode("ascii") for v in (int(x) - size // 2, int(y) - size // 2, ra, dec, dec)]
        primary = b"".join(chain.from_iterable(zip(self._primary_header(size), values + [b""])))
        uncert = self._uncert_header(size)
        psf = self._psf(size, round(sigma_psf_pix, 2))
        # A PSF fit's flux error is sigma_pixel * sqrt(4 pi) * sigma_psf for a
        # Gaussian PSF, whose noise-equivalent area is 4 pi sigma_psf**2.
        sigma_difference = flux_err / (math.sqrt(4.0 * math.pi) * sigma_psf_pix)
        # The template is a deeper coadd; difference noise is the two in quadrature.
        sigma_science = sigma_difference / math.sqrt(1.25)
        sigma_template = sigma_science / 2.0
        span = self._NOISE_PIXELS - size

        def noise(k: int) -> np.ndarray:
            field = int(uniforms[3 * k] * self._NOISE_FIELDS)
            row, col = int(uniforms[3 * k + 1] * span), int(uniforms[3 * k + 2] * span)
            return self._noise[field, row:row + size, col:col + size]

        images = (
            (psf * np.float32(flux) + noise(0) * np.float32(sigma_difference), sigma_difference),
            (psf * np.float32(template_flux + flux) + noise(1) * np.float32(sigma_science), sigma_science),
            (psf * np.float32(template_flux) + noise(2) * np.float32(sigma_template), sigma_template),
        )
        difference, science, template = (
            b"".join((
                primary, _fits_pad(image.astype(">f4").tobytes()),
                uncert, _fits_pad(np.full((size, size), sigma * sigma, dtype=">f4").tobytes()),
            ))
            for image, sigma in images
        )
        return difference, science, template


# ---------------------------------------------------------------------------
# The factory
# ---------------------------------------------------------------------------

# Alerts generated together: numpy's cost per call is spread over a batch,
# and 64 alerts keep the first of them close (a few ms) to the call.
_BATCH = 64
_BAND_NAMES = np.array(BANDS, dtype=object)


@dataclass
class _Batch:
    """Consecutive alerts as the values of their records."""

    ids: list[int]  # triggering diaSourceIds
    per_alert: int  # diaSources per alert: the history, then the triggering one
    sources: tuple[int, dict, dict]  # (rows, columns, constants) of every alert's diaSources
    forced: tuple[int, dict, dict] | None  # the same of their forced sources
    forced_counts: list[int]  # forced sources per alert
    objects: list[dict]  # each alert's diaObject values
    stamps: list[tuple[bytes, bytes, bytes] | None]  # each alert's cutouts


class RubinAlertFactory:
    """Makes realistic Rubin alerts, valid against one version of Rubin's schema.

    ``schema_version`` is "MAJOR.MINOR" (``schema_versions()`` lists them; None
    is the newest). ``cutouts=False`` leaves the three stamps out: the small
    form, about 10 KB against about 62 KB. ``prv_sources`` is the number of
    previous diaSources in every alert (Rubin sends up to a year of them).
    ``seed`` makes the stream reproducible; None draws one, readable afterwards
    as ``seed``.

    ``alerts(n)`` is the fast way to many encoded alerts; ``make(i)`` gives one
    alert as a record, to look at or to change before ``encode``.
    """

    def __init__(self, schema_version: str | None = None, cutouts: bool = True, prv_sources: int = 30,
                 seed: int | None = None):
        version = schema_version or latest_schema_version()
        self._schema_id, self._parsed = _load_schema(version)
        self._version = version
        if not 0 <= prv_sources <= MAX_PRV_SOURCES:
            raise ConfigError(f"prv_sources must be between 0 and {MAX_PRV_SOURCES}, not {prv_sources}")
        self.cutouts = cutouts
        self.prv_sources = prv_sources
        self.seed = int.from_bytes(os.urandom(4), "big") if seed is None else int(seed)
        if self.seed < 0:
            raise ConfigError(f"the seed must not be negative, not {self.seed}")

        named = named_types(self._parsed)
        fields = {f["name"]: f["type"] for f in self._parsed["fields"]}
        self._alert = _RecordLayout(self._parsed, named)
        self._source = _RecordLayout(_non_null(fields["diaSource"], named)[1], named)
        self._object = _RecordLayout(_non_null(fields["diaObject"], named)[1], named)
        forced = fields.get("prvDiaForcedSources")
        self._forced = None
        if forced is not None:
            items = _non_null(forced, named)[1]["items"]
            self._forced = _RecordLayout(_non_null(items, named)[1], named)
        self._alert_id_field = self._alert.field("diaSourceId")
        self._cutout_fields = [f for f in ("cutoutDifference", "cutoutScience", "cutoutTemplate") if f in fields]
        self._header = confluent_header(self._schema_id)
        self._encoders: dict[str, _RecordEncoder] = {}
        try:
            self._encoder: _RecordEncoder | None = _RecordEncoder(self._parsed, named, self._encoders)
        except NotImplementedError:  # a future schema with a richer union: fastavro only
            self._encoder = None

        self._bits = np.random.PCG64(self.seed)
        self._start_state = self._bits.state
        self._rng = np.random.Generator(self._bits)
        self._id_prefix = _ID_BASE | (self.seed % (1 << _ID_SEED_BITS)) << (_ID_INDEX_BITS + _ID_SLOT_BITS)
        self._stamps = _Cutouts(self.seed) if cutouts and self._cutout_fields else None
        self._visit_cache: tuple[int, dict] | None = None

    # -- what the factory serves ------------------------------------------

    @property
    def schema_version(self) -> str:
        """"MAJOR.MINOR" of the schema the alerts follow."""
        return self._version

    @property
    def schema_id(self) -> int:
        """Rubin's registry id of that schema (11.1 is 1101), in every alert's header."""
        return self._schema_id

    @property
    def parsed_schema(self) -> dict:
        """The schema, parsed by fastavro, to decode the alerts' bodies with."""
        return self._parsed

    def make(self, i: int) -> dict:
        """Alert ``i`` of this factory's stream, as a record of its schema."""
        batch = self._batch(i, 1)
        source_records = self._source.dicts(self._source.rows(*batch.sources))
        forced = None
        if batch.forced is not None:
            forced = self._forced.dicts(self._forced.rows(*batch.forced))
        return self._assemble(
            batch.ids[0], source_records[-1], source_records[:-1], forced,
            self._object.dicts(self._object.rows(1, {}, batch.objects[0]))[0], batch.stamps[0],
        )

    def encode(self, record: dict) -> bytes:
        """Confluent wire format: magic byte 0, the schema id, the schemaless Avro body."""
        if self._encoder is not None:
            try:
                return self._header + self._encoder.encode(record)
            except (TypeError, ValueError, KeyError, AttributeError, OverflowError, struct.error):
                pass  # not a record the fast encoder knows: fastavro decides, and explains
        return encode_confluent(record, self._parsed, self._schema_id)

    def alerts(self, n: int, start: int = 0) -> Iterator[bytes]:
        """Alerts ``start`` to ``start + n - 1``, encoded: ``encode(make(i))``, made faster."""
        if self._encoder is None:
            for i in range(start, start + n):
                yield self.encode(self.make(i))
            return
        object_encoder = self._encoders[self._object.name]
        for first in range(start, start + n, _BATCH):
            batch = self._batch(first, min(_BATCH, start + n - first))
            sources = self._source.encode_columns(*batch.sources)
            forced = self._forced.encode_columns(*batch.forced) if batch.forced is not None else None
            per_alert, forced_at = batch.per_alert, 0
            for j, trigger_id in enumerate(batch.ids):
                mine = sources[j * per_alert:(j + 1) * per_alert]
                forced_bytes = None
                if forced is not None:
                    count = batch.forced_counts[j]
                    forced_bytes = _Encoded(_array(forced[forced_at:forced_at + count]))
                    forced_at += count
                record = self._assemble(
                    trigger_id, _Encoded(mine[-1]), _Encoded(_array(mine[:-1])), forced_bytes,
                    _Encoded(object_encoder.encode(self._object.record_to_encode(batch.objects[j]))),
                    batch.stamps[j],
                )
                yield self._header + self._encoder.encode(record)

    def dia_source_id(self, i: int, k: int = 0) -> int:
        """The id of source ``k`` of alert ``i``.

        k = 0 is the triggering diaSource, 1 to prv_sources the previous ones
        (oldest first), 2048 and up the forced sources. The bits: 1 << 57, 14
        bits of the seed, 28 of i, 12 of k. So ids are unique per factory, above
        2**53 and below 2**63, and say which alert they came from
        (``i = (id >> 12) & (2**28 - 1)``).
        """
        if not 0 <= i < 1 << _ID_INDEX_BITS:
            raise ConfigError(f"alert index {i} is outside 0..{(1 << _ID_INDEX_BITS) - 1}")
        return self._id_prefix | i << _ID_SLOT_BITS | k

    # -- making alerts ----------------------------------------------------------

    def _assemble(self, trigger_id: int, source: Any, previous: Any, forced: Any, dia_object: Any,
                  stamps: tuple[bytes, bytes, bytes] | None) -> dict:
        record = dict(self._alert.defaults)
        record[self._alert_id_field] = trigger_id
        record["diaSource"] = source
        record["prvDiaSources"] = previous
        if "prvDiaForcedSources" in record:
            record["prvDiaForcedSources"] = forced
        record["diaObject"] = dia_object
        if stamps is not None:
            by_name = dict(zip(("cutoutDifference", "cutoutScience", "cutoutTemplate"), stamps))
            for name in self._cutout_fields:
                record[name] = by_name[name]
        return record

    def _batch(self, start: int, count: int) -> _Batch:
        """Alerts ``start`` to ``start + count - 1``, their records' values as columns.

        Each alert draws its random numbers from its own stretch of the stream,
        then numpy works on all the batch's alerts at once: the values do not
        depend on how alerts are batched.
        """
        n = self.prv_sources + 1  # the history, then the triggering source
        trigger = np.array([self.dia_source_id(start + j) for j in range(count)], dtype=np.int64)
        visits = [self._visit((start + j) // ALERTS_PER_VISIT) for j in range(count)]
        most_forced = self.prv_sources // _FORCED_PER_PRV
        u = np.empty((count, 24 + 8 * n))
        z = np.empty((count, 1 + 5 * n))
        forced_u, forced_z, forced_counts = [], [], []
        for j in range(count):
            rng = self._stream((start + j) << 32)
            n_forced = int(rng.integers(0, most_forced + 1)) if self._forced is not None else 0
            uniforms = rng.random(24 + 8 * n + 2 * n_forced)
            normals = rng.standard_normal(1 + 5 * n + n_forced)
            u[j], z[j] = uniforms[:24 + 8 * n], normals[:1 + 5 * n]
            forced_u.append(uniforms[24 + 8 * n:].reshape(2, n_forced))
            forced_z.append(normals[1 + 5 * n:])
            forced_counts.append(n_forced)

        # Each object: where it is, how bright it was when it triggered, how it varies.
        b0 = np.array([v["band"] for v in visits])
        t0 = np.array([v["mjd"] for v in visits])
        night_start = np.array([v["night_start"] for v in visits])
        ra0 = 360.0 * u[:, 0]
        dec0 = np.degrees(np.arcsin(-1.0 + (1.0 + math.sin(math.radians(MAX_DEC_DEG))) * u[:, 1]))
        depth = _M5[b0] - BRIGHT_MAG_RANGE[1]
        mag0 = np.where(
            u[:, 2] < BRIGHT_SHARE,
            BRIGHT_MAG_RANGE[0] + (BRIGHT_MAG_RANGE[1] - BRIGHT_MAG_RANGE[0]) * u[:, 3],
            BRIGHT_MAG_RANGE[1] + np.log1p(u[:, 3] * np.expm1(_FAINT_SLOPE * depth)) / _FAINT_SLOPE,
        )
        variability = (
            b0, t0, mag0,
            0.1 + 0.9 * u[:, 4],  # amplitude, mag
            10.0 ** (-0.7 + 3.0 * u[:, 5]),  # period, days: 0.2 to 200, log-uniform
            2.0 * math.pi * u[:, 6],  # phase
            z[:, 0],  # redness
        )
        host = u[:, 7] < 0.5
        template_flux = np.where(host, 10.0 ** (-0.4 * (19.0 + 5.0 * u[:, 8] - AB_ZERO_POINT_NJY)), 0.0)

        # Detections, shape (alerts, n): earlier nights of the past year, then this visit.
        ud = u[:, 24:].reshape(count, 8, n)
        zd = z[:, 1:].reshape(count, 5, n)
        mjd = np.empty((count, n))
        mjd[:, :-1] = np.sort(_earlier_nights(night_start[:, None], ud[:, 0, :-1], ud[:, 1, :-1]), axis=1)
        mjd[:, -1] = t0
        bands = np.searchsorted(_BAND_CDF, ud[:, 2], side="right")
        bands[:, -1] = b0
        true_flux = _light_curve(mjd, bands, *(p[:, None] for p in variability))
        flux_err = _flux_error(true_flux, bands)
        flux = np.maximum(true_flux + flux_err * zd[:, 0], 5.0 * flux_err)  # detections: 5 sigma or more
        snr = flux / flux_err
        seeing = _MEDIAN_SEEING_ARCSEC * np.exp(0.2 * zd[:, 1])  # FWHM, arcsec
        seeing[:, -1] = [v["seeing"] for v in visits]
        sigma_psf = seeing / _FWHM_PER_SIGMA
        pos_err = sigma_psf / snr / 3600.0  # deg
        ra = (ra0[:, None] + pos_err * zd[:, 2] / np.cos(np.radians(dec0))[:, None]) % 360.0
        dec = dec0[:, None] + pos_err * zd[:, 3]
        science_err = 0.8 * flux_err
        science_flux = template_flux[:, None] + flux + science_err * zd[:, 4]
        # The footprint grows with brightness: about 6 PSF sigmas across at 5 sigma.
        bbox = np.clip(np.round(6.0 * sigma_psf / PIXEL_SCALE_ARCSEC * (1.0 + 0.5 * np.log10(snr / 5.0))),
                       8, 200).astype(np.int64)
        psf_ndata = bbox * bbox
        chi2 = psf_ndata * (1.0 + 0.05 * np.abs(zd[:, 3]))
        visit_ids = _day_obs(mjd) * 100_000 + 1 + (ud[:, 3] * VISITS_PER_NIGHT).astype(np.int64)
        visit_ids[:, -1] = [v["visit"] for v in visits]
        detectors = (ud[:, 4] * DETECTORS).astype(np.int64)
        delay = _PROCESSING_DELAY_S[0] + (_PROCESSING_DELAY_S[1] - _PROCESSING_DELAY_S[0]) * ud[:, 5]
        processed = mjd + delay / 86400.0
        x = ud[:, 6] * _DETECTOR_PIXELS[0]
        y = ud[:, 7] * _DETECTOR_PIXELS[1]
        psf_moment = sigma_psf * sigma_psf  # arcsec**2
        # Ids (see dia_source_id): the history counts up from the trigger's id; Rubin's
        # diaObjectId is the id of the object's first diaSource.
        ids = np.empty((count, n), dtype=np.int64)
        ids[:, :-1] = trigger[:, None] + np.arange(1, n)
        ids[:, -1] = trigger
        object_ids = ids[:, 0]
        extendedness = np.where(host[:, None], 0.5 + 0.5 * ud[:, 5], 0.3 * ud[:, 5])
        columns = {
            "diaSourceId": ids,
            "visit": visit_ids,
            "ccdVisitId": visit_ids * 1000 + detectors,
            "detector": detectors,
            "diaObjectId": np.repeat(object_ids, n),
            "midpointMjdTai": mjd,
            "ra": ra,
            "dec": dec,
            "raErr": pos_err,
            "decErr": pos_err,
            "ra_dec_Cov": 0.1 * pos_err * pos_err * np.tanh(zd[:, 2]),
            "x": x,
            "y": y,
            "xErr": pos_err * (3600.0 / PIXEL_SCALE_ARCSEC),
            "yErr": pos_err * (3600.0 / PIXEL_SCALE_ARCSEC),
            "apFlux": flux * (1.0 + 0.02 * zd[:, 1]),
            "apFluxErr": 1.25 * flux_err,
            "snr": snr,
            "psfFlux": flux,
            "psfFluxErr": flux_err,
            "psfLnL": -0.5 * chi2,
            "psfChi2": chi2,
            "psfNdata": psf_ndata,
            "trailNdata": psf_ndata,
            "dipoleNdata": psf_ndata,
            "scienceFlux": science_flux,
            "scienceFluxErr": science_err,
            "templateFlux": np.repeat(template_flux, n),
            "templateFluxErr": 0.5 * flux_err,
            "ixx": psf_moment * (1.0 + 0.05 * np.abs(zd[:, 2])),
            "iyy": psf_moment * (1.0 + 0.05 * np.abs(zd[:, 4])),
            "ixy": 0.02 * psf_moment * zd[:, 3],
            "ixxPSF": psf_moment,
            "iyyPSF": psf_moment,
            "ixyPSF": np.zeros(count * n),
            "extendedness": extendedness,
            "reliability": 1.0 - 0.5 * ud[:, 6] ** 4,
            "band": _BAND_NAMES[bands.ravel()],
            "timeProcessedMjdTai": processed,
            "bboxSize": bbox,
        }
        flat: dict[int, np.ndarray] = {}  # one flat array per array: the encoder encodes it once
        sources = (count * n, {k: flat.setdefault(id(v), v.ravel()) for k, v in columns.items()},
                   {"exposureTime": EXPOSURE_S, "programId": 0})

        forced = forced_stats = None
        if self._forced is not None:
            total = sum(forced_counts)
            owner = np.repeat(np.arange(count), forced_counts)  # the alert of each forced source
            fu = np.concatenate(forced_u, axis=1) if total else np.zeros((2, 0))
            first = np.repeat(np.cumsum([0] + forced_counts[:-1]), forced_counts)
            f_mjd = _earlier_nights(night_start[owner], fu[0], fu[1])
            f_mjd = f_mjd[np.lexsort((f_mjd, owner))]  # in time order within each alert
            f_bands = np.searchsorted(_BAND_CDF, fu[1], side="right")
            f_true = _light_curve(f_mjd, f_bands, *(p[owner] for p in variability))
            f_err = _flux_error(f_true, f_bands)
            f_flux = f_true + f_err * (np.concatenate(forced_z) if total else np.zeros(0))  # non-detections too
            f_visits = _day_obs(f_mjd) * 100_000 + 1 + (fu[0] * VISITS_PER_NIGHT).astype(np.int64)
            f_detectors = (fu[1] * DETECTORS).astype(np.int64)
            forced = (total, {
                "diaForcedSourceId": trigger[owner] + _FORCED_ID_OFFSET + (np.arange(total) - first),
                "diaObjectId": object_ids[owner],
                "ra": ra0[owner],
                "dec": dec0[owner],
                "visit": f_visits,
                "ccdVisitId": f_visits * 1000 + f_detectors,
                "detector": f_detectors,
                "midpointMjdTai": f_mjd,
                "psfFlux": f_flux,
                "psfFluxErr": f_err,
                "scienceFlux": f_flux + template_flux[owner],
                "scienceFluxErr": 0.8 * f_err,
                "band": _BAND_NAMES[f_bands],
                "timeProcessedMjdTai": f_mjd + 0.5,
            }, {})
            forced_stats = (owner, f_bands, f_flux, f_err)

        objects = _object_summaries(
            object_ids.tolist(), ra0.tolist(), dec0.tolist(), pos_err[:, -1].tolist(), processed[:, -1].tolist(),
            mjd, bands, flux, flux_err, science_flux, forced_stats,
        )

        stamps: list[tuple[bytes, bytes, bytes] | None] = [None] * count
        if self._stamps is not None:
            cutout_values = zip(
                np.maximum(MIN_CUTOUT_PIXELS, bbox[:, -1]).tolist(), ra[:, -1].tolist(), dec[:, -1].tolist(),
                x[:, -1].tolist(), y[:, -1].tolist(), (sigma_psf[:, -1] / PIXEL_SCALE_ARCSEC).tolist(),
                flux[:, -1].tolist(), flux_err[:, -1].tolist(), template_flux.tolist(), u[:, 9:18].tolist(),
            )
            stamps = [
                self._stamps.stamps(size=size, ra=r, dec=d, x=px, y=py, sigma_psf_pix=sig, flux=fl,
                                    flux_err=fe, template_flux=tf, uniforms=uu)
                for size, r, d, px, py, sig, fl, fe, tf, uu in cutout_values
            ]
        return _Batch(trigger.tolist(), n, sources, forced, forced_counts, objects, stamps)

    # -- randomness -----------------------------------------------------------

    def _stream(self, offset: int) -> np.random.Generator:
        """The generator, ``offset`` draws into the seed's stream.

        PCG64 jumps anywhere in O(log n), so each alert (and each visit) owns a
        stretch of 2**32 draws: alert i does not depend on alert i - 1.
        """
        self._bits.state = self._start_state
        self._bits.advance(offset)
        return self._rng

    def _visit(self, index: int) -> dict:
        """Band, seeing, time and id of visit ``index`` (of alerts i // ALERTS_PER_VISIT)."""
        if self._visit_cache is not None and self._visit_cache[0] == index:
            return self._visit_cache[1]
        rng = self._stream(_VISIT_STREAM + (index << 32))
        u_band, z_seeing = float(rng.random()), float(rng.standard_normal())
        night, sequence = divmod(index, VISITS_PER_NIGHT)
        night_start = FIRST_VISIT_MJD + night
        mjd = night_start + (sequence * VISIT_INTERVAL_S + EXPOSURE_S / 2.0) / 86400.0  # mid-exposure
        visit = {
            "night_start": night_start,
            "band": int(np.searchsorted(_BAND_CDF, u_band, side="right")),
            "seeing": _MEDIAN_SEEING_ARCSEC * math.exp(0.2 * z_seeing),
            "mjd": mjd,
            # Rubin's visit id: the day of observation (YYYYMMDD) * 100000 + the sequence number.
            "visit": int(_day_obs(np.array([mjd]))[0]) * 100_000 + sequence + 1,
        }
        self._visit_cache = (index, visit)
        return visit


def _earlier_nights(night_start: float, u_night: np.ndarray, u_time: np.ndarray) -> np.ndarray:
    """Times on nights 1 to HISTORY_DAYS before the one that starts at ``night_start``."""
    night_length = VISITS_PER_NIGHT * VISIT_INTERVAL_S / 86400.0
    return night_start - np.ceil(u_night * HISTORY_DAYS) + night_length * u_time


def _flux_error(flux: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """1-sigma error (nJy) of a flux measured in one 30 s visit (Ivezic et al. 2019, eqs. 4-5)."""
    x = 10.0 ** (0.4 * (AB_ZERO_POINT_NJY - _M5[bands])) / flux  # 10**(0.4 (m - m5))
    gamma = _GAMMA[bands]
    sigma_mag = np.sqrt((0.04 - gamma) * x + gamma * x * x + _SIGMA_SYS_MAG ** 2)
    return flux * sigma_mag / _MAG_PER_RELATIVE_FLUX


def _day_obs(mjd: np.ndarray) -> np.ndarray:
    """Rubin's day of observation, YYYYMMDD: the date in the UTC-12h time zone."""
    days = np.floor(mjd - 0.5).astype(np.int64)
    return np.array([_day_obs_of(day) for day in days.ravel().tolist()], dtype=np.int64).reshape(days.shape)


@lru_cache(maxsize=4096)
def _day_obs_of(mjd_day: int) -> int:
    date = (_MJD_EPOCH + dt.timedelta(days=mjd_day)).date()
    return date.year * 10_000 + date.month * 100 + date.day


def _light_curve(mjd: np.ndarray, bands: np.ndarray, band0, t0, mag0, amplitude, period, phase,
                 redness) -> np.ndarray:
    """Flux (nJy) of objects at times and in bands: mag0 at t0 in band0, varying as a sine."""
    colour = (_COLOUR_SLOPE[bands] - _COLOUR_SLOPE[band0]) * redness
    swing = np.sin(2.0 * math.pi * (mjd - t0) / period + phase) - np.sin(phase)
    return 10.0 ** (-0.4 * (mag0 + colour + amplitude * swing - AB_ZERO_POINT_NJY))


def _object_summaries(object_ids: list[int], ra: list[float], dec: list[float], pos_err: list[float],
                      processed: list[float], mjd: np.ndarray, bands: np.ndarray, flux: np.ndarray,
                      flux_err: np.ndarray, science_flux: np.ndarray,
                      forced: tuple[np.ndarray, ...] | None) -> list[dict[str, Any]]:
    """Each alert's diaObject: its position and per-band statistics of its detections.

    Detections come as (alerts, n) arrays in time order within each alert. A
    band without detections keeps its defaults (None, and 0 for its count).
    """
    count, n = mjd.shape
    nb = len(BANDS)
    summaries = []
    for j in range(count):
        summary = {
            "diaObjectId": object_ids[j],
            "ra": ra[j],
            "dec": dec[j],
            "raErr": pos_err[j],
            "decErr": pos_err[j],
            "ra_dec_Cov": 0.0,
            "radecMjdTai": float(mjd[j, -1]),
            "validityStartMjdTai": processed[j],
            "firstDiaSourceMjdTai": float(mjd[j, 0]),
            "lastDiaSourceMjdTai": float(mjd[j, -1]),
            "nDiaSources": n,
        }
        summary.update(_EMPTY_BANDS)  # every key, always: one name plan serves every diaObject
        summaries.append(summary)
    # One segment per (alert, band), sorted stably: detections stay in time order.
    key = (np.arange(count)[:, None] * nb + bands).ravel()
    order = np.argsort(key, kind="stable")
    k, f, e, t, s = key[order], flux.ravel()[order], flux_err.ravel()[order], mjd.ravel()[order], \
        science_flux.ravel()[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    size = np.diff(np.append(starts, len(k)))
    w = 1.0 / (e * e)
    weight, weighted, total, err_total, science_total = np.add.reduceat(
        np.vstack((w, w * f, f, e, s)), starts, axis=1)
    mean = weighted / weight
    plain, science = total / size, science_total / size
    chi2, squares, science_squares = np.add.reduceat(np.vstack((
        w * (f - np.repeat(mean, size)) ** 2,
        (f - np.repeat(plain, size)) ** 2,
        (s - np.repeat(science, size)) ** 2,
    )), starts, axis=1)
    several = np.maximum(size - 1, 1)
    # Steepest change between consecutive detections of a segment, nJy per day;
    # a pair that straddles two segments counts as 0.
    slope = np.zeros(len(f))
    slope[:-1] = np.where(k[1:] == k[:-1], np.abs(np.diff(f)) / np.maximum(np.diff(t), 1e-6), 0.0)
    stats = {
        "psfFluxNdata": size.tolist(),
        "psfFluxMean": mean.tolist(),
        "psfFluxMeanErr": (1.0 / np.sqrt(weight)).tolist(),
        "psfFluxChi2": chi2.tolist(),
        "psfFluxMin": np.minimum.reduceat(f, starts).tolist(),
        "psfFluxMax": np.maximum.reduceat(f, starts).tolist(),
        "psfFluxErrMean": (err_total / size).tolist(),
        "scienceFluxMean": science.tolist(),
    }
    stats_of_several = {
        "psfFluxSigma": np.sqrt(squares / several).tolist(),
        "psfFluxMaxSlope": np.maximum.reduceat(slope, starts).tolist(),
        "scienceFluxMeanErr": np.sqrt(science_squares / several / size).tolist(),
    }
    segment_keys = k[starts].tolist()
    sizes = stats["psfFluxNdata"]
    for segment, segment_key in enumerate(segment_keys):
        alert, band = divmod(segment_key, nb)
        summary = summaries[alert]
        for name, values in stats.items():
            summary[_BAND_KEYS[name][band]] = values[segment]
        if sizes[segment] > 1:
            for name, values in stats_of_several.items():
                summary[_BAND_KEYS[name][band]] = values[segment]
    if forced is not None and len(forced[0]):
        owner, f_bands, f_flux, f_err = forced
        f_key = owner * nb + f_bands
        fw = 1.0 / (f_err * f_err)
        f_weight = np.bincount(f_key, fw, count * nb)
        f_mean = np.bincount(f_key, fw * f_flux, count * nb) / np.where(f_weight > 0, f_weight, 1.0)
        f_mean_err = 1.0 / np.sqrt(np.where(f_weight > 0, f_weight, 1.0))
        for segment_key in np.flatnonzero(f_weight).tolist():
            alert, band = divmod(segment_key, nb)
            summaries[alert][_BAND_KEYS["fpFluxMean"][band]] = float(f_mean[segment_key])
            summaries[alert][_BAND_KEYS["fpFluxMeanErr"][band]] = float(f_mean_err[segment_key])
    return summaries


# "u_psfFluxMean", ... for each statistic, in the order of BANDS.
_BAND_KEYS = {
    stat: [f"{band}_{stat}" for band in BANDS]
    for stat in ("psfFluxNdata", "psfFluxMean", "psfFluxMeanErr", "psfFluxChi2", "psfFluxMin", "psfFluxMax",
                 "psfFluxErrMean", "scienceFluxMean", "psfFluxSigma", "psfFluxMaxSlope", "scienceFluxMeanErr",
                 "fpFluxMean", "fpFluxMeanErr")
}
# A diaObject's per-band values before its detections fill them: no data in any band.
_EMPTY_BANDS = {key: (0 if stat == "psfFluxNdata" else None) for stat, keys in _BAND_KEYS.items() for key in keys}
