"""The image side: sources, conv models, classifier modes, k-means modes, judge, env, a short run.

Fast: tiny data written here (random npz, a fake CIFAR-10 folder in torchvision's layout), a few
training steps. The real data sets are exercised by the scenarios, not by this file.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

from marlgen.build import build_parts, make_env
from marlgen.classifier import cache_name, classifier_config_dict, trained_classifier
from marlgen.config import ConfigError, default_config, load_scenario
from marlgen.critic import FeatureJudge, make_judge
from marlgen.data import SOURCES, load_data
from marlgen.image_data import CIFAR10_CLASSES, ImageDataset
from marlgen.models import MODELS
from marlgen.models.pretrain import pretrained_model
from marlgen.modes import ClassifierModes, KMeansModes, make_assigner
from marlgen.run import main
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


TINY_CLASSIFIER = {"train_steps": 40, "width": 8, "features": 16, "batch_size": 32, "lr": 3e-3}


def class_images(n: int, size: int = 8, channels: int = 1, n_classes: int = 2, seed: int = 0):
    """uint8 HWC images whose class is a bright band at row band = class: easy to classify."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(n_classes, size=n)
    x = rng.integers(0, 40, size=(n, size, size, channels))
    band = size // n_classes
    for c in range(n_classes):
        x[labels == c, c * band : (c + 1) * band] += 200
    return x.astype(np.uint8), labels.astype(np.int64)


def write_npz(path, n=64, size=8, channels=1, labels=True, test=True, **extra):
    x, y = class_images(n, size, channels)
    tx, ty = class_images(n // 2, size, channels, seed=1)
    arrays = {"train_images": x}
    if labels:
        arrays["train_labels"] = y
    if test:
        arrays["test_images"] = tx
        if labels:
            arrays["test_labels"] = ty
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def data_cfg(**data):
    return default_config(data=data).data


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------


def test_image_sources_are_registered():
    assert {"cifar10", "npz", "digits", "stacked_digits"} <= set(SOURCES)


def test_npz_source_reads_hwc_uint8_into_chw_unit_range(tmp_path):
    path = write_npz(tmp_path / "imgs.npz", channels=3)
    data = load_data(data_cfg(source="npz", path=str(path)), seed=0)
    assert isinstance(data, ImageDataset) and not data.has_density and data.labelled
    assert data.samples.shape == (64, 3, 8, 8) and data.samples.dtype == np.float32
    assert data.samples.min() >= -1.0 and data.samples.max() <= 1.0
    assert data.test_samples.shape == (32, 3, 8, 8) and data.labels.dtype == np.int64
    raw = np.load(path)["train_images"]
    np.testing.assert_allclose(data.samples[3, 2], raw[3, :, :, 2] / 127.5 - 1.0, atol=1e-6)  # HWC -> CHW


def test_npz_without_test_arrays_holds_out_a_fraction(tmp_path):
    path = write_npz(tmp_path / "imgs.npz", n=100, test=False)
    data = load_data(data_cfg(source="npz", path=str(path), test_fraction=0.2), seed=0)
    assert len(data.samples) == 80 and len(data.test_samples) == 20


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", ["data.path=", "no such file", "cifar10_subset.npz"]),
        ("truncated", ["not a readable .npz", "truncated"]),
        ("wrong_shape", ["train_images", "(64, 8)", "expected arrays"]),
        ("wrong_dtype", ["float64", "uint8"]),
        ("wrong_labels", ["train_labels", "need (64,)"]),
        ("no_images", ["no array 'train_images'", "found: x"]),
    ],
)
def test_bad_npz_gets_one_clear_error(tmp_path, setup, expected):
    path = tmp_path / "imgs.npz"
    if setup == "truncated":
        write_npz(path)
        path.write_bytes(path.read_bytes()[:300])
    elif setup == "wrong_shape":
        np.savez(path, train_images=np.zeros((64, 8), np.uint8))
    elif setup == "wrong_dtype":
        np.savez(path, train_images=np.zeros((64, 8, 8, 3)))
    elif setup == "wrong_labels":
        np.savez(path, train_images=np.zeros((64, 8, 8, 3), np.uint8), train_labels=np.zeros(5, np.int64))
    elif setup == "no_images":
        np.savez(path, x=np.zeros(3))
    with pytest.raises(ConfigError) as err:
        load_data(data_cfg(source="npz", path=str(path)), seed=0)
    for part in expected:
        assert part in str(err.value), str(err.value)


