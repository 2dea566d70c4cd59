"""Write the first N training and M test Fashion-MNIST images as PNGs in class folders
(DIR/train/<class>/*.png, DIR/test/<class>/*.png): a real image folder to try `data.name=imagefolder` on.

    python scripts/fmnist_to_png.py DIR [N_TRAIN] [N_TEST]     # defaults 3000, 1000
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from headsteer.config import DataConfig
from headsteer.data import load_dataset


def main(argv: list[str]) -> None:
    root = Path(argv[0])
    counts = {"train": int(argv[1]) if len(argv) > 1 else 3000, "test": int(argv[2]) if len(argv) > 2 else 1000}
    ds = load_dataset(DataConfig(name="fashion_mnist"))
    for split, data in (("train", ds.train), ("test", ds.test)):
        for i in range(min(counts[split], len(data))):
            folder = root / split / ds.classes[int(data.labels[i])].replace("/", "-")  # "T-shirt/top"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[i, 0].numpy()).save(folder / f"{i:05d}.png")
    print(f"wrote {counts['train']} train and {counts['test']} test PNGs under {root}")


if __name__ == "__main__":
    main(sys.argv[1:])
