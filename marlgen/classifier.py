"""The conv classifier that says which class an image shows: modes and feature space for images.

Trained once on the real labels and cached like the generative models, keyed by the training images,
labels, classifier config and seed. Its held-out accuracy is measured on the data set's test split
and travels with it (:class:`TrainedClassifier`), so every report states how far its verdicts can be
trusted. Its penultimate layer is the feature space of image PRDC and ``frechet_classifier``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from marlgen.compiled import compiled
from marlgen.config import ClassifierConfig
from marlgen.errors import CheckpointError
from marlgen.models.conv import in_chunks, pyramid
from marlgen.models.pretrain import (
    _first_line,
    _torch_threads,
    data_fingerprint,
    save_model_checkpoint,
    without_later_defaults,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "marlgen-classifier"
CACHE_VERSION = 1  # bump when a change to the network or its training makes cached weights stale


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` as two maxima of contiguous halves: the same numbers (a max is exact).

    On this CPU torch's pooling kernel took longer than the conv before it: 2.4 ms of a 3.4 ms
    forward of 256 digits, more than the DCGAN decoder that made them. Viewed as rows of two image
    rows each, the pool is the max of the two halves of each row, then of each pair of neighbours:
    three times faster than the max of four strided views this replaced (docs/performance.md, 1.3).
    """

    def forward(self, x: Tensor) -> Tensor:  # (..., H, W) -> (..., H // 2, W // 2), floored as MaxPool2d
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        x = x[..., : 2 * h, : 2 * w].contiguous()  # a no-op for even, contiguous maps (every layer here)
        rows = x.view(*x.shape[:-2], h, 4 * w)  # row i holds image rows 2i and 2i + 1 side by side
        pairs = torch.maximum(rows[..., : 2 * w], rows[..., 2 * w :])  # (..., h, 2w): max over the row pair
        cols = pairs.view(*pairs.shape[:-1], w, 2)
        return torch.maximum(cols[..., 0], cols[..., 1])


class ConvClassifier(nn.Module):
    """[3x3 conv, batch norm, 2x2 max-pool, ReLU] per halving -> linear -> ReLU (features) -> linear.

    Pooling before the ReLU gives the same numbers as after it (both are monotone) on a quarter of the
    values. The layer indices are those of the earlier ReLU-then-pool order, so cached weights load.
    """

    def __init__(self, data_shape: tuple[int, ...], n_classes: int, width: int = 32, features: int = 128):
        super().__init__()
        self.data_shape, self.n_classes = tuple(int(d) for d in data_shape), int(n_classes)
        n, bh, bw = pyramid(self.data_shape)
        chans = [self.data_shape[0]] + [width * 2**i for i in range(n)]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):  # each halves H and W
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), MaxPool2x2(),
                       nn.ReLU()]  # fmt: skip
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(chans[-1] * bh * bw, features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(features, n_classes))

    def features(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, features): the penultimate layer
        return self.trunk(x)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, n_classes) logits
        return self.head(self.trunk(x))


