"""TFDS builder for MVTec AD, one config per category, manual download.

Features are encoded without TensorFlow: the Image feature stores file bytes when given a path
and PNG-encodes PIL images with Pillow, while numpy arrays would need TensorFlow to encode. So
images already in the expected mode are passed as paths and the others (grayscale categories,
palette PNGs, good images' all-zero masks) as PIL images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from sspcab_jax.data import mvtec


class MvtecAd(tfds.core.GeneratorBasedBuilder):
    """MVTec AD anomaly-detection benchmark (15 categories)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = mvtec.MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=f"MVTec AD category {name}.")
        for name in mvtec.CATEGORIES
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="MVTec AD: industrial images, normal for training, normal and "
            "defective with pixel masks for testing.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=["good", "defect"]),
                    "defect_type": tfds.features.Text(),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://www.mvtec.com/company/research/datasets/mvtec-ad",
            license="CC BY-NC-SA 4.0",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = Path(dl_manager.manual_dir)
        category = self.builder_config.name
        # Listing both splits first makes a missing folder fail before anything is written.
        records = {split: mvtec.list_mvtec(root, category, split) for split in mvtec.SPLITS}
        return {split: self._generate_examples(recs) for split, recs in records.items()}

    def _generate_examples(self, records):
        for record in records:
            with Image.open(record.image_path) as image:
                size = image.size
                image_value = record.image_path if image.mode == "RGB" else image.convert("RGB")
            if record.mask_path is None:
                mask_value = Image.fromarray(np.zeros((size[1], size[0]), np.uint8))
            else:
                with Image.open(record.mask_path) as mask:
                    gray = np.asarray(mask.convert("L"))
                mask_value = Image.fromarray(np.where(gray > 0, 255, 0).astype(np.uint8))
            yield (
                record.file_name,
                {
                    "image": image_value,
                    "mask": mask_value,
                    "label": record.label,
                    "defect_type": record.defect_type,
                    "file_name": record.file_name,
                },
            )
