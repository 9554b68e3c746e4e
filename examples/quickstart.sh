#!/usr/bin/env sh
# The quick start in one command, offline: preprocess the small example corpus, train the
# embedded tiny encoder with a CRF head, score it on the notes it did not train on, and tag one of
# them. About a minute on 2 CPU cores.
# Run it from anywhere; it writes data/processed/ and runs/quickstart/ in the current folder.
set -e
here=$(dirname "$0")
bertner preprocess "$here/clinical" --max-chars 64 --dev-ratio 0.3 --force
bertner train --crf --crf-lr-mult 10 --epochs 60 --batch-size 8 --output runs/quickstart --force
# The split put note06, note07, case11_1 and case11_2 in dev: scored here, never trained on.
bertner evaluate runs/quickstart "$here/clinical" --held-out
bertner predict runs/quickstart "$here/clinical/note06.txt" --format pretty
