"""bertner: fine-tune BERT-family encoders for named-entity recognition."""

import os

# Set before torch loads OpenMP: idle worker threads sleep instead of spinning. On a machine where
# other work holds a core, spinning threads made the quick start's training about 7x slower (72 s
# against more than 8 minutes, 2 cores, load 5). Export OMP_WAIT_POLICY=ACTIVE to spin anyway.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
