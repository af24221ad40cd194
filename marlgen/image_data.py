"""Image data sources: CIFAR-10 (torchvision), any .npz of images, sklearn digits, stacked digits.

Every source returns an :class:`ImageDataset`: float32 images (n, C, H, W) scaled to [-1, 1] (the
tanh range of the conv generators), int64 labels, and a held-out split on which the mode classifier's
accuracy is measured. Images have no known density (``means=None``), so the oracle judge refuses them
and modes come from a classifier (marlgen.classifier) or k-means cells (marlgen.modes).

A missing or malformed file raises :class:`ConfigError` naming the file, the key and the fix; no
source ever substitutes other data silently.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marlgen.config import ConfigError
from marlgen.data import Dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHARED_NPZ = "../shared/data/cifar10_subset.npz"
# The digits' split is fixed (not the run's seed): classifier accuracies compare across seeds.
SPLIT_SEED = 0


@dataclass
class ImageDataset(Dataset):
    test_samples: np.ndarray | None = None  # (n_test, C, H, W) held out: the classifier's accuracy
    test_labels: np.ndarray | None = None  # (n_test,) int64
    class_names: tuple[str, ...] = ()  # one per class (stacked digits: the ten digits of one channel)
    # Stacked digits: each channel is one image of this data set, and a stack's mode combines their
    # classes as 100*c0 + 10*c1 + c2; the classifier is trained on it and applied per channel.
    channel_source: ImageDataset | None = None

    @property
    def labelled(self) -> bool:
        """True when every real sample has a class (then a classifier can define the modes)."""
        return self.n_modes > 0 and len(self.labels) > 0 and bool((self.labels >= 0).all())


def to_unit_range(images: np.ndarray, top: float) -> np.ndarray:
    """(n, H, W, C) values in [0, top] -> float32 (n, C, H, W) in [-1, 1]."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2)
    return x * (2.0 / top) - 1.0


