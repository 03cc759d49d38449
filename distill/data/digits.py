"""scikit-learn's bundled handwritten digits: 1,797 8x8 grey images, 10 classes, no download.

The default quick-start dataset: real data that ships inside the scikit-learn wheel.
"""

from __future__ import annotations

import torch

from distill.data.base import DATASETS, DistillDataModule, ImageFileForm, TensorIndexedDataset, subset_indices

# Pixel statistics of the digits images scaled to [0, 1] (intensities 0..16 divided by 16), measured on all 1,797.
DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760


@DATASETS.register("digits")
class DigitsDataModule(DistillDataModule):
    """Digits with a fixed stratified split (``test_fraction`` held out, split seed 0, independent of the run seed).

    No augmentation: the images are 8x8, and a 1-pixel shift already changes a digit's identity noticeably.

    Args:
        test_fraction: share of the 1,797 images held out for testing (0.3 -> 1,257 train / 540 test).
        **kwargs: forwarded to :class:`DistillDataModule`.
    """

    name = "digits"
    num_classes = 10
    in_chans = 1
    class_names = [str(i) for i in range(10)]

    def __init__(self, test_fraction: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def image_file_form(self) -> ImageFileForm:
        """The digits are 8x8 grey intensities 0..16 divided by 16: as image files, grey 8x8 images whose 0..255
        pixels divided by 255 give the same ``[0, 1]`` values."""
        return ImageFileForm(1, (8, 8), (DIGITS_MEAN,), (DIGITS_STD,))

    def transform_description(self) -> str:
        return f"pixels/16, normalize(mean={DIGITS_MEAN}, std={DIGITS_STD})"

    def setup(self, stage: str | None = None) -> None:
        if self.cache_set is not None:
            return
        from sklearn.datasets import load_digits  # imported here: scikit-learn costs ~1-2 s at import time
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        x = (torch.tensor(bunch.images, dtype=torch.float32) / 16.0 - DIGITS_MEAN) / DIGITS_STD
        y = torch.tensor(bunch.target, dtype=torch.long)
        idx_train, idx_test = train_test_split(
            torch.arange(len(y)).numpy(), test_size=self.test_fraction, stratify=y.numpy(), random_state=0)
        keep = torch.as_tensor(idx_train)[subset_indices(len(idx_train), self.train_subset)]
        xtr, ytr = x[keep].unsqueeze(1), y[keep]
        self.train_set = self.cache_set = TensorIndexedDataset(xtr, ytr)
        self.test_set = TensorIndexedDataset(x[idx_test].unsqueeze(1), y[idx_test])
