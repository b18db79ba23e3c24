"""Plain auto-encoder (+SSPCAB) on ShanghaiTech Campus, the Avenue ablation's protocol.

``--config=configs/autoencoder_shanghaitech.py:<variant>`` (variants as for Avenue) with
``--config.data.root=ROOT`` (the folder holding ``shanghaitech/``).
"""

from configs import autoencoder_avenue


def get_config(variant: str = "late"):
    c = autoencoder_avenue.get_config(variant)
    c.data.dataset = "shanghaitech"
    c.epochs = 5  # 274k training frames, about 18x Avenue
    # ShanghaiTech: sigma 282 frames, then per-video min-max (AED-MAE's inference.py).
    c.video_eval.sigma = 282.0
    c.video_eval.normalise = True
    return c
