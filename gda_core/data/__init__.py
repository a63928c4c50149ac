"""Datasets: a registry of named datasets plus loaders for .npz, image folders and zips."""

from __future__ import annotations

from . import (
    builtin,  # noqa: F401  (registers 'digits')
    medmnist,  # noqa: F401  (registers the MedMNIST names)
    plantvillage,  # noqa: F401  (registers 'plantvillage_corn', a local file)
)
from .base import CHANNEL_CHOICES, Dataset, DataSpec, images_to_tensor, tensor_to_images
from .registry import dataset_title, default_data_dir, get_dataset_info, list_datasets, load_dataset, load_spec, register_dataset

__all__ = [
    "CHANNEL_CHOICES",
    "DataSpec",
    "Dataset",
    "dataset_title",
    "default_data_dir",
    "get_dataset_info",
    "images_to_tensor",
    "list_datasets",
    "load_dataset",
    "load_spec",
    "register_dataset",
    "tensor_to_images",
]
