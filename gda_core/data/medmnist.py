"""MedMNIST v2 2D datasets (28x28) by name: ``pneumoniamnist``, ``breastmnist``, ...

Loading ``<name>`` reads ``<data_dir>/<name>.npz`` (``data_dir`` = the spec's, else
$GDA_DATA_DIR, else the user cache). When the file is absent it is downloaded from the official
Zenodo record and checked against MedMNIST's MD5 — unless the environment variable
``GDA_ALLOW_DOWNLOAD`` is ``0``, in which case loading fails at once with a message saying where
to put the file. Class names, task and MD5s are those of MedMNIST's ``medmnist/info.py``.
ChestMNIST is multi-label (14 findings per image) and is refused: GDA Studio needs one class per
image.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from ..runtime import atomic_path
from . import safety
from .base import Dataset, DataSpec
from .npz import load_npz
from .registry import default_data_dir, register_dataset

#: Official MedMNIST+ record (same 28x28 files as v2's record 6496656).
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/{name}.npz?download=1"
DOWNLOAD_TIMEOUT_S = 60
#: Largest file a download may write (tissuemnist, the largest 28x28 file, is well under this).
MAX_DOWNLOAD_BYTES = 2 * safety.GiB
_ORGAN = ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left", "lung-right", "pancreas", "spleen"]

# name -> (md5 of the official 28x28 file, channels, class names, one-line description)
MEDMNIST_INFO: dict[str, tuple[str, int, list[str], str]] = {
    "pathmnist": ("a8b06965200029087d5bd730944a56c1", 3, ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"], "colon pathology, 9 tissue types, 28x28 RGB (107,180 images)"),
    "chestmnist": ("02c8a6516a18b556561a56cbdd36c4a8", 1, ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"], "chest X-ray, 14 findings, multi-label (not supported), 28x28 grey"),
    "dermamnist": ("0744692d530f8e62ec473284d019b0c7", 3, ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"], "dermatoscopy, 7 lesion types, 28x28 RGB (10,015 images)"),
    "octmnist": ("c68d92d5b585d8d81f7112f81e2d0842", 1, ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"], "retinal OCT, 4 classes, 28x28 grey (109,309 images)"),
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", 1, ["normal", "pneumonia"], "pediatric chest X-ray, normal vs pneumonia, 28x28 grey (5,856 images)"),
    "retinamnist": ("bd4c0672f1bba3e3a89f0e4e876791e4", 3, ["0", "1", "2", "3", "4"], "fundus photos, 5 diabetic retinopathy grades, 28x28 RGB (1,600 images)"),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", 1, ["malignant", "normal, benign"], "breast ultrasound, malignant vs normal/benign, 28x28 grey (780 images)"),
    "bloodmnist": ("7053d0359d879ad8a5505303e11de1dc", 3, ["basophil", "eosinophil", "erythroblast", "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte", "neutrophil", "platelet"], "blood cell microscopy, 8 cell types, 28x28 RGB (17,092 images)"),
    "tissuemnist": ("ebe78ee8b05294063de985d821c1c34b", 1, ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb"], "kidney cortex microscopy, 8 cell types, 28x28 grey (236,386 images)"),
    "organamnist": ("866b832ed4eeba67bfb9edee1d5544e6", 1, _ORGAN, "abdominal CT (axial), 11 organs, 28x28 grey (58,850 images)"),
    "organcmnist": ("0afa5834fb105f7705a7d93372119a21", 1, _ORGAN, "abdominal CT (coronal), 11 organs, 28x28 grey (23,660 images)"),
    "organsmnist": ("e5c39f1af030238290b9557d9503af9d", 1, _ORGAN, "abdominal CT (sagittal), 11 organs, 28x28 grey (25,221 images)"),
}
MULTI_LABEL = frozenset({"chestmnist"})
# What the people who use each set call its images (the pages offer the sets by these names).
PLAIN_NAMES = {"pathmnist": "colon pathology", "chestmnist": "chest X-rays (14 findings)", "dermamnist": "skin lesions",
               "octmnist": "retinal OCT scans", "pneumoniamnist": "chest X-rays", "retinamnist": "retinal fundus photos",
               "breastmnist": "breast ultrasound", "bloodmnist": "blood cells", "tissuemnist": "kidney tissue",
               "organamnist": "abdominal CT (axial)", "organcmnist": "abdominal CT (coronal)", "organsmnist": "abdominal CT (sagittal)"}  # fmt: skip


def medmnist_url(name: str) -> str:
    return MEDMNIST_URL.format(name=name)


def downloads_allowed() -> bool:
    """False when $GDA_ALLOW_DOWNLOAD is "0" (tests, air-gapped machines)."""
    return os.environ.get("GDA_ALLOW_DOWNLOAD", "1").strip() != "0"


def download_medmnist(
    name: str,
    data_dir: str | os.PathLike,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download ``<name>.npz`` (28x28) from Zenodo into ``data_dir`` atomically; MD5-checked.

    Args:
        name: a MedMNIST 2D name (``pneumoniamnist``, ...).
        data_dir: destination folder (created if needed).
        progress: called as ``progress(bytes_done, bytes_total_or_None)`` while downloading.
        timeout: seconds to wait on the network before giving up.

    Returns the path of the file. Raises DataError on network failure or MD5 mismatch (no file
    is left behind in either case).
    """
    key = name.lower()
    if key not in MEDMNIST_INFO:
        raise DataError(f"'{name}' is not a MedMNIST 2D dataset; choose one of {', '.join(MEDMNIST_INFO)}")
    md5_expected = MEDMNIST_INFO[key][0]
    url = medmnist_url(key)
    dest = Path(data_dir).expanduser() / f"{key}.npz"
    request = urllib.request.Request(url, headers={"User-Agent": "gda-studio (python urllib)"})
    md5 = hashlib.md5()
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp, open(tmp, "wb") as out:
                length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                total = int(length) if length and str(length).isdigit() else None
                done = 0
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    done += len(chunk)
                    if done > MAX_DOWNLOAD_BYTES:
                        raise DataError(f"download of {url} exceeds {safety.human_bytes(MAX_DOWNLOAD_BYTES)}; stopped")
                    md5.update(chunk)
                    out.write(chunk)
                    if progress is not None:
                        progress(done, total)
        except DataError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(
                f"could not download {url} ({reason}); download it by hand and put it at {dest} (or set GDA_DATA_DIR)"
            ) from None
        if md5_expected and md5.hexdigest() != md5_expected:
            raise DataError(
                f"downloaded {url} has MD5 {md5.hexdigest()}, expected {md5_expected}; not saved to {dest} (corrupt or changed download)"
            )
    return dest


