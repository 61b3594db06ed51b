python -m shapnet.training --dataset mnist --data-dir $SHAPNET_DATA --epochs 3 --batch-size 64 --lr 1e-2 --threads 1 --eval-test-every-epoch --out results/mnist/default_e3
