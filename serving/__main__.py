"""Start the server: `python -m serving`."""

import os

# One thread per worker process: the workers are the parallelism, and BLAS/OpenMP pools started
# before fork (or competing across workers on a small machine) cost more than they give.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from serving.supervisor import main  # noqa: E402

main()
