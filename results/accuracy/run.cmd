python -m benchmarks accuracy --datasets yeast,breast_cancer,wine,diabetes,digits,adult --seeds 0,1,2 --data-dir ../shared/data --out results/accuracy
