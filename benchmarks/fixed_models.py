"""Parameter counts of every hand-designed model (degenerate space) at its ``default`` and ``paper`` presets.

    python benchmarks/fixed_models.py

The ``paper`` preset is built on the feature dims its paper uses (each module's ``PAPER_DIMS``; six
IEMOCAP classes, two speakers) and its count printed beside the paper's own figure where the paper
gives one (``PAPER_PARAMS``, or a space's ``paper_params``). The ``default`` preset is built on the
embedded ``iemocap6`` dims (text 100, audio 100, visual 512).
"""

from __future__ import annotations

import importlib

from nasmerc.data.conversation import DataSignature
from nasmerc.outputs import count_parameters
from nasmerc.registry import get_search_space, list_search_spaces

CLASSES = ("hap", "sad", "neu", "ang", "exc", "fru")
EMBEDDED = {"text": 100, "audio": 100, "visual": 512}


def signature(dims: dict[str, int]) -> DataSignature:
    return DataSignature(("text", "audio", "visual"), dict(dims), "classification", classes=CLASSES, n_speakers=2)


def main() -> None:
    print(f"{'space':<14}{'default':>12}{'paper':>14}{'paper reports':>15}  paper dims (text/audio/visual)")
    for name in list_search_spaces():
        cls = get_search_space(name)
        default = cls.from_preset(signature(EMBEDDED), "default")
        if default.choices():
            continue  # a searched space, not a hand-designed model
        module = importlib.import_module(cls.__module__)
        dims = getattr(module, "PAPER_DIMS")
        reported = getattr(cls, "paper_params", getattr(module, "PAPER_PARAMS", None))
        paper = cls.from_preset(signature(dims), "paper")
        n_default, n_paper = count_parameters(default.build({})), count_parameters(paper.build({}))
        shown = f"{reported / 1e6:.2f} M" if isinstance(reported, (int, float)) else "-"
        print(f"{name:<14}{n_default:>12,}{n_paper / 1e6:>12.2f} M{shown:>15}  "
              f"{dims['text']}/{dims['audio']}/{dims['visual']}")


if __name__ == "__main__":
    main()
