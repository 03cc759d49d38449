"""Tests for distill.analysis: planted structure, hand-computed values, plots and groupings."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from distill.analysis import (
    BUILTIN_GROUPINGS,
    CLASS_NAMES,
    chance_taxonomy_score,
    class_similarity,
    cluster_order,
    entropy,
    grouping_indices,
    js_divergence,
    label_noise_suspects,
    load_grouping,
    most_similar_pairs,
    neighbours,
    neighbours_table,
    pairs_table,
    plot_dendrogram,
    plot_image_grid,
    plot_reliability,
    plot_similarity_heatmap,
    reliability,
    similarity_drift,
    soften,
    suspect_captions,
    suspects_table,
    taxonomy_score,
    write_matrix_csv,
)

# 12 classes in 3 blocks of 4; inside a block, classes 2k and 2k+1 are "partners".
BLOCKS = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7], "c": [8, 9, 10, 11]}
NUM_CLASSES = 12
NAMES = [f"class_{i}" for i in range(NUM_CLASSES)]


def block_logits(seed: int = 0, per_class: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with +6 on the true class, +2 on its block mates and +1 more on its partner, plus N(0, 0.3) noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    block = labels // 4
    same_block = (torch.arange(NUM_CLASSES)[None, :] // 4) == block[:, None]
    partner = torch.arange(NUM_CLASSES)[None, :] == (labels ^ 1)[:, None]
    logits = 2.0 * same_block + 1.0 * partner + 0.3 * torch.randn(labels.numel(), NUM_CLASSES, generator=gen)
    logits[torch.arange(labels.numel()), labels] += 4.0
    return logits.half(), labels


@pytest.fixture(scope="module")
def block_matrix() -> np.ndarray:
    logits, labels = block_logits()
    return class_similarity(soften(logits, temperature=4.0), labels, NUM_CLASSES)


def test_similarity_rows_sum_to_one_with_zero_diagonal(block_matrix: np.ndarray) -> None:
    assert block_matrix.shape == (NUM_CLASSES, NUM_CLASSES)
    np.testing.assert_allclose(block_matrix.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(np.diag(block_matrix) == 0.0)


def test_similarity_hand_computed_and_empty_class() -> None:
    # Class 0: mean([.5, .3, .2], [.7, .1, .2]) = [.6, .2, .2] -> drop class 0, renormalise -> [0, .5, .5].
    # Class 1: [.1, .6, .3] -> drop class 1 -> [.1, 0, .3] / .4 = [.25, 0, .75].  Class 2: no samples -> zero row.
    probs = np.array([[0.5, 0.3, 0.2], [0.7, 0.1, 0.2], [0.1, 0.6, 0.3]])
    expected = np.array([[0.0, 0.5, 0.5], [0.25, 0.0, 0.75], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(class_similarity(probs, np.array([0, 0, 1]), 3), expected, atol=1e-7)
    with pytest.raises(ValueError, match="labels must lie in"):
        class_similarity(probs, np.array([0, 0, 3]), 3)


def test_torch_and_numpy_inputs_agree() -> None:
    logits, labels = block_logits(seed=3, per_class=5)
    from_torch = class_similarity(soften(logits, 2.0), labels, NUM_CLASSES)
    from_numpy = class_similarity(soften(logits.numpy(), 2.0), labels.numpy(), NUM_CLASSES)
    np.testing.assert_array_equal(from_torch, from_numpy)


def test_planted_neighbours_pairs_and_taxonomy(block_matrix: np.ndarray) -> None:
    result = neighbours(block_matrix, k=3)
    partners = np.arange(NUM_CLASSES) ^ 1
    np.testing.assert_array_equal(result.index[:, 0], partners)
    for c in range(NUM_CLASSES):  # the top 3 are exactly the block mates
        assert set(result.index[c]) == set(BLOCKS["abc"[c // 4]]) - {c}
    assert np.all(np.diff(result.mass, axis=1) <= 0)

    pairs = most_similar_pairs(block_matrix, n=6)
    found = {(int(i), int(j)) for i, j in zip(pairs.first, pairs.second, strict=True)}
    assert found == {(2 * k, 2 * k + 1) for k in range(6)}
    assert np.all(pairs.first < pairs.second) and np.all(np.diff(pairs.similarity) <= 0)

    assert taxonomy_score(block_matrix, BLOCKS) == 1.0
    assert chance_taxonomy_score(BLOCKS) == pytest.approx(3 / 11)  # (4 - 1) / (12 - 1) for every class


def test_cluster_order_keeps_blocks_contiguous(block_matrix: np.ndarray) -> None:
    order, z = cluster_order(block_matrix)
    assert sorted(order.tolist()) == list(range(NUM_CLASSES))
    assert z.shape == (NUM_CLASSES - 1, 4)
    position = np.argsort(order)
    for members in BLOCKS.values():
        assert np.ptp(position[members]) == len(members) - 1


def test_random_logits_score_near_chance() -> None:
    # With i.i.d. logits the classes are exchangeable, so each class's nearest neighbour is uniform over the other 99
    # and E[score] = chance = (5 - 1) / 99 ~ 0.0404 for CIFAR-100 superclasses. One seed's score is a mean of 100
    # (nearly independent) Bernoulli(0.0404): sd ~ sqrt(0.0404 * 0.9596 / 100) ~ 0.0197; over 10 seeds the mean has
    # sd ~ 0.0062, so a tolerance of 0.025 is ~4 sd (seeds are fixed, so the test is deterministic anyway).
    groups = grouping_indices(BUILTIN_GROUPINGS["cifar100"], CLASS_NAMES["cifar100"])
    labels = torch.arange(100).repeat_interleave(20)
    scores = []
    for seed in range(10):
        logits = torch.randn(labels.numel(), 100, generator=torch.Generator().manual_seed(seed))
        scores.append(taxonomy_score(class_similarity(soften(logits, 4.0), labels, 100), groups))
    chance = chance_taxonomy_score(groups)
    assert chance == pytest.approx(4 / 99)
    assert abs(np.mean(scores) - chance) < 0.025


def test_taxonomy_excludes_ungrouped_classes() -> None:
    # Nearest neighbours: 0 -> 1 (same group), 1 -> 2 (ungrouped: a miss), 2 -> 0 (ungrouped query: excluded).
    matrix = np.array([[0.0, 0.9, 0.1], [0.2, 0.0, 0.8], [0.7, 0.3, 0.0]])
    groups = {"g": [0, 1]}
    assert taxonomy_score(matrix, groups) == 0.5
    assert chance_taxonomy_score(groups, num_classes=3) == pytest.approx(0.5)  # (2 - 1) / (3 - 1)
    with pytest.raises(ValueError, match="shares class"):
        taxonomy_score(matrix, {"g": [0, 1], "h": [1, 2]})


def test_builtin_groupings_cover_every_class_once() -> None:
    assert len(BUILTIN_GROUPINGS["cifar100"]) == 20
    assert list(CLASS_NAMES["cifar100"][:2]) == ["apple", "aquarium_fish"]
    for dataset, grouping in BUILTIN_GROUPINGS.items():
        indices = grouping_indices(grouping, CLASS_NAMES[dataset])
        assert sorted(i for members in indices.values() for i in members) == list(range(len(CLASS_NAMES[dataset])))


def test_load_grouping(tmp_path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"even": ["class_0", "class_2"], "odd": ["class_1"]}))
    assert load_grouping(good, NAMES) == {"even": [0, 2], "odd": [1]}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"g": ["class_0", "unicorn", "clas_3"]}))
    with pytest.raises(ValueError, match=r"bad\.json.*'unicorn'.*'clas_3' \(did you mean 'class_3'\?\)") as err:
        load_grouping(bad, NAMES)
    assert "\n" not in str(err.value)
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps(["class_0"]))
    with pytest.raises(ValueError, match="layout.json"):
        load_grouping(layout, NAMES)


def test_noise_suspects_find_planted_mislabels() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (200,), generator=gen)
    logits = torch.randn(200, 10, generator=gen)
    logits[torch.arange(200), labels] += 10.0  # confident, agreeing teacher everywhere...
    logits[17, labels[17]] += 2.0  # ...more confident on sample 17 than on 123
    noisy = labels.clone()
    noisy[[17, 123]] = (labels[[17, 123]] + 1) % 10  # planted label errors
    logits[50] = 0.0  # sample 50: uniform teacher (p = 0.1), mislabel it too; far below threshold
    noisy[50] = (labels[50] + 1) % 10
    probs = soften(logits)
    suspects = label_noise_suspects(probs, noisy)
    assert suspects.index.tolist() == [17, 123]
    assert suspects.label.tolist() == noisy[[17, 123]].tolist()
    assert suspects.teacher.tolist() == labels[[17, 123]].tolist()
    assert suspects.probability[0] >= suspects.probability[1] >= 0.9
    assert label_noise_suspects(probs, noisy, top=1).index.tolist() == [17]
    assert len(label_noise_suspects(probs, noisy, threshold=0.05)) == 3


def test_entropy_hand_computed() -> None:
    # [.5, .25, .25, 0]: .5 ln 2 + 2 * .25 ln 4 = 1.5 ln 2 (0 ln 0 = 0); uniform over 4: ln 4; one-hot: 0.
    probs = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.25] * 4, [0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(entropy(probs), [1.5 * math.log(2), math.log(4), 0.0], atol=1e-12)


def test_js_divergence_hand_computed() -> None:
    # Disjoint [1, 0] vs [0, 1]: m = [.5, .5], KL = ln 2 each -> JS = ln 2 (the upper bound).
    # [.5, .5] vs [1, 0]: m = [.75, .25]; KL(p||m) = .5 ln(2/3) + .5 ln 2 = .5 ln(4/3), KL(q||m) = ln(4/3)
    # -> JS = (.5 ln(4/3) + ln(4/3)) / 2 = .75 ln(4/3).  Identical rows -> 0.
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.3, 0.7]])
    q = np.array([[0.0, 1.0], [1.0, 0.0], [0.3, 0.7]])
    np.testing.assert_allclose(js_divergence(p, q), [math.log(2), 0.75 * math.log(4 / 3), 0.0], atol=1e-12)


def test_similarity_drift(block_matrix: np.ndarray) -> None:
    np.testing.assert_allclose(similarity_drift(block_matrix, block_matrix), 0.0, atol=1e-12)
    other = block_matrix.copy()
    other[0] = 0.0
    drift = similarity_drift(block_matrix, other[:, ::-1].copy())
    assert np.isnan(drift[0]) and np.all((drift[1:] > 0) & (drift[1:] <= math.log(2)))


def test_reliability_hand_computed() -> None:
    # 2 bins [0, .5) and [.5, 1]. Sample confidences/correct: .9/yes, .8/no, .6/yes -> bin 1; .4/no -> bin 0.
    # bin 0: conf .4, acc 0, n 1 -> gap .4; bin 1: conf 2.3/3, acc 2/3, n 3 -> gap .1.
    # ECE = 1/4 * .4 + 3/4 * .1 = .175.
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.4, 0.3, 0.3]])
    labels = np.array([0, 1, 1, 1])
    result = reliability(probs, labels, n_bins=2)
    np.testing.assert_array_equal(result.count, [1, 3])
    np.testing.assert_allclose(result.confidence, [0.4, 2.3 / 3], atol=1e-6)
    np.testing.assert_allclose(result.accuracy, [0.0, 2 / 3])
    assert result.ece == pytest.approx(0.175, abs=1e-6)
    saturated = reliability(np.array([[1.0, 0.0]]), np.array([0]), n_bins=15)  # 1.0 lands in the last bin
    assert saturated.count[-1] == 1 and saturated.ece == 0.0 and np.isnan(saturated.accuracy[0])


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_torchmetrics(seed: int) -> None:
    tm = pytest.importorskip("torchmetrics.functional.classification")
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3.0 * torch.randn(2000, 10, generator=gen), dim=1)
    labels = torch.randint(0, 10, (2000,), generator=gen)
    expected = tm.multiclass_calibration_error(probs, labels, num_classes=10, n_bins=15, norm="l1")
    assert reliability(probs, labels, n_bins=15).ece == pytest.approx(float(expected), abs=1e-6)


def _assert_png(path, min_side: int = 100) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        return image.size


def test_plots_write_pngs(tmp_path, block_matrix: np.ndarray) -> None:
    order, z = cluster_order(block_matrix)
    _assert_png(plot_similarity_heatmap(block_matrix, NAMES, order, tmp_path / "heatmap.png"))
    _assert_png(plot_dendrogram(z, NAMES, tmp_path / "dendrogram.png"))
    logits, labels = block_logits(seed=1, per_class=10)
    _assert_png(plot_reliability(reliability(soften(logits), labels), tmp_path / "reliability.png"))


def test_heatmap_scales_to_100_classes(tmp_path) -> None:
    matrix = np.random.default_rng(0).random((100, 100))
    names = list(CLASS_NAMES["cifar100"])
    small = _assert_png(plot_similarity_heatmap(matrix[:10, :10], names[:10], None, tmp_path / "small.png"))
    large = _assert_png(plot_similarity_heatmap(matrix, names, cluster_order(matrix)[0], tmp_path / "large.png"))
    assert large[0] > small[0]


@pytest.mark.parametrize(("dtype", "channels"), [(torch.uint8, 3), (torch.float32, 1)])
def test_image_grid(tmp_path, dtype: torch.dtype, channels: int) -> None:
    images = torch.rand(5, channels, 16, 16)
    images = (images * 255).to(dtype) if dtype == torch.uint8 else images
    captions = [f"label: cat / teacher: dog 0.9{i}" for i in range(5)]
    width, height = _assert_png(plot_image_grid(images, captions, tmp_path / "grid.png", ncols=3))
    assert height > width / 3  # two rows of images with captions


def test_tables_and_csv(tmp_path, block_matrix: np.ndarray) -> None:
    logits, labels = block_logits(seed=2, per_class=5)
    noisy = labels.clone()
    noisy[0] = 5
    suspects = label_noise_suspects(soften(logits), noisy, threshold=0.5)
    console = Console(file=io.StringIO(), width=200)
    for table in (
        neighbours_table(neighbours(block_matrix, 2), NAMES, classes=[0, 4]),
        pairs_table(most_similar_pairs(block_matrix, 3), NAMES),
        suspects_table(suspects, NAMES),
    ):
        console.print(table)
    text = console.file.getvalue()
    assert "class_1 (" in text and "class_5" in text and "Label-noise suspects (1)" in text
    assert suspect_captions(suspects, NAMES)[0].startswith("label: class_5 / teacher: class_0 0.")

    path = write_matrix_csv(block_matrix, NAMES, tmp_path / "sub" / "matrix.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["class", *NAMES]
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=range(1, NUM_CLASSES + 1))
    np.testing.assert_allclose(values, block_matrix, rtol=1e-7)
