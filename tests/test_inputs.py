"""Input loaders: zoo preprocessing reproduced, ImageNet preprocessing checked
against explicit arithmetic, bad images skipped and reported, one-line errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from deepglass.errors import DeepglassError
from deepglass.inputs import IMAGENET_MEAN, IMAGENET_STD, load_inputs, preprocess_image

Image = pytest.importorskip("PIL.Image")


def test_digits_match_zoo_preprocessing():
    from deepglass.zoo.small import load_digits_data

    data = load_digits_data()
    b = load_inputs("digits", (1, 8, 8))
    assert b.x.shape == (1797, 1, 8, 8) and b.x.dtype == torch.float32
    assert len(b.ids) == 1797 and b.skipped == []
    # held-out images first, then training images, in the zoo's split order
    assert torch.equal(b.x[:360], data.X_test) and torch.equal(b.x[360:], data.X_train)
    assert torch.equal(b.labels[:360], data.y_test)
    assert float(b.x.min()) == 0.0 and float(b.x.max()) == 1.0


def test_subset_prefers_held_out_and_is_seeded():
    a = load_inputs("digits", (1, 8, 8), n=50, seed=3)
    b = load_inputs("digits", (1, 8, 8), n=50, seed=3)
    c = load_inputs("digits", (1, 8, 8), n=50, seed=4)
    assert a.ids == b.ids and torch.equal(a.x, b.x) and a.ids != c.ids
    assert all(i.startswith("digits:test:") for i in a.ids) and len(set(a.ids)) == 50
    big = load_inputs("digits", (1, 8, 8), n=400)
    assert sum(i.startswith("digits:test:") for i in big.ids) == 360
    flat = load_inputs("digits", (64,), n=4, seed=3)
    assert torch.equal(flat.x, load_inputs("digits", (1, 8, 8), n=4, seed=3).x.reshape(4, 64))


def test_mnist_shape_and_range():
    b = load_inputs("mnist", (1, 28, 28), n=7)
    assert b.x.shape == (7, 1, 28, 28) and b.labels.shape == (7,)
    assert 0.0 <= float(b.x.min()) and float(b.x.max()) <= 1.0


@pytest.mark.parametrize("spec,shape", [("digits", (3, 224, 224)), ("mnist", (1, 8, 8)),
                                        ("skimage", (64,)), ("sklearn-images", (2, 32, 32))])
def test_shape_the_source_cannot_serve(spec, shape):
    with pytest.raises(DeepglassError) as e:
        load_inputs(spec, shape)
    assert "\n" not in str(e.value)


def test_a_channels_last_net_is_told_how_to_get_images():
    """A TensorFlow export takes (H, W, C); the message only said (1|3, H, W)."""
    for spec in ("skimage", "sklearn-images"):
        with pytest.raises(DeepglassError, match=r"takes \(32, 32, 3\), channels last .* an "
                                                 r"\(N, H, W, C\) array in a \.npy"):
            load_inputs(spec, (32, 32, 3))


def test_unknown_name_and_missing_path(tmp_path):
    for spec in ("imagenet-please", str(tmp_path / "nothing_here")):
        with pytest.raises(DeepglassError) as e:
            load_inputs(spec, (3, 224, 224))
        assert "\n" not in str(e.value) and "no such file" in str(e.value)
    with pytest.raises(DeepglassError):
        load_inputs("digits", (1, 8, 8), n=0)


def test_empty_names_batches_and_bad_preprocessing_are_refused(tmp_path, monkeypatch):
    # "" was Path("."): every tensor file under the working folder, recursively
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(DeepglassError, match="an empty name"):
        load_inputs("", (1, 8, 8))
    # a file of 0 samples: an empty batch reached the commands (an IndexError in `active`)
    np.save(tmp_path / "none.npy", np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(DeepglassError, match=r"none.npy: no inputs \(a batch of 0\)"):
        load_inputs(tmp_path / "none.npy", (1, 8, 8))
    with pytest.raises(DeepglassError, match="input_shape must be a sequence of integers"):
        load_inputs("digits", (1, 8.5, 8))        # was truncated to 8
    with pytest.raises(DeepglassError, match="finite values"):
        load_inputs("sklearn-images", (3, 32, 32), n=1, std=(float("nan"),) * 3)
    with pytest.raises(DeepglassError, match="must be a PIL image"):
        preprocess_image(np.zeros((8, 8, 3), np.uint8), (3, 8, 8))


def test_preprocess_constant_colour_and_centre_crop():
    # a constant image: every output pixel is (c/255 - mean) / std exactly
    rgb = (200, 30, 90)
    out = preprocess_image(Image.new("RGB", (400, 300), rgb), (3, 224, 224))
    want = (np.array(rgb) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert out.shape == (3, 224, 224)
    np.testing.assert_allclose(out.mean((1, 2)), want, atol=1e-5)
    np.testing.assert_allclose(out.std((1, 2)), 0.0, atol=1e-5)
    # a 256x256 image needs no resize: the crop is the central 224x224 block
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    out = preprocess_image(Image.fromarray(a), (3, 224, 224), mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(out, a[16:240, 16:240].transpose(2, 0, 1) / 255.0, atol=1e-6)
    # the shorter side becomes 256 (then the crop), whatever the aspect ratio
    tall = np.zeros((512, 256, 3), np.uint8)
    tall[:256] = 255  # top half white: the central crop straddles the edge at row 128 of 256
    out = preprocess_image(Image.fromarray(tall), (3, 224, 224), mean=(0, 0, 0), std=(1, 1, 1))
    assert out[0, :100].min() == 1.0 and out[0, 125:].max() == 0.0


def test_colour_conversions():
    grey = Image.fromarray(np.full((300, 300), 77, np.uint8))
    out = preprocess_image(grey, (3, 227, 227), mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(out, 77 / 255.0, atol=1e-6)  # grey replicated
    colour = Image.new("RGB", (300, 300), (255, 0, 0))
    out = preprocess_image(colour, (1, 28, 28))  # 1-channel: luma, no normalization
    np.testing.assert_allclose(out, round(0.299 * 255) / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="mode F"):
        preprocess_image(Image.new("F", (300, 300), 0.5), (3, 224, 224))


def _imagenette(tmp_path):
    root = tmp_path / "imgs"
    (root / "n02_dog").mkdir(parents=True)
    (root / "n01_fish").mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(root / "n01_fish" / "a.JPEG")
    Image.fromarray(rng.integers(0, 256, (260, 260), dtype=np.uint8)).save(root / "n01_fish" / "grey.png")
    Image.new("CMYK", (280, 300), (10, 200, 30, 0)).save(root / "n02_dog" / "cmyk.jpg")
    (root / "n02_dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("F", (256, 256), 0.25).save(root / "n02_dog" / "float.tif")
    (root / "n02_dog" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_skips_bad_files(tmp_path):
    root = _imagenette(tmp_path)
    with pytest.warns(UserWarning, match="skipped 2"):
        b = load_inputs(root, (3, 224, 224))
    assert b.ids == ["n01_fish/a.JPEG", "n01_fish/grey.png", "n02_dog/cmyk.jpg"]
    assert b.classes == ["n01_fish", "n02_dog"] and b.labels.tolist() == [0, 0, 1]
    assert {s[0] for s in b.skipped} == {"n02_dog/broken.jpg", "n02_dog/float.tif"}
    assert b.x.shape == (3, 3, 224, 224) and torch.isfinite(b.x).all()
    # n=1 with a seed: a readable image is found even if a bad one is drawn first
    for seed in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = load_inputs(root, (3, 224, 224), n=1, seed=seed)
        assert len(one) == 1 and one.ids[0] in b.ids
    # more than the folder's three readable images: all of them, and a warning that says so
    with pytest.warns(UserWarning) as caught:
        more = load_inputs(root, (3, 224, 224), n=10)
    said = [str(w.message) for w in caught]
    assert any("skipped 2" in m for m in said), said
    assert any("3 input(s), fewer than the 10 asked for" in m for m in said), said
    assert all(w.filename == __file__ for w in caught)     # the caller's line, not ours
    assert more.ids == b.ids


def test_flat_folder_has_no_labels(tmp_path):
    Image.new("RGB", (300, 300), (1, 2, 3)).save(tmp_path / "x.png")
    b = load_inputs(tmp_path, (3, 224, 224))
    assert b.labels is None and b.classes is None and b.ids == ["x.png"]
    with pytest.raises(DeepglassError, match="no readable image"), pytest.warns(UserWarning):
        (tmp_path / "x.png").write_bytes(b"garbage")
        load_inputs(tmp_path, (3, 224, 224))


def test_tensor_files(tmp_path):
    x = torch.randn(6, 1, 8, 8)
    np.save(tmp_path / "x.npy", x.numpy())
    torch.save({"x": x, "labels": torch.arange(6)}, tmp_path / "x.pt")
    a = load_inputs(tmp_path / "x.npy", (1, 8, 8))
    b = load_inputs(str(tmp_path / "x.pt"), (1, 8, 8), n=3, seed=1)
    assert torch.equal(a.x, x) and a.labels is None and a.ids[2] == "x.npy:2"
    assert len(b) == 3 and torch.equal(b.x, x[b.labels])
    assert torch.equal(load_inputs(x[0], (1, 8, 8)).x, x[:1])  # one sample gains a batch dim
    with pytest.raises(DeepglassError, match="does not match"):
        load_inputs(tmp_path / "x.npy", (1, 28, 28))
    (tmp_path / "bad.npy").write_bytes(b"nope")
    with pytest.raises(DeepglassError, match="cannot read"):
        load_inputs(tmp_path / "bad.npy", (1, 8, 8))


def test_folder_of_tensor_files(tmp_path):
    """A folder of .npy/.pt files (volumes, any input that is not an image): one input
    or a batch per file, ids the relative paths, labels from class folders or the files,
    mis-shaped files skipped with a warning, seeded subsets, and images and tensors
    not mixed."""
    vol = torch.randn(5, 1, 4, 6, 6)          # 3D inputs, which no image loader serves
    root = tmp_path / "vols"
    for k, c in enumerate(("a", "a", "b")):
        (root / c).mkdir(parents=True, exist_ok=True)
        np.save(root / c / f"v{k}.npy", vol[k].numpy())
    torch.save(vol[3:], root / "b" / "pair.pt")             # a batch of two in one file
    b = load_inputs(root, (1, 4, 6, 6))
    assert b.ids == ["a/v0.npy", "a/v1.npy", "b/pair.pt:0", "b/pair.pt:1", "b/v2.npy"]
    assert torch.equal(b.x, vol[[0, 1, 3, 4, 2]])
    assert b.classes == ["a", "b"] and b.labels.tolist() == [0, 0, 1, 1, 1]
    one = load_inputs(root, (1, 4, 6, 6), n=2, seed=5)
    assert one.ids == load_inputs(root, (1, 4, 6, 6), n=2, seed=5).ids and len(one) == 2
    assert all(torch.equal(one.x[i], b.x[b.ids.index(id_)]) for i, id_ in enumerate(one.ids))
    # flat folder: the files' own labels when every file has them
    flat = tmp_path / "flat"
    flat.mkdir()
    torch.save({"x": vol[:2], "labels": torch.tensor([7, 8])}, flat / "p.pt")
    np.savez(flat / "q.npz", x=vol[2:3].numpy(), labels=np.array([9]))
    f = load_inputs(flat, (1, 4, 6, 6))
    assert f.labels.tolist() == [7, 8, 9] and f.classes is None and f.ids == ["p.pt:0", "p.pt:1", "q.npz"]
    # a mis-shaped file is skipped and named; none readable is one line
    np.save(flat / "wrong.npy", np.zeros((1, 4, 6, 5), np.float32))
    with pytest.warns(UserWarning, match=r"skipped 1 .*wrong\.npy"):
        g = load_inputs(flat, (1, 4, 6, 6))
    assert g.skipped[0][0] == "wrong.npy" and len(g) == 3
    with pytest.raises(DeepglassError, match=r"no readable tensor file .* does not match") as e:
        load_inputs(flat, (2, 4, 6, 6))
    assert "\n" not in str(e.value)
    Image.new("RGB", (8, 8)).save(flat / "img.png")
    with pytest.raises(DeepglassError, match="both image files"):
        load_inputs(flat, (1, 4, 6, 6))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeepglassError, match="no image files .* nor tensor files"):
        load_inputs(empty, (1, 4, 6, 6))


def test_packaged_photographs():
    pytest.importorskip("skimage")
    s = load_inputs("skimage", (3, 224, 224), n=4, seed=0)
    assert s.x.shape == (4, 3, 224, 224) and all(i.startswith("skimage:") for i in s.ids)
    k = load_inputs("sklearn-images", (3, 227, 227))
    assert k.ids == ["sklearn:china.jpg", "sklearn:flower.jpg"] and k.x.shape == (2, 3, 227, 227)
    # normalized ImageNet statistics: natural photographs land around 0 with unit scale
    assert abs(float(k.x.mean())) < 1.0 and 0.3 < float(k.x.std()) < 2.0


@pytest.mark.parametrize("labels,match", [
    (np.array(["dog", "cat", "dog"]), r"labels must be integer class indices, got <U3 values "
                                      r"\(e\.g\. \['dog', 'cat'\]\)"),
    (np.array([0.5, 1.0, 2.0]), r"got fractions \(e\.g\. \[0\.5\]\)")])
def test_labels_that_are_no_class_indices_are_refused_in_one_line(tmp_path, labels, match):
    """String labels crashed deep inside (a TypeError); fractions were
    truncated silently (0.5 became class 0)."""
    np.savez(tmp_path / "s.npz", x=np.zeros((3, 1, 8), np.float32), labels=labels)
    with pytest.raises(DeepglassError, match=match):
        load_inputs(str(tmp_path / "s.npz"), (1, 8))
    np.savez(tmp_path / "t.npz", x=np.zeros((3, 1, 8), np.float32), labels=np.array([2.0, 0, 1]))
    assert load_inputs(str(tmp_path / "t.npz"), (1, 8)).labels.tolist() == [2, 0, 1]


def test_signals_without_their_channel_axis_are_refused_saying_how_to_add_it(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((3, 16), np.float32))      # 3 waveforms, no channel
    with pytest.raises(DeepglassError, match=r"one channel: add its axis "
                                             r"\(np\.expand_dims\(x, 1\) has shape \(3, 1, 16\)\)"):
        load_inputs(str(tmp_path / "w.npy"), (1, 16))
    np.save(tmp_path / "w.npy", np.zeros((3, 1, 16), np.float32))
    assert load_inputs(str(tmp_path / "w.npy"), (1, 16)).x.shape == (3, 1, 16)
    np.save(tmp_path / "w.npy", np.zeros(16, np.float32))             # one waveform
    with pytest.raises(DeepglassError, match=r"\(np\.expand_dims\(x, 0\) has shape \(1, 16\)\)"):
        load_inputs(str(tmp_path / "w.npy"), (1, 16))


def test_wav_files_are_waveforms_scaled_to_full_scale_and_fitted(tmp_path):
    """A folder of .wav files (class sub-folders): 16-bit PCM by 32768, 8-bit
    around 128, float as stored; stereo averaged for a 1-channel net, mono
    repeated for 2; the first L samples, zero-padded (they were skipped in a
    folder, silently where .npy files sat beside them, and refused alone)."""
    from scipy.io import wavfile

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    wavfile.write(tmp_path / "a" / "pcm16.wav", 8000, np.array([16384, -8192, 32767] * 4, np.int16))
    stereo = np.stack([np.linspace(-1, 1, 6), np.linspace(1, 0, 6)], 1).astype(np.float32)
    wavfile.write(tmp_path / "a" / "stereo.wav", 8000, stereo)
    wavfile.write(tmp_path / "b" / "pcm8.wav", 8000, np.array([128, 192, 0, 255] * 3, np.uint8))
    np.save(tmp_path / "b" / "beside.npy", np.ones((1, 8), np.float32))
    batch = load_inputs(str(tmp_path), (1, 8))
    assert batch.ids == ["a/pcm16.wav", "a/stereo.wav", "b/beside.npy", "b/pcm8.wav"]
    assert batch.labels.tolist() == [0, 0, 1, 1] and not batch.skipped
    x = batch.x.numpy()
    np.testing.assert_allclose(x[0, 0], [0.5, -0.25, 32767 / 32768] * 2 + [0.5, -0.25])
    np.testing.assert_allclose(x[1, 0], np.r_[stereo.mean(1), 0, 0], atol=1e-7)
    np.testing.assert_allclose(x[3, 0], [0, 0.5, -1, 127 / 128] * 2)
    two = load_inputs(str(tmp_path / "a" / "pcm16.wav"), (2, 4)).x
    assert two.shape == (1, 2, 4) and torch.equal(two[0, 0], two[0, 1])
    assert load_inputs(str(tmp_path / "a" / "pcm16.wav"), (5,)).x.shape == (1, 5)
    with pytest.raises(DeepglassError, match="2 channels for a network of 3 input channels"):
        load_inputs(str(tmp_path / "a" / "stereo.wav"), (3, 8))


def test_a_run_directory_inside_an_input_folder_is_not_read_as_inputs(tmp_path):
    """A run written beside the samples (``--out samples/run``) made the folder
    hold 'both image files and tensor files' (its figures)."""
    for i in range(2):
        np.save(tmp_path / f"s{i}.npy", np.zeros((1, 1, 16), np.float32))
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.jsonl").write_text("")
    (run / "figure.png").write_bytes(b"\x89PNG")
    np.save(run / "gauge.npy", np.zeros(5))
    assert load_inputs(str(tmp_path), (1, 16)).x.shape == (2, 1, 16)
