"""Plain auto-encoder (+SSPCAB) on the embedded synthetic street-scene videos (CPU, ~a minute).

``python -m train.ablation --config=configs/autoencoder_demo.py --variants=none,late
--workdir=DIR`` compares the baseline with one late block; any variant of
``configs/autoencoder_variants.py`` works (``--config=configs/autoencoder_demo.py:late_3d``).
"""

from configs import autoencoder_variants, default


def get_config(variant: str = "late"):
    c = default.get_config()
    c.model = "autoencoder"
    c.data.dataset = "synthetic_video"
    c.data.image_size = 64
    c.data.eval_batch_size = 64
    c.autoencoder.channels = 1
    c.learning_rate = 1e-3
    c.batch_size = 16
    c.total_steps = 400
    c.checkpoint_every_steps = 400
    c.log_every_steps = 50
    c.best_metric = ""
    c.video_eval.sigma = 2.0  # 64-frame videos: a short temporal window
    c.video_eval.frame_score = "max"
    c.video_eval.map_sigma = 1.0
    c.video_eval.min_region_area = 4
    return autoencoder_variants.apply_variant(c, variant)