def test_digits_and_stacked_digits():
    digits = load_data(data_cfg(source="digits"), seed=0)
    assert digits.samples.shape[1:] == (1, 8, 8) and digits.n_modes == 10
    assert len(digits.samples) + len(digits.test_samples) == 1797
    stacked = load_data(data_cfg(source="stacked_digits", n_train=500, n_test=50), seed=0)
    assert stacked.samples.shape == (500, 3, 8, 8) and stacked.n_modes == 1000
    base = stacked.channel_source
    # Each channel is a real training digit and the label combines their classes.
    first = stacked.samples[0]
    idx = [int(np.flatnonzero((base.samples[:, 0] == first[c]).all(axis=(1, 2)))[0]) for c in range(3)]
    assert stacked.labels[0] == 100 * base.labels[idx[0]] + 10 * base.labels[idx[1]] + base.labels[idx[2]]


def fake_cifar(root, per_batch=4):
    """torchvision's cifar-10-batches-py layout: five training batches, a test batch, the meta file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}))
    return folder


def test_cifar10_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    folder = fake_cifar(tmp_path)
    # Our files cannot match the real md5 sums; everything else is torchvision's own code path.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    data = load_data(data_cfg(source="cifar10", root=str(tmp_path)), seed=0)
    assert data.samples.shape == (20, 3, 32, 32) and data.test_samples.shape == (4, 3, 32, 32)
    assert data.class_names == CIFAR10_CLASSES and data.n_modes == 10
    row = pickle.loads((folder / "data_batch_1").read_bytes())["data"][0]
    np.testing.assert_allclose(data.samples[0], row.reshape(3, 32, 32) / 127.5 - 1.0, atol=1e-6)


def test_missing_cifar10_says_where_and_how(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_data(data_cfg(source="cifar10", root=str(tmp_path)), seed=0)
    message = str(err.value)
    for part in [str(tmp_path / "cifar-10-batches-py"), "data.download=true", "data.source=npz", "data.root"]:
        assert part in message, message


# ------------------------------------------------------------------------------------------------
# Models, classifier, modes, judge
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["conv_gan", "conv_vae"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_conv_models_decode_train_and_cache(kind, shape, tmp_path):
    cfg = default_config(
        model={"kind": kind, "latent_dim": 4, "hidden": 8, "train_steps": 3, "batch_size": 8}
    ).model
    data = np.random.default_rng(0).uniform(-1, 1, (32, *shape)).astype(np.float32)
    model = pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    assert model.decode(torch.zeros(5, 4)).shape == (5, *shape)
    x = model.sample_prior(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, *shape) and x.abs().max() <= 1.0
    again = pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    assert torch.equal(again.decode(torch.ones(2, 4)), model.decode(torch.ones(2, 4)))
    assert MODELS[kind] is not None


def test_pretraining_runs_on_train_threads_and_caches_them_apart(tmp_path, monkeypatch):
    import marlgen.classifier
    import marlgen.models.pretrain

    seen = []
    for module, name in ((marlgen.models.pretrain, "train_model"), (marlgen.classifier, "fit")):
        trainer = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _t=trainer, **k: seen.append(torch.get_num_threads()) or _t(*a, **k)
        )
    data = np.random.default_rng(0).uniform(-1, 1, (32, 1, 8, 8)).astype(np.float32)
    model = {"kind": "conv_gan", "latent_dim": 4, "hidden": 8, "train_steps": 3, "batch_size": 8}
    labels = np.arange(32) % 2
    before = torch.get_num_threads()
    for threads in (1, 2):
        classifier = {**TINY_CLASSIFIER, "train_steps": 3, "train_threads": threads}
        cfg = default_config(model={**model, "train_threads": threads}, modes={"classifier": classifier})
        pretrained_model(cfg.model, data, seed=0, cache_dir=tmp_path, progress=False)
        trained_classifier(
            data, labels, data[:4], labels[:4], 2, cfg.modes.classifier, 0, tmp_path, progress=False
        )
        assert torch.get_num_threads() == before
    assert seen == [1, 1, 2, 2]  # each model and classifier trained on its own setting
    # Other threads, other last bits: at 2 a run gets files of its own, not the ones trained at 1 ...
    assert len(list(tmp_path.glob("conv_gan-*.pt"))) == len(list(tmp_path.glob("classifier-*.pt"))) == 2
    # ... and at 1 the classifier keeps the file name of a config from before the key (models:
    # tests/test_guided.py), so caches written before it stay valid.
    old = {k: v for k, v in classifier_config_dict(TINY_CLASSIFIER).items() if k != "train_threads"}
    default = classifier_config_dict(TINY_CLASSIFIER)
    assert cache_name(old, data, labels, 2, 0) == cache_name(default, data, labels, 2, 0)
    with pytest.raises(ConfigError, match="train_threads"):
        default_config(model={**model, "train_threads": 0})


@pytest.mark.parametrize("kind", ["ConvGAN", "ConvVAE"])
def test_inference_decodes_in_chunks_to_the_same_bits(kind, monkeypatch):
    import marlgen.models.conv as conv

    model = getattr(conv, kind)((3, 32, 32), latent_dim=4, hidden=8).eval()
    z = torch.randn(37, 4, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = model.decode_batch(z)
        monkeypatch.setattr(conv, "CHUNK_FLOATS", 10 * model.decoder_net().peak_floats)  # 10, 9, 9, 9
        assert torch.equal(model.decode(z), whole)
    model.train()  # training decodes the whole batch: batch norm's statistics are the batch's
    calls = []
    monkeypatch.setattr(model, "decode_batch", lambda z: calls.append(len(z)) or whole)
    model.decode(z)
    assert calls == [37]


def test_classifier_pooling_matches_torch():
    from marlgen.classifier import MaxPool2x2

    x = torch.randn(6, 4, 9, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    ours, theirs = MaxPool2x2()(x), torch.nn.MaxPool2d(2)(x)
    assert torch.equal(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    assert torch.equal(g_ours, g_theirs)  # no ties in random floats: the same routing of gradients


def trained_looking(net):
    """Seeded weights; batch norms with statistics and affine parameters far from their initial 0 / 1
    (folding them is then not the identity); linear layers scaled up so the logits spread; frozen as a
    cached classifier is."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))):
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / fan_in**0.5)
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.1)
        for layer in (m for m in net.modules() if isinstance(m, torch.nn.Linear)):
            layer.weight.mul_(2.0)
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(c, generator=gen) * 2.0 + 0.5)
            bn.weight.copy_(torch.randn(c, generator=gen))  # negative scales too: pooling after the fold
            bn.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    return net.eval().requires_grad_(False)


