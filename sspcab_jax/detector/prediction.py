"""The result of a :class:`~sspcab_jax.detector.Detector` call."""

from __future__ import annotations

import dataclasses

import numpy as np

MapLike = np.ndarray | list[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Per-image results, every map at the image's own resolution (NumPy).

    Shape rule: an array input (one image or a batch ``[N, H, W, C]``) gives stacked arrays
    ``anomaly_map [N, H, W]`` and ``defect_mask [N, H, W]`` (``N = 1`` for one image); a list
    input (arrays or file paths, possibly of different sizes) gives Python lists of ``[H_i,
    W_i]`` arrays for those two fields, in input order. The per-image fields ``score``,
    ``normalized_score`` and ``is_anomalous`` are always ``[N]`` arrays.

    Without a calibration (``Calibration.available`` False) the three calibrated fields are None.

    Attributes:
      anomaly_map: raw anomaly map, float32.
      score: the model's raw image score ``[N]`` float32.
      normalized_score: ``[N]`` float32 in [0, 1]; 0.5 is the image threshold.
      is_anomalous: ``[N]`` bool, ``normalized_score > 0.5`` (equivalently ``score >``
        the image threshold).
      defect_mask: bool, ``anomaly_map >`` the pixel threshold.
    """

    anomaly_map: MapLike
    score: np.ndarray
    normalized_score: np.ndarray | None
    is_anomalous: np.ndarray | None
    defect_mask: MapLike | None

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @property
    def calibrated(self) -> bool:
        """True when verdicts (thresholds) are available."""
        return self.is_anomalous is not None
