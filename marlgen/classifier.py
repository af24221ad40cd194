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

from marlgen.config import ClassifierConfig
from marlgen.errors import CheckpointError
from marlgen.models.conv import in_chunks, pyramid
from marlgen.models.pretrain import _first_line, _torch_threads, data_fingerprint, save_model_checkpoint

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


@dataclass
class TrainedClassifier:
    """A frozen classifier and how good it is on held-out real images."""

    net: ConvClassifier
    accuracy: float  # top-1 on the held-out split
    n_test: int
    train_seconds: float
    path: str  # its cache file

    @torch.inference_mode()
    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Images (n, C, H, W) -> (class (n,) int64, top softmax prob (n,), features (n, F)), in chunks."""
        labels, probs, feats = [], [], []
        for part in in_chunks(x, self.net.trunk[0].out_channels * int(np.prod(x.shape[2:]))):  # first map
            batch = torch.as_tensor(np.asarray(part, dtype=np.float32))
            f = self.net.features(batch)  # (b, F)
            p = torch.softmax(self.net.head(f), dim=1)  # (b, n_classes)
            top, cls = p.max(1)
            labels.append(cls.numpy()), probs.append(top.numpy()), feats.append(f.numpy())
        if not labels:
            return (
                np.zeros(0, np.int64),
                np.zeros(0, np.float32),
                np.zeros((0, self.net.trunk[-2].out_features)),
            )
        return np.concatenate(labels).astype(np.int64), np.concatenate(probs), np.concatenate(feats)


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
    threads: int | None = 1,
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
        with torch.random.fork_rng(), _torch_threads(threads):
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


def cache_name(cfg: dict, images: np.ndarray, labels: np.ndarray, n_classes: int, seed: int) -> str:
    labels_sha = hashlib.sha256(labels.tobytes()).hexdigest()
    key = json.dumps(
        {"classifier": cfg, "images": data_fingerprint(images), "labels": labels_sha,
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