# Tolerance of the folded classifier against the plain module: both are float32, the folded one
# rounds each batch norm into its conv once and sums in other orders. Measured on the cached digits
# and CIFAR classifiers: logits within 2.4e-6 (of up to 7.2), features within 5.7e-6 (of up to 13).
FOLDED_RTOL, FOLDED_ATOL = 1e-5, 1e-5


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 28, 28), (2, 16, 8)])
def test_folded_classifier_matches_the_module(shape):
    """Batch norm folded, channels-last maps, the compiled first block on one-channel images (8x8 and
    28x28, whose second block runs in oneDNN at 14x14): the eval-mode module's numbers, in chunks."""
    from marlgen.classifier import ConvClassifier, FoldedClassifier, TrainedClassifier

    net = trained_looking(ConvClassifier(shape, 10, width=8, features=16))
    images = np.random.default_rng(0).uniform(-1, 1, (70, *shape)).astype(np.float32)
    with torch.inference_mode():
        features, logits = net.features(torch.from_numpy(images)), net(torch.from_numpy(images))
        folded_features, folded_logits = FoldedClassifier(net)(images)
    assert logits.abs().max() > 2.0 and logits.std(0).max() > 0.3  # outputs that differ by image
    torch.testing.assert_close(folded_logits, logits, rtol=FOLDED_RTOL, atol=FOLDED_ATOL)
    torch.testing.assert_close(folded_features, features, rtol=FOLDED_RTOL, atol=FOLDED_ATOL)

    cls, top, feats = TrainedClassifier(net, 1.0, 0, 0.0, "").predict(images)  # 32x32: two chunks of 35
    assert cls.dtype == np.int64 and feats.shape == (70, 16)
    probs = torch.softmax(logits, 1)
    margin = probs.topk(2, 1).values.diff(dim=1).abs().squeeze(1)  # top-2 gap: a flip needs a near tie
    clear = (margin > 1e-4).numpy()
    assert clear.sum() >= 60 and len(np.unique(cls)) >= 2  # several classes, few near ties
    assert np.array_equal(cls[clear], probs.argmax(1).numpy()[clear])
    np.testing.assert_allclose(top, probs.max(1).values.numpy(), rtol=FOLDED_RTOL, atol=FOLDED_ATOL)
    np.testing.assert_allclose(feats, features.numpy(), rtol=FOLDED_RTOL, atol=FOLDED_ATOL)


