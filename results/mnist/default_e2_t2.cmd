python -m shapnet.training --dataset mnist --data-dir $SHAPNET_DATA --epochs 2 --batch-size 64 --lr 1e-2 --threads 2 --progress none --out results/mnist/default_e2_t2
