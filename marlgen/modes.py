"""Mode assigners: what "a mode" is, and whether a sample is good enough to count for one.

An assigner maps a batch of samples to mode indices, -1 where a sample belongs to no mode (too far
from every mixture component, for toy data; not confidently any class, for images). The critic is
scored against this verdict and every coverage figure counts with it.

Image assigners also give a feature map (``features``: the space of PRDC and the Frechet distance)
and every sample's nearest class regardless of quality (``classes``: the class-histogram KL).
"""

from __future__ import annotations

import numpy as np

from marlgen.config import ConfigError
from marlgen.metrics import NearestMean


class MixtureModes:
    """Nearest mixture component within 3 std (PacGAN's and VEEGAN's high-quality rule)."""

    def __init__(self, means: np.ndarray, std: float, hq_threshold: float = 3.0):
        self.means, self.std, self.hq_threshold = means, std, hq_threshold
        self.n_modes = len(means)
        self.nearest = NearestMean(means, std)  # shared with the oracle judge (marlgen.build)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        idx, dist = self.nearest(x)  # as metrics.assign_to_mixture, which the reports use
        return np.where(dist < self.hq_threshold, idx, -1)  # int64, as idx


class ClassifierModes:
    """Classes of a trained conv classifier; a sample counts (mode >= 0) only when it is confident.

    ``confidence`` is the bar on the top softmax probability: below it the classifier cannot tell what
    the image shows, and the sample is no mode (-1), the image analogue of "beyond 3 std". With
    ``per_channel`` (stacked digits) the classifier reads each channel as one digit, the mode is
    ``100*c0 + 10*c1 + c2`` and every channel must be confident.
    """

    def __init__(self, classifier, confidence: float, per_channel: bool = False):
        self.classifier, self.confidence, self.per_channel = classifier, float(confidence), per_channel
        k = classifier.net.n_classes
        self.n_modes = k**3 if per_channel else k
        self.name = f"classifier ({'per channel, ' if per_channel else ''}confidence > {self.confidence:g})"
        self._last: tuple = (None, None)  # (input array, its prediction)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, C, H, W) -> (class (n,), confidence (n,), features (n, F) or (n, 3F) per channel).

        An env step asks three times about one batch (judge score, modes, judge update): the last
        answer is reused for an equal array. Equality, not identity: an array edited in place
        must not get a stale answer, and comparing costs far less than the classifier's forward.
        """
        last = self._last[0]
        if last is None or last.shape != x.shape or not np.array_equal(last, x):
            self._last = (np.array(x, copy=True), self._predict(x))
        return self._last[1]

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.per_channel:
            return self.classifier.predict(x)
        n, c = x.shape[:2]
        cls, conf, feats = self.classifier.predict(x.reshape(n * c, 1, *x.shape[2:]))  # channels as digits
        cls, conf = cls.reshape(n, c), conf.reshape(n, c)
        mode = (cls * (10 ** np.arange(c - 1, -1, -1))).sum(1)  # 100*c0 + 10*c1 + c2
        return mode.astype(np.int64), conf.min(1), feats.reshape(n, -1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        cls, conf, _ = self.predict(x)
        return np.where(conf > self.confidence, cls, -1).astype(np.int64)

    def classes(self, x: np.ndarray) -> np.ndarray:
        return self.predict(x)[0]

    def features(self, x: np.ndarray) -> np.ndarray:
        return self.predict(x)[2]


class KMeansModes:
    """k-means cells of real samples' principal components: modes for unlabelled data.

    A sample is good when its distance to the nearest centre is below the ``quantile`` of the real
    samples' distances to theirs (so about 1 - quantile of real samples count as no mode).
    """

    def __init__(self, real: np.ndarray, n_clusters: int, pca_dim: int, quantile: float, seed: int):
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        flat = real.reshape(len(real), -1)
        self.pca = PCA(min(pca_dim, *flat.shape), random_state=seed).fit(flat)
        feats = self.pca.transform(flat)  # (n, pca_dim)
        self.kmeans = KMeans(n_clusters, n_init=4, random_state=seed).fit(feats)
        self.radius = float(np.quantile(self.kmeans.transform(feats).min(1), quantile))
        self.n_modes = int(n_clusters)
        self.name = f"k-means ({n_clusters} cells of {self.pca.n_components_} principal components)"

    def features(self, x: np.ndarray) -> np.ndarray:
        return self.pca.transform(x.reshape(len(x), -1)).astype(np.float32)

    def classes(self, x: np.ndarray) -> np.ndarray:
        return self.kmeans.predict(self.features(x)).astype(np.int64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        dist = self.kmeans.transform(self.features(x))  # (n, n_clusters)
        return np.where(dist.min(1) <= self.radius, dist.argmin(1), -1).astype(np.int64)


def make_assigner(
    dataset, modes_cfg=None, seed: int = 0, cache_dir: str = ".marlgen_cache", progress: bool = False
):
    """The assigner ``modes.assigner`` names; ``auto``: mixture for toy data, the classifier for labelled
    images, k-means cells otherwise."""
    kind = modes_cfg.assigner if modes_cfg is not None else "auto"
    if kind == "auto":
        kind = (
            "mixture"
            if dataset.has_density
            else "classifier"
            if getattr(dataset, "labelled", False)
            else "kmeans"
        )
    if kind == "mixture":
        if not dataset.has_density:
            raise ConfigError(
                f"modes.assigner='mixture' needs a toy mixture; data.source={dataset.name!r} has no known "
                "density: use modes.assigner=classifier (labelled images) or kmeans"
            )
        return MixtureModes(dataset.means, dataset.std)
    if modes_cfg is None:
        raise ValueError(f"no mode assigner for data source {dataset.name!r} without a modes config")
    if kind == "kmeans":
        return KMeansModes(
            dataset.samples, modes_cfg.n_clusters, modes_cfg.pca_dim, modes_cfg.kmeans_quantile, seed
        )
    return classifier_modes(dataset, modes_cfg, seed, cache_dir, progress)


def classifier_modes(dataset, modes_cfg, seed: int, cache_dir: str, progress: bool) -> ClassifierModes:
    from marlgen.classifier import trained_classifier

    if not getattr(dataset, "labelled", False):
        raise ConfigError(
            f"modes.assigner='classifier' needs labelled images; data.source={dataset.name!r} has no labels "
            "(an npz without train_labels): use modes.assigner=kmeans"
        )
    base = dataset.channel_source or dataset  # stacked digits: train on the single digits
    classifier = trained_classifier(
        base.samples, base.labels, base.test_samples, base.test_labels, base.n_modes,
        modes_cfg.classifier, seed, cache_dir, progress=progress,
    )  # fmt: skip
    return ClassifierModes(classifier, modes_cfg.confidence, per_channel=dataset.channel_source is not None)
