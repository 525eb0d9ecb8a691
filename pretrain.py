"""Pretrain BiGS with the original's command line (same flags as `bigs pretrain`):

    python pretrain.py --output_dir BiGS_128/ --dataset_path shards/ --max_seq_length 128 \
      --per_device_train_batch_size 131 --learning_rate 6e-4 --num_total_train_steps 100000
"""

import sys

from bigs.cli.main import run_program

if __name__ == "__main__":
    sys.exit(run_program("pretrain", sys.argv[1:], prog="pretrain.py"))
