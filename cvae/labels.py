"""Fashion-MNIST class names and the parsing of user-given labels."""

import re

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)


def parse_label(text: str | int, class_names=CLASS_NAMES) -> int:
    """Returns the class id for a class name (case-insensitive; "tshirt", "t-shirt" and
    "ankle-boot" work too) or an id given as a number; raises ValueError naming the choices."""
    if isinstance(text, int) or re.fullmatch(r"[+-]?\d+", str(text).strip()):
        value = int(text)
        if not 0 <= value < len(class_names):
            raise ValueError(f"label {value} is out of range: ids are 0..{len(class_names) - 1}")
        return value

    def key(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    wanted = key(str(text))
    for i, name in enumerate(class_names):
        if wanted and wanted in (key(name), key(name.split("/")[0])):
            return i
    choices = ", ".join(f"{i}={n}" for i, n in enumerate(class_names))
    raise ValueError(f"unknown class {text!r}: choose a name or id from {choices}")