def test_compiled_first_block_matches_torch_on_odd_maps():
    from marlgen.classifier import _conv3x3_pool_relu

    gen = torch.Generator().manual_seed(0)
    x, weight = torch.randn(5, 1, 9, 7, generator=gen), torch.randn(6, 1, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    expected = torch.relu(torch.nn.MaxPool2d(2)(torch.conv2d(x, weight, bias, padding=1)))  # floored: 4 x 3
    out = np.empty((5, 4, 3, 6), np.float32)
    _conv3x3_pool_relu(x[:, 0].numpy(), weight.reshape(6, 9).t().contiguous().numpy(), bias.numpy(), out)
    torch.testing.assert_close(torch.from_numpy(out).permute(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


def test_folded_classifier_follows_the_weights():
    """A TrainedClassifier refolds when its net's weights change in place (load_state_dict)."""
    from marlgen.classifier import ConvClassifier, TrainedClassifier

    nets = [trained_looking(ConvClassifier((1, 8, 8), 3, width=4, features=8)) for _ in range(2)]
    with torch.no_grad():
        nets[1].trunk[5].weight.mul_(-1.0)  # another classifier than nets[0]
    images = np.random.default_rng(0).uniform(-1, 1, (20, 1, 8, 8)).astype(np.float32)
    clf = TrainedClassifier(nets[0], 1.0, 0, 0.0, "")
    before = clf.predict(images)[2]
    nets[0].load_state_dict(nets[1].state_dict())
    after = clf.predict(images)[2]
    with torch.inference_mode():
        expected = nets[1].features(torch.from_numpy(images)).numpy()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, expected, rtol=FOLDED_RTOL, atol=FOLDED_ATOL)


def tiny_image_data(tmp_path, size=8, channels=1, n=200) -> ImageDataset:
    path = write_npz(tmp_path / "tiny.npz", n=n, size=size, channels=channels)
    return load_data(data_cfg(source="npz", path=str(path)), seed=0)


def test_classifier_learns_is_cached_and_reports_accuracy(tmp_path, monkeypatch):
    data = tiny_image_data(tmp_path)
    args = (data.samples, data.labels, data.test_samples, data.test_labels, 2, TINY_CLASSIFIER, 0, tmp_path)
    clf = trained_classifier(*args, progress=False)
    assert clf.accuracy > 0.9 and clf.n_test == len(data.test_labels)
    assert len(list(tmp_path.glob("classifier-*.pt"))) == 1

    import marlgen.classifier

    monkeypatch.setattr(marlgen.classifier, "fit", lambda *a, **k: pytest.fail("retrained despite the cache"))
    again = trained_classifier(*args, progress=False)
    assert again.accuracy == clf.accuracy
    cls, conf, feats = again.predict(data.test_samples)
    assert cls.shape == conf.shape == (len(data.test_samples),) and feats.shape == (len(cls), 16)
    with torch.inference_mode():  # the reloaded net, folded for inference, says what the module says
        logits = again.net(torch.from_numpy(data.test_samples))
    assert np.array_equal(cls, logits.argmax(1).numpy())
    np.testing.assert_allclose(conf, torch.softmax(logits, 1).max(1).values.numpy(), rtol=1e-5, atol=1e-5)


class StubClassifier:
    """Stands in for a TrainedClassifier: class = rounded mean pixel, confidence = the first pixel."""

    class net:  # noqa: N801  (attribute access as on the real classifier)
        n_classes = 10

    def predict(self, x):
        cls = np.clip(np.rint(x.reshape(len(x), -1).mean(1)), 0, 9).astype(np.int64)
        conf = x.reshape(len(x), -1)[:, 0].astype(np.float32)
        return cls, conf, x.reshape(len(x), -1)


def test_classifier_modes_threshold_and_stacked_channels():
    single = ClassifierModes(StubClassifier(), confidence=0.5)
    x = np.stack([np.full((1, 2, 2), 3.0), np.full((1, 2, 2), 0.4)])  # class 3 confident, class 0 not
    assert single(x).tolist() == [3, -1] and single.n_modes == 10
    stacked = ClassifierModes(StubClassifier(), confidence=0.5, per_channel=True)
    x = np.stack([np.full((2, 2), 7.0), np.full((2, 2), 2.0), np.full((2, 2), 5.0)])[None]  # (1, 3, 2, 2)
    assert stacked(x).tolist() == [725] and stacked.n_modes == 1000
    x[0, 1] = 0.3  # one unsure channel makes the whole stack no mode
    assert stacked(x).tolist() == [-1] and stacked.classes(x).tolist() == [705]
    assert stacked.features(x).shape == (1, 12)


def test_kmeans_modes_for_unlabelled_npz(tmp_path):
    path = write_npz(tmp_path / "u.npz", n=120, labels=False)
    data = load_data(data_cfg(source="npz", path=str(path)), seed=0)
    assert not data.labelled
    modes_cfg = default_config(modes={"n_clusters": 2, "pca_dim": 4, "kmeans_quantile": 0.9}).modes
    assigner = make_assigner(data, modes_cfg, seed=0, cache_dir=str(tmp_path))
    assert isinstance(assigner, KMeansModes) and assigner.n_modes == 2
    modes = assigner(data.samples)
    assert set(modes.tolist()) <= {-1, 0, 1} and 0.8 <= (modes >= 0).mean() <= 0.95
    assert assigner.features(data.samples).shape == (len(data.samples), 4)
    far = np.full((1, 1, 8, 8), 50.0, np.float32)  # nothing like the data: no mode
    assert assigner(far).tolist() == [-1]
    with pytest.raises(ValueError, match="kmeans"):
        make_assigner(data, default_config(modes={"assigner": "classifier"}).modes, 0, str(tmp_path))


def test_judges_for_images(tmp_path):
    data = tiny_image_data(tmp_path)
    feats = lambda x: x.reshape(len(x), -1)[:, :10] * 2  # noqa: E731
    fake = lambda n: np.zeros((n, *data.data_shape), np.float32)  # noqa: E731
    critic = default_config(env={"critic": {"judge": "discriminator", "disc_batch_size": 16}}).env.critic
    judge = make_judge(critic, data, fake, seed=0, features=feats)
    assert isinstance(judge, FeatureJudge)
    scores = judge.score(data.samples[:5])
    assert scores.shape == (5,) and ((0 <= scores) & (scores <= 1)).all()
    judge.update(fake(4), np.random.default_rng(0))
    on_pixels = default_config(env={"critic": {"judge": "discriminator", "disc_input": "pixels"}}).env.critic
    pixels = make_judge(on_pixels, data, fake, seed=0, features=feats)
    assert not isinstance(pixels, FeatureJudge) and pixels.score(data.samples[:3]).shape == (3,)
    with pytest.raises(ValueError, match="oracle"):
        make_judge(default_config().env.critic, data, fake, seed=0)


@pytest.mark.parametrize("shape, dtype", [((2,), np.float64), ((16,), np.float32), ((1, 8, 8), np.float32)])
def test_discriminator_logit_is_its_modules_forward_to_the_bit(shape, dtype):
    """``logit`` calls the net's layers as the modules do: the very same numbers, before and after the
    judge learns (toy points in float64, features, pixels)."""
    from marlgen.critic import DiscriminatorJudge

    real = np.random.default_rng(0).standard_normal((64, *shape)).astype(dtype)
    judge = DiscriminatorJudge(real, hidden=32, lr=1e-2, batch_size=16, seed=0)
    rng = np.random.default_rng(1)
    for step in range(3):
        x = np.random.default_rng(10 + step).standard_normal((37, *shape)).astype(dtype)
        with torch.no_grad():
            expected = judge.net(torch.as_tensor(x, dtype=torch.float32)).squeeze(1).double().numpy()
        assert np.array_equal(judge.logit(x), expected)
        judge.update(x, rng)


# ------------------------------------------------------------------------------------------------
# Env and a whole run
# ------------------------------------------------------------------------------------------------

QUICK = [
    "model.train_steps=20",
    "modes.classifier.train_steps=30",
    "modes.classifier.width=8",
    "modes.classifier.features=16",
    "env.n_generators=3",
    "env.samples_per_agent=2",
    "env.episode_budget=12",
    "env.n_anchors=16",
    "model.hidden=8",
]


def test_env_steps_with_images(tmp_path):
    cfg = load_scenario(ROOT / "scenarios/digits_coverage.yaml", [*QUICK, f"cache_dir={tmp_path}"])
    parts = build_parts(cfg, progress=False)
    env = make_env(cfg, parts, learn_judge=True)
    obs, _ = env.reset(seed=0)
    obs, rewards, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})
    assert env.last.samples.shape == (6, 1, 8, 8) and env.last.modes.shape == (6,)
    assert set(rewards) == set(env.possible_agents)
    parallel_api_test(make_env(cfg, parts), num_cycles=5)


