"""Conversion of official DRAEM and anomalib DRAEM PyTorch weights into :class:`Draem` variables.

Official DRAEM (``model_unet.py``) saves two state dicts, one per sub-network: the reconstructive
net (``encoder.block1.0.weight`` ... ``decoder.fin_out.0.weight``) and the discriminative net
(``encoder_segment.…``, ``decoder_segment.…``). Each CBR layer is a ``Sequential`` entry pair:
conv at index ``i``, BatchNorm at ``i + 1`` (``i`` = 0 and 3 in blocks, 1 in the ``up*`` stages
whose index 0 is the upsampling). anomalib (``models/image/draem/torch_model.py``) keeps these
names under ``reconstructive_subnetwork.`` / ``discriminative_subnetwork.`` (``model.`` in front
inside a Lightning checkpoint) and, with SSPCAB enabled, replaces ``encoder.block5`` by its block
(``masked_conv1..4``, ``attention_module.fc1/fc2``).

Official checkpoints were trained on OpenCV BGR images in [0, 1] and concatenate
``[reconstruction, image]`` for the discriminator (``train_DRAEM.py``); anomalib feeds RGB images
and concatenates ``[image, reconstruction]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sspcab_jax.convert.sspcab import ATTENTION, CORNER_CONVS, sspcab_params_from_torch, to_numpy
from sspcab_jax.models import Draem

RECON_PREFIX = "reconstructive_subnetwork."
DISC_PREFIX = "discriminative_subnetwork."
LIGHTNING_PREFIX = "model."
SSPCAB_PREFIX = "encoder.block5."

# Format -> (discriminator input order, channel order of the images the weights expect).
FORMATS = {
    "official": (("reconstruction", "image"), "bgr"),
    "anomalib": (("image", "reconstruction"), "rgb"),
}

# (torch key, flax path, kind); kinds decide the layout change (see _torch_shape).
Entry = tuple[str, tuple[str, ...], Any]


class DraemTorchWeights(NamedTuple):
    """Result of :func:`draem_variables_from_torch`.

    Attributes:
      variables: ``{'params', 'batch_stats'}`` for ``Draem(**model_kwargs)``.
      model_kwargs: the :class:`Draem` fields the weights need: ``recon_width``, ``disc_width``,
        ``in_channels``, ``sspcab_placement`` and ``disc_input_order``.
      input_channel_order: ``'bgr'`` (official checkpoints) or ``'rgb'`` (anomalib): the channel
        order of the [0, 1] images the model must be given.
    """

    variables: dict
    model_kwargs: dict
    input_channel_order: str


def _cbr(torch_prefix: str, conv_index: int, flax_name: str, net: str) -> list[Entry]:
    conv, bn = f"{torch_prefix}.{conv_index}", f"{torch_prefix}.{conv_index + 1}"
    return [
        (f"{conv}.weight", ("params", net, flax_name, "conv", "kernel"), "conv"),
        (f"{conv}.bias", ("params", net, flax_name, "conv", "bias"), "vec"),
        (f"{bn}.weight", ("params", net, flax_name, "bn", "scale"), "vec"),
        (f"{bn}.bias", ("params", net, flax_name, "bn", "bias"), "vec"),
        (f"{bn}.running_mean", ("batch_stats", net, flax_name, "bn", "mean"), "vec"),
        (f"{bn}.running_var", ("batch_stats", net, flax_name, "bn", "var"), "vec"),
    ]


def _block(torch_prefix: str, flax_prefix: str, net: str) -> list[Entry]:
    # Blocks and ``db*`` stages: two CBRs at Sequential indices 0-1 and 3-4.
    return _cbr(torch_prefix, 0, f"{flax_prefix}_0", net) + _cbr(
        torch_prefix, 3, f"{flax_prefix}_1", net
    )


def _fin_out(torch_prefix: str, net: str) -> list[Entry]:
    return [
        (f"{torch_prefix}.fin_out.0.weight", ("params", net, "fin_out", "kernel"), "conv"),
        (f"{torch_prefix}.fin_out.0.bias", ("params", net, "fin_out", "bias"), "vec"),
    ]


def _sspcab_entries(net: str, flax_name: str) -> list[Entry]:
    path = ("params", net, flax_name)
    entries = []
    for corner, conv in enumerate(CORNER_CONVS["anomalib"]):
        entries.append((f"{SSPCAB_PREFIX}{conv}.weight", path + ("masked_conv", "kernel"), corner))
        entries.append((f"{SSPCAB_PREFIX}{conv}.bias", path + ("masked_conv", "bias"), -1 - corner))
    att = ATTENTION["anomalib"]
    for fc in ("fc1", "fc2"):
        entries.append((f"{SSPCAB_PREFIX}{att}.{fc}.weight", path + ("se", fc, "kernel"), "linear"))
        entries.append((f"{SSPCAB_PREFIX}{att}.{fc}.bias", path + ("se", fc, "bias"), "vec"))
    return entries


def reconstructive_entries(placement: str) -> list[Entry]:
    """Every tensor of the reconstructive net (``model_unet.py`` names, without prefix)."""
    net = "reconstructive"
    entries = []
    for i in range(1, 5):
        entries += _block(f"encoder.block{i}", f"enc_block{i}", net)
    if placement == "bottleneck":
        entries += _sspcab_entries(net, "enc_block5_sspcab")
    else:
        entries += _block("encoder.block5", "enc_block5", net)
    for i in range(1, 5):
        entries += _cbr(f"decoder.up{i}", 1, f"dec_up{i}", net)
        entries += _block(f"decoder.db{i}", f"dec_db{i}", net)
    return entries + _fin_out("decoder", net)


def discriminative_entries() -> list[Entry]:
    """Every tensor of the discriminative net (``model_unet.py`` names, without prefix)."""
    net = "discriminative"
    entries = []
    for i in range(1, 7):
        entries += _block(f"encoder_segment.block{i}", f"enc_block{i}", net)
    for name in ("b", "1", "2", "3", "4"):
        # The bottleneck stages are ``up_b`` / ``db_b``, the others ``up1`` / ``db1`` ...
        stage = "_b" if name == "b" else name
        entries += _cbr(f"decoder_segment.up{stage}", 1, f"dec_up{name}", net)
        entries += _block(f"decoder_segment.db{stage}", f"dec_db{name}", net)
    return entries + _fin_out("decoder_segment", net)


def _torch_shape(flax_shape: tuple[int, ...], kind: Any) -> tuple[int, ...]:
    """The PyTorch shape of a tensor whose Flax counterpart has ``flax_shape``."""
    if kind == "conv":  # [kh, kw, in, out] -> [out, in, kh, kw]
        return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
    if kind == "linear":  # [in, out] -> [out, in]
        return (flax_shape[1], flax_shape[0])
    if isinstance(kind, int) and kind >= 0:  # one corner of [4, k, k, C, C] -> [C, C, k, k]
        return (flax_shape[4], flax_shape[3], flax_shape[1], flax_shape[2])
    if isinstance(kind, int):  # one corner bias of [4, C]
        return (flax_shape[1],)
    return tuple(flax_shape)


def _split_combined(state: Mapping[str, Any]) -> tuple[dict, dict]:
    """anomalib: one dict (or a Lightning checkpoint) -> (reconstructive, discriminative)."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if any(key.startswith(LIGHTNING_PREFIX) for key in state):
        # Lightning module: the network sits under ``model.``; other entries are bookkeeping
        # (thresholds, metrics), not weights.
        n = len(LIGHTNING_PREFIX)
        state = {k[n:]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    if not any(k.startswith((RECON_PREFIX, DISC_PREFIX)) for k in state):
        raise ValueError(
            "a single state dict must be anomalib's DRAEM (names under "
            f"'{RECON_PREFIX}' / '{DISC_PREFIX}'); for official DRAEM weights pass the "
            "reconstructive and the discriminative state dicts as two arguments."
        )
    recon, disc, unexpected = {}, {}, []
    for key, value in state.items():
        if key.startswith(RECON_PREFIX):
            recon[key[len(RECON_PREFIX) :]] = value
        elif key.startswith(DISC_PREFIX):
            disc[key[len(DISC_PREFIX) :]] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise ValueError(f"DRAEM state dict has unexpected keys {sorted(unexpected)}.")
    return recon, disc


def _first_conv(state: Mapping[str, Any], key: str) -> tuple[int, int] | None:
    shape = tuple(np.shape(state[key])) if key in state else ()
    return (shape[0], shape[1]) if len(shape) == 4 else None


def _expected_shapes(model_kwargs: dict) -> dict[tuple[str, ...], tuple[int, ...]]:
    model = Draem(**model_kwargs)
    # 64 x 64 is the smallest input every placement accepts (the bottleneck block needs 3 x 3).
    x = jax.ShapeDtypeStruct((1, 64, 64, model_kwargs["in_channels"]), jnp.float32)
    tree = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in flat}


