"""PyTorch reference implementations used to write the golden files (needs the ``torch`` extra).

Written from the descriptions of the official code, not from sspcab_jax: DRAEM's networks with
the layer names of the official ``model_unet.py``, anomalib's SSPCAB bottleneck variant
(``models/image/draem/torch_model.py``, ``components/layers/sspcab.py``), the official losses
(``loss/loss.py`` SSIM, ``loss/focal_loss.py`` focal loss) and the plain auto-encoder with the
official PyTorch SSPCAB block (``sspcab_torch.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin: int, cout: int) -> list[nn.Module]:
    """Conv 3x3 (padding 1, bias) -> BatchNorm -> ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


def two_cbr(cin: int, cmid: int, cout: int) -> nn.Sequential:
    """Sequential indices: conv 0, BN 1, conv 3, BN 4."""
    return nn.Sequential(*cbr(cin, cmid), *cbr(cmid, cout))


def up(cin: int, cout: int) -> nn.Sequential:
    """Bilinear x2 with aligned corners, then a CBR (conv at index 1, BN at 2)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), *cbr(cin, cout)
    )


class CornerSSPCAB(nn.Module):
    """SSPCAB: zero padding p = k + d, four corner crops cut c = k + 2d + 1 from the far side.

    ``naming='anomalib'``: ``masked_conv1..4`` on the TL, TR, BL, BR crops, no activation,
    ``attention_module``. ``naming='official'``: ``conv1..4`` on TL, BL, TR, BR, ReLU after the
    sum, ``se``.
    """

    def __init__(self, channels: int, kernel: int = 1, dilation: int = 1, naming: str = "anomalib"):
        super().__init__()
        self.naming = naming
        self.pad = kernel + dilation
        self.cut = kernel + 2 * dilation + 1
        names = ["masked_conv1", "masked_conv2", "masked_conv3", "masked_conv4"]
        if naming == "official":
            names = ["conv1", "conv3", "conv2", "conv4"]  # listed in TL, TR, BL, BR order
        self.corner_names = names
        for name in sorted(names):
            setattr(self, name, nn.Conv2d(channels, channels, kernel))
        gate = nn.Module()
        gate.fc1 = nn.Linear(channels, channels // 8)
        gate.fc2 = nn.Linear(channels // 8, channels)
        setattr(self, "attention_module" if naming == "anomalib" else "se", gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = F.pad(x, (self.pad,) * 4)
        c = self.cut
        crops = [xp[..., :-c, :-c], xp[..., :-c, c:], xp[..., c:, :-c], xp[..., c:, c:]]
        pairs = zip(self.corner_names, crops, strict=True)
        total = sum(getattr(self, n)(crop) for n, crop in pairs)
        if self.naming == "official":
            total = F.relu(total)
        gate = self.attention_module if self.naming == "anomalib" else self.se
        g = torch.sigmoid(gate.fc2(F.relu(gate.fc1(total.mean(dim=(2, 3))))))
        return total * g[:, :, None, None]


class Encoder(nn.Module):
    def __init__(self, cin: int, b: int, sspcab: bool):
        super().__init__()
        widths = [b, 2 * b, 4 * b, 8 * b]
        prev = cin
        for i, w in enumerate(widths, start=1):
            setattr(self, f"block{i}", two_cbr(prev, w, w))
            prev = w
        self.block5 = CornerSSPCAB(8 * b) if sspcab else two_cbr(8 * b, 8 * b, 8 * b)
        self.block5_input = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = F.max_pool2d(getattr(self, f"block{i}")(x), 2)
        self.block5_input = x
        return self.block5(x)


class Decoder(nn.Module):
    def __init__(self, b: int, cout: int):
        super().__init__()
        stages = [(8 * b, 8 * b, 4 * b), (4 * b, 4 * b, 2 * b), (2 * b, 2 * b, b), (b, b, b)]
        prev = 8 * b
        for i, (w_up, w0, w1) in enumerate(stages, start=1):
            setattr(self, f"up{i}", up(prev, w_up))
            setattr(self, f"db{i}", two_cbr(w_up, w0, w1))
            prev = w1
        self.fin_out = nn.Sequential(nn.Conv2d(b, cout, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = getattr(self, f"db{i}")(getattr(self, f"up{i}")(x))
        return self.fin_out(x)


class Reconstructive(nn.Module):
    def __init__(self, b: int, sspcab: bool = False, channels: int = 3):
        super().__init__()
        self.encoder = Encoder(channels, b, sspcab)
        self.decoder = Decoder(b, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class Discriminative(nn.Module):
    def __init__(self, b: int, cin: int = 6, cout: int = 2):
        super().__init__()
        enc = nn.Module()
        prev = cin
        for i, w in enumerate([b, 2 * b, 4 * b, 8 * b, 8 * b, 8 * b], start=1):
            setattr(enc, f"block{i}", two_cbr(prev, w, w))
            prev = w
        dec = nn.Module()
        # (name, up width, skip width) deepest first; the db input is [upsampled, skip].
        self.stages = [
            ("_b", 8 * b, 8 * b),
            ("1", 4 * b, 8 * b),
            ("2", 2 * b, 4 * b),
            ("3", b, 2 * b),
            ("4", b, b),
        ]
        for name, w_up, skip in self.stages:
            setattr(dec, f"up{name}", up(prev, w_up))
            setattr(dec, f"db{name}", two_cbr(w_up + skip, w_up, w_up))
            prev = w_up
        dec.fin_out = nn.Sequential(nn.Conv2d(b, cout, 3, padding=1))
        self.encoder_segment = enc
        self.decoder_segment = dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i in range(1, 7):
            if i > 1:
                x = F.max_pool2d(x, 2)
            x = getattr(self.encoder_segment, f"block{i}")(x)
            skips.append(x)
        skips.pop()
        for name, _, _ in self.stages:
            x = getattr(self.decoder_segment, f"up{name}")(x)
            x = getattr(self.decoder_segment, f"db{name}")(torch.cat([x, skips.pop()], dim=1))
        return self.decoder_segment.fin_out(x)


def draem_forward(rec_net, disc_net, image, image_first: bool):
    """Official wiring (``[rec, image]``) or anomalib's (``[image, rec]``)."""
    rec = rec_net(image)
    parts = [image, rec] if image_first else [rec, image]
    return rec, disc_net(torch.cat(parts, dim=1))


