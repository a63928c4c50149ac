"""What made a file: provenance written into every output and read back from it.

A provenance record is a JSON object: ``kind`` (what the file is: ``samples``, ``latent.map``,
``comparison``, ...), the checkpoint (``checkpoint``, ``family``, ``dataset``, ``weights_sha256``),
the ``settings`` and seeds of the call, ``gda_core_version`` and ``created``. Where it lives:

- PNG: an iTXt chunk ``gda_provenance`` (Pillow's ``PngInfo``; iTXt holds UTF-8, tEXt only Latin-1);
- GIF: the comment extension;
- .npz: an entry ``provenance``, a one-element string array holding the JSON (loads with
  ``allow_pickle=False``, unlike an object array);
- .zip: a ``provenance.json`` member;
- .csv: columns ``provenance.<field>`` (the comparison CSV: rows ``provenance.<field>``, one value
  per model column);
- .pdf: the document's ``Subject`` entry (``gda_core.reports_pdf``).

``read_provenance(path)`` reads any of them back; ``python -m gda_core provenance FILE`` prints it.
Nothing is unpickled: the readers are Pillow's chunk reader, ``np.load(allow_pickle=False)``,
``zipfile`` and ``csv``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .errors import DataError

KEY = "gda_provenance"
ZIP_MEMBER = "provenance.json"
NPZ_ENTRY = "provenance"
CSV_PREFIX = "provenance."
# The fields a CSV carries as columns (the full record is in the other formats).
CSV_FIELDS = ("kind", "checkpoint", "family", "dataset", "weights_sha256", "seeds", "gda_core_version")
MAX_BYTES = 4_000_000  # a provenance record is a few kB; more is not ours


def _jsonable(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def run_fields(run) -> dict:
    """The checkpoint part of a record from a loaded ``Run``."""
    return {"checkpoint": run.name, "family": run.family, "dataset": run.data_spec.source, "weights_sha256": run.weights_hash,
            "data_spec": run.data_spec.to_dict(), "step": run.config.get("step")}  # fmt: skip


def make(kind: str, *, run=None, settings: dict | None = None, **extra) -> dict:
    """A provenance record for a file of ``kind`` made from ``run`` (a loaded Run, or None) with ``settings``."""
    from . import __version__

    rec: dict = {"kind": kind}
    if run is not None:
        rec.update(run_fields(run))
    if settings is not None:
        rec["settings"] = settings
        seeds = settings.get("seeds", settings.get("seed"))
        if seeds is not None:
            rec["seeds"] = seeds
    rec.update(extra)
    rec.update(gda_core_version=__version__, created=datetime.now(UTC).isoformat(timespec="seconds"))
    return json.loads(dumps(rec))  # plain JSON types only, so every writer stores the same record


def dumps(prov: dict) -> str:
    return json.dumps(prov, default=_jsonable, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def png_info(prov: dict):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(KEY, dumps(prov))
    return info


def png_with(data: bytes, prov: dict | None) -> bytes:
    """PNG bytes re-saved with the record in an iTXt chunk (pixels unchanged)."""
    if not prov:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        buf = io.BytesIO()
        im.save(buf, format="PNG", pnginfo=png_info(prov))
    return buf.getvalue()


def gif_with(data: bytes, prov: dict) -> bytes:
    """An animated GIF with the record as its comment (every frame kept)."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as im:
        frames = [f.copy() for f in ImageSequence.Iterator(im)]
        duration, loop = im.info.get("duration", 120), im.info.get("loop", 0)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=loop, disposal=2,
                   comment=dumps(prov).encode("utf-8"))  # fmt: skip
    return buf.getvalue()


def npz_entry(prov: dict) -> np.ndarray:
    """The ``provenance`` entry of an .npz: a one-element unicode array (no pickle to load it)."""
    return np.array([dumps(prov)], dtype=str)


