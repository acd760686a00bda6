"""Writes ``shared/datashunt/example_data/reviews.csv``, the small example set that ships in the
wheel (``read_dataset("example-reviews", split=...)``, ``--data example-reviews``).

The reviews are synthetic, written for this project from the phrase lists below (none comes
from ``../shared/data``, which may never be committed). About one review in eight is mixed
(praise and a complaint) and only its closing verdict tells the label, so a gate is not right
on every row and calibration has something to measure. ``tests/core/test_packaging.py`` checks
that the shipped file is what this module writes.

    python -m tests.support.example_reviews   # rewrites the file
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "shared" / "datashunt" / "example_data" / "reviews.csv"
SPLITS = (("train", 300), ("dev", 150), ("test", 150))
SEED = 20261207

PRODUCTS = {
    "kitchen": [
        "blender", "kettle", "toaster", "coffee grinder", "rice cooker", "knife set",
        "frying pan", "stand mixer",
    ],
    "electronics": [
        "headphones", "phone charger", "keyboard", "webcam", "router", "smart speaker",
        "tablet case", "power bank",
    ],
    "books": [
        "cookbook", "thriller", "biography", "history book", "travel guide", "novel",
        "poetry collection", "science book",
    ],
    "home": [
        "desk lamp", "vacuum cleaner", "pillow", "shower head", "bookshelf", "office chair",
        "curtains", "space heater",
    ],
}  # fmt: skip

PRAISE = [
    "works exactly as described", "feels solid and well made", "was easy to set up",
    "does the job quietly", "exceeded what I expected for the price", "is a joy to use",
    "has held up well after months of daily use", "arrived early and well packed",
    "is better than the one it replaced", "looks great in the room",
    "was worth every penny", "is simple and reliable", "impressed the whole family",
    "kept me hooked from the first page", "is clear, useful and well organised",
    "performs far better than the reviews suggested",
]  # fmt: skip
COMPLAINT = [
    "stopped working after a week", "feels cheap and flimsy", "was a pain to set up",
    "is much louder than advertised", "is not worth the price", "broke the second time I used it",
    "arrived damaged and missing parts", "is worse than the one it replaced",
    "smells of plastic even after weeks", "overheats within minutes",
    "fell apart at the seams", "is dull and hard to follow", "has pages printed out of order",
    "drains the battery overnight", "never matched the photos", "makes a grinding noise",
]  # fmt: skip
MINOR_GOOD = [
    "the colour is nice", "delivery was quick", "the box looked good", "the manual is clear",
    "the price was low", "it is light",
]  # fmt: skip
MINOR_BAD = [
    "the cable is a bit short", "the box was dented", "the colour is duller than shown",
    "the manual is thin", "it is heavier than I thought", "the lid is fiddly",
]  # fmt: skip
VERDICT = {
    "positive": [
        "Would buy again.", "Highly recommended.", "Five stars from me.", "Very happy overall.",
        "I recommend it without hesitation.",
    ],
    "negative": [
        "Returning it.", "Avoid.", "One star.", "Very disappointed overall.",
        "Save your money.",
    ],
}  # fmt: skip
OPENER = [
    "I bought this {p} for my sister.", "Ordered the {p} last month.", "This {p}",
    "My new {p}", "Got the {p} on sale.", "The {p} I received",
]  # fmt: skip


def _review(rng: random.Random, label: str, product: str) -> str:
    praise, complaint = rng.sample(PRAISE, 2), rng.sample(COMPLAINT, 2)
    good, bad = (praise, complaint) if label == "positive" else (complaint, praise)
    opener = rng.choice(OPENER).format(p=product)
    subject = "It" if opener.endswith(".") else ""
    first = f"{opener} {subject} {good[0]}".replace("  ", " ").strip()
    verdict = rng.choice(VERDICT[label])
    if rng.random() < 0.125:  # mixed: both sides, the verdict decides
        return f"{first}, but it {bad[0]}. {verdict}"
    minor = rng.choice(MINOR_BAD if label == "positive" else MINOR_GOOD)
    if rng.random() < 0.5:
        return f"{first} and {good[1]}. {verdict}"
    return f"{first}. {minor.capitalize()}, but it {good[1]}. {verdict}"


def rows(seed: int = SEED) -> list[dict[str, str]]:
    """The example set's rows: text, label, split and domain, balanced labels per split."""
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for split, n in SPLITS:
        made = 0
        while made < n:
            label = ("negative", "positive")[made % 2]
            domain = rng.choice(sorted(PRODUCTS))
            text = _review(rng, label, rng.choice(PRODUCTS[domain]))
            if text in seen:
                continue
            seen.add(text)
            out.append({"text": text, "label": label, "split": split, "domain": domain})
            made += 1
    return out


def render(seed: int = SEED) -> str:
    """The CSV text of :func:`rows` (header ``text,label,split,domain``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["text", "label", "split", "domain"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows(seed))
    return buf.getvalue()


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