def draem_variables_from_torch(
    reconstructive: Mapping[str, Any], discriminative: Mapping[str, Any] | None = None
) -> DraemTorchWeights:
    """Convert official DRAEM or anomalib DRAEM PyTorch weights into :class:`Draem` variables.

    Widths, input channels and the SSPCAB placement are read from the names and shapes:
    anomalib's SSPCAB bottleneck (``encoder.block5.masked_conv1..4``) gives
    ``sspcab_placement='bottleneck'`` (Draem's default block for it is anomalib's: ``k = 1``,
    ``d = 1``, ``r = 8``, no activation). BatchNorm running mean / variance become
    ``batch_stats``; ``num_batches_tracked`` is ignored.

    Args:
      reconstructive: the official reconstructive state dict, or anomalib's combined state dict
        (optionally a Lightning checkpoint with its ``state_dict`` and ``model.`` prefix) when
        ``discriminative`` is None. Values are NumPy arrays or torch tensors.
      discriminative: the official discriminative state dict, or None for anomalib.

    Returns:
      :class:`DraemTorchWeights` ``(variables, model_kwargs, input_channel_order)``; run it as
      ``Draem(**model_kwargs).apply(variables, image, train=False)`` with ``image``
      ``[B, H, W, C]`` in [0, 1] in ``input_channel_order``.

    Raises:
      ValueError: one message listing every missing or unexpected key and every shape mismatch.
    """
    if discriminative is None:
        fmt = "anomalib"
        recon, disc = _split_combined(reconstructive)
        labels = (RECON_PREFIX, DISC_PREFIX)
    else:
        fmt = "official"
        recon, disc = dict(reconstructive), dict(discriminative)
        labels = ("reconstructive: ", "discriminative: ")
    order, channel_order = FORMATS[fmt]
    placement = "bottleneck" if SSPCAB_PREFIX + "masked_conv1.weight" in recon else "none"
    nets = (
        (recon, reconstructive_entries(placement), labels[0]),
        (disc, discriminative_entries(), labels[1]),
    )

    missing, unexpected, mismatched = [], [], []
    for state, entries, label in nets:
        known = {key for key, _, _ in entries}
        optional = {k.replace("running_mean", "num_batches_tracked") for k in known}
        missing += [label + k for k, _, _ in entries if k not in state]
        unexpected += [label + k for k in state if k not in known and k not in optional]

    recon_conv = _first_conv(recon, "encoder.block1.0.weight")
    disc_conv = _first_conv(disc, "encoder_segment.block1.0.weight")
    model_kwargs = None
    if recon_conv and disc_conv:
        model_kwargs = dict(
            recon_width=recon_conv[0],
            disc_width=disc_conv[0],
            in_channels=recon_conv[1],
            sspcab_placement=placement,
            disc_input_order=order,
        )
        expected = _expected_shapes(model_kwargs)
        for state, entries, label in nets:
            for key, path, kind in entries:
                if key in state and path in expected:
                    want = _torch_shape(expected[path], kind)
                    got = tuple(np.shape(state[key]))
                    if got != want:
                        mismatched.append(f"{label}{key}: got {got}, expected {want}")
    elif not missing:
        mismatched.append("the first convolution of each network must be [out, in, 3, 3]")
    if missing or unexpected or mismatched:
        problems = [
            f"{name}: {items}"
            for name, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if items
        ]
        raise ValueError(
            f"{fmt} DRAEM weights do not fit Draem({model_kwargs or ''}): " + "; ".join(problems)
        )

    variables: dict = {}
    for state, entries, _ in nets:
        for key, path, kind in entries:
            if not isinstance(kind, str):
                continue  # SSPCAB corners: converted as a whole below
            value = to_numpy(state[key])
            if kind == "conv":
                value = value.transpose(2, 3, 1, 0)
            elif kind == "linear":
                value = value.T
            node = variables
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = value
    if placement == "bottleneck":
        variables["params"]["reconstructive"]["enc_block5_sspcab"] = sspcab_params_from_torch(
            recon, prefix=SSPCAB_PREFIX, naming="anomalib"
        )
    _check_tree(variables, expected)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return DraemTorchWeights(variables, model_kwargs, channel_order)


def _check_tree(variables: dict, expected: dict[tuple[str, ...], tuple[int, ...]]) -> None:
    """The converted tree must be exactly ``Draem.init``'s: same paths, same shapes."""
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    got = {tuple(k.key for k in path): tuple(np.shape(leaf)) for path, leaf in flat}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))
        raise AssertionError(f"converted DRAEM variables differ from Draem.init's: {diff}")
