"""Datasets, DTD anomaly sources and grain pipelines.

MVTec AD, Avenue, ShanghaiTech, own folders and the embedded synthetic set. TensorFlow is never
needed; TFDS is imported only when used.
"""

from sspcab_jax.data.avenue import AVENUE_INSTRUCTIONS, avenue_videos
from sspcab_jax.data.dtd import (
    DTD_INSTRUCTIONS,
    dtd_texture_bank,
    load_anomaly_sources,
    require_anomaly_sources,
)
from sspcab_jax.data.folder import folder_source, list_folder_test, list_folder_train
from sspcab_jax.data.images import (
    CorruptImageError,
    DatasetNotFoundError,
    ImageRecord,
    MaskMismatchError,
    RecordSource,
    read_image,
    read_mask,
    resize_image,
    resize_mask,
)
from sspcab_jax.data.mvtec import (
    CATEGORIES,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    list_mvtec,
    mvtec_source,
    mvtec_tfds_source,
)
from sspcab_jax.data.pipeline import (
    eval_batches,
    eval_dataset,
    local_batch_size,
    make_train_iterator,
    prepare_example,
    train_dataset,
)
from sspcab_jax.data.shanghaitech import SHANGHAITECH_INSTRUCTIONS, shanghaitech_videos
from sspcab_jax.data.synthetic import (
    DEFECT_KINDS,
    SYNTHETIC_CATEGORIES,
    ensure_synthetic_mvtec,
    write_synthetic_mvtec,
)
from sspcab_jax.data.synthetic_video import (
    ANOMALY_KINDS,
    ensure_synthetic_avenue,
    write_synthetic_avenue,
)
from sspcab_jax.data.texture_bank import TextureBank
from sspcab_jax.data.video_io import (
    VIDEO_EXTENSIONS,
    ClipSource,
    Video,
    VideoWriter,
    iter_video,
    read_video,
    video_info,
    write_video,
)

__all__ = [
    "TextureBank",
    "dtd_texture_bank",
    "ANOMALY_KINDS",
    "AVENUE_INSTRUCTIONS",
    "CATEGORIES",
    "ClipSource",
    "CorruptImageError",
    "DEFECT_KINDS",
    "DTD_INSTRUCTIONS",
    "DatasetNotFoundError",
    "ImageRecord",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "MaskMismatchError",
    "RecordSource",
    "SHANGHAITECH_INSTRUCTIONS",
    "SYNTHETIC_CATEGORIES",
    "VIDEO_EXTENSIONS",
    "Video",
    "VideoWriter",
    "avenue_videos",
    "ensure_synthetic_avenue",
    "ensure_synthetic_mvtec",
    "eval_batches",
    "eval_dataset",
    "folder_source",
    "iter_video",
    "list_folder_test",
    "list_folder_train",
    "list_mvtec",
    "load_anomaly_sources",
    "local_batch_size",
    "make_train_iterator",
    "mvtec_source",
    "mvtec_tfds_source",
    "prepare_example",
    "read_image",
    "read_mask",
    "read_video",
    "require_anomaly_sources",
    "resize_image",
    "resize_mask",
    "shanghaitech_videos",
    "train_dataset",
    "video_info",
    "write_synthetic_avenue",
    "write_synthetic_mvtec",
    "write_video",
]
