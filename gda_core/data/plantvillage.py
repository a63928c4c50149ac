"""PlantVillage maize (corn) leaf disease, 32x32 RGB, by name: ``plantvillage_corn``.

The file is read from ``<data_dir>/plantvillage_corn.npz`` (MedMNIST layout: train/val/test images
and labels). There is no download: PlantVillage has no canonical small-image release with a
checksum we could verify, so a missing file is a one-line error that says where to put it.
Licence: CC BY-SA 3.0 (attribution + share-alike), which carries over to models trained on it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import Dataset, DataSpec
from .npz import load_npz
from .registry import default_data_dir, register_dataset

CORN_CLASSES = ["Northern leaf blight", "Common rust", "Gray leaf spot", "Healthy"]
CORN_LICENCE = ("PlantVillage (Hughes & Salathe 2015, arXiv:1511.08060; Mohanty et al. 2016), maize classes resized to 32x32; "
                "licence CC BY-SA 3.0: credit the source, and share anything derived from it (a trained model included) "
                "under the same licence")  # fmt: skip


@register_dataset("plantvillage_corn", description="PlantVillage maize leaves (4 classes: blight, rust, grey leaf spot, healthy), "
                  "32x32 RGB; CC BY-SA 3.0; local file plantvillage_corn.npz", offline=False, plain_name="maize leaves")  # fmt: skip
def load_plantvillage_corn(spec: DataSpec) -> Dataset:
    data_dir = Path(spec.data_dir).expanduser() if spec.data_dir else default_data_dir()
    path = data_dir / "plantvillage_corn.npz"
    if not path.is_file():
        raise DataError(f"plantvillage_corn.npz not found in {data_dir}: put the file there (or set GDA_DATA_DIR); it is not downloaded")
    return load_npz(path, spec, name="plantvillage_corn", class_names=CORN_CLASSES,
                    description="PlantVillage maize leaf disease, 32x32 RGB (CC BY-SA 3.0)")  # fmt: skip
