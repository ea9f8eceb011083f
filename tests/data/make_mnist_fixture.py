"""Cut the small MNIST fixture in tests/data/mnist/ out of a full copy of MNIST.

The tests must pass on a fresh clone with no network, so they bring their own digits: the first
N_TRAIN training and the first N_TEST test images (and labels) of the canonical gzipped IDX
files, rewritten as IDX files with the same four names and a header that counts them.

    python tests/data/make_mnist_fixture.py /path/to/mnist    # the folder with the four .gz files

gzip is written with mtime 0, so the same input always gives the same bytes.
"""
import gzip
import sys
from pathlib import Path

N_TRAIN, N_TEST = 500, 300
OUT = Path(__file__).resolve().parent / "mnist"


def cut(src, dst, n):
    """The first n items of a gzipped IDX file: the count in the header rewritten, the rest cut."""
    raw = gzip.decompress(src.read_bytes())
    ndim = raw[3]  # magic: two zero bytes, the type code, the number of dimensions
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    item = 1
    for d in dims[1:]:
        item *= d
    header = raw[:4] + n.to_bytes(4, "big") + raw[8:4 + 4 * ndim]
    body = raw[4 + 4 * ndim:4 + 4 * ndim + n * item]
    dst.write_bytes(gzip.compress(header + body, compresslevel=9, mtime=0))


def main():
    """Write the four fixture files from the MNIST folder given on the command line."""
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = Path(sys.argv[1])
    OUT.mkdir(parents=True, exist_ok=True)
    for prefix, n in [("train", N_TRAIN), ("t10k", N_TEST)]:
        for kind in ["images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"]:
            cut(src / f"{prefix}-{kind}", OUT / f"{prefix}-{kind}", n)
    print(f"wrote {N_TRAIN} training and {N_TEST} test images to {OUT}")


if __name__ == "__main__":
    main()
