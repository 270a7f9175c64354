"""Table 4's cost columns at the paper's raster: the rendering ConvNet at 400 px over 130 m with
19 history frames (the most our 20 observed steps give; the paper stacks 20), its ResNet-18 stage
widths w-2w-4w-8w chosen so that its parameters come nearest the paper's 246K, beside VectorNet's
`paper` config (128 polyline slots). Counted from the jaxprs (`report.cost_table`); nothing is
trained at this size on a CPU.

    python experiments/vectornet/table4_paper_raster.py
"""

import dataclasses

from jaxlab.vectornet import configs, report

PAPER_PARAMS = 246_000


def convnet(config, w):
    return dataclasses.replace(config, model=dataclasses.replace(
        config.model, name="convnet", convnet_size=400, convnet_metres=130.0, convnet_frames=tuple(range(19)),
        convnet_widths=(w, 2 * w, 4 * w, 8 * w)))


def params_of(table: str) -> int:
    return int(table.splitlines()[-1].split("|")[2].replace(",", ""))


if __name__ == "__main__":
    c = configs.get_config("paper")
    w = min(range(4, 17), key=lambda w: abs(params_of(report.cost_table({"c": convnet(c, w)})) - PAPER_PARAMS))
    print(report.cost_table({f"ConvNet, ResNet-18 widths {w}-{2 * w}-{4 * w}-{8 * w}, 400 px / 130 m, 19 frames":
                             convnet(c, w), "VectorNet `paper` (subgraph 3x64, global 1x64, 128 polylines)": c}))
    print("\npaper: ConvNet R18-k3-t-r400 246K parameters, 10.56 GFLOPs; "
          "VectorNet 72K, 0.041 GFLOPs per predicted agent")
