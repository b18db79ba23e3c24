"""Defaults shared by every experiment config; each config overrides what it changes."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Return the default experiment config (DRAEM+SSPCAB on the embedded dataset)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = "draem"  # 'draem' | 'autoencoder'
    c.parallel = "single"  # 'single' | 'pmap' | 'mesh'
    c.dtype = "float32"  # computation dtype: 'float32' | 'bfloat16' ('float64' needs x64)
    c.param_dtype = "float32"

    # Length of training: total_steps, or epochs converted with the training-set size when > 0.
    c.total_steps = 1000
    c.epochs = 0
    c.batch_size = 8  # global, over every device and process
    c.checkpoint_every_steps = 200
    c.eval_every_steps = 0  # 0: evaluate only at the end
    c.log_every_steps = 20
    c.keep_checkpoints = 2
    c.best_metric = "image_auroc"  # kept in addition to the latest checkpoints ('' to disable)

    # Optimiser: Adam (PyTorch defaults) with step decay (DRAEM's train_DRAEM.py).
    c.optimizer = "adam"  # 'adam' (official) | 'sgd'
    c.learning_rate = 1e-4
    c.schedule = "official"  # 'official' | 'anomalib' | 'constant'
    c.lr_milestones = (0.8, 0.9)  # fractions of total_steps (official MultiStepLR)
    c.lr_gamma = 0.2
    c.sspcab_lambda = 0.1  # weight of the SSPCAB self-supervised loss (the paper's lambda)
    c.focal = "probs"  # 'probs' (official) | 'logits' (anomalib)
    c.image_score = "mean_filter"  # 'mean_filter' (official) | 'max' (anomalib)

    c.draem = ml_collections.ConfigDict()
    c.draem.recon_width = 128
    c.draem.disc_width = 64
    c.draem.sspcab_placement = "penultimate"  # 'none' | 'bottleneck' | 'penultimate'
    c.draem.sspcab_kernel_size = 1
    c.draem.sspcab_dilation = 1
    c.draem.sspcab_attention = "se"
    c.draem.disc_input_order = ("reconstruction", "image")
    c.draem.init_scheme = "official"
    # The SSPCAB blocks' corner convolutions: 'pytorch' (the block's own default) | 'official'
    # (N(0, 0.02), as DRAEM's weights_init would reset them).
    c.draem.sspcab_init = "pytorch"

    c.autoencoder = ml_collections.ConfigDict()
    c.autoencoder.channels = 1
    c.autoencoder.encoder_widths = (32, 32, 16)
    c.autoencoder.decoder_widths = (16, 32, 32)
    c.autoencoder.sspcab_positions = ()
    c.autoencoder.sspcab_kernel_size = 1
    c.autoencoder.sspcab_dilation = 1
    c.autoencoder.masked_centre = 1
    c.autoencoder.spatial_dims = 2

    c.synthesis = ml_collections.ConfigDict()
    c.synthesis.clean_prob = 0.5
    c.synthesis.opacity_range = (0.2, 1.0)  # official; anomalib: (0.1, 1.0)
    c.synthesis.rotate_prob = 0.3
    c.synthesis.brightness = "ycrcb"  # 'ycrcb' (luma, multiply then add) | 'official' (imgaug)
    # Perlin mask resolutions 2 ** U{0..this} per axis (official 5: cells down to 1/32 of the side).
    c.synthesis.perlin_max_log2_res = 5
    # With a source pool: share of Perlin-noise sources instead of pool images (official: 0).
    c.synthesis.perlin_source_prob = 0.0
    # Share of sources that are the clean image itself, rotated / zoomed / shifted (official: 0).
    c.synthesis.self_source_prob = 0.0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "synthetic"  # 'synthetic' | 'mvtec' | 'folder'
    c.data.root = ""  # dataset root; '' for synthetic writes it under <workdir>/data
    c.data.category = "brick"
    c.data.image_size = 256
    c.data.train_dir = ""  # dataset='folder'
    c.data.test_dir = ""
    c.data.mask_dir = ""
    c.data.anomaly_sources = "auto"  # 'auto' (DTD, folder, else Perlin) | 'bundled' | 'perlin'
    c.data.anomaly_source_dir = ""  # a folder of texture images (e.g. DTD's images/)
    c.data.dtd_data_dir = ""  # a TFDS data_dir where 'dtd' is prepared
    c.data.max_anomaly_sources = 256  # 0: every image (DRAEM: all 5,640 DTD images)
    # DTD read as a bank of this many textures re-drawn from disk every texture_refresh_every
    # steps (in a background thread), instead of max_anomaly_sources textures held throughout.
    c.data.texture_bank_size = 0  # 0: no bank
    c.data.texture_refresh_every = 100
    c.data.dtd_split = "train"  # TFDS dtd split(s): 'train' | 'all' (train+validation+test) | ...
    # Fidelity to DRAEM's data handling (README "Fidelity to the official DRAEM code").
    c.data.resize = "pil"  # 'pil' (antialiased bilinear) | 'cv2' (OpenCV INTER_LINEAR, official)
    c.data.mask_rule = (
        "nearest"  # ground truth: 'nearest' (>= 0.5) | 'official' (== 1 after bilinear)
    )
    c.data.eval_batch_size = 16
    # Share of the normal training images held out (never trained on) to calibrate thresholds.
    c.data.val_fraction = 0.1  # 0: no hold-out, calibration unavailable
    # Labelled validation folder (good/ + defect folders, masks in ../ground_truth/): F1-optimal
    # thresholds instead of the false-alarm rule ('' = off).
    c.data.val_dir = ""
    c.data.skip_corrupt = False
    # Channel order the model sees: 'rgb', or 'bgr' for weights trained on OpenCV images (the
    # official DRAEM checkpoints); files are read as RGB and flipped for the model.
    c.data.channel_order = "rgb"
    c.data.clip_length = 0  # frames per clip for autoencoder.spatial_dims=3 (0: single frames)
    # Video datasets ('synthetic_video' | 'avenue' | 'shanghaitech').
    c.data.frame_stride = 1  # step between training frames / clips
    c.data.cache_dir = ""  # decoded-video cache; '' -> <workdir>/video_cache
    c.data.synthetic_video = ml_collections.ConfigDict()  # the embedded video dataset's shape
    c.data.synthetic_video.num_train = 4
    c.data.synthetic_video.num_test = 3
    c.data.synthetic_video.num_frames = 64
    c.data.synthetic_video.size = 64

    # Thresholds at the end of training (sspcab_jax/detector, docs/detector.md).
    c.calibration = ml_collections.ConfigDict()
    c.calibration.false_alarm_rate = 0.01  # target share of normal images flagged
    # Fuse the model's map with local-statistics z-scores fitted on the training images
    # (sspcab_jax/detector/local_fusion.py; docs/recipe.md, "Fusing local statistics").
    c.calibration.fuse_local_statistics = False

    # Video evaluation conventions (sspcab_jax/training/video_eval.py, docs/fidelity.md).
    c.video_eval = ml_collections.ConfigDict()
    c.video_eval.frame_score = "mean"  # 'mean' reconstruction error | 'max' of the smoothed map
    c.video_eval.sigma = 0.0  # temporal Gaussian on frame scores, in frames (0: none)
    c.video_eval.normalise = False  # per-video min-max after smoothing
    c.video_eval.pad_each_video = False  # macro AUC with a (0, 0) and a (1, 1) frame per video
    c.video_eval.map_sigma = 1.0  # spatial Gaussian on error maps before regions, in pixels
    c.video_eval.region_threshold = 0.0  # pixel threshold of regions (0: use region_quantile)
    c.video_eval.region_quantile = 0.99  # quantile of all test pixels used as the threshold
    c.video_eval.min_region_area = 4  # drop smaller components (pixels)
    return c
