"""Criticality data, reference nets and observables (SPEC §7): brute-force counts,
user modules, data loaders on files written by the tests, one-line errors."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn as nn

from deepglass.criticality.data import load_dataset
from deepglass.criticality.nets import (REFERENCE_NETS, build_reference_net, canonical_name,
                                        checkpoint_epochs, train_reference_net)
from deepglass.criticality.observables import (Observables, activation_patterns,
                                               collect_observables, observable_samples,
                                               resolve_layers)
from deepglass.errors import DeepglassError


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# -- activation patterns -------------------------------------------------------------
def test_activation_patterns_equal_brute_force_count():
    rng = np.random.default_rng(0)
    for units in (1, 3, 8, 11):
        bits = rng.random((400, units)) < 0.3
        brute = sorted(Counter(map(tuple, bits)).values(), reverse=True)
        got = activation_patterns(bits)
        assert got.tolist() == brute
        assert got.sum() == 400


@pytest.mark.parametrize("bits,value", [([[0.5, 0.5], [0.7, 0.2]], "0.5"), ([[1, 2]], "2"),
                                        ([[float("nan"), 1.0]], "nan"), ([["a", "b"]], "'a'")])
def test_activation_patterns_refuse_values_other_than_0_1(bits, value):
    """Activations (0.5, 0.7) were cast to True: one pattern for everything."""
    with pytest.raises(DeepglassError, match=r"bits must be booleans or 0 / 1 \(threshold "
                                             rf"activations first, e.g. h > 0\), got {value}$"):
        activation_patterns(np.array(bits))
    assert activation_patterns(np.array([[1.0, 0.0], [1.0, 0.0]])).tolist() == [2]


def test_one_layer_name_is_one_layer_not_its_characters():
    """resolve_layers(net, 'relu1') looked for layers 'r', 'e', 'l', 'u', '1'."""
    net = build_reference_net("feedforward", (1, 8, 8))
    assert resolve_layers(net, "relu1") == ["relu1"]
    assert collect_observables(net, torch.rand(4, 1, 8, 8), "relu2").layers == ["relu2"]
    with pytest.raises(DeepglassError, match="^model has no layer 'relu9'; layers: fc1, relu1"):
        resolve_layers(net, "relu9")


def _user_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 6), nn.Tanh(), nn.Linear(6, 2))


def test_observables_on_user_module_equal_brute_force():
    net = _user_net()
    X = torch.randn(53, 5)
    obs = collect_observables(net, X, layers=["1", "3"], batch_size=7, n_passes=2)
    assert obs.layers == ["1", "3"] and obs.n_events == 106
    with torch.no_grad():
        h1 = net[1](net[0](X))
        h3 = net[3](net[2](h1))
    for name, h in (("1", h1), ("3", h3)):
        bits = (h > 0).numpy()
        brute = sorted((2 * c for c in Counter(map(tuple, bits)).values()), reverse=True)
        assert obs.pattern_counts[name].tolist() == brute
        np.testing.assert_array_equal(obs.unit_counts[name], 2 * bits.sum(0))
        ref = np.concatenate([h.mean(1).double().numpy()] * 2)
        np.testing.assert_allclose(obs.mean_activation[name], ref, rtol=1e-6, atol=1e-7)
        assert obs.n_units[name] == h.shape[1]
    # weights of every dense layer, and the round trip through flat arrays
    assert set(obs.weights) == {"0", "2", "4"}
    np.testing.assert_array_equal(obs.weights["2"], net[2].weight.detach().double().numpy().ravel())
    back = Observables.from_arrays(obs.arrays())
    assert back.layers == obs.layers and back.n_events == obs.n_events
    np.testing.assert_array_equal(back.pattern_counts["3"], obs.pattern_counts["3"])
    kinds = Counter(k["observable"] for k, _, _ in observable_samples(obs))
    assert kinds == {"weight": 3, "pattern_frequency": 2, "neuron_activation": 2,
                     "mean_activation": 2}
    s = obs.summary()
    assert s["distinct_patterns"].tolist() == [len(obs.pattern_counts[l]) for l in obs.layers]


def test_default_layers_and_shared_module_calls():
    net = _user_net()
    assert resolve_layers(net) == ["1", "3"]          # activation modules

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = nn.Linear(4, 4), nn.Linear(4, 3), nn.ReLU()

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))

    obs = collect_observables(Shared(), torch.randn(10, 4), layers=["act"])
    assert obs.layers == ["act", "act#2"]
    assert obs.n_units == {"act": 4, "act#2": 3}


def test_missing_layer_is_a_one_line_error():
    with pytest.raises(DeepglassError) as exc:
        collect_observables(_user_net(), torch.randn(4, 5), layers=["1", "encoder.relu"])
    msg = _one_line(exc)
    assert "encoder.relu" in msg and "layers:" in msg
    with pytest.raises(DeepglassError) as exc:
        collect_observables(_user_net(), torch.randn(4, 7), layers=["1"])   # wrong input size
    _one_line(exc)


def test_non_finite_inputs_or_threshold_are_refused_and_one_name_is_one_layer():
    """NaN inputs (or a NaN threshold) made every unit inactive, silently: one pattern
    for every event, fed to the power-law verdict; a name given as a string was read
    letter by letter ("no layer 'r', 'e', ...")."""
    net = _user_net()
    X = torch.randn(6, 5)
    assert resolve_layers(net, "1") == resolve_layers(net, ["1"]) == ["1"]
    base = collect_observables(net, X, layers="1")
    assert base.layers == ["1"] and base.unit_counts["1"].sum() > 0
    X[2, 3] = float("nan")
    with pytest.raises(DeepglassError, match=r"^X holds 1 NaN or infinite values of 30$"):
        collect_observables(net, X, layers="1")
    for bad in (float("nan"), float("inf"), "0", None):
        with pytest.raises(DeepglassError, match="threshold must be a finite number"):
            collect_observables(net, torch.randn(6, 5), threshold=bad)


# -- data ------------------------------------------------------------------------------
def _write_cifar(root, n=4, protocol=2):
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        d = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img{i}_{j}.png".encode() for j in range(n)]}
        with open(root / name, "wb") as fh:
            pickle.dump(d, fh, protocol=protocol)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{k}".encode() for k in range(10)]}, fh, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_pickle_layout(tmp_path, protocol):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    _write_cifar(root, protocol=protocol)
    for path in (tmp_path, root):               # the parent or the batch directory itself
        d = load_dataset(path)
        assert d.X_train.shape == (20, 3, 32, 32) and d.X_test.shape == (4, 3, 32, 32)
        assert d.classes == [f"c{k}" for k in range(10)] and d.n_classes == 10
        # standardized per channel with the training split's statistics
        np.testing.assert_allclose(d.X_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(d.X_train.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with open(root / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)
    # pixel layout: row-major 3 x 32 x 32 (red plane first)
    d = load_dataset(root)
    x0 = raw[b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255.0
    ratio = np.corrcoef(x0.ravel(), d.X_train[0].ravel())[0, 1]
    assert ratio > 0.99
    assert d.y_train[:4].tolist() == raw[b"labels"]


def test_fit_to_input_channels_size_and_standardization():
    """Grey -> RGB replicates, RGB -> grey is luma, a constant image stays constant under the
    resize, and the fitted channels are standardized again on the training split."""
    from deepglass.criticality.data import ImageData, fit_to_input

    rng = np.random.default_rng(3)
    grey = ImageData("g", rng.normal(size=(6, 1, 28, 28)).astype(np.float32), np.arange(6) % 2,
                     rng.normal(size=(2, 1, 28, 28)).astype(np.float32), np.arange(2), ["a", "b"])
    assert fit_to_input(grey, (1, 28, 28)) is grey and fit_to_input(grey, None) is grey
    rgb = fit_to_input(grey, (3, 28, 28))
    assert rgb.input_shape == (3, 28, 28) and "fitted 1x28x28 -> 3x28x28" in rgb.name
    np.testing.assert_allclose(rgb.X_train[:, 0], rgb.X_train[:, 2])
    np.testing.assert_allclose(rgb.X_train[:, 1], (grey.X_train[:, 0] - grey.X_train.mean())
                               / grey.X_train.std(), atol=1e-5)
    small = fit_to_input(grey, (1, 8, 8))
    assert small.X_train.shape == (6, 1, 8, 8) and small.X_test.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(small.X_train.mean(), 0, atol=1e-5)
    np.testing.assert_allclose(small.X_train.std(), 1, atol=1e-4)
    const = ImageData("c", np.stack([np.full((3, 10, 10), v, np.float32) for v in range(4)]),
                      np.zeros(4, np.int64), np.full((1, 3, 10, 10), 2.0, np.float32), np.zeros(1, np.int64))
    const.X_train[:, 1] *= 2
    luma = fit_to_input(const, (1, 5, 7))
    want = (np.arange(4.0) * (0.299 + 2 * 0.587 + 0.114))
    want = (want - want.mean()) / want.std()
    np.testing.assert_allclose(luma.X_train[:, 0], np.broadcast_to(want[:, None, None], (4, 5, 7)), atol=1e-5)
    with pytest.raises(DeepglassError, match="takes 2 channels"):
        fit_to_input(grey, (2, 8, 8))


def test_malformed_cifar_and_missing_paths(tmp_path):
    root = tmp_path / "cifar"
    root.mkdir()
    _write_cifar(root)
    (root / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(DeepglassError) as exc:
        load_dataset(root)
    assert "data_batch_3" in _one_line(exc)
    # a pickle that would run code is refused, not executed
    with open(root / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [print]}, fh)
    with pytest.raises(DeepglassError) as exc:
        load_dataset(root)
    assert "forbidden" in _one_line(exc)
    (root / "data_batch_3").unlink()
    with pytest.raises(DeepglassError) as exc:
        load_dataset(root)
    assert "data_batch_3" in _one_line(exc)
    with pytest.raises(DeepglassError) as exc:
        load_dataset(tmp_path / "nowhere")
    assert "not found" in _one_line(exc)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DeepglassError) as exc:
        load_dataset(f)
    _one_line(exc)
    empty = tmp_path / "empty"
    (empty / "cls").mkdir(parents=True)
    with pytest.raises(DeepglassError) as exc:
        load_dataset(empty)
    assert "neither" in _one_line(exc)


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for j in range(5):
            size = (6, 5) if j else (12, 10)                # one odd size: resized
            Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "L").save(
                tmp_path / c / f"{j}.png")
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    d = load_dataset(tmp_path, test_fraction=0.2)
    assert d.input_shape == (1, 5, 6) and d.classes == ["cat", "dog"]
    assert len(d.X_train) + len(d.X_test) == 10 and len(d.X_test) == 2
    assert sorted(d.y_test.tolist()) == [0, 1]       # stratified split
    # an unreadable file is skipped with a warning, as in --inputs folders (it
    # stopped the run); a folder of nothing readable is one line
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image.*broken.png"):
        d = load_dataset(tmp_path, test_fraction=0.2)
    assert len(d.X_train) + len(d.X_test) == 10
    # a 16-bit image has no fixed pixel range: skipped and named, as --inputs
    # folders do (converted to 8 bits it clipped to nearly all white)
    (tmp_path / "dog" / "broken.png").unlink()
    Image.fromarray(rng.integers(0, 65536, (5, 6)).astype(np.uint16)).save(
        tmp_path / "cat" / "deep.png")
    with Image.open(tmp_path / "cat" / "deep.png") as im:
        assert im.mode.startswith("I")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image.*deep.png.*mode I"):
        d = load_dataset(tmp_path, test_fraction=0.2)
    assert len(d.X_train) + len(d.X_test) == 10
    only = tmp_path / "only"
    only.mkdir()
    (only / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DeepglassError) as exc, pytest.warns(UserWarning):
        load_dataset(only)
    assert "none of its 1 image files could be read" in _one_line(exc)


def test_flat_image_folder_is_one_class(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    root = tmp_path / "photos"
    root.mkdir()
    for j in range(6):
        Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), "RGB").save(root / f"{j}.jpg")
    d = load_dataset(root)
    assert d.input_shape == (3, 7, 9) and d.classes == ["photos"] and d.n_classes == 1
    assert len(d.X_train) + len(d.X_test) == 6
    for f in root.iterdir():
        f.unlink()
    with pytest.raises(DeepglassError, match="nor a folder of images"):
        load_dataset(root)


def test_tensor_data_serve_a_given_network(tmp_path):
    """A folder of .npy volumes (or one tensor file) is data for a given network, read at
    its input shape and used as is, all held out; its observables are the brute-force
    ones of the module on those volumes.  The reference nets, which train on labelled
    images, refuse it in one line."""
    from deepglass.criticality.powerlaw_run import PowerLawConfig, run_powerlaw

    rng = np.random.default_rng(3)
    vols = rng.normal(size=(6, 1, 3, 4, 4)).astype(np.float32)
    root = tmp_path / "vols"
    root.mkdir()
    for k in range(6):
        np.save(root / f"v{k}.npy", vols[k])
    d = load_dataset(root, input_shape=(1, 3, 4, 4), max_test=4, seed=1)
    assert d.name == f"tensors:{root}" and len(d.X_train) == 0 and d.X_test.shape == (4, 1, 3, 4, 4)
    assert d.input_shape == (1, 3, 4, 4) and (d.y_test == -1).all()
    assert all(any(np.array_equal(x, v) for v in vols) for x in d.X_test)   # as is
    np.save(tmp_path / "all.npy", vols)
    np.testing.assert_array_equal(load_dataset(tmp_path / "all.npy", input_shape=(1, 3, 4, 4)).X_test, vols)
    with pytest.raises(DeepglassError) as exc:
        load_dataset(root)
    assert "not the reference nets" in _one_line(exc)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 3))
    net.default_input_shape = (1, 3, 4, 4)
    cfg = PowerLawConfig(nets=["vol"], user_model=True, data=str(root), n_boot=0)
    res = run_powerlaw(cfg, model=net)
    assert res.data["n_test"] == 6 and res.data["n_train"] == 0
    with torch.no_grad():
        bits = (net[1](net[0](torch.from_numpy(vols))) > 0).flatten(1).numpy()
    obs, _ = res.observables["vol"]
    assert obs.layers == ["1"] and obs.n_events == 6
    np.testing.assert_array_equal(obs.unit_counts["1"], bits.sum(0))


def test_packaged_digits_and_subsampling():
    d = load_dataset("digits", max_train=100, max_test=30, seed=3)
    assert d.input_shape == (1, 8, 8) and len(d.X_train) == 100 and len(d.X_test) == 30
    assert d.X_train.dtype == np.float32 and d.n_classes == 10
    with pytest.raises(DeepglassError):
        load_dataset("digits", max_train=0)


# -- reference nets ----------------------------------------------------------------------
def test_reference_nets_shapes_and_layers():
    assert canonical_name("ffn") == "feedforward" and canonical_name("AE") == "autoencoder"
    assert canonical_name("resnet") is None
    x = torch.randn(3, 1, 8, 8)
    widths = {"feedforward": [500, 400, 200, 200], "cnn": [32 * 64, 64 * 16, 64 * 4, 256, 128],
              "autoencoder": [500]}
    for name in REFERENCE_NETS:
        net = build_reference_net(name, (1, 8, 8), 10, seed=1)
        out = net(x)
        assert out.shape == ((3, 10) if name != "autoencoder" else x.shape)
        obs = collect_observables(net, x)
        assert [obs.n_units[l] for l in obs.layers] == widths[name]
    convs = [m for m in build_reference_net("cnn", (3, 32, 32)).modules() if isinstance(m, nn.Conv2d)]
    dense = [m for m in build_reference_net("cnn", (3, 32, 32)).modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 3 and len(dense) == 3
    with pytest.raises(DeepglassError):
        build_reference_net("resnet", (1, 8, 8))


@pytest.mark.parametrize("call,msg", [
    # int(',') of a string's characters; an AttributeError on the data set's name
    (lambda: build_reference_net("cnn", "1,28,28"), r"input_shape must be a non-empty sequence "
                                                    r"of integers >= 1, such as \(1, 28, 28\), "
                                                    r"got '1,28,28'"),
    (lambda: build_reference_net("ff", (1, 8.5, 8)), "input_shape must be a non-empty sequence"),
    (lambda: build_reference_net("ff", 64), "input_shape must be a non-empty sequence"),
    (lambda: train_reference_net(build_reference_net("ff", (1, 8, 8)), "digits", epochs=1),
     r"^data must be an ImageData \(load_dataset\), got str$"),
])
def test_reference_nets_name_a_bad_argument(call, msg):
    with pytest.raises(DeepglassError, match=msg):
        call()


def test_training_resumes_exactly_from_a_checkpoint():
    d = load_dataset("digits", max_train=200, max_test=50)
    assert checkpoint_epochs(5, 2) == [0, 2, 4, 5]
    full = build_reference_net("feedforward", d.input_shape, seed=2)
    marks = []
    saved = {}

    def keep(epoch, model, opt, metrics):
        marks.append(epoch)
        saved[epoch] = {"model": {k: v.clone() for k, v in model.state_dict().items()},
                        "optimizer": __import__("copy").deepcopy(opt.state_dict()), "epoch": epoch}

    hist = train_reference_net(full, d, epochs=3, batch_size=64, checkpoint_every=2,
                               on_checkpoint=keep, seed=5)
    assert marks == [0, 2, 3] and hist["epoch"].tolist() == [1, 2, 3]
    resumed = build_reference_net("feedforward", d.input_shape, seed=99)
    train_reference_net(resumed, d, epochs=3, batch_size=64, checkpoint_every=2,
                        start=saved[2], seed=5)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


# -- the pattern observable: words of random unit subsets ---------------------------------
def test_subset_words_equal_brute_force_count():
    net = _user_net()
    X = torch.randn(300, 5)
    obs = collect_observables(net, X, layers=["1"], batch_size=64, subset_size=4, n_subsets=5,
                              seed=3)
    with torch.no_grad():
        bits = (net[1](net[0](X)) > 0).numpy()
    subs = obs.subset_units["1"]
    assert subs.shape == (5, 4) and all(len(set(r)) == 4 for r in subs.tolist())
    brute = Counter()
    for s, units in enumerate(subs):
        brute.update((s, tuple(row)) for row in bits[:, units])
    assert obs.subset_counts["1"].tolist() == sorted(brute.values(), reverse=True)
    assert obs.subset_counts["1"].sum() == 5 * 300
    back = Observables.from_arrays(obs.arrays())
    np.testing.assert_array_equal(back.subset_counts["1"], obs.subset_counts["1"])
    np.testing.assert_array_equal(back.subset_units["1"], subs)
    # a layer narrower than the subset size is one subset of all its units
    small = collect_observables(net, X, layers=["3"], subset_size=10)
    assert small.subset_units["3"].shape == (1, 6)
    assert small.subset_counts["3"].tolist() == small.pattern_counts["3"].tolist()


class _Prototypes(nn.Module):
    """Inputs are one-hot prototype ids; a fixed random ReLU layer of 200 units maps
    each prototype to its own pattern: patterns recur exactly as prototypes do."""

    def __init__(self, n_proto=40, width=200):
        super().__init__()
        torch.manual_seed(1)
        self.fc, self.relu = nn.Linear(n_proto, width), nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc(x))


def test_pattern_observable_on_a_net_whose_patterns_recur():
    from deepglass.criticality.powerlaw_run import PowerLawConfig, judge_observables

    rng = np.random.default_rng(0)
    n_proto, n_events = 40, 4000
    # Zipf frequencies of the prototypes: the rank/frequency law of the patterns
    p = 1.0 / np.arange(1, n_proto + 1)
    ids = rng.choice(n_proto, size=n_events, p=p / p.sum())
    X = torch.eye(n_proto)[ids]
    net = _Prototypes(n_proto)
    obs = collect_observables(net, X, layers=["relu"], subset_size=10, n_subsets=16)
    # whole-layer patterns: exactly the prototype counts (distinct prototypes,
    # distinct patterns of 200 units)
    proto_counts = np.sort(np.bincount(ids, minlength=n_proto))[::-1]
    np.testing.assert_array_equal(obs.pattern_counts["relu"], proto_counts[proto_counts > 0])
    # subset words: each word's count is the sum of the counts of the prototypes it
    # comes from (brute force over the prototypes' patterns)
    with torch.no_grad():
        proto_bits = (net(torch.eye(n_proto)) > 0).numpy()
    words = Counter()
    for s, units in enumerate(obs.subset_units["relu"]):
        for r in range(n_proto):
            words[(s, tuple(proto_bits[r, units]))] += int(np.sum(ids == r))
    expect = sorted((c for c in words.values() if c), reverse=True)
    assert obs.subset_counts["relu"].tolist() == expect
    cfg = PowerLawConfig(nets=["feedforward"], n_boot=0, n_xmin=10)
    v = judge_observables(obs, cfg, {"net": "proto"}).set_index("observable")
    pat = v.loc["pattern_frequency"]
    assert pat.verdict != "too little data" and pat.n_values == len(expect)
    # too few events: too little data, with a reason instead of a verdict
    few = collect_observables(net, X[:6], layers=["relu"], subset_size=10, n_subsets=1)
    vf = judge_observables(few, cfg, {"net": "proto"}).set_index("observable")
    assert vf.loc["pattern_frequency", "verdict"] == "too little data"
    assert "occur more than once" in vf.loc["pattern_frequency", "reason"]


def test_subset_words_recur_where_whole_layer_patterns_do_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 300), nn.ReLU())
    obs = collect_observables(net, torch.randn(1000, 20), layers=["1"])
    assert obs.pattern_counts["1"].max() == 1            # every whole-layer pattern is unique
    s = obs.summary().iloc[0]
    assert s.recurring_words >= 100 and s.recurring_share > 0.5
    with pytest.raises(DeepglassError, match="subset_size"):
        collect_observables(net, torch.randn(10, 20), layers=["1"], subset_size=40)
