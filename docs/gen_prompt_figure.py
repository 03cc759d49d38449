"""Draw docs/img/prompt-kinds.png: where each prompt kind's tokens go (`python docs/gen_prompt_figure.py`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

COLOURS = {"C": "#9e9e9e", "P": "#f28e2b", "G": "#e15759", "x": "#4e79a7", "m": "#76b7b2"}
ROWS = [  # (kind, token string per block: C prefix, P prompt, G input-dependent prompt, x patch, m mapped patch)
    ("shallow", ["CPPPxxxxxx", "C...xxxxxx"], "prompt enters block 0 only"),
    ("deep", ["CPPPxxxxxx", "CPPPxxxxxx"], "block i's own prompt overwrites the slots before block i"),
    ("around", ["CPPxxxxxxPP", "C..xxxxxx.."], "p1 before and p2 after the patch tokens"),
    ("input_dependent", ["CGGGxxxxxx", "C...xxxxxx"], "tokens P + g(mean patch embedding); deep: every block"),
    ("input_map", ["Cmmmmmm", "Cmmmmmm"], "patch embeddings mapped (affine / low-rank); optional inner prompt"),
]


def draw() -> plt.Figure:
    """The figure, laid out (every legend label measured, nothing drawn over another)."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    y = 0.0
    for kind, blocks, note in ROWS:
        ax.text(-0.3, y + 0.35, kind, ha="right", va="center", fontsize=10, family="monospace")
        x0 = 0.0
        for b, tokens in enumerate(blocks):
            ax.text(x0, y + 0.95, f"block {'0' if b == 0 else 'i>0'}", fontsize=7, color="#555")
            for j, t in enumerate(tokens):
                face = "white" if t == "." else COLOURS[t]
                ax.add_patch(Rectangle((x0 + j * 0.32, y), 0.28, 0.7, facecolor=face, edgecolor="#333", lw=0.6,
                                       hatch="//" if t == "." else None))
            x0 += len(tokens) * 0.32 + 0.6
        ax.text(x0, y + 0.35, note, va="center", fontsize=8)
        y -= 1.35
    legend = [("C", "CLS / prefix (pos-embedded)"), ("x", "patch token (pos-embedded)"), ("P", "learned prompt"),
              ("G", "prompt from g(x)"), ("m", "mapped patch token")]
    ax.set_xlim(-2.6, 16.5)
    renderer = fig.canvas.get_renderer()
    x, right = 0.0, 16.0
    for k, label in legend:  # each label measured as drawn: the next swatch starts after it, wrapping at the edge
        text = ax.text(0, 0, label, va="center", fontsize=7.5)
        box = text.get_window_extent(renderer).transformed(ax.transData.inverted())
        if x and x + 0.4 + box.width > right:
            x, y = 0.0, y - 0.7
        ax.add_patch(Rectangle((x, y + 0.1), 0.28, 0.5, facecolor=COLOURS[k], edgecolor="#333", lw=0.6))
        text.set_position((x + 0.4, y + 0.35))
        x += 0.4 + box.width + 0.8
    ax.text(0, y - 0.5, "hatched: the previous block's output at the prompt positions (not overwritten); "
            "pooling skips every prompt position", fontsize=7.5)
    ax.set_ylim(y - 0.9, 1.3)
    ax.axis("off")
    fig.tight_layout()
    return fig


def main() -> None:
    out = Path(__file__).with_name("img") / "prompt-kinds.png"
    out.parent.mkdir(exist_ok=True)
    draw().savefig(out, dpi=130)


if __name__ == "__main__":
    main()
