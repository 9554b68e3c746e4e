"""Score a sweep's runs on the Ruijin dev articles tagged whole (document-level exact spans).

    python bench/score_documents.py /tmp/bertner-bench/recipes/windows-bilstm --name windows_bilstm

A sweep ranks its runs by window-level dev F1, which is measured on each run's own dev windows:
runs preprocessed with different window sizes are then scored on different units. Tagging the
same 60 dev articles whole (as `bench/quality.py` does) puts them on one scale. Scores are cached
in each run's quality.json; writes `bench/results/NAME.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import common
import quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="a folder of finished runs (one per subfolder)")
    parser.add_argument("--name", required=True, help="result file name under bench/results/")
    args = parser.parse_args()
    rows = []
    for run in sorted(p for p in args.sweep.iterdir() if (p / "summary.json").exists()):
        scores = quality.score_run("ruijin", run)
        rows.append({"run": run.name, **scores})
        print(f"{run.name}: documents {scores['dev_document']['micro']['f1']:.4f}, "
              f"windows (training's dev) {scores['summary']['best_f1']:.4f}, "
              f"{scores['summary']['epochs_done']} epochs, {scores['summary']['tokens_per_second']:.0f} tokens/s")
    common.write_result(args.name, {"name": args.name, "sweep": str(args.sweep),
                                    "machine": common.machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