def _make_loader(key: str) -> Callable[[DataSpec], Dataset]:
    _md5, _channels, class_names, description = MEDMNIST_INFO[key]

    def loader(spec: DataSpec) -> Dataset:
        data_dir = Path(spec.data_dir).expanduser() if spec.data_dir else default_data_dir()
        path = data_dir / f"{key}.npz"
        if key in MULTI_LABEL:
            raise DataError(
                f"{key} is multi-label (several findings per image, file {path}); GDA Studio needs one class per image, choose another dataset"
            )
        if not path.is_file():
            if not downloads_allowed():
                raise DataError(
                    f"{key}.npz not found in {data_dir}; offline (GDA_ALLOW_DOWNLOAD=0): download it from "
                    f"{medmnist_url(key)} and put it there (or set GDA_DATA_DIR)"
                )
            download_medmnist(key, data_dir)
        return load_npz(path, spec, name=key, class_names=class_names, description=f"MedMNIST {key}: {description}")

    loader.__name__ = f"load_{key}"
    loader.__doc__ = f"Load MedMNIST {key} ({description}) from <data_dir>/{key}.npz, downloading it if allowed."
    return loader


for _key, (_m, _c, _names, _desc) in MEDMNIST_INFO.items():
    register_dataset(_key, description=f"MedMNIST {_key}: {_desc}; CC BY 4.0; downloaded on first use", offline=False,
                     plain_name=PLAIN_NAMES.get(_key, ""))(
        _make_loader(_key)
    )