def image_score(logits: torch.Tensor) -> torch.Tensor:
    """Official ``test_DRAEM.py`` score: softmax channel 1, 21x21 mean filter (pad 10), max."""
    probs = torch.softmax(logits, dim=1)[:, 1:]
    return F.avg_pool2d(probs, 21, stride=1, padding=10).amax(dim=(1, 2, 3))


def ssim_loss(img1: torch.Tensor, img2: torch.Tensor, size: int = 11, sigma: float = 1.5):
    """1 - SSIM of the official ``loss/loss.py``: Gaussian window, zero padding, L from img1."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    channels = img1.shape[1]
    window = (g[:, None] @ g[None, :]).expand(channels, 1, size, size).contiguous().to(img1.dtype)
    hi = 255.0 if img1.max() > 128 else 1.0
    lo = -1.0 if img1.min() < -0.5 else 0.0
    big_l = hi - lo

    def blur(t):
        return F.conv2d(t, window, padding=size // 2, groups=channels)

    mu1, mu2 = blur(img1), blur(img2)
    s11 = blur(img1 * img1) - mu1 * mu1
    s22 = blur(img2 * img2) - mu2 * mu2
    s12 = blur(img1 * img2) - mu1 * mu2
    c1, c2 = (0.01 * big_l) ** 2, (0.03 * big_l) ** 2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / (
        (mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2)
    )
    return 1.0 - ssim_map.mean()


def focal_loss(probs: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0, smooth: float = 1e-5):
    """Official ``loss/focal_loss.py`` on probabilities ``[B, K, H, W]``, mask ``[B, 1, H, W]``."""
    k = probs.shape[1]
    flat = probs.permute(0, 2, 3, 1).reshape(-1, k)
    idx = mask.reshape(-1, 1).long()
    onehot = torch.zeros_like(flat).scatter_(1, idx, 1.0)
    onehot = onehot.clamp(smooth / (k - 1), 1.0 - smooth)
    pt = (onehot * flat).sum(1) + smooth
    return (-((1 - pt) ** gamma) * pt.log()).mean()


class Autoencoder(nn.Module):
    """Conv auto-encoder: 3 x (conv 3x3 + ReLU + maxpool), decoder of conv/SSPCAB + ReLU + x2 up."""

    def __init__(self, channels=1, enc=(32, 32, 16), dec=(16, 32, 32), blocks=None):
        super().__init__()
        blocks = blocks or {}  # decoder index -> (name, dilation)
        prev = channels
        for i, w in enumerate(enc):
            setattr(self, f"enc_conv{i}", nn.Conv2d(prev, w, 3, padding=1))
            prev = w
        self.decoder_names = []
        for i, w in enumerate(dec):
            if i in blocks:
                name, dilation = blocks[i]
                setattr(self, name, CornerSSPCAB(prev, 1, dilation, naming="official"))
            else:
                name = f"dec_conv{i}"
                setattr(self, name, nn.Conv2d(prev, w, 3, padding=1))
                prev = w
            self.decoder_names.append(name)
        self.out_conv = nn.Conv2d(prev, channels, 3, padding=1)
        self.enc = len(enc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.enc):
            x = F.max_pool2d(F.relu(getattr(self, f"enc_conv{i}")(x)), 2)
        for name in self.decoder_names:
            x = F.interpolate(
                F.relu(getattr(self, name)(x)), scale_factor=2, mode="bilinear", align_corners=True
            )
        return self.out_conv(x)
