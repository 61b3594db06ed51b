python -m benchmarks consistency --dataset yeast --data-dir $SHAPNET_DATA --seeds 0,1,2 --out results/consistency
