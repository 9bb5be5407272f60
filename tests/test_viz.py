"""``nnxp predict``, ``nnxp images``, ``nnxp plot`` and the image helpers behind them (CPU)."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

import nnxp

from conftest import one_line_error, run_cli
from nnxp.data import image_inputs, load_dataset
from nnxp.errors import DataError
from nnxp.viz import (FIELD, HALF_BLOCKS, INK, RAMP, format_digits, half_block_art, read_image, read_pgm,
                      text_art, to_mnist)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_pillow = pytest.mark.skipif(not installed("PIL"), reason="Pillow is not installed")


def pgm_p5(image: np.ndarray) -> bytes:
    h, w = image.shape
    return f"P5\n# written by test_viz\n{w} {h}\n255\n".encode() + image.astype(np.uint8).tobytes()


def stroke_image(height=120, width=90, ink=0, paper=255) -> np.ndarray:
    """A thick diagonal bar plus a short horizontal one (an off-centre '7'), ink on paper."""
    image = np.full((height, width), paper, dtype=np.uint8)
    image[20:30, 10:60] = ink
    for row in range(30, 100):
        col = 60 - (row - 30) // 2
        image[row, col - 5:col + 5] = ink
    return image


@pytest.fixture(scope="module")
def bundled():
    return load_dataset("bundled")


@pytest.fixture(scope="module")
def model(bundled, tmp_path_factory):
    """(network, path): a 784-32-10 model trained 2 epochs on the bundled digits (~0.1 s)."""
    net = nnxp.Network([784, 32, 10], seed=0, device="cpu")
    net.fit(image_inputs(bundled.train_images), bundled.train_labels, epochs=2, batch_size=64,
            optimizer="adam", lr=1e-3, verbose=0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    nnxp.save(net, path)
    return net, path


# -- PGM -------------------------------------------------------------------------------------------

def test_pgm_p5_known_pixels():
    data = b"P5\n# a comment\n3 2 # width height\n255\n" + bytes([0, 1, 2, 100, 200, 255])
    np.testing.assert_array_equal(read_pgm(data), [[0, 1, 2], [100, 200, 255]])
    assert read_pgm(data).dtype == np.uint8


def test_pgm_p5_sixteen_bit_is_big_endian_and_scaled():
    values = np.array([[0, 1000], [500, 250]], dtype=">u2")
    data = b"P5 2 2 1000\n" + values.tobytes()
    np.testing.assert_array_equal(read_pgm(data), [[0, 255], [128, 64]])


def test_pgm_p2_known_pixels():
    data = b"P2\n# ascii\n4 2\n15\n0 15 3 # a comment in the raster\n  7\n15 0 1 2\n"
    np.testing.assert_array_equal(read_pgm(data), [[0, 255, 51, 119], [255, 0, 17, 34]])


def test_pgm_p5_raster_may_start_with_whitespace_bytes():
    # Pixel value 10 is '\n' and 32 is ' ': only one byte after maxval is the separator.
    data = b"P5\n2 1\n255\n" + bytes([10, 32])
    np.testing.assert_array_equal(read_pgm(data), [[10, 32]])


@pytest.mark.parametrize("data, message", [
    (b"P5\n3 2\n255\n" + bytes(5), "truncated PGM file"),
    (b"P2\n2 2\n255\n1 2 3", "truncated PGM file"),
    (b"P5\n3", "truncated PGM header"),
    (b"P5\nthree 2\n255\n", "bad PGM header value"),
    (b"P2\n2 1\n9\n3 12\n", "exceeds its maxval 9"),
    (b"P2\n2 1\n9\n3 x\n", "bad PGM pixel value"),
    (b"P5\n0 2\n255\n", "has no pixels"),
    (b"P6\n1 1\n255\n\x00\x00\x00", "not a PGM file"),
])
def test_pgm_errors(data, message):
    with pytest.raises(DataError, match=message):
        read_pgm(data)


def test_png_and_pgm_files_read_the_same(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    image = np.random.default_rng(0).integers(0, 256, (13, 17), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    Image.fromarray(np.stack([image] * 3, axis=-1)).save(tmp_path / "rgb.png")
    (tmp_path / "x.pgm").write_bytes(pgm_p5(image))
    np.testing.assert_array_equal(read_image(tmp_path / "x.pgm"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), image)


def test_strokes_on_a_transparent_canvas_are_not_lost(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    rgba = np.zeros((120, 90, 4), dtype=np.uint8)  # transparent black everywhere...
    rgba[..., 3] = 255 - stroke_image()  # ...but opaque (black) along the strokes
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(to_mnist(read_image(tmp_path / "alpha.png")), to_mnist(stroke_image()))


# -- MNIST-style preprocessing ------------------------------------------------------------------

def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    image = image.astype(np.float64)
    r = np.arange(image.shape[0])
    return float(r @ image.sum(axis=1) / image.sum()), float(r @ image.sum(axis=0) / image.sum())


def bounding_box(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_a_drawn_stroke_is_scaled_to_20_px_and_centred_by_mass():
    out = to_mnist(stroke_image())
    assert out.shape == (FIELD, FIELD) and out.dtype == np.uint8
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.6 and abs(cx - 14) <= 0.6, (cy, cx)
    height, width = bounding_box(out)
    assert height == 20 and width <= 20  # the stroke is taller than wide: height sets the scale
    assert out.max() == 255
    assert out[0].max() == out[-1].max() == out[:, 0].max() == out[:, -1].max() == 0


def test_dark_on_light_is_inverted_to_light_on_dark():
    black_on_white = stroke_image(ink=0, paper=255)
    white_on_black = stroke_image(ink=255, paper=0)
    out = to_mnist(black_on_white)
    assert out[0, 0] == 0 and out.mean() < 80  # background black, ink bright
    np.testing.assert_array_equal(out, to_mnist(white_on_black))


def test_grey_paper_and_noise_are_removed():
    rng = np.random.default_rng(1)
    clean = to_mnist(stroke_image())
    # Mid-grey paper with Gaussian noise and a dark grey pen.
    noisy = stroke_image(ink=40, paper=200).astype(np.float64) + rng.normal(0, 6, (120, 90))
    out = to_mnist(np.clip(noisy, 0, 255).astype(np.uint8))
    assert bounding_box(out) == bounding_box(clean)
    assert np.abs(out.astype(int) - clean).mean() < 8


def test_mnist_images_pass_through_unchanged(bundled):
    for image in bundled.test_images[:200]:
        assert np.abs(to_mnist(image).astype(int) - image).max() <= 1


def test_a_blank_image_is_an_error():
    with pytest.raises(DataError, match="no digit found"):
        to_mnist(np.full((30, 30), 250, dtype=np.uint8), name="blank.png")


# -- text art -----------------------------------------------------------------------------------

def test_text_art_maps_intensity_to_characters():
    image = np.array([[0, 25, 26, 128], [200, 230, 254, 255]], dtype=np.uint8)
    assert text_art(image) == [" " + RAMP[0] + RAMP[1] + RAMP[5], RAMP[7] + RAMP[8] + RAMP[9] + RAMP[9]]


def test_half_block_art_draws_two_pixel_rows_per_line():
    image = np.array([[0, INK, INK - 1, 255],
                      [0, 0, 255, 200],
                      [255, 0, 0, 0]], dtype=np.uint8)  # odd height: a blank row is added below
    assert half_block_art(image) == [" \u2580\u2584\u2588", "\u2580   "]
    assert set(HALF_BLOCKS.values()) == {" ", "\u2580", "\u2584", "\u2588"}


def test_format_digits_has_14_lines_per_digit_and_fits_80_columns(bundled):
    images = bundled.test_images[:3]
    headers = [[f"#{i}  label {bundled.test_labels[i]}"] for i in range(3)]
    text = format_digits(images, headers, width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Two side by side, then one: (1 header + 14 half-block lines) twice, with a blank line between.
    assert len(lines) == 15 + 1 + 15
    assert lines[0].startswith("#0  label 0") and "#1  label 1" in lines[0]
    assert lines[16].startswith("#2  label 4")
    first = [line[:28] for line in lines[1:15]]
    assert first == half_block_art(images[0])
    ramp = format_digits(images[:1], headers[:1], width=80, art=text_art).splitlines()
    assert ramp[1:] == text_art(images[0])


# -- nnxp predict ---------------------------------------------------------------------------------

def test_predict_png_and_pgm_agree_with_classify(capsys, tmp_path, bundled, model):
    Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    net, path = model
    images = bundled.test_images[:8]
    expected = nnxp.to_numpy(net.classify(image_inputs(images)))
    files = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.pgm").write_bytes(pgm_p5(image))
        files += [tmp_path / f"{i}.png", tmp_path / f"{i}.pgm"]
    code, out, _ = run_cli(capsys, "predict", path, *files, "--device", "cpu", "--json")
    assert code == 0
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in results] == [str(f) for f in files]
    assert [r["class"] for r in results] == list(np.repeat(expected, 2))
    assert all(r["name"] == str(r["class"]) and 0 < r["p"] <= 1 for r in results)
    assert all(len(r["top"]) == 3 and r["top"][0]["p"] >= r["top"][1]["p"] >= r["top"][2]["p"]
               for r in results)


def test_predict_text_line(capsys, tmp_path, bundled, model):
    _, path = model
    image_path = tmp_path / "digit.pgm"
    image_path.write_bytes(pgm_p5(bundled.test_images[0]))
    code, out, _ = run_cli(capsys, "predict", path, image_path, "--device", "cpu")
    assert code == 0
    assert re.fullmatch(re.escape(str(image_path)) + r": 0  \(p=[01]\.\d{3}\)   next: \d [01]\.\d{3}, "
                        r"\d [01]\.\d{3}\n", out), out


def test_predict_show_and_fashion_names(capsys, tmp_path, bundled, model):
    _, path = model
    image_path = tmp_path / "digit.pgm"
    image_path.write_bytes(pgm_p5(bundled.test_images[0]))
    code, out, _ = run_cli(capsys, "predict", path, image_path, "--device", "cpu", "--show",
                           "--classes", "fashion-mnist", "--top", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{image_path}: T-shirt/top  (p=")  # class 0's name
    assert "next" not in lines[0]
    assert lines[1:] == text_art(to_mnist(bundled.test_images[0]))


def test_predict_a_hand_drawn_seven(capsys, tmp_path, model):
    ImageDraw = pytest.importorskip("PIL.ImageDraw", reason="Pillow is not installed")
    from PIL import Image

    canvas = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(canvas).line([(50, 40), (150, 40), (85, 170)], fill=0, width=16, joint="curve")
    canvas.save(tmp_path / "seven.png")
    canvas.convert("RGB").save(tmp_path / "seven.jpg", quality=70)
    code, out, _ = run_cli(capsys, "predict", model[1], tmp_path / "seven.png", tmp_path / "seven.jpg",
                           "--device", "cpu", "--json")
    assert code == 0
    assert [json.loads(line)["class"] for line in out.splitlines()] == [7, 7]


@pytest.fixture
def bad_inputs(tmp_path):
    (tmp_path / "broken.png").write_bytes(PNG_SIGNATURE + b"not really a png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image at all\n")
    (tmp_path / "blank.pgm").write_bytes(pgm_p5(np.full((10, 10), 255, dtype=np.uint8)))
    (tmp_path / "ok.pgm").write_bytes(pgm_p5(stroke_image()))
    nnxp.save(nnxp.Network([10, 4, 3], device="cpu"), tmp_path / "small.safetensors")
    nnxp.save(nnxp.Network([784, 4, 3], device="cpu"), tmp_path / "three.safetensors")
    return tmp_path


@pytest.mark.parametrize("argv, message", [
    (["{model}", "{tmp}/missing.png"], "image file .*missing.png not found"),
    pytest.param(["{model}", "{tmp}/broken.png"],
                 r"broken.png is a damaged or unsupported image \(.*\): give a PNG", marks=needs_pillow),
    pytest.param(["{model}", "{tmp}/notes.txt"], "notes.txt is not an image file nnxp can read",
                 marks=needs_pillow),
    (["{model}", "{tmp}/empty.png"], "empty.png is empty"),
    (["{model}", "{tmp}/blank.pgm"], "blank.pgm: no digit found"),
    (["{model}", "{tmp}"], "is a directory"),
    (["{tmp}/missing.safetensors", "{tmp}/ok.pgm"], "model file .* not found"),
    (["{tmp}/small.safetensors", "{tmp}/ok.pgm"], "takes 10 inputs.*784"),
    (["{tmp}/three.safetensors", "{tmp}/ok.pgm", "--classes", "mnist"], "has 3 outputs"),
])
def test_predict_errors_are_one_line(capsys, bad_inputs, model, argv, message):
    argv = [a.format(model=model[1], tmp=bad_inputs) for a in argv]
    code, out, err = run_cli(capsys, "predict", *argv, "--device", "cpu")
    assert code == 2 and out == ""
    assert re.search(message, one_line_error(err))


def test_predict_without_pillow_says_what_to_install(capsys, monkeypatch, tmp_path, model):
    (tmp_path / "x.png").write_bytes(PNG_SIGNATURE + bytes(40))
    (tmp_path / "x.pgm").write_bytes(pgm_p5(stroke_image()))
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    code, _, err = run_cli(capsys, "predict", model[1], tmp_path / "x.png", "--device", "cpu")
    assert code == 2 and "pip install pillow, or convert the image to PGM" in one_line_error(err)
    code, out, _ = run_cli(capsys, "predict", model[1], tmp_path / "x.pgm", "--device", "cpu")
    assert code == 0 and out.startswith(f"{tmp_path / 'x.pgm'}: ")


def test_predict_json_and_show_are_exclusive(capsys, model, tmp_path):
    code, out, err = run_cli(capsys, "predict", model[1], tmp_path / "x.pgm", "--json", "--show")
    assert code == 2 and out == ""
    assert "not allowed with" in err


# -- nnxp images ----------------------------------------------------------------------------------

def test_images_prints_labels_and_14_lines_per_digit(capsys, bundled, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli(capsys, "images", "--count", "4", "--start", "10")
    assert code == 0
    assert out.splitlines()[0] == "bundled test images 10-13"
    for i in range(10, 14):
        assert f"#{i}  label {bundled.test_labels[i]}" in out
    headers = [line for line in out.splitlines() if line.startswith("#")]
    assert len(headers) == 2  # two digits side by side in 80 columns
    assert max(len(line) for line in out.splitlines()) <= 80
    # 2 rows of digits, each 14 half-block lines (blank art lines are spaces, kept by the layout).
    blocks = out.split("\n\n")
    assert [len(b.splitlines()) for b in blocks] == [1 + 1 + 14, 1 + 14]
    code, out, _ = run_cli(capsys, "images", "--count", "1", "--ramp")
    assert code == 0 and out.splitlines()[2:] == text_art(bundled.test_images[0])


def test_images_with_a_model_marks_mistakes(capsys, bundled, model):
    net, path = model
    code, out, _ = run_cli(capsys, "images", "--model", path, "--only-mistakes", "--count", "3",
                           "--device", "cpu")
    assert code == 0
    predicted = nnxp.to_numpy(net.classify(image_inputs(bundled.test_images)))
    wrong = np.flatnonzero(predicted != bundled.test_labels)
    for i in wrong[:3]:
        assert f"#{i}  label {bundled.test_labels[i]}" in out
        assert f"predicted {predicted[i]}  WRONG" in out
    assert f"#{wrong[3]} " not in out
    assert out.splitlines()[-1].startswith(f"3 of the {len(wrong)} mistakes in bundled test images 0-999")

    code, out, _ = run_cli(capsys, "images", "--model", path, "--count", "2", "--device", "cpu")
    assert code == 0
    for i in range(2):
        mark = "  WRONG" if predicted[i] != bundled.test_labels[i] else ""
        assert f"predicted {predicted[i]}{mark}" in out
    assert out.splitlines()[-1] == f"{path}: {int((predicted[:2] != bundled.test_labels[:2]).sum())} of 2 wrong"


def test_png_titles_show_the_predicted_probability(capsys, tmp_path, bundled, model, monkeypatch):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    import nnxp.cli.images

    seen = {}
    real = nnxp.cli.images.digit_grid_figure

    def spy(images, titles, wrong, suptitle=""):
        seen["titles"] = titles
        return real(images, titles, wrong, suptitle)

    monkeypatch.setattr(nnxp.cli.images, "digit_grid_figure", spy)
    code, _, _ = run_cli(capsys, "images", "--model", model[1], "--count", "3", "--png",
                         tmp_path / "g.png", "--no-text", "--device", "cpu")
    assert code == 0
    probabilities = nnxp.to_numpy(model[0].predict(image_inputs(bundled.test_images[:3])))
    for i, title in enumerate(seen["titles"]):
        best = int(probabilities[i].argmax())
        assert title.endswith(f"predicted {best} (p={probabilities[i, best]:.2f})")


def read_png(path):
    matplotlib_image = pytest.importorskip("matplotlib.image", reason="matplotlib is not installed")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib_image.imread(path)


def test_images_png_grid(capsys, tmp_path, model):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    target = tmp_path / "digits.png"
    code, out, _ = run_cli(capsys, "images", "--count", "16", "--png", target, "--no-text")
    assert code == 0 and out == f"wrote grid of 16 images to {target}\n"
    pixels = read_png(target)
    assert pixels.shape[:2] == (331, 1080)  # 8 columns x 2 rows of 135 x 143 px, and the title
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.2) & (pixels[..., 2] < 0.2)
    assert red.sum() == 0

    mistakes = tmp_path / "mistakes.png"
    code, out, _ = run_cli(capsys, "images", "--model", model[1], "--only-mistakes", "--count", "4",
                           "--png", mistakes, "--no-text", "--device", "cpu")
    assert code == 0 and out.endswith(f"wrote grid of 4 images to {mistakes}\n")
    pixels = read_png(mistakes)
    assert pixels.shape[:2] == (206, 4 * 135)  # one row of 135 x 161 px cells (2-line titles)
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.2) & (pixels[..., 2] < 0.2)
    assert red.sum() > 4 * 4 * 100  # a thick red frame around each of the 4 digits
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("argv, message", [
    (["--only-mistakes"], "--only-mistakes needs --model"),
    (["--no-text"], "--no-text leaves nothing to show"),
    (["--start", "1000"], r"--start 1000 is past the end .* use 0\.\.999"),
    (["--png", "{tmp}/grid.jpg"], r"grid.jpg: nnxp writes \.png, \.svg or \.pdf"),
    (["--png", "{tmp}/no/such/dir/grid.png"], "directory .* does not exist"),
    (["--model", "{tmp}/small.safetensors"], "takes 10 inputs and gives 3 classes"),
])
def test_images_errors_are_one_line(capsys, bad_inputs, argv, message):
    argv = [a.format(tmp=bad_inputs) for a in argv]
    code, out, err = run_cli(capsys, "images", *argv, "--device", "cpu")
    assert code == 2 and out == ""
    assert re.search(message, one_line_error(err))


def test_images_png_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run_cli(capsys, "images", "--png", tmp_path / "grid.png")
    assert code == 2 and out == ""
    assert "needs matplotlib: pip install 'nnxp[plot]' (in a clone: pip install '.[plot]')" in one_line_error(err)
    assert not list(tmp_path.iterdir())


# -- nnxp plot ------------------------------------------------------------------------------------

def write_metrics(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


RECORDS = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.8 + 0.05 * e, "val_loss": 1.2 / e,
            "val_accuracy": 0.78 + 0.05 * e, "seconds": 1.5, "samples_per_second": 2000.0}
           for e in (1, 2, 3)]


def test_plot_writes_png_next_to_the_metrics(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    metrics = write_metrics(tmp_path / "run.jsonl", RECORDS)
    code, out, _ = run_cli(capsys, "plot", metrics)
    assert code == 0 and out == f"wrote plot of 3 epochs to {tmp_path / 'run.png'}\n"
    assert read_png(tmp_path / "run.png").shape[:2] == (420, 1000)


def test_plot_without_test_metrics_and_to_a_chosen_file(capsys, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    records = [{k: r[k] for k in ("epoch", "loss", "accuracy")} for r in RECORDS]
    metrics = write_metrics(tmp_path / "run.jsonl", records)
    code, out, _ = run_cli(capsys, "plot", metrics, "-o", tmp_path / "curves.svg")
    assert code == 0 and out == f"wrote plot of 3 epochs to {tmp_path / 'curves.svg'}\n"
    assert (tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("content, message", [
    ("", "has no epochs"),
    ("\n\n", "has no epochs"),
    ('{"epoch": 1, "loss": 0.5, "accuracy": 0.9}\n{"epoch": 2, "loss": 0.4,\n', "line 2: is not valid JSON"),
    ('{"epoch": 1, "loss": 0.5}\n', "line 1.accuracy: is missing"),
    ('{"epoch": 1, "loss": "low", "accuracy": 0.9}\n', 'line 1.loss: is a string ("low"), not a number'),
    ("[1, 2]\n", "line 1: is a list ([1, 2]), not an object"),
])
def test_plot_errors_are_one_line(capsys, tmp_path, content, message):
    (tmp_path / "m.jsonl").write_text(content)
    code, out, err = run_cli(capsys, "plot", tmp_path / "m.jsonl")
    assert code == 2 and out == ""
    assert message in one_line_error(err)
    assert not (tmp_path / "m.png").exists()


def test_plot_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "plot", tmp_path / "nope.jsonl")
    assert code == 2 and "metrics file" in one_line_error(err) and "not found" in err
