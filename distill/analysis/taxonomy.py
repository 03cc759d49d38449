"""Does the teacher's dark knowledge follow a known taxonomy? Scores plus built-in and user-supplied groupings.

A *grouping* maps a group name to the classes in it. Built-in groupings (:data:`BUILTIN_GROUPINGS`) and JSON files
use class *names*; :func:`taxonomy_score` takes class *indices*, which :func:`grouping_indices` (and
:func:`load_grouping`) produce from a list of class names in label order (:data:`CLASS_NAMES` for built-ins).

Classes that belong to no group are excluded from the score as queries (they have no group to agree with); as
neighbours they count as a miss for the class whose nearest neighbour they are. A class may be in at most one group.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from distill.analysis.similarity import ArrayLike, as_square_matrix

# Label order as torchvision's datasets use it.
CIFAR100_CLASSES: tuple[str, ...] = tuple(
    """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle
    bowl boy bridge bus butterfly camel can castle caterpillar cattle
    chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
    dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
    lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain
    mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
    plain plate poppy porcupine possum rabbit raccoon ray road rocket
    rose sea seal shark shrew skunk skyscraper snail snake spider
    squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm
    """.split()
)
CIFAR10_CLASSES: tuple[str, ...] = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# The 20 standard CIFAR-100 superclasses ("coarse labels"), five fine classes each.
CIFAR100_SUPERCLASSES: dict[str, list[str]] = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}

BUILTIN_GROUPINGS: dict[str, dict[str, list[str]]] = {
    "cifar100": CIFAR100_SUPERCLASSES,
    "cifar10": {
        "vehicles": ["airplane", "automobile", "ship", "truck"],
        "animals": ["bird", "cat", "deer", "dog", "frog", "horse"],
    },
    "fashion_mnist": {
        "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt", "Dress"],
        "footwear": ["Sandal", "Sneaker", "Ankle boot"],
        "other": ["Trouser", "Bag"],
    },
}

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cifar100": CIFAR100_CLASSES,
    "cifar10": CIFAR10_CLASSES,
    "fashion_mnist": FASHION_MNIST_CLASSES,
}

Groups = Mapping[str, Sequence[int]]


def grouping_indices(
    grouping: Mapping[str, Sequence[str]], class_names: Sequence[str], source: str = "grouping"
) -> dict[str, list[int]]:
    """Translate a name-based grouping into class indices (positions in ``class_names``).

    Raises:
        ValueError: one line naming ``source`` and every unknown class (with close matches), or a class listed in
            two groups.
    """
    position = {name: i for i, name in enumerate(class_names)}
    unknown = [name for members in grouping.values() for name in members if name not in position]
    if unknown:
        hints = [
            f"{n!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, position, n=1)) else repr(n)
            for n in unknown
        ]
        raise ValueError(f"{source}: unknown class(es) {', '.join(hints)}; expected names from the dataset's classes")
    result = {group: [position[name] for name in members] for group, members in grouping.items()}
    _group_of(result, len(class_names))  # rejects a class in two groups
    return result


def load_grouping(path: str | Path, class_names: Sequence[str]) -> dict[str, list[int]]:
    """Read a user grouping JSON ``{"group": ["class", ...], ...}`` and return it as class indices.

    Raises:
        ValueError: naming ``path`` for unreadable JSON, a wrong layout, unknown class names or overlapping groups.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not all(
        isinstance(members, list) and all(isinstance(n, str) for n in members) for members in data.values()
    ):
        raise ValueError(f'{path}: expected a JSON object {{"group": ["class", ...], ...}}')
    return grouping_indices(data, class_names, source=str(path))


def _group_of(groups: Groups, num_classes: int) -> np.ndarray:
    """Per-class group id (``-1`` for ungrouped), validating indices and disjointness."""
    group_of = np.full(num_classes, -1, dtype=np.int64)
    for gid, (name, members) in enumerate(groups.items()):
        idx = np.asarray(members, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
            raise ValueError(f"group {name!r} has class indices outside [0, {num_classes})")
        taken = idx[group_of[idx] >= 0]
        if taken.size or np.unique(idx).size != idx.size:
            raise ValueError(f"group {name!r} repeats or shares class indices {sorted(set(taken.tolist()))}")
        group_of[idx] = gid
    return group_of


def nearest_neighbour(matrix: ArrayLike) -> np.ndarray:
    """``argmax_{j != c} S[c, j]`` for every class ``c`` (ties: lowest index)."""
    m = as_square_matrix(matrix).copy()
    np.fill_diagonal(m, -np.inf)
    return m.argmax(axis=1)


def taxonomy_score(matrix: ArrayLike, groups: Groups) -> float:
    """Fraction of classes whose nearest dark-knowledge neighbour lies in their own group.

        score = (1 / |Q|) * sum_{c in Q} [ g(argmax_{j != c} S[c, j]) == g(c) ]

    ``Q`` is the set of grouped classes with a non-zero row (a class without samples has no neighbour).

    Returns:
        The score in ``[0, 1]``, or ``nan`` if ``Q`` is empty.
    """
    m = as_square_matrix(matrix)
    group_of = _group_of(groups, m.shape[0])
    query = (group_of >= 0) & (m.sum(axis=1) > 0)
    if not query.any():
        return float("nan")
    return float((group_of[nearest_neighbour(m)] == group_of)[query].mean())


def chance_taxonomy_score(groups: Groups, num_classes: int | None = None) -> float:
    """Expected :func:`taxonomy_score` when each class's neighbour is uniform over the ``C - 1`` other classes.

        chance = (1 / |G|) * sum_{c in G} (|g(c)| - 1) / (C - 1)

    ``G`` is the set of grouped classes; ``C`` is ``num_classes`` (default: ``|G|``, i.e. every class is grouped).
    E.g. CIFAR-100 superclasses: ``(5 - 1) / 99 ~ 0.0404``.
    """
    sizes = np.array([len(members) for members in groups.values()], dtype=np.float64)
    grouped = sizes.sum()
    total = grouped if num_classes is None else num_classes
    if grouped == 0 or total < 2:
        return float("nan")
    return float((sizes * (sizes - 1)).sum() / (grouped * (total - 1)))