class FoldedClassifier:
    """A ConvClassifier's inference form: batch norm folded into the convs, maps in channels-last order.

    The same function as the module in eval mode, up to float rounding (logits within 2.4e-6 of the
    module's on the cached classifiers, features within 7.2e-6; ``tests/test_images.py`` allows 1e-5,
    and no verdict changed on 125,899 images): each batch norm's running statistics and affine
    parameters become the conv's weight and bias (folded in float64, then rounded once to float32),
    and every map is kept as (B, H, W, C), where oneDNN's convolutions need no layout conversions and
    the 2x2 pooling is the max of contiguous halves. The linear layer's columns are permuted from the
    module's (C, H, W) flattening to (H, W, C). A first block on one-channel images (digits) is one
    compiled loop (conv, pooling and ReLU): oneDNN returns that conv's output in (C, H, W) order, and
    in torch the block took 2.4 times as long. Measured in docs/performance.md, 1.5.

    Built from the frozen module's weights and running statistics at its first prediction; training
    (``fit``) never sees it, so cached weights stay valid. A copy: the module's later changes are not
    seen (``TrainedClassifier.folded`` refolds when the module's tensors change in place).
    """

    def __init__(self, net: ConvClassifier):
        mods = list(net.trunk)
        n_blocks = (len(mods) - 3) // 4
        kinds = [type(m) for m in mods]
        block, tail = [nn.Conv2d, nn.BatchNorm2d, MaxPool2x2, nn.ReLU], [nn.Flatten, nn.Linear, nn.ReLU]
        if kinds != block * n_blocks + tail or not isinstance(net.head[-1], nn.Linear):
            raise ValueError(f"not a ConvClassifier trunk: {[k.__name__ for k in kinds]}")
        self.convs: list[tuple[Tensor, Tensor]] = []  # folded (weight, bias) per block, finest first
        for conv, bn in zip(mods[0 : 4 * n_blocks : 4], mods[1 : 4 * n_blocks : 4], strict=True):
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)  # (C_out,)
            weight = (conv.weight.double() * scale[:, None, None, None]).float()  # (C_out, C_in, 3, 3)
            bias = (bn.bias.double() - bn.running_mean.double() * scale).float()
            self.convs.append((weight.contiguous(memory_format=torch.channels_last), bias))
        first = self.convs[0][0]
        # one input channel: the first block compiled (_conv3x3_pool_relu), its taps as (9, C_out)
        self.taps = first.reshape(len(first), 9).t().contiguous().numpy() if first.shape[1] == 1 else None
        self.first_bias = self.convs[0][1].numpy()
        self.first_map_floats = len(first) * int(np.prod(net.data_shape[1:]))  # per image: inference chunks
        linear, c_last = mods[-2], len(self.convs[-1][1])
        cells = linear.in_features // c_last  # h * w of the last pooled map
        w = linear.weight.detach().view(linear.out_features, c_last, cells).transpose(1, 2)  # -> (F, h*w, C)
        # weights as (in, out) views of (out, in) storage, as nn.Linear hands them to addmm
        self.linear = (w.reshape(linear.out_features, -1).contiguous().t(), linear.bias.detach().clone())
        head = net.head[-1]
        self.head = (head.weight.detach().clone().t(), head.bias.detach().clone())
        self.n_features = linear.out_features

    def __call__(self, x: np.ndarray) -> tuple[Tensor, Tensor]:
        """Images (B, C, H, W), a C-contiguous float32 array -> (features (B, F), logits (B, n_classes)),
        as the eval-mode module's."""
        b, _, h, w = x.shape
        if self.taps is not None:
            pooled = np.empty((b, h // 2, w // 2, len(self.first_bias)), np.float32)
            _conv3x3_pool_relu(x.reshape(b, h, w), self.taps, self.first_bias, pooled)
            maps, rest = torch.from_numpy(pooled).permute(0, 3, 1, 2), self.convs[1:]  # rectified
        else:
            maps, rest = torch.from_numpy(x), self.convs
        for weight, bias in rest:
            # maps: (B, C, H, W) views of channels-last memory (or the images): oneDNN keeps that layout
            y = torch.conv2d(maps, weight, bias, padding=1).permute(0, 2, 3, 1)
            y = y if y.is_contiguous() else y.contiguous()  # (B, H, W, C_out)
            maps = torch.relu_(_pool_channels_last(y)).permute(0, 3, 1, 2)
        flat = maps.permute(0, 2, 3, 1).reshape(b, -1)  # (B, h*w*C): the pooled maps' own order
        features = torch.relu_(torch.addmm(self.linear[1], flat, self.linear[0]))
        return features, torch.addmm(self.head[1], features, self.head[0])


@compiled
def _conv3x3_pool_relu(x, taps, bias, out):
    """3x3 conv (zero padding 1) of one-channel images x (B, H, W) with taps (9, C) in (kh, kw) order,
    then 2x2 max-pool (floored) and ReLU, into out (B, H // 2, W // 2, C); float32 throughout.

    In one pass over each image: in torch, the same block (nine shifted copies, a matrix product with
    9 columns, the pooling's two maxima, the ReLU) took 0.52 ms for 256 digits, this 0.22 ms. The bias
    is added after the max: rounding is monotone, so max(s + b) and max(s) + b are the same float.
    """
    n, h, w = x.shape
    c_out = bias.shape[0]
    padded = np.zeros((h + 2, w + 2), np.float32)  # the border stays zero
    for b in range(n):
        for i in range(h):
            for j in range(w):
                padded[i + 1, j + 1] = x[b, i, j]
        for oi in range(h // 2):
            for oj in range(w // 2):
                i, j = 2 * oi, 2 * oj  # the pooled cell's four conv outputs read padded[i : i + 4, j : j + 4]
                for c in range(c_out):  # innermost over channels: taps and out are contiguous along c
                    s00 = s01 = s10 = s11 = np.float32(0.0)
                    for di in range(3):
                        for dj in range(3):
                            tap = taps[3 * di + dj, c]
                            s00 += padded[i + di, j + dj] * tap
                            s01 += padded[i + di, j + 1 + dj] * tap
                            s10 += padded[i + 1 + di, j + dj] * tap
                            s11 += padded[i + 1 + di, j + 1 + dj] * tap
                    top = max(max(s00, s01), max(s10, s11)) + bias[c]
                    out[b, oi, oj, c] = top if top > 0.0 else np.float32(0.0)


def _pool_channels_last(y: Tensor) -> Tensor:
    """MaxPool2x2 of maps (B, H, W, C) -> (B, H // 2, W // 2, C): maxima of contiguous halves."""
    b, h, w, c = y.shape
    h, w = h // 2, w // 2
    y = y[:, : 2 * h, : 2 * w].contiguous()  # a no-op for even maps (every layer here)
    rows = y.view(b, h, 4 * w * c)  # row i: image rows 2i and 2i + 1, one after the other
    pairs = torch.maximum(rows[..., : 2 * w * c], rows[..., 2 * w * c :]).view(b, h, w, 2 * c)
    return torch.maximum(pairs[..., :c], pairs[..., c:])


@dataclass
class TrainedClassifier:
    """A frozen classifier and how good it is on held-out real images."""

    net: ConvClassifier
    accuracy: float  # top-1 on the held-out split
    n_test: int
    train_seconds: float
    path: str  # its cache file
    _folded: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def folded(self) -> FoldedClassifier:
        """The net's inference form; folded again when the net or one of its tensors changed in place
        (``load_state_dict`` copies in place). Checks version counters, not a walk over the modules:
        that took 60 us a call."""
        cached = self._folded
        if cached is None or cached[0] is not self.net or any(t._version != v for t, v in cached[1]):
            tensors = [*self.net.parameters(), *self.net.buffers()]
            cached = self._folded = (self.net, [(t, t._version) for t in tensors], FoldedClassifier(self.net))
        return cached[2]

    @torch.inference_mode()
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Images (n, C, H, W) -> (class (n,) int64, top softmax prob (n,), features (n, F)), in chunks.

        Inference with the running statistics (the net's eval mode), through its folded form."""
        folded = self.folded()
        x = np.ascontiguousarray(x, dtype=np.float32)
        labels, probs, feats = [], [], []
        for part in in_chunks(x, folded.first_map_floats):
            f, logits = folded(part)  # (b, F), (b, n_classes)
            top, cls = torch.softmax(logits, dim=1).max(1)  # cls: int64
            labels.append(cls.numpy()), probs.append(top.numpy()), feats.append(f.numpy())
        if len(labels) == 1:  # one chunk (an env step's 256 digits): no copies
            return labels[0], probs[0], feats[0]
        if not labels:
            empty = np.zeros((0, folded.n_features), np.float32)
            return np.zeros(0, np.int64), np.zeros(0, np.float32), empty
        return np.concatenate(labels), np.concatenate(probs), np.concatenate(feats)


def trained_classifier(
    images: np.ndarray,  # (n, C, H, W) float32 in [-1, 1]
    labels: np.ndarray,  # (n,) int64 in [0, n_classes)
    test_images: np.ndarray,  # (n_test, C, H, W)
    test_labels: np.ndarray,  # (n_test,)
    n_classes: int,
    cfg: Any,  # ClassifierConfig or mapping
    seed: int,
    cache_dir: str | os.PathLike,
    progress: bool = True,
) -> TrainedClassifier:
    """Train (or load from ``cache_dir``) the classifier, then measure its held-out accuracy."""
    cfg = classifier_config_dict(cfg)
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    path = Path(cache_dir) / cache_name(cfg, images, labels, n_classes, seed)
    if path.exists():
        net, seconds = load_classifier(path), float("nan")
        log.info("reused cached classifier %s (delete it to retrain)", path)
    else:
        start = time.perf_counter()
        with torch.random.fork_rng(), _torch_threads(cfg["train_threads"]):
            torch.manual_seed(seed)
            net = ConvClassifier(images.shape[1:], n_classes, cfg["width"], cfg["features"])
            fit(net, images, labels, cfg, torch.Generator().manual_seed(seed), progress)
        seconds = time.perf_counter() - start
        net.config = cfg
        save_model_checkpoint(path, net, cfg, extra=_checkpoint_extra(net, seed, seconds))
        net.eval().requires_grad_(False)
    trained = TrainedClassifier(net, float("nan"), len(test_labels), seconds, str(path))
    if len(test_labels):
        predicted = trained.predict(test_images)[0]
        trained.accuracy = float((predicted == np.asarray(test_labels)).mean())
    return trained


def fit(
    net: ConvClassifier, x: np.ndarray, y: np.ndarray, cfg: dict, gen: torch.Generator, progress: bool
) -> None:
    """Adam on cross-entropy, minibatches with replacement, optional shifts and flips."""
    net.train()
    optim = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, cfg["train_steps"])
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    bar = tqdm(range(cfg["train_steps"]), desc="train classifier", disable=not progress, leave=False)
    for step in bar:
        idx = torch.randint(len(x_t), (cfg["batch_size"],), generator=gen)
        batch = augment(x_t[idx], cfg["shift"], cfg["hflip"], gen)  # (B, C, H, W)
        loss = F.cross_entropy(net(batch), y_t[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if step % 200 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    net.eval()


def augment(x: Tensor, shift: int, hflip: bool, gen: torch.Generator) -> Tensor:
    """Random translation by up to ``shift`` pixels (background-padded) and horizontal flips."""
    if hflip:
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if shift:
        h, w = x.shape[-2:]
        padded = F.pad(x, (shift,) * 4, value=-1.0)  # -1: black background, as in digits
        dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=gen).tolist()  # one shift per batch: cheap
        x = padded[..., dy : dy + h, dx : dx + w]
    return x


def load_classifier(path: str | os.PathLike) -> ConvClassifier:
    """A frozen classifier from its cache file; a bad file raises CheckpointError naming it."""
    path, fix = Path(path), "delete the file to retrain"
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated or foreign file
        raise CheckpointError(
            f"{path}: not a readable classifier checkpoint ({_first_line(err)}); {fix}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a marlgen classifier checkpoint; {fix}")
    try:
        cfg = classifier_config_dict(ckpt["model_config"])
        net = ConvClassifier(tuple(ckpt["data_shape"]), ckpt["n_classes"], cfg["width"], cfg["features"])
        net.load_state_dict(ckpt["state_dict"])
    except Exception as err:
        raise CheckpointError(
            f"{path}: checkpoint does not fit the classifier code ({_first_line(err)}); {fix}"
        ) from None
    net.config = cfg
    return net.eval().requires_grad_(False)


def classifier_config_dict(cfg: Any) -> dict[str, Any]:
    given = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {str(k): cfg[k] for k in cfg}
    full = dataclasses.asdict(ClassifierConfig(**given))
    return {k: type(getattr(ClassifierConfig, k))(v) for k, v in full.items()}


# Keys added after the first cached classifiers, with the defaults that keep those files' names.
LATER_KEYS = {"train_threads": 1}


def cache_name(cfg: dict, images: np.ndarray, labels: np.ndarray, n_classes: int, seed: int) -> str:
    labels_sha = hashlib.sha256(labels.tobytes()).hexdigest()
    identity = without_later_defaults(cfg, LATER_KEYS)
    key = json.dumps(
        {"classifier": identity, "images": data_fingerprint(images), "labels": labels_sha,
         "n_classes": int(n_classes), "seed": int(seed), "version": CACHE_VERSION},
        sort_keys=True,
    )  # fmt: skip
    return f"classifier-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def _checkpoint_extra(net: ConvClassifier, seed: int, seconds: float) -> dict:
    # save_model_checkpoint writes format "marlgen-model"; "kind" tells classifier files apart.
    return {
        "kind": CHECKPOINT_FORMAT,
        "n_classes": net.n_classes,
        "seed": int(seed),
        "train_seconds": seconds,
    }