def test_short_image_run_writes_grids_and_image_figures(tmp_path):
    out = tmp_path / "run"
    short = ["train.epochs=1", "train.steps_per_epoch=200", "train.steps_per_collect=100", "train.n_envs=1",
             "eval.budget=120", "eval.small_budget_episodes=3", "env.critic.bars=[0.0]"]  # fmt: skip
    # bars=[0.0]: the critic accepts every sample, so every method delivers its whole budget.
    scenario = str(ROOT / "scenarios/digits_coverage.yaml")
    code = main([scenario, *QUICK, *short, f"out_dir={out}", f"cache_dir={tmp_path}", "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"team", "prior", "random", "images"}
    for method in ("team", "prior", "random"):
        row = metrics[method]
        assert row["modes_total"] == 10 and "frechet_classifier" in row and "class_kl" in row
        assert "precision" in row and "coverage" in row and row["delivered"] == 120
    images = metrics["images"]
    assert 0.0 <= images["classifier_accuracy"] <= 1.0 and images["confidence"] == 0.5
    assert "real_held_out" in images
    for name in ("grids.png", "mode_shares.png", "team_grid.png", "prior_grid.png", "learning_curve.png"):
        assert (out / name).stat().st_size > 1000, name
    assert not (out / "samples.png").exists()
    report = (out / "report.md").read_text()
    assert "frechet_classifier" in report and "held-out accuracy" in report and "real (held-out)" in report
    for method in ("team", "prior", "random"):
        assert report.count(f"| {method} |") == 2  # the main table and the image table
    assert set(json.loads((out / "timings.json").read_text())) >= {"pretrain", "train", "evaluate", "report"}


def test_pretraining_resumes_from_its_partial_checkpoint(tmp_path, monkeypatch):
    """An interrupted long pretraining continues from its periodic checkpoint to the same weights."""
    from marlgen.models import pretrain
    from marlgen.models.conv import ConvGAN

    monkeypatch.setattr(pretrain, "PARTIAL_EVERY_SECONDS", 0.0)  # save after every step
    model_cfg = {"kind": "conv_gan", "latent_dim": 4, "hidden": 8, "train_steps": 12, "batch_size": 8}
    cfg = default_config(model=model_cfg).model
    data = np.random.default_rng(0).uniform(-1, 1, (32, 1, 8, 8)).astype(np.float32)
    full = pretrained_model(cfg, data, seed=0, cache_dir=tmp_path / "full", progress=False)

    original, calls = ConvGAN.training_step, []

    def crash_at_step_8(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 7:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConvGAN, "training_step", crash_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        pretrained_model(cfg, data, seed=0, cache_dir=tmp_path / "cut", progress=False)
    (partial,) = (tmp_path / "cut").glob("*.partial")
    assert torch.load(partial, weights_only=True)["step"] == 7
    monkeypatch.setattr(ConvGAN, "training_step", original)
    resumed = pretrained_model(cfg, data, seed=0, cache_dir=tmp_path / "cut", progress=False)
    assert not list((tmp_path / "cut").glob("*.partial"))
    for key, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_real_reference_row_names_its_sample_size():
    from omegaconf import OmegaConf

    from marlgen.report import image_section

    row = {"modes_covered": 640, "modes_total": 1000, "high_quality_fraction": 0.9, "class_kl": 0.327}
    images = {"n_modes": 1000, "real_held_out": {**row, "n_images": 2000}}
    small = "\n".join(image_section(OmegaConf.create({"eval": {"budget": 10000}}), {"team": row}, images))
    assert "| real (held-out), 2000 images |" in small
    assert "only 2000 images against the methods' 10000" in small
    enough = "\n".join(image_section(OmegaConf.create({"eval": {"budget": 2000}}), {"team": row}, images))
    assert "| real (held-out), 2000 images |" in enough and "only 2000 images" not in enough
