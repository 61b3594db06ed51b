/work/venv/bin/python -m benchmarks accuracy --datasets yeast,breast_cancer,wine,diabetes,digits,adult --seeds 0,1,2 --data-dir /work/shared/data --out results/accuracy