def csv_safe(v):
    """A cell a spreadsheet shows as text: a leading = + - @ (a formula) gets a quote in front."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple, dict)):
        return dumps(v)
    return str(csv_safe(v) if isinstance(v, str) else v)


def csv_columns(prov: dict) -> dict[str, str]:
    """``provenance.<field>`` -> cell text for the fields a CSV carries."""
    return {f"{CSV_PREFIX}{k}": csv_value(prov.get(k)) for k in CSV_FIELDS if k in prov}


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------


def _loads(text: str | bytes, path: Path) -> dict:
    try:
        out = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path.name}: its provenance record is not valid JSON") from None
    if not isinstance(out, dict):
        raise DataError(f"{path.name}: its provenance record is not a JSON object")
    return out


def _none(path: Path) -> DataError:
    return DataError(f"{path.name} carries no GDA Studio provenance record")


def _read_image(path: Path) -> dict:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            text = im.text.get(KEY) if hasattr(im, "text") else None
            if text is None and im.format == "GIF":
                text = im.info.get("comment")
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise DataError(f"{path.name} is not a readable image") from None
    if not text:
        raise _none(path)
    return _loads(text, path)


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            if NPZ_ENTRY not in z.files:
                raise _none(path)
            arr = z[NPZ_ENTRY]
    except (OSError, ValueError, zipfile.BadZipFile):
        raise DataError(f"{path.name} is not a readable .npz (object arrays are refused: no pickle)") from None
    if arr.dtype.kind != "U" or arr.size != 1:
        raise DataError(f"{path.name}: its provenance entry is not one string")
    return _loads(str(arr.reshape(-1)[0]), path)


def _read_zip(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(ZIP_MEMBER)
            except KeyError:
                raise _none(path) from None
            if info.file_size > MAX_BYTES:
                raise DataError(f"{path.name}: {ZIP_MEMBER} is {info.file_size} bytes, too large for a provenance record")
            return _loads(zf.read(info), path)
    except zipfile.BadZipFile:
        raise DataError(f"{path.name} is not a readable zip archive") from None


def _read_csv(path: Path) -> dict:
    """Provenance columns (one record per distinct row) or the comparison's provenance rows (per model)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise _none(path)
    head = rows[0]
    cols = [i for i, h in enumerate(head) if h.startswith(CSV_PREFIX)]
    if cols:
        seen = list(dict.fromkeys(tuple(r[i] if i < len(r) else "" for i in cols) for r in rows[1:]))
        recs = [{head[i][len(CSV_PREFIX) :]: _cell(v) for i, v in zip(cols, vals, strict=True)} for vals in seen]
        return recs[0] if len(recs) == 1 else {"records": recs}
    prov_rows = [r for r in rows[1:] if r and r[0].startswith(CSV_PREFIX)]
    if not prov_rows:
        raise _none(path)
    # The comparison CSV: metric, unit, better, then one column per model.
    models = [_cell(m) for m in head[3:] if not m.endswith((" 95% low", " 95% high"))]
    return {"models": {m: {r[0][len(CSV_PREFIX) :]: _cell(r[3 + j] if 3 + j < len(r) else "") for r in prov_rows} for j, m in enumerate(models)}}


def _cell(v: str):
    if v[:1] == "'" and v[1:2] in ("=", "+", "-", "@", "\t", "\r"):
        return v[1:]  # csv_safe's quote, taken off again
    if v[:1] in ("[", "{"):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _read_pdf(path: Path) -> dict:
    from .reports_pdf import read_pdf_provenance

    return read_pdf_provenance(path)


READERS = {".png": _read_image, ".gif": _read_image, ".npz": _read_npz, ".zip": _read_zip, ".csv": _read_csv, ".pdf": _read_pdf}


def read_provenance(path: str | os.PathLike) -> dict:
    """The provenance record a GDA Studio file carries (.png, .gif, .npz, .zip, .csv, .pdf).

    Raises DataError (one line) for a missing file, an unknown type or a file without a record.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p} is not a file")
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise DataError(f"cannot read provenance from '{p.suffix or p.name}' files; GDA Studio writes it into {', '.join(READERS)}")
    return reader(p)


__all__ = ["CSV_FIELDS", "KEY", "csv_columns", "csv_safe", "gif_with", "make", "npz_entry", "png_info", "png_with", "read_provenance", "run_fields"]
