"""`edgekit.data`: every --data spec read from real files made here, and every bad input's one-line error.

No test reaches the network: sockets are refused for the whole module, so a built-in that would download
fails the way it does on a machine without one."""

from __future__ import annotations

import gzip
import math
import socket
import subprocess
import sys

import datagen
import numpy as np
import pytest

from edgekit import data
from edgekit.errors import UsageError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in the data tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def usage_error(spec: str, input_shape=None) -> str:
    with pytest.raises(UsageError) as caught:
        data.load(spec, input_shape)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    return message


def nearest_mean_accuracy(dataset: data.Dataset, view=lambda x: x) -> float:
    """A model-free check that the classes are learnable and the labels line up with the inputs."""
    flat = view(dataset.x_train).reshape(len(dataset.x_train), -1)
    means = np.stack([flat[dataset.y_train == c].mean(axis=0) for c in range(dataset.num_classes)])
    test = view(dataset.x_test).reshape(len(dataset.x_test), -1)
    predicted = np.argmin(((test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    return float(np.mean(predicted == dataset.y_test))


# ---- built-ins and synthetic ----

def test_import_does_not_load_tensorflow():
    code = ("import sys, edgekit.data as d; d.load('synthetic:8:2'); d.load('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_digits_alias_and_builtin_are_the_same_split():
    plain, builtin = data.load("digits"), data.load("builtin:digits")
    assert plain.name == builtin.name == "digits"
    assert plain.fingerprint() == builtin.fingerprint()
    assert plain.sizes() == {"train": 1257, "val": 180, "test": 360}
    assert plain.input_shape == (8, 8, 1) and plain.labels == tuple("0123456789")
    described = plain.describe()
    assert described["preprocessing"] == {"scale": 1 / 16, "offset": 0.0}
    assert described["skipped"] == 0


def test_digits_reshaped_to_the_model_input():
    assert data.load("builtin:digits", (64,)).input_shape == (64,)


def test_load_for_model_reads_the_input_shape_of_a_model_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    tensor = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 16, 4, 1]) for name in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", tensor[:1], tensor[1:])
    onnx.save(helper.make_model(graph), tmp_path / "identity.onnx")
    assert data.load_for_model("digits", tmp_path / "identity.onnx").input_shape == (16, 4, 1)
    assert data.load_for_model("digits", (64,)).x_test.shape[1:] == (64,)


def test_synthetic_is_seeded_learnable_and_sized():
    first, second = data.load("synthetic:49x10x1:12:600"), data.load("synthetic:49x10x1:12:600")
    assert first.fingerprint() == second.fingerprint()
    assert first.input_shape == (49, 10, 1) and first.num_classes == 12
    assert first.sizes() == {"train": 420, "val": 60, "test": 120}
    assert nearest_mean_accuracy(first) > 0.95
    assert sum(data.load("synthetic:640:2").sizes().values()) == 200  # 100 per class by default


@pytest.mark.parametrize("spec", ["synthetic:10x:3", "synthetic:8", "synthetic:8:two", "synthetic:8:3:1:2"])
def test_malformed_synthetic_spec(spec):
    assert usage_error(spec) == (f"bad data spec '{spec}': expected synthetic:SHAPE:CLASSES[:COUNT], "
                                 "e.g. synthetic:49x10x1:12:600")


def test_synthetic_with_one_class():
    assert usage_error("synthetic:8:1") == (
        "bad data spec 'synthetic:8:1': SHAPE sizes must be >= 1, CLASSES >= 2 and COUNT >= CLASSES; "
        "expected synthetic:SHAPE:CLASSES[:COUNT], e.g. synthetic:49x10x1:12:600")


def test_unknown_builtin_suggests_the_closest():
    assert usage_error("builtin:mnsit") == (
        "unknown built-in dataset 'builtin:mnsit'; did you mean 'builtin:mnist'? "
        "built-ins: cifar10, digits, fashion_mnist, mnist, speech_commands")


@pytest.mark.parametrize("name, missing", [
    ("mnist", "mnist.npz"),
    ("cifar10", "cifar-10-batches-py.tar.gz"),
])
def test_keras_builtin_without_network_or_cache_says_where_to_put_the_file(name, missing, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    url = {"mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
           "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}[name]
    where = tmp_path / "datasets" / missing
    assert usage_error(f"builtin:{name}") == (
        f"builtin:{name}: could not download {url}, and the Keras cache has no {where}; without network "
        f"access, download it elsewhere and save it as {where}")


def test_fashion_mnist_without_network_names_every_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    where = tmp_path / "datasets" / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    assert usage_error("builtin:fashion_mnist") == (
        "builtin:fashion_mnist: could not download https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
        f"train-labels-idx1-ubyte.gz, and the Keras cache has no {where}; without network access, download it "
        f"elsewhere and save it as {where} (and 3 more from "
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/)")


def test_keras_builtin_reads_the_cache_offline(tmp_path, monkeypatch):
    """Fashion-MNIST's files carry no hash in tf_keras, so small stand-ins in the cache are read as is."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    for prefix, count in (("train", 120), ("t10k", 40)):
        x, y = datagen.image_arrays(count, (28, 28), 10, seed=count)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(8) + y.astype(np.uint8).tobytes()))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(16) + x.tobytes()))
    dataset = data.load("builtin:fashion_mnist", (784,))
    assert dataset.sizes() == {"train": 105, "val": 15, "test": 40}  # Keras's test split; 1/8 of train for val
    assert dataset.input_shape == (784,) and dataset.labels[0] == "T-shirt/top"
    assert dataset.preprocessing == {"scale": 1 / 255, "offset": 0.0}
    assert 0 <= dataset.x_train.min() and dataset.x_train.max() <= 1
    assert data.load("builtin:fashion_mnist").input_shape == (28, 28, 1)


def test_speech_commands_without_network_or_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "speech_commands_v0.02"
    assert usage_error("builtin:speech_commands") == (
        "builtin:speech_commands: could not download http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
        f", and the Keras cache has no {folder / 'testing_list.txt'}; without network access, download it elsewhere "
        f"and unpack it into {folder}")


def test_speech_commands_from_the_unpacked_archive(tmp_path, monkeypatch):
    """A miniature of the archive's layout: word folders, background noise and the official split lists."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "speech_commands_v0.02"
    datagen.write_audio_folder(folder, per_class=10, words=(("yes", 2000.0), ("no", 500.0), ("marvin", 1000.0)))
    rng = np.random.default_rng(0)
    datagen.write_wav(folder / "_background_noise_" / "white_noise.wav", rng.normal(0, 0.1, 20 * 16_000 + 500))
    (folder / "validation_list.txt").write_text("yes/000.wav\nno/000.wav\nmarvin/000.wav\n")
    (folder / "testing_list.txt").write_text("yes/001.wav\nno/001.wav\nmarvin/001.wav\nmarvin/002.wav\n")
    dataset = data.load("builtin:speech_commands")
    assert dataset.labels == ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
                              "_silence_", "_unknown_")
    assert dataset.input_shape == (49, 10, 1)
    # 20 whole seconds of noise: 2 to test, 2 to validation, 16 to train
    assert dataset.sizes() == {"train": 23 + 16, "val": 3 + 2, "test": 4 + 2}
    assert np.bincount(dataset.y_test, minlength=12).tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 2]


# ---- .npz ----

@pytest.fixture
def mnist_like(tmp_path):
    x, y = datagen.image_arrays(300, (28, 28), 10)
    return datagen.write_npz(tmp_path / "mnist.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:],
                             y_test=y[240:])


def test_npz_with_a_test_split(mnist_like):
    dataset = data.load(str(mnist_like), (784,))
    assert dataset.sizes() == {"train": 210, "val": 30, "test": 60}
    assert dataset.input_shape == (784,) and dataset.x_train.dtype == np.float32
    assert dataset.preprocessing == {"scale": 1 / 255, "offset": 0.0}
    assert nearest_mean_accuracy(dataset) > 0.9


def test_npz_images_resized_to_the_model_input(mnist_like):
    dataset = data.load(str(mnist_like), (32, 32, 3))
    assert dataset.input_shape == (32, 32, 3)
    assert dataset.preprocessing["resize"] == {"size": [32, 32], "method": "bilinear, antialiased"}
    assert dataset.preprocessing["channels"] == 3
    assert nearest_mean_accuracy(dataset) > 0.9


def test_npz_without_test_is_split_with_string_labels(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    y = np.array(["walk", "run", "idle", "sit"] * 25)
    dataset = data.load(str(datagen.write_npz(tmp_path / "s.npz", x_train=x, y_train=y)))
    assert dataset.labels == ("idle", "run", "sit", "walk")
    assert dataset.sizes() == {"train": 70, "val": 10, "test": 20}
    assert dataset.preprocessing == {}
    assert set(np.bincount(dataset.y_test)) == {5}


def test_npz_with_every_split_is_used_as_given(tmp_path):
    x, y = datagen.image_arrays(60, (4, 4), 3)
    path = datagen.write_npz(tmp_path / "all.npz", x_train=x[:30], y_train=y[:30] + 1, x_val=x[30:40],
                             y_val=y[30:40] + 1, x_test=x[40:], y_test=y[40:] + 1)
    dataset = data.load(str(path))
    assert dataset.sizes() == {"train": 30, "val": 10, "test": 20}
    assert dataset.labels == ("1", "2", "3")  # integer labels keep their names; indices count from 0
    np.testing.assert_array_equal(dataset.y_test, y[40:])


def test_integer_labels_sort_as_numbers(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 3))
    y = np.array([2, 10, 9] * 20)
    dataset = data.load(str(datagen.write_npz(tmp_path / "n.npz", x_train=x, y_train=y)))
    assert dataset.labels == ("2", "9", "10")


# ---- .csv ----

SENSORS = ("walk", "run", "idle")
HEADER = [f"f{i}" for i in range(6)]


def test_csv_with_string_labels_is_standardized(tmp_path):
    path = datagen.write_csv(tmp_path / "s.csv", datagen.sensor_rows(120, SENSORS, 6), [*HEADER, "label"])
    dataset = data.load(str(path))
    assert dataset.labels == ("idle", "run", "walk") and dataset.input_shape == (6,)
    assert dataset.sizes() == {"train": 84, "val": 12, "test": 24}
    np.testing.assert_allclose(dataset.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(dataset.x_train.std(axis=0), 1, atol=1e-3)
    assert len(dataset.preprocessing["mean"]) == len(dataset.preprocessing["std"]) == 6
    assert nearest_mean_accuracy(dataset) > 0.8


def test_csv_label_by_name_and_reshaped(tmp_path):
    rows = [[row[-1], *row[:-1]] for row in datagen.sensor_rows(120, SENSORS, 6)]
    path = datagen.write_csv(tmp_path / "s.csv", rows, ["activity", *HEADER])
    dataset = data.load(f"{path}#label=activity", (3, 2, 1))
    assert dataset.input_shape == (3, 2, 1) and dataset.labels == ("idle", "run", "walk")


def test_csv_label_by_index_without_a_header(tmp_path):
    rows = [[i % 2, *row[:-1]] for i, row in enumerate(datagen.sensor_rows(60, SENSORS, 4))]
    path = datagen.write_csv(tmp_path / "n.csv", rows, None)
    dataset = data.load(f"{path}#label=0")
    assert sum(dataset.sizes().values()) == 60 and dataset.labels == ("0", "1")


def test_csv_of_mnist_digits_fits_the_mlp_and_the_cnn(tmp_path):
    x, y = datagen.image_arrays(200, (28, 28), 10)
    rows = [[int(label), *pixels] for label, pixels in zip(y, x.reshape(200, -1).tolist(), strict=True)]
    path = datagen.write_csv(tmp_path / "mnist.csv", rows, ["label", *(f"pixel{i}" for i in range(784))])
    assert data.load(str(path), (784,)).input_shape == (784,)
    assert nearest_mean_accuracy(data.load(str(path), (28, 28, 1))) > 0.9


# ---- image and audio folders ----

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return datagen.write_image_folder(tmp_path_factory.mktemp("images") / "pets", per_class=12)


def test_image_folder_resized_to_the_model_input(image_folder):
    dataset = data.load(str(image_folder), (16, 16, 3))
    assert dataset.labels == ("cat", "dog") and dataset.input_shape == (16, 16, 3)
    assert dataset.sizes() == {"train": 16, "val": 3, "test": 5}
    assert dataset.preprocessing == {"scale": 1 / 255, "offset": 0.0, "channels": 3,
                                     "resize": {"size": [16, 16], "method": "bilinear, antialiased"}}
    assert nearest_mean_accuracy(dataset) == 1.0
    gray = data.load(str(image_folder), (8, 8, 1))
    assert gray.input_shape == (8, 8, 1) and nearest_mean_accuracy(gray) == 1.0


def test_image_folder_without_a_shape_takes_the_most_common_size(image_folder):
    assert data.load(str(image_folder)).input_shape == (12, 10, 3)


def test_a_few_undecodable_images_are_skipped_and_counted(tmp_path):
    folder = datagen.write_image_folder(tmp_path / "pets", per_class=6)
    (folder / "dog" / "broken.png").write_bytes(b"not an image")
    dataset = data.load(str(folder), (8, 8, 1))
    assert dataset.skipped == 1 and dataset.describe()["skipped"] == 1
    assert sum(dataset.sizes().values()) == 12


def test_mostly_undecodable_images(tmp_path):
    folder = datagen.write_image_folder(tmp_path / "pets", per_class=1)
    for name in ("a", "b", "c"):
        (folder / "cat" / f"{name}.jpg").write_bytes(b"\xff\xd8 truncated")
    assert usage_error(str(folder)) == (
        f"{folder}: 3 of 5 images could not be decoded (first: cat/a.jpg: Unknown image file format. "
        "One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.)")


def test_image_folder_with_one_class(tmp_path):
    folder = datagen.write_image_folder(tmp_path / "pets", per_class=3, classes=("cat",))
    assert usage_error(str(folder)) == (
        f"{folder}: only one class folder ('cat'); a classifier needs at least 2 class subfolders")


def test_folder_without_class_subfolders(tmp_path):
    datagen.write_png(tmp_path / "flat" / "a.png", np.zeros((4, 4, 1)))
    assert usage_error(str(tmp_path / "flat")) == (
        f"{tmp_path / 'flat'}: no class subfolders; put each class's images or .wav clips in a subfolder named "
        "after the class")


def test_class_folder_with_no_images(tmp_path):
    folder = datagen.write_image_folder(tmp_path / "pets", per_class=3)
    (folder / "empty").mkdir()
    assert usage_error(str(folder)) == f"{folder}: class folder 'empty' has no images"


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory):
    return datagen.write_audio_folder(tmp_path_factory.mktemp("audio") / "words", per_class=12)


def test_audio_folder_gives_kws_mfcc_features(audio_folder):
    dataset = data.load(str(audio_folder))
    assert dataset.labels == ("high", "low") and dataset.input_shape == (49, 10, 1)
    assert dataset.sizes() == {"train": 16, "val": 3, "test": 5}
    features = dataset.preprocessing["features"]
    assert (features["window_samples"], features["stride_samples"], features["mel_bins"],
            features["mfccs"]) == (480, 320, 40, 10)
    # the first 0.5 s: the shortest clips are zero-padded after 0.6 s, and silence dominates a distance
    assert nearest_mean_accuracy(dataset, view=lambda x: x[:, :25]) == 1.0
    assert data.load(str(audio_folder), (490,)).input_shape == (490,)


def test_audio_is_resampled_to_16_khz(tmp_path):
    """The same tone stored at 8 kHz and at 16 kHz gives the same features after resampling."""
    from edgekit.data import audio

    for rate in (8_000, 16_000):
        datagen.write_wav(tmp_path / f"{rate}.wav", datagen.tone(1000, 1.0, rate), rate)
    low, high = (audio.mfcc(audio.read_clip(tmp_path / f"{rate}.wav")[np.newaxis]) for rate in (8_000, 16_000))
    assert low.shape == (1, 49, 10, 1)
    np.testing.assert_allclose(low[0, 2:-2], high[0, 2:-2], atol=0.05 * np.abs(high).max())


def test_audio_shape_that_cannot_fit(audio_folder):
    assert usage_error(str(audio_folder), (32, 32, 3)) == (
        f"{audio_folder}: samples of shape 49x10x1 (490 values) cannot fit the model input 32x32x3 (3072 values)")


def test_undecodable_clip_is_skipped(tmp_path):
    folder = datagen.write_audio_folder(tmp_path / "words", per_class=6)
    (folder / "low" / "noise.wav").write_bytes(b"RIFF....WAVEjunk")
    assert data.load(str(folder)).skipped == 1


# ---- bad input: one line naming the file and what is wrong ----

def test_missing_file(tmp_path):
    assert usage_error(str(tmp_path / "nope.npz")) == (
        f"{tmp_path / 'nope.npz'}: no such file or folder; a data spec is builtin:NAME, "
        "synthetic:SHAPE:CLASSES[:COUNT], FILE.npz, FILE.csv[#label=COLUMN], or a class FOLDER")


def test_a_misspelt_builtin_name_suggests_it():
    assert usage_error("mnsit").startswith("mnsit: no such file or folder; did you mean 'builtin:mnist'? ")


def test_unsupported_file(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"")
    assert usage_error(str(tmp_path / "x.parquet")).startswith(
        f"{tmp_path / 'x.parquet'}: unsupported data file '.parquet'; a data spec is builtin:NAME")


def test_csv_with_a_non_numeric_feature(tmp_path):
    rows = datagen.sensor_rows(30, SENSORS, 3)
    rows[4][1] = "high"
    path = datagen.write_csv(tmp_path / "s.csv", rows, ["a", "b", "c", "label"])
    assert usage_error(str(path)) == f"{path}: line 6, column 'b': 'high' is not a number (features must be numeric)"


def test_csv_without_the_label_column(tmp_path):
    path = datagen.write_csv(tmp_path / "s.csv", datagen.sensor_rows(30, SENSORS, 3), ["a", "b", "c", "class"])
    assert usage_error(str(path)) == (
        f"{path}: no label column 'label' (columns: a, b, c, class); name it with s.csv#label=NAME or #label=INDEX")
    assert usage_error(f"{path}#label=9") == (
        f"{path}: label column 9 is out of range; the file has 4 columns (0 to 3)")


def test_csv_with_a_short_row(tmp_path):
    rows = datagen.sensor_rows(30, SENSORS, 3)
    rows[2] = rows[2][1:]
    path = datagen.write_csv(tmp_path / "s.csv", rows, ["a", "b", "c", "label"])
    assert usage_error(str(path)) == f"{path}: line 4 has 3 fields; the header has 4"


def test_csv_with_nan(tmp_path):
    rows = datagen.sensor_rows(30, SENSORS, 3)
    rows[7][2] = "nan"
    path = datagen.write_csv(tmp_path / "s.csv", rows, ["a", "b", "c", "label"])
    assert usage_error(str(path)) == (
        f"{path}: line 9, column 'c': nan is not a finite number (1 rows hold NaN or infinite values)")


def test_unknown_csv_option(tmp_path):
    path = datagen.write_csv(tmp_path / "s.csv", datagen.sensor_rows(30, SENSORS, 3), ["a", "b", "c", "label"])
    assert usage_error(f"{path}#column=a") == (
        f"{path}#column=a: unknown option '#column=a'; a .csv takes #label=NAME or #label=INDEX")


def test_npz_with_infinite_values(tmp_path):
    x = np.ones((40, 3), dtype=np.float32)
    x[5, 1] = np.inf
    path = datagen.write_npz(tmp_path / "inf.npz", x_train=x, y_train=np.arange(40) % 2)
    assert usage_error(str(path)) == (
        f"{path}: the data holds NaN or infinite values in 1 samples (the first is sample 5)")


def test_npz_without_labels(tmp_path):
    path = datagen.write_npz(tmp_path / "x.npz", x_train=np.ones((4, 2)), x_test=np.ones((2, 2)))
    assert usage_error(str(path)) == (
        f"{path}: no array 'y_train' (found: x_test, x_train); an .npz needs x_train and y_train, and optionally "
        "x_val/y_val and x_test/y_test")


def test_npz_test_label_outside_the_classes(tmp_path):
    x = np.ones((40, 2))
    path = datagen.write_npz(tmp_path / "l.npz", x_train=x, y_train=np.arange(40) % 2, x_test=x[:4],
                             y_test=np.array([0, 1, 7, 0]))
    assert usage_error(str(path)) == f"{path}: y_test holds label '7', which is not a training class (0, 1)"


def test_npz_with_one_hot_labels(tmp_path):
    path = datagen.write_npz(tmp_path / "h.npz", x_train=np.ones((10, 2)), y_train=np.eye(2)[np.arange(10) % 2])
    assert usage_error(str(path)) == (
        f"{path}: the labels has shape 10x2; give one label per sample (a class index or name, not one-hot)")


def test_npz_with_one_class(tmp_path):
    path = datagen.write_npz(tmp_path / "one.npz", x_train=np.ones((10, 2)), y_train=np.zeros(10))
    assert usage_error(str(path)) == (
        f"{path}: every training sample has label '0'; a classifier needs at least 2 classes")


def test_npz_splits_with_different_shapes(tmp_path):
    path = datagen.write_npz(tmp_path / "s.npz", x_train=np.ones((40, 4)), y_train=np.arange(40) % 2,
                             x_test=np.ones((10, 5)), y_test=np.arange(10) % 2)
    assert usage_error(str(path)) == f"{path}: x_test samples are 5 but x_train samples are 4"


def test_not_an_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"plain text")
    assert usage_error(str(tmp_path / "bad.npz")).startswith(f"{tmp_path / 'bad.npz'}: not a readable .npz file (")


def test_too_few_samples_for_the_split(tmp_path):
    path = datagen.write_npz(tmp_path / "few.npz", x_train=np.ones((30, 2)), y_train=np.arange(30) % 10)
    assert usage_error(str(path)) == (
        f"{path}: 30 samples are too few to split off stratified test and validation sets for 10 classes; "
        "need at least 92")


def test_a_class_too_small_for_the_split(tmp_path):
    y = np.array([0] * 30 + [1] * 30 + [2] * 2)
    path = datagen.write_npz(tmp_path / "rare.npz", x_train=np.ones((62, 2)), y_train=y)
    assert usage_error(str(path)) == (
        f"{path}: class '2' has 2 sample(s); splitting off test and validation sets needs at least 3 per class")


def test_shape_that_cannot_fit(mnist_like):
    assert usage_error(str(mnist_like), (96, 96)) == (
        f"{mnist_like}: samples of shape 28x28 (784 values) cannot fit the model input 96x96 (9216 values)")


def test_the_split_needs_follow_the_class_count():
    assert data.core._samples_needed(10, [0.2, 0.125]) == 92
    n = data.core._samples_needed(3, [0.2, 0.125])
    assert math.ceil(0.2 * n) >= 3
