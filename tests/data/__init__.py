"""Where the tests' data files are: in the repository, beside this file (ztf/README.md says what they are).

Paths are computed from this file, so the tests run from any checkout and any
working directory. A missing file is an error when a test module imports this,
never a parametrised test that quietly has no cases.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent

ZTF_DIR = DATA_DIR / "ztf"
#: ZTF's published alert schema (4.02): alert.avsc and the named types it uses, one file each.
ZTF_SCHEMA_DIR = ZTF_DIR / "schema"
#: Two real ZTF packets, one Avro container file each, named after their candid; sorted by name.
ZTF_PACKETS = sorted(ZTF_DIR.glob("*.avro"))

_ZTF_PACKET_NAMES = ["2019_01_10_739260766315010006.avro", "472263571115115000.avro"]
_ZTF_SCHEMA_NAMES = ["alert.avsc", "candidate.avsc", "cutout.avsc", "fp_hist.avsc", "prv_candidate.avsc"]

if [path.name for path in ZTF_PACKETS] != _ZTF_PACKET_NAMES:
    raise RuntimeError(f"{ZTF_DIR} should hold exactly the ZTF packets {_ZTF_PACKET_NAMES}, "
                       f"and holds {[path.name for path in ZTF_PACKETS]}: restore them from the repository")
_missing = [name for name in _ZTF_SCHEMA_NAMES if not (ZTF_SCHEMA_DIR / name).is_file()]
if _missing:
    raise RuntimeError(f"{ZTF_SCHEMA_DIR} lacks {_missing}: restore them from the repository")