def held_out_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random split of range(n): (train indices, test indices), at least one in each."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = min(max(1, int(round(n * fraction))), n - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def image_dataset(name, train_x, train_y, test_x, test_y, cfg, class_names=()) -> ImageDataset:
    """Cap the splits at data.n_train / data.n_test (leading images: the cut never depends on the seed)."""
    train_x, train_y = train_x[: cfg.n_train], train_y[: cfg.n_train]
    test_x, test_y = test_x[: cfg.n_test], test_y[: cfg.n_test]
    n_modes = int(train_y.max()) + 1 if len(train_y) and train_y.min() >= 0 else 0
    n_modes = max(n_modes, len(class_names))
    return ImageDataset(
        name, np.ascontiguousarray(train_x), train_y.astype(np.int64), n_modes,
        test_samples=np.ascontiguousarray(test_x), test_labels=test_y.astype(np.int64),
        class_names=tuple(class_names),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# sklearn digits (8x8, offline) and stacked digits (1,000 modes)
# ------------------------------------------------------------------------------------------------


def digits(cfg, rng: np.random.Generator) -> ImageDataset:
    """sklearn's 1,797 bundled 8x8 digits (values 0..16), 1 channel; data.test_fraction held out."""
    d = _all_digits(cfg)
    return image_dataset("digits", d.samples, d.labels, d.test_samples, d.test_labels, cfg, d.class_names)


def stacked_digits(cfg, rng: np.random.Generator) -> ImageDataset:
    """Three digits stacked as channels (PacGAN's stacked MNIST, from sklearn digits): 1,000 modes.

    Training stacks draw their digits from the digits' training split, test stacks from the held-out
    split; a stack's label is 100*c0 + 10*c1 + c2. The draw follows the run's seed.
    """
    base = _all_digits(cfg)

    def stack(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(len(x), size=(n, 3))  # (n, 3) digit per channel
        images = x[idx][:, :, 0]  # (n, 3, 8, 8): channel c is digit idx[:, c]
        labels = 100 * y[idx[:, 0]] + 10 * y[idx[:, 1]] + y[idx[:, 2]]
        return images, labels

    train_x, train_y = stack(base.samples, base.labels, cfg.n_train)
    test_x, test_y = stack(base.test_samples, base.test_labels, cfg.n_test)
    return ImageDataset(
        "stacked_digits", np.ascontiguousarray(train_x), train_y.astype(np.int64), 1000,
        test_samples=np.ascontiguousarray(test_x), test_labels=test_y.astype(np.int64),
        class_names=base.class_names, channel_source=base,
    )  # fmt: skip


def _all_digits(cfg) -> ImageDataset:
    """All of sklearn's digits in their fixed split: data.n_train counts stacks, not digits."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = to_unit_range(bunch.images[..., None], 16.0), bunch.target.astype(np.int64)
    train, test = held_out_split(len(x), cfg.test_fraction)
    return ImageDataset(
        "digits", x[train], y[train], 10, test_samples=x[test], test_labels=y[test],
        class_names=tuple(str(d) for d in range(10)),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# CIFAR-10 through torchvision
# ------------------------------------------------------------------------------------------------


def cifar10(cfg, rng: np.random.Generator) -> ImageDataset:
    """CIFAR-10 via ``torchvision.datasets.CIFAR10`` in data.root (downloads only if data.download)."""
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root).expanduser()
    folder = root / CIFAR10.base_folder
    try:
        train = CIFAR10(str(root), train=True, download=cfg.download)
        test = CIFAR10(str(root), train=False, download=False)
    except Exception as err:  # RuntimeError (missing/corrupt), URLError/OSError (no network)
        how = "download failed" if cfg.download else "not found or corrupted"
        raise ConfigError(
            f"data.source='cifar10': CIFAR-10 {how} in {folder} (data.root={cfg.root!r}; "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Fix: on a connected "
            "machine add data.download=true (about 170 MB into data.root), or set data.root to the folder "
            "that holds cifar-10-batches-py, or run offline with the shared subset: "
            f"data.source=npz data.path={SHARED_NPZ}"
        ) from None
    names = tuple(getattr(train, "classes", CIFAR10_CLASSES))
    return image_dataset(
        "cifar10", to_unit_range(np.asarray(train.data), 255.0), np.asarray(train.targets),
        to_unit_range(np.asarray(test.data), 255.0), np.asarray(test.targets), cfg, names,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Any .npz of images (the format of ../shared/data/cifar10_subset.npz)
# ------------------------------------------------------------------------------------------------

NPZ_FORMAT = (
    "expected arrays train_images (N, H, W, C) or (N, H, W) uint8 HWC, optional train_labels (N,) "
    "integers >= 0, optional test_images / test_labels of the same kinds (format of "
    f"{SHARED_NPZ}, see its README)"
)


def npz_images(cfg, rng: np.random.Generator) -> ImageDataset:
    """Images from ``data.path``. Without labels the data is unlabelled (modes: k-means cells); without
    test arrays, data.test_fraction of the training images is held out."""
    path = _npz_path(cfg.path)
    arrays = _read_npz(path)
    where = f"data.path={cfg.path!r} ({path})"
    train_x = _images(arrays, "train_images", where)
    train_y = _labels(arrays, "train_labels", len(train_x), where)
    has_test = "test_images" in arrays
    if has_test:
        test_x = _images(arrays, "test_images", where)
        if test_x.shape[1:] != train_x.shape[1:]:
            raise ConfigError(
                f"{where}: test_images have shape {test_x.shape[1:]} per image but train_images "
                f"{train_x.shape[1:]}; {NPZ_FORMAT}"
            )
        test_y = _labels(arrays, "test_labels", len(test_x), where)
        if (train_y is None) != (test_y is None):
            raise ConfigError(f"{where}: give both train_labels and test_labels or neither; {NPZ_FORMAT}")
    else:
        train, test = held_out_split(len(train_x), cfg.test_fraction)
        test_x, test_y = train_x[test], None if train_y is None else train_y[test]
        train_x, train_y = train_x[train], None if train_y is None else train_y[train]
    unlabelled = train_y is None
    if unlabelled:  # -1: no class known; the assigner falls back to k-means cells
        train_y, test_y = np.full(len(train_x), -1), np.full(len(test_x), -1)
    names = (
        CIFAR10_CLASSES if not unlabelled and train_x.shape[1:] == (32, 32, 3) and train_y.max() < 10 else ()
    )
    data = image_dataset(
        Path(cfg.path).stem or "npz", to_unit_range(train_x, 255.0), train_y,
        to_unit_range(test_x, 255.0), test_y, cfg, names,
    )  # fmt: skip
    if not unlabelled and not names:
        data.class_names = tuple(str(c) for c in range(data.n_modes))
    return data


def _npz_path(given: str) -> Path:
    if not given:
        raise ConfigError(
            "data.source='npz' needs data.path: give a file of images, e.g. "
            f"data.path={SHARED_NPZ} (run from the project's root)"
        )
    path = Path(given).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"data.path={given!r}: no such file (looked at {path.resolve()}; paths are relative to the "
            f"working directory {Path.cwd()}). Fix: give the .npz's path, e.g. data.path={SHARED_NPZ} "
            "from the project's root"
        )
    return path


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays, read now: a truncated file fails here with one message, not later in training."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        raise ConfigError(
            f"data.path={str(path)!r}: not a readable .npz (truncated or not a numpy archive: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); re-copy or re-save "
            f"the file; {NPZ_FORMAT}"
        ) from None


def _images(arrays: dict, key: str, where: str) -> np.ndarray:
    """(N, H, W, C) uint8; grayscale (N, H, W) gets a channel axis."""
    if key not in arrays:
        raise ConfigError(
            f"{where}: no array '{key}' (found: {', '.join(sorted(arrays)) or 'none'}); {NPZ_FORMAT}"
        )
    x = arrays[key]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0:
        raise ConfigError(f"{where}: '{key}' has shape {x.shape}; {NPZ_FORMAT}")
    if x.dtype != np.uint8:
        raise ConfigError(f"{where}: '{key}' has dtype {x.dtype}, not uint8 (values 0..255); {NPZ_FORMAT}")
    return x


def _labels(arrays: dict, key: str, n: int, where: str) -> np.ndarray | None:
    if key not in arrays:
        return None
    y = arrays[key]
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise ConfigError(
            f"{where}: '{key}' has shape {y.shape} and dtype {y.dtype}; need ({n},) integers >= 0, one "
            f"per image; {NPZ_FORMAT}"
        )
    return y.astype(np.int64)


SOURCES = {"cifar10": cifar10, "npz": npz_images, "digits": digits, "stacked_digits": stacked_digits}
