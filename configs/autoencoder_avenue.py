"""Plain auto-encoder (+SSPCAB) on CUHK Avenue: supplementary Tables 1 and 2.

``--config=configs/autoencoder_avenue.py:<variant>`` with a variant of
``configs/autoencoder_variants.py`` ('none', 'early', ..., 'early+middle+late', 'late_m3',
'late_3d'); the dataset folder with ``--config.data.root=ROOT``.
"""

from configs import autoencoder_variants, default


def get_config(variant: str = "late"):
    c = default.get_config()
    c.model = "autoencoder"
    c.data.dataset = "avenue"
    c.data.root = ""  # the folder holding 'Avenue Dataset' and 'ground_truth_demo'
    # Whole 360x640 frames, grayscale, resized to 128x128 (README "Video" section: no detector).
    c.data.image_size = 128
    c.data.eval_batch_size = 64
    c.autoencoder.channels = 1
    # OCAE-style training (Ionescu et al., CVPR 2019; the SSPCAB paper gives none): Adam,
    # lr 1e-3, batch 64.
    c.learning_rate = 1e-3
    c.batch_size = 64
    c.epochs = 20  # fixed a priori: Avenue has no validation split to select on
    c.checkpoint_every_steps = 1000
    c.log_every_steps = 50
    c.best_metric = ""
    c.sspcab_lambda = 0.1  # the SSPCAB default, kept on all datasets
    # Avenue: Gaussian sigma 11 frames, no per-video normalisation (AED-MAE's inference.py).
    c.video_eval.sigma = 11.0
    c.video_eval.frame_score = "max"
    c.video_eval.map_sigma = 2.0
    c.video_eval.min_region_area = 8
    return autoencoder_variants.apply_variant(c, variant)
