/work/venv/bin/python -m benchmarks consistency --dataset yeast --data-dir /work/shared/data --seeds 0,1,2 --out results/consistency
