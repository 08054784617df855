"""The facts about Fashion-MNIST, in one place: class names, file names, official md5s, sizes, mirror.

They are facts of the published dataset, so they are written down here rather than read
from torchvision at run time: importing torchvision costs about as much as importing
torch (it pulls in torch._dynamo), and the memory loader, `eval`, `predict` and a no-op
`download` need nothing else from it. tests/test_fashion_mnist.py checks every one of
them against torchvision's own copy, so drift is caught.

Standard library only, nothing imported: every command may use it at no cost.
"""

from __future__ import annotations

from types import MappingProxyType

# torchvision.datasets.FashionMNIST.classes, in label order.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIDE = 28  # pixels per side of every image

# torchvision.datasets.FashionMNIST.mirrors: base URLs, a file is fetched as URL + its .gz name.
MIRRORS: tuple[str, ...] = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# torchvision.datasets.FashionMNIST.resources: the four .gz files and their md5s, in torchvision's order.
GZ_RESOURCES: tuple[tuple[str, str], ...] = (
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
)

# md5 of the UNCOMPRESSED files, which torchvision does not list: what every reader checks
# (and what an import of uncompressed files is verified against). Origin: the official
# Zalando Research release; a test recomputes them from the .gz files above.
RAW_MD5 = MappingProxyType(
    {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }
)

# The uncompressed (images, labels) files of each split, and how many examples each holds.
SPLIT_FILES = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
)
SPLIT_SIZES = MappingProxyType({"train": 60_000, "test": 10_000})
