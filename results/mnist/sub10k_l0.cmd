python -m shapnet.training --dataset mnist --data-dir $SHAPNET_DATA --max-train 10000 --epochs 2 --batch-size 64 --lr 1e-2 --consistency 0 --threads 1 --progress none --out results/mnist/sub10k_l0
